"""Each command's pipeline, one function a command: which checkpoint and data it reads, what it
computes, how it names and captions its pictures, and what it writes. Tests call these without
the command line; `pyro_vae.cli` only parses options, calls one of them and prints what it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pyro_vae import (api, data, evaluate as ev, explore, generate as gen, images, latent, options, plots, pretrained,
                      runtime)
from pyro_vae.checkpoint import require_file
from pyro_vae.config import GRID_COLS, PICTURE_SCALE, EvaluateConfig, GenerateConfig, JudgeConfig, Mode, Paths, QuizConfig
from pyro_vae.errors import ConfigError
from pyro_vae.metrics import EVALUATION, HISTORY, read_evaluations, read_history, write_json
from pyro_vae.progress import Bars

log = logging.getLogger(__name__)

PSEUDO_INPUTS_PNG = "pseudo_inputs.png"  # latent_map's picture of a VampPrior's learned images
PSEUDO_SHOWN = 100  # of them, a 10 x 10 grid
QUIZ_DIR = "quiz"  # under the results folder: quiz.png, answers.png, answers.json


@dataclass(frozen=True)
class Source:
    """What a command that reads a trained model reads, and where it writes: the checkpoint file
    (None: the furthest readable one in `checkpoint_dir`), the data set and its folder (None: the
    checkpoint's own, `data.reading`), the results folder (None: the run's, from `checkpoint_dir`),
    the device, and the sizes the user expects the checkpoint to have (None: not checked); or, by
    `pretrained`, a shipped model instead of a checkpoint (`api.load_pretrained`), whose results
    go to results/pretrained-NAME unless `results_dir` says otherwise."""

    checkpoint: Path | None = None
    checkpoint_dir: Path = Paths.checkpoint_dir
    results_dir: Path | None = None
    dataset: str | None = None
    data_dir: Path | None = None
    device: str = "auto"
    z_dim: int | None = None
    hidden_dim: int | None = None
    threads: str | None = None  # torch's CPU threads: auto (None: $PYRO_VAE_THREADS, else auto) or a number
    pretrained: str | None = None  # a shipped model's name (`pretrained.names`), read instead of a checkpoint

    def open(self, *, writes: bool = True) -> tuple[api.Model, Paths]:
        """The loaded model and the folders to read and write; the results folder is claimed for
        this run when the command `writes` there (`metrics.claim`)."""
        runtime.apply_threads(self.threads)
        if self.pretrained is not None:
            given = [name for name, value in (("checkpoint", self.checkpoint), ("checkpoint_dir", self.checkpoint_dir))
                     if value not in (None, Paths.checkpoint_dir)]
            if given:
                raise ConfigError(f"⟨{given[0]}⟩ and ⟨pretrained⟩ each name the model to read; give one of them")
            model = api.load_pretrained(self.pretrained, device=self.device, z_dim=self.z_dim,
                                        hidden_dim=self.hidden_dim)
            return model, model.paths(dataset=self.dataset, data_dir=self.data_dir, results_dir=self.results_dir,
                                      writes=writes)
        if self.checkpoint is not None:
            require_file(self.checkpoint)  # `checkpoint` names a file; a folder is `checkpoint_dir`
        model = api.load(self.checkpoint if self.checkpoint is not None else self.checkpoint_dir, device=self.device,
                         z_dim=self.z_dim, hidden_dim=self.hidden_dim)
        return model, model.paths(dataset=self.dataset, data_dir=self.data_dir, results_dir=self.results_dir,
                                  writes=writes)


@dataclass(frozen=True)
class Written:
    """A file a command wrote: `replaced` when one of that name was there before; `note` says more."""

    path: Path
    replaced: bool
    note: str = ""


def _other_data(model: api.Model, paths: Paths) -> str:
    """What an output's name adds when it shows another data set's images than the model's own
    ("_fashion-mnist"), so that it never replaces the picture of the model's own test images."""
    return "" if paths.dataset == model.dataset else f"_{paths.dataset}"


def _named(path: Path, added: str) -> Path:
    """`path` with `added` before its suffix: latent_map.png -> latent_map_fashion-mnist.png."""
    return path.with_name(f"{path.stem}{added}{path.suffix}")


def _save(path: Path, write: Callable[[Path], Path], note: str = "") -> Written:
    """Write `path` with `write`, noting whether it replaced a file."""
    replaced = path.exists()
    return Written(write(path), replaced, note)


def generate(source: Source, mode: str = Mode.prior.value, *, n: int = GenerateConfig.n, noise: float | None = None,
             digits: str | None = None, indices: tuple[int, ...] = (), seed: int = GenerateConfig.seed,
             scale: int = GenerateConfig.scale) -> list[Written]:
    """`generate`'s grids: `n` prior samples, or in digit mode `n` draws from the guide widened by
    `noise` (None: the seed's 0.7) around the exemplars of `digits` (numbers or class names, e.g.
    "3,8"; None: every class) or the test images `indices`; with a labels model, in label mode `n`
    samples of each class of `digits`, and in style mode those exemplars' (or `indices`') styles
    written as every class. Each a PNG named by `generate.titles` (other settings than the seed's
    get other names). Settings that the mode would ignore are refused, before the checkpoint is read."""
    gen.check_mode(mode, frozenset(k for k, v in dict(noise=noise, digits=digits, index=indices or None).items()
                                   if v is not None))
    config = GenerateConfig(n=n, noise=GenerateConfig.noise if noise is None else noise, seed=seed, scale=scale,
                            indices=tuple(indices))
    model, paths = source.open()
    about = {**model.about(), "mode": mode, **({"noise": config.noise} if mode == Mode.digit else {}),
             "seed": config.seed}
    other = _other_data(model, paths) if mode in gen.ENCODING else ""  # prior and label samples read no images
    return [_save(paths.results_dir / f"{name}{other}.png", lambda out: images.save_grid(
                x_probs, out, scale=config.scale, caption=images.Caption(title, about)))
            for name, (title, x_probs) in gen.grids(model.vae, mode, config, paths=paths, digits=digits).items()]


@dataclass(frozen=True)
class Scores:
    """`evaluate`'s figures: the model scored, and per test set its `evaluate.Scored`."""

    model: api.Model
    scored: list[ev.Scored]


def evaluate(source: Source, config: EvaluateConfig = EvaluateConfig(), *, progress: bool = False) -> Scores:
    """Score a checkpoint on one or several test sets (`source.dataset`: comma-separated names; the
    checkpoint's own when None), keeping one record per checkpoint, data set and setting in the
    results folder's metrics/evaluation.json. `progress`: a live bar (else a log line now and then)."""
    names = options.dataset_names(source.dataset, several=True)  # a bad name fails before the checkpoint is read
    model, paths = replace(source, dataset=None, data_dir=None).open()
    sets = ev.test_sets(model.data, names, data_dir=source.data_dir)
    for test in (test for test in sets if test.foreign):
        log.info("note: %s %s; %s's test images are scored with the same estimator", model.named, test.foreign,
                 data.get(test.dataset).title)
    images_named = " and ".join(f"{len(test.x)} {test.dataset}" for test in sets)
    log.info("scoring %s (epoch %d) on %s test images with %d particle%s...", model.named, model.epoch, images_named,
             config.particles, "s" * (config.particles != 1))
    with Bars(progress) as bars:
        for test in sets:
            bars.add(f"{test.dataset} test images", total=len(test.x))
        scored = ev.score_and_record(model, sets, results_dir=paths.results_dir, particles=config.particles,
                                     seed=config.seed, batch_size=config.batch_size, threads=source.threads,
                                     on_batch=lambda name, done: bars.update(f"{name} test images", completed=done))
    return Scores(model, scored)


def reconstruct(source: Source, *, n: int, scale: int = PICTURE_SCALE) -> list[Written]:
    """The first `n` test images, each row followed by its reconstructions: reconstructions.png."""
    model, paths = source.open()
    x = data.test_images(paths.data_dir, indices=range(n), dataset=paths.dataset)[0].to(model.device)
    pairs = gen.reconstructions(model.vae, x)
    caption = images.Caption(f"test images 0 to {n - 1} and their reconstructions (decoded guide means)",
                             model.about())
    labels = ["original", "reconstruction"] * -(-n // GRID_COLS)
    return [_save(paths.results_dir / f"reconstructions{_other_data(model, paths)}.png", lambda out: images.save_grid(
        pairs, out, scale=scale, cols=GRID_COLS, caption=caption, row_labels=labels))]


def interpolate(source: Source, *, from_index: int, to_index: int, steps: int,
                scale: int = PICTURE_SCALE) -> list[Written]:
    """The straight line between two test images' encodings, decoded: interpolation_<from>_<to>.png
    (a strip) and .gif."""
    model, paths = source.open()
    x = data.test_images(paths.data_dir, indices=[from_index, to_index], dataset=paths.dataset)[0].to(model.device)
    line = gen.interpolation(model.vae, x[0], x[1], steps=steps)
    stem = paths.results_dir / f"interpolation_{from_index}_{to_index}{_other_data(model, paths)}"
    caption = images.Caption(f"from test image {from_index} to test image {to_index}: {steps} points on the "
                             "line between their encodings", model.about())
    ends = (f"test image {from_index}", f"test image {to_index}")
    return [_save(stem.with_suffix(".png"), lambda out: images.save_grid(line, out, scale=scale, cols=steps,
                                                                         caption=caption, end_labels=ends)),
            _save(stem.with_suffix(".gif"), lambda out: images.save_animation(line, out, scale=scale * 4,
                                                                              caption=caption))]


def quiz(source: Source, config: QuizConfig = QuizConfig(), *, scale: int = PICTURE_SCALE) -> list[Written]:
    """Human or machine? quiz/quiz.png of real and generated digits, quiz/answers.png with the
    generated ones framed, and quiz/answers.json (which cell is which test image)."""
    model, paths = source.open()
    binarized, intensities = data.test_images(paths.data_dir, dataset=paths.dataset)
    shown, answers = gen.quiz(model.vae, binarized, intensities, config)
    folder, about = paths.results_dir / f"{QUIZ_DIR}{_other_data(model, paths)}", {**model.about(), "noise": config.noise, "seed": config.seed}
    marked = [not answer["real"] for answer in answers]
    ask = images.Caption("Human or machine? Some digits are real test images, the others generated", about)
    tell = images.Caption(f"The answers: the {sum(marked)} generated digits are framed in red", about)
    record = {**about, "real_fraction": config.real_fraction, "cells": answers}
    return [_save(folder / "quiz.png", lambda out: images.save_grid(shown, out, scale=scale, caption=ask)),
            _save(folder / "answers.png", lambda out: images.save_marked_grid(shown, marked, out, scale=scale,
                                                                              caption=tell), " (generated: red)"),
            _save(folder / "answers.json", lambda out: write_json(record, out))]


def latent_map(source: Source) -> list[Written]:
    """The test images' codes on two planes (LDA and PCA) coloured by class, latent_map.png; the KL
    of each latent dimension, kl_per_dimension.png; and a VampPrior's pseudo-inputs, pseudo_inputs.png."""
    model, paths = source.open()
    test_images, labels = data.ensure_split(paths.data_dir, "test", dataset=paths.dataset)
    about, other = model.about(), _other_data(model, paths)
    where = f"checkpoint {about['checkpoint']}, epoch {about['epoch']}"
    written = [_save(_named(paths.results_dir / plots.LATENT_MAP, other), lambda out: plots.latent_map(
        latent.views_of(model.vae, test_images, labels), labels, out,
        classes=latent.Classes.of(paths.dataset, paths.data_dir), about=where))]
    used = latent.usage_of(model.vae, test_images)
    written.append(_save(_named(paths.results_dir / plots.KL_PER_DIMENSION, other), lambda out: plots.kl_per_dimension(
        used.kl, used.active, out, about=f"{len(test_images)} {data.get(paths.dataset).title} test images; {where}",
        marginal=model.model_config.prior != "standard")))
    pseudo = model.pseudo_inputs()
    if pseudo is not None:  # the VampPrior's own images: what its mixture is centred on
        shown = pseudo[:PSEUDO_SHOWN]
        title = (f"The VampPrior's pseudo-inputs: {len(shown)} of its {len(pseudo)} learned images; p(z) is the "
                 "guide's mixture at them")
        written.append(_save(paths.results_dir / PSEUDO_INPUTS_PNG, lambda out: images.save_grid(
            shown.reshape(len(shown), -1), out, scale=PICTURE_SCALE, caption=images.Caption(title, about))))
    return written


def curves(paths: Paths) -> Written:
    """One run's training curves (its metrics/history.csv, and evaluate's figures) in its metrics/curves.png."""
    records = read_history(paths.results_dir / HISTORY, run=paths)
    evaluations = read_evaluations(paths.results_dir / EVALUATION)
    counted = f", {len(evaluations)} evaluation{'s' * (len(evaluations) != 1)}" if evaluations else ""
    note = f" ({len(records)} epoch{'s' * (len(records) != 1)}{counted})"
    return _save(paths.results_dir / plots.CURVES, lambda out: plots.plot_history(
        records, out, evaluations=evaluations, run=str(paths.results_dir)), note)


@dataclass(frozen=True)
class Page:
    """`explore`'s page for one checkpoint: its files by name (`explore.bundle`) and the model."""

    files: dict[str, bytes]
    model: api.Model


def page(source: Source) -> Page:
    """The explorer page's files for a checkpoint and its test images; on the CPU: the page computes.
    The quiz says how the judge did on the same game where `judge` has scored this checkpoint. A
    shipped model's page shows the test images shipped beside it (`pretrained.test_sample`), so
    that it opens with no data set downloaded, unless a data set or its folder is given."""
    from pyro_vae import judge

    model, paths = replace(source, device="cpu", results_dir=None).open(writes=False)
    if model.pretrained and source.dataset is None and source.data_dir is None:
        test_images, labels = pretrained.test_sample(model.pretrained)
    else:
        test_images, labels = data.ensure_split(paths.data_dir, "test", dataset=paths.dataset)
    shown = Path(f"{model.pretrained} (shipped with pyro-vae)") if model.pretrained else model.path  # the page's title
    files = explore.bundle(model.vae, test_images, labels, checkpoint=shown, epoch=model.epoch,
                           classes=latent.Classes.of(paths.dataset, paths.data_dir),
                           judged=judge.page_figure(model.about()["checkpoint"], paths.results_dir)
                           or (pretrained.quiz_figure(model.pretrained) if model.pretrained else None))
    return Page(files, model)


def judge(source: Source, config: JudgeConfig = JudgeConfig(), *, progress: bool = False) -> Any:
    """The judge's figures of the model's sources and of real test images, added to the run's
    results/metrics/judge.json (`judge.judge_and_record`; the judge trains once per data set, cached)."""
    from pyro_vae import judge as jg

    model, paths = source.open(writes=False)
    return jg.judge_and_record(model, config, paths=paths, progress=progress)
