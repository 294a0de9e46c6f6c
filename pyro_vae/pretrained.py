"""The shipped models: package data in pyro_vae/weights/, a weights-only file (NAME.pt), a sample of
test images for the page (NAME.test.pt) and a manifest (NAME.json) each; reading them, checked by
the manifest's sha256, and `ship`, the maintainer's step that writes them from a trained checkpoint.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import logging
import multiprocessing
import os
import platform
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from pyro_vae import checkpoint, data, evaluate as ev, judge
from pyro_vae.config import JudgeConfig, Paths
from pyro_vae.errors import ConfigError, DamagedCheckpoint
from pyro_vae.m2 import build

log = logging.getLogger(__name__)

FORMAT = 1
FOLDER = Path(str(resources.files("pyro_vae") / "weights"))  # tests point it at a folder of their own
FP16_LIMIT = 0.05  # nats of test log p(x): the weights ship in fp16 only when halving them costs less
SAMPLE_IMAGES = 1000  # the first test images, shipped for `explore` (every class's exemplar is among them)
RESULTS = "results"  # a shipped model's outputs go to results/pretrained-NAME, apart from any user's run
_EPOCH_LINE = re.compile(r"^Epoch (\d+) \(([\d.]+)s\)")  # the trainer's log line for a finished epoch


class UnknownPretrained(ConfigError):
    """No shipped model of that name; the message lists the names there are."""


def names() -> list[str]:
    """The shipped models' names, sorted."""
    return sorted(p.stem for p in FOLDER.glob("*.json")) if FOLDER.is_dir() else []


def manifest(name: str) -> dict[str, Any]:
    """The manifest of shipped model `name` (settings, command, time, figures, sha256)."""
    path = FOLDER / f"{name}.json"
    if not path.is_file():
        there = ", ".join(names()) or "none"
        raise UnknownPretrained(f"no shipped model named {name!r}; the shipped models are: {there} "
                                "(pyro-vae pretrained lists them with their figures)")
    return json.loads(path.read_text())


def results_dir(name: str) -> Path:
    """Where a command reading shipped model `name` writes by default: results/pretrained-NAME."""
    return Path(RESULTS) / f"pretrained-{name}"


def _verified(path: Path, sha256: str) -> bytes:
    """The file's bytes, refused in one line unless their sha256 is the manifest's."""
    raw = path.read_bytes() if path.is_file() else b""
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise DamagedCheckpoint(f"shipped file {path} does not match its manifest's sha256 (damaged, edited or "
                                "missing); reinstall pyro-vae, or ship the model again")
    return raw


def weights(name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The shipped model's state dict as float32 (checked against its manifest's sha256) and its manifest."""
    record = manifest(name)
    path = FOLDER / record["file"]
    state = torch.load(io.BytesIO(_verified(path, record["sha256"])), map_location="cpu", weights_only=True)
    return {key: value.float() for key, value in state.items()}, record


def test_sample(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images shipped beside model `name`: (n, 784) uint8 intensities and (n,) int64 labels,
    the data set's first `n` test images (checked against the manifest's sha256)."""
    sample = manifest(name)["sample"]
    loaded = torch.load(io.BytesIO(_verified(FOLDER / sample["file"], sample["sha256"])), map_location="cpu",
                        weights_only=True)
    return loaded["images"], loaded["labels"].long()


def described(name: str) -> list[str]:
    """Shipped model `name` in a few lines (`pyro-vae pretrained`): what it is, its test figures
    and training time, what the judge reads in its samples, and its note."""
    record = manifest(name)
    test = record["test"]
    lines = [f"{name}: {record['dataset']['title']}, recipe {record['recipe']}, z_dim {record['model_config']['z_dim']}"
             f"{', labels ' + str(record['train_config']['labels']) if record['train_config'].get('labels') else ''}"
             f", epoch {record['epoch']} of {record['epochs_planned']}, {record['dtype']} ({record['bytes'] / 1e6:.1f} MB)",
             f"  test log p(x) {test['log_likelihood']:.2f} +- {test['log_likelihood_se']:.2f} nats, ELBO "
             f"{test['elbo']:.2f} +- {test['elbo_se']:.2f} (K={test['particles']}, first {test['images']} test images); "
             f"trained {record['training_seconds'] / 3600:.1f} h"]
    judged = {(r["source"], r["noise"]): r for r in record.get("judge", {}).get("records", [])}
    if judged:
        said = [f"{_SOURCE_WORDS.get(source, source)}{'' if noise is None else f' (noise {noise:g})'}: "
                f"{100 * r['legible']:.0f}% legible"
                + (f", {100 * r['target_share']:.0f}% read as {_TARGET_WORDS.get(source, 'asked')}" if "target_share" in r else "")
                for (source, noise), r in judged.items()]
        lines.append(f"  the judge ({100 * record['judge']['judge_accuracy']:.2f}% on the test set) reads " + "; ".join(said))
    if record.get("note"):
        lines.append(f"  {record['note']}")
    return lines


# How `described` names the judge's sources, and the share of each read as its target.
_SOURCE_WORDS = {judge.PRIOR: "samples of the prior", judge.MORE_LIKE_THIS: "more like a test image",
                 judge.LABEL: "asked for a class", judge.REAL: "real test images"}
_TARGET_WORDS = {judge.MORE_LIKE_THIS: "the image's class", judge.LABEL: "the class asked for"}


def quiz_figure(name: str) -> dict[str, Any] | None:
    """What the page's quiz says of the judge at its game on shipped model `name`, from the judge's
    records in its manifest (`judge.quiz_figure`); None for a manifest without them."""
    return judge.quiz_figure(manifest(name).get("judge", {}).get("records", []))


def _judged(name: str, state: dict[str, torch.Tensor], record: dict[str, Any], config: JudgeConfig, *,
            data_dir: Path, weights_file: Path) -> dict[str, Any]:
    """The judge's figures of the shipped weights (`judge.judge` with `config`, on the model's data
    set in `data_dir`), as the manifest keeps them: the judge's test accuracy and one record per
    source, without the fields that name the model."""
    from pyro_vae.api import Model  # (api reads shipped models through this module)

    model_config, train_config = checkpoint.configs_of(record)
    vae = build(model_config)
    vae.load_state_dict({key: value.float() for key, value in state.items()})
    model = Model(vae=vae.eval(), path=weights_file, epoch=record["epoch"], data={"name": record["dataset"]["name"]},
                  train_config=train_config, pretrained=name)
    judged = judge.judge(model, config, paths=Paths(data_dir=Path(data_dir), dataset=model.dataset))
    names_model = set(model.about()) - {"epoch"}
    return {"judge_accuracy": judged.judge.accuracy, "samples": config.samples, "seed": config.seed,
            "what": "`pyro-vae judge` of the shipped weights: a CNN trained on the training images reads each "
                    "source's samples (docs/results.md, Judge)",
            "records": [{k: v for k, v in r.items() if k not in names_model} for r in judged.records]}


def training_seconds(log_file: Path, *, epoch: int) -> tuple[float, int]:
    """The summed epoch times of a training log's "Epoch N (T s)" lines up to `epoch` (a resumed
    epoch's last line counts): (seconds, epochs counted)."""
    times: dict[int, float] = {}
    for line in Path(log_file).read_text(errors="replace").splitlines():
        found = _EPOCH_LINE.match(line.strip())
        if found and int(found[1]) <= epoch:
            times[int(found[1])] = float(found[2])
    return sum(times.values()), len(times)


def machine() -> str:
    """This machine in words: CPU model, CPUs this process may use, OS."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() \
        else platform.processor()
    return f"{model}, {len(os.sched_getaffinity(0))} CPUs, {platform.system()} {platform.machine()}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _save(obj: Any, path: Path) -> str:
    """torch.save `obj` to `path`; returns the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return _sha256(path)


def _score_all(source: Path, calls: list[tuple[torch.dtype, torch.Tensor]], *, particles: int, seed: int,
               batch_size: int, side_by_side: bool) -> list[ev.Evaluation]:
    """`_scored` for each (dtype, images) of `calls`: in a process each (one thread), or one after the other here."""
    columns = list(zip(*[(source, dtype, x, particles, seed, batch_size) for dtype, x in calls]))
    if not side_by_side or len(calls) == 1:
        return list(map(_scored, *columns))
    with ProcessPoolExecutor(max_workers=len(calls), mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_scored, *columns))


def _scored(source: Path, dtype: torch.dtype, x: torch.Tensor, particles: int, seed: int,
            batch_size: int) -> ev.Evaluation:
    """The test figures of checkpoint `source`'s weights rounded to `dtype` (`evaluate.evaluate`)."""
    torch.set_num_threads(1)  # a process of its own: the caller's thread setting does not reach it
    state = checkpoint.load(source)
    vae = build(checkpoint.configs_of(state)[0])  # the VAE, or a labels model (M2)
    vae.load_state_dict({key: value.to(dtype).float() for key, value in state["model"].items()})
    return ev.evaluate(vae.eval(), x, particles=particles, seed=seed, batch_size=batch_size)


def ship(name: str, source: Path, *, command: str, log_file: Path, data_dir: Path, note: str = "",
         particles: int = 1000, seed: int = 0, batch_size: int = 100, trained_on: str = "",
         folder: Path | None = None, side_by_side: bool = True, images: int | None = None,
         judged: JudgeConfig | None = JudgeConfig(),
         on_step: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Write shipped model `name` from checkpoint `source` into `folder` (default: the package's):
    the weights only, in fp16 when that loses under `FP16_LIMIT` nats of test log p(x) (both
    scored with the same `particles`, `seed` and draws), else fp32; the first `SAMPLE_IMAGES` test
    images; and the manifest, with the test figures measured on the weights as shipped.

    Args:
        command: the exact command that trained it; log_file: its log (the epoch times are summed);
        data_dir: the data set's folder (its test split is scored); note: what the reader should
        know (e.g. an epoch short of the run's end); trained_on: the machine [default: this one];
        side_by_side: score in a process each (else one after the other, in this one);
        images: score the first `images` test images only [default: all of them].
        judged: the settings of the judge whose figures of the shipped weights the manifest keeps
            (`pyro-vae judge`; trains the judge once per data set, then cached); None leaves them out.
    Returns:
        The manifest written.
    """
    folder = FOLDER if folder is None else Path(folder)
    state = checkpoint.load(source)
    model_config, train_config = checkpoint.configs_of(state)
    dataset = state["dataset"]["name"]
    spec = data.get(dataset)
    x, _ = data.test_images(data_dir, dataset=dataset)
    raw, labels = data.load_split(data_dir, "test", dataset=dataset)  # (n, 784) uint8: the page's sample

    scored_x = x[:images]  # the whole test set unless `images` says fewer (a machine too busy for it)
    on_step(f"scoring {name} as float32 and as float16 on {len(scored_x)} test images, K={particles}, seed {seed}"
            f"{' (side by side)' if side_by_side else ''}")
    full, half = _score_all(source, [(torch.float32, scored_x), (torch.float16, scored_x)], particles=particles,
                            seed=seed, batch_size=batch_size, side_by_side=side_by_side)
    loss = full.log_likelihood - half.log_likelihood
    dtype, shipped = (torch.float16, half) if loss < FP16_LIMIT else (torch.float32, full)
    weights_file, sample_file = f"{name}.pt", f"{name}.test.pt"
    rounded = {key: value.to(dtype).contiguous() for key, value in state["model"].items()}
    sha = _save(rounded, folder / weights_file)
    sample_sha = _save({"images": raw[:SAMPLE_IMAGES].to(torch.uint8).clone(),
                        "labels": labels[:SAMPLE_IMAGES].to(torch.uint8).clone()}, folder / sample_file)
    seconds, counted = training_seconds(log_file, epoch=int(state["epoch"]))
    record = {
        "format": FORMAT, "name": name, "file": weights_file, "sha256": sha, "dtype": str(dtype).removeprefix("torch."),
        "bytes": (folder / weights_file).stat().st_size,
        "dataset": {"name": dataset, "title": spec.title, "sha256": dict(spec.sha256 or {})},
        "model_config": asdict(model_config), "train_config": asdict(train_config),
        "recipe": train_config.recipe or "seed", "seed": train_config.seed,
        "epoch": int(state["epoch"]), "epochs_planned": train_config.epochs, "note": note,
        "command": command, "machine": trained_on or machine(),
        "training_seconds": round(seconds, 1),
        "training_time": f"{seconds / 3600:.2f} h: the sum of the {counted} 'Epoch N (T s)' lines of its log up to "
                         f"epoch {state['epoch']} (time spent training, not evaluating or waiting)",
        "test": {"images": shipped.images, "particles": particles, "seed": seed, "elbo": shipped.elbo,
                 "elbo_se": shipped.elbo_se, "log_likelihood": shipped.log_likelihood,
                 "log_likelihood_se": shipped.log_likelihood_se, "reconstruction": shipped.reconstruction,
                 "kl": shipped.kl, "active_units": shipped.active_units},
        "fp16": {"images": full.images, "log_likelihood_fp32": full.log_likelihood,
                 "log_likelihood_fp16": half.log_likelihood, "loss": loss, "limit": FP16_LIMIT,
                 "particles": particles, "seed": seed,
                 "what": f"test log p(x) of {full.images} test images, the weights in fp32 and rounded to fp16, "
                         "with the same draws: loss = fp32 - fp16"},
        "sample": {"file": sample_file, "sha256": sample_sha, "images": min(SAMPLE_IMAGES, len(raw)),
                   "what": f"the first {min(SAMPLE_IMAGES, len(raw))} {spec.title} test images and labels, "
                           "for explore's page without the data set"},
        "checkpoint": {"file": str(source), "sha256": _sha256(source)},
        "shipped": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if judged is not None:
        on_step(f"judging {name}'s samples")
        record["judge"] = _judged(name, rounded, record, judged, data_dir=data_dir, weights_file=folder / weights_file)
    (folder / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record
