"""Shipped models (pyro_vae/pretrained.py): shipping a tiny trained checkpoint into a folder of the
test's own, loading it, every command's --pretrained, the checksum's refusal; and the models that
really ship with the package: their manifests rebuild them, and (slow) `mnist` scores as recorded."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import pyro_vae
from pyro_vae import pretrained
from pyro_vae.config import JudgeConfig, ModelConfig, Paths
from pyro_vae.model import VAE

TINY = dict(z_dim=2, hidden_dim=16, batch_size=16)
# A judge and C2STs small enough for the synthetic images (40 samples: at most the 80 training images)
JUDGE = JudgeConfig(samples=40, judge_epochs=3, judge_batch_size=16, judge_width=4, c2st_epochs=2,
                    c2st_batch_size=16, c2st_width=4)
PACKAGE_FOLDER = pretrained.FOLDER  # the real shipped models, before a test points FOLDER elsewhere


@pytest.fixture
def shipped(tmp_path, mnist_dir, monkeypatch) -> Path:
    """A tiny model trained for two epochs, shipped as `mnist` into tmp/weights, which FOLDER now names."""
    pyro_vae.train(epochs=2, checkpoint_dir=tmp_path / "run", results_dir=tmp_path / "run-results", save_every=1,
                   **TINY)
    log = tmp_path / "train.log"
    log.write_text("Epoch 1 (1.5s): Lower bound = -500\nbatches: 2/5\nEpoch 2 (2.25s): Lower bound = -400\n")
    folder = tmp_path / "weights"
    pretrained.ship("mnist", tmp_path / "run" / "vae.epoch.2.pt", command="pyro-vae train --epochs 2", log_file=log,
                    data_dir=mnist_dir, note="a test's", particles=4, folder=folder, side_by_side=False,
                    judged=JUDGE)
    monkeypatch.setattr(pretrained, "FOLDER", folder)
    return folder


def test_ship_writes_weights_only_a_sample_and_an_honest_manifest(shipped, n_test):
    record = json.loads((shipped / "mnist.json").read_text())
    assert record["epoch"] == 2 and record["epochs_planned"] == 2 and record["seed"] == 0
    assert record["training_seconds"] == 3.8 and "2 'Epoch N (T s)' lines" in record["training_time"]
    assert record["command"] == "pyro-vae train --epochs 2" and record["note"] == "a test's"
    assert record["sha256"] == hashlib.sha256((shipped / "mnist.pt").read_bytes()).hexdigest()
    assert record["dataset"]["name"] == "mnist" and len(record["dataset"]["sha256"]) == 4
    fp16 = record["fp16"]
    assert fp16["loss"] == pytest.approx(fp16["log_likelihood_fp32"] - fp16["log_likelihood_fp16"])
    assert record["dtype"] == ("float16" if fp16["loss"] < pretrained.FP16_LIMIT else "float32")
    shipped_ll = fp16["log_likelihood_fp16" if record["dtype"] == "float16" else "log_likelihood_fp32"]
    assert record["test"]["log_likelihood"] == shipped_ll and record["test"]["images"] == n_test
    state = torch.load(shipped / "mnist.pt", weights_only=True)
    assert {v.dtype for v in state.values()} == {getattr(torch, record["dtype"])}  # weights only: no optimizer
    images, labels = pretrained.test_sample("mnist")
    assert images.shape == (n_test, 784) and images.dtype == torch.uint8 and labels.shape == (n_test,)


def test_the_manifest_keeps_the_judges_figures_of_the_shipped_weights(shipped, mnist_dir):
    from pyro_vae import judge

    kept = json.loads((shipped / "mnist.json").read_text())["judge"]
    assert kept["samples"] == JUDGE.samples and 0 <= kept["judge_accuracy"] <= 1
    assert [r["source"] for r in kept["records"]] == [judge.PRIOR, judge.MORE_LIKE_THIS, judge.REAL]
    # The same figures as `pyro-vae judge --pretrained mnist` gives of the model as shipped (fp16 or fp32).
    again = judge.judge(pyro_vae.load_pretrained("mnist"), JUDGE, paths=Paths(data_dir=mnist_dir))
    for ours, theirs in zip(kept["records"], again.records):
        assert "checkpoint" not in ours and ours == {k: v for k, v in theirs.items() if k in ours}
    figure = pretrained.quiz_figure("mnist")  # what the shipped model's page says of the machine's turn
    assert figure["c2st_accuracy"] == kept["records"][1]["c2st_grey_accuracy"] and figure["noise"] == 0.7


def test_load_pretrained_is_the_model_load_gives(shipped, tmp_path):
    model = pyro_vae.load_pretrained("mnist")
    run = pyro_vae.load(tmp_path / "run" / "vae.epoch.2.pt")
    assert isinstance(model, pyro_vae.Model) and model.pretrained == "mnist" and model.epoch == 2
    assert model.model_config == run.model_config and model.dataset == "mnist"
    atol = 1e-2 if json.loads((shipped / "mnist.json").read_text())["dtype"] == "float16" else 0
    torch.testing.assert_close(model.sample(4, seed=0), run.sample(4, seed=0), atol=atol, rtol=0)
    assert model.sample(16, seed=0).shape == (16, 28, 28)


def test_listing_names_each_model_with_its_figures(shipped, cli_invoke):
    result = cli_invoke("pretrained")
    assert result.exit_code == 0, result.output
    record = json.loads((shipped / "mnist.json").read_text())
    assert result.output.startswith("mnist: MNIST, recipe seed, z_dim 2, epoch 2 of 2")
    assert f"test log p(x) {record['test']['log_likelihood']:.2f} +- {record['test']['log_likelihood_se']:.2f}" \
        in result.output
    assert "a test's" in result.output and "generate --pretrained mnist" in result.output
    prior = record["judge"]["records"][0]
    assert f"reads samples of the prior: {100 * prior['legible']:.0f}% legible; more like a test image (noise 0.7)" \
        in result.output


@pytest.mark.parametrize("command, written", [
    (["generate", "--mode", "prior"], "random_samples.png"),
    (["generate", "--mode", "digit", "--digits", "3"], "3.png"),
    (["evaluate", "--particles", "3"], "metrics/evaluation.json"),
    (["reconstruct", "--n", "4"], "reconstructions.png"),
    (["interpolate"], "interpolation_3_2.png"),
    (["quiz"], "quiz/quiz.png"),
    (["latent-map"], "latent_map.png"),
    (["judge", "--samples", "40"], "metrics/judge.json"),
])
def test_each_command_reads_a_shipped_model_into_its_own_results(shipped, cli_invoke, tmp_path, command, written):
    result = cli_invoke(*command, "--pretrained", "mnist")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "results" / "pretrained-mnist" / written).is_file(), sorted(
        str(p.relative_to(tmp_path)) for p in (tmp_path / "results").rglob("*"))
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["pretrained-mnist"]


def test_generate_prior_and_explore_need_no_data_at_all(shipped, cli_invoke, tmp_path, monkeypatch, offline):
    monkeypatch.delenv("PYRO_VAE_DATA")
    shutil.rmtree(tmp_path / "data")
    result = cli_invoke("generate", "--mode", "prior", "--pretrained", "mnist")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "results" / "pretrained-mnist" / "random_samples.png").is_file()
    result = cli_invoke("explore", "--pretrained", "mnist", "--export", tmp_path / "site")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "site" / "manifest.json").read_text())
    assert manifest["arrays"]["labels"]["shape"] == [len(pretrained.test_sample("mnist")[1])]
    assert manifest["judge"] == pretrained.quiz_figure("mnist") is not None  # the quiz's machine line, offline
    assert not (tmp_path / "data").exists()


def test_an_edited_byte_is_refused_in_one_line(shipped, cli_invoke, one_line_error, tmp_path):
    raw = bytearray((shipped / "mnist.pt").read_bytes())
    raw[len(raw) // 2] ^= 1
    (shipped / "mnist.pt").write_bytes(bytes(raw))
    one_line_error(cli_invoke("generate", "--pretrained", "mnist"), "mnist.pt does not match its manifest's sha256")
    assert not (tmp_path / "results").exists()
    with pytest.raises(pyro_vae.DamagedCheckpoint):
        pyro_vae.load_pretrained("mnist")


def test_a_bad_name_is_one_line_listing_the_names(shipped, cli_invoke, one_line_error, tmp_path):
    one_line_error(cli_invoke("generate", "--pretrained", "mnsit"), "no shipped model named 'mnsit'",
                   "the shipped models are: mnist")
    assert not (tmp_path / "results").exists()
    with pytest.raises(pyro_vae.UnknownPretrained):
        pyro_vae.load_pretrained("mnsit")


def test_a_checkpoint_and_a_shipped_model_together_are_refused(shipped, cli_invoke, one_line_error, tmp_path):
    one_line_error(cli_invoke("generate", "--pretrained", "mnist", "--checkpoint", tmp_path / "run" / "last.pt"),
                   "--checkpoint and --pretrained")
    one_line_error(cli_invoke("evaluate", "--pretrained", "mnist", "--checkpoint-dir", tmp_path / "run"),
                   "--checkpoint-dir and --pretrained")
    assert not (tmp_path / "results").exists()


def test_train_first_offers_training_or_the_shipped_model(shipped, cli_invoke, one_line_error, tmp_path):
    line = one_line_error(cli_invoke("generate"), "no checkpoint in",
                          "; use --pretrained mnist for a model shipped with pyro-vae, or train first: python cli.py train")
    assert line.endswith("train first: python cli.py train")  # the command to paste, last
    assert not (tmp_path / "results").exists(), line  # never the shipped model silently in the run's place


# The models that really ship ------------------------------------------------------------------

REAL = sorted(p.stem for p in PACKAGE_FOLDER.glob("*.json"))


def test_the_package_ships_mnist():
    assert "mnist" in REAL


@pytest.mark.parametrize("name", REAL)
def test_each_manifest_rebuilds_its_shipped_model(name):
    record = json.loads((PACKAGE_FOLDER / f"{name}.json").read_text())
    raw = (PACKAGE_FOLDER / record["file"]).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == record["sha256"]
    state = torch.load(PACKAGE_FOLDER / record["file"], weights_only=True)
    built = VAE(ModelConfig(**record["model_config"])).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in built.items()}
    sample = record["sample"]
    assert hashlib.sha256((PACKAGE_FOLDER / sample["file"]).read_bytes()).hexdigest() == sample["sha256"]
    for key in ("command", "machine", "training_seconds", "epoch", "seed", "recipe", "train_config"):
        assert record[key] not in (None, ""), key


@pytest.mark.slow
def test_mnist_scores_on_the_real_test_set_as_its_manifest_says(tmp_path):
    """PYRO_VAE_DATA names real MNIST in CI's slow step."""
    record = json.loads((PACKAGE_FOLDER / "mnist.json").read_text())
    test = record["test"]
    scores = pyro_vae.load_pretrained("mnist").log_likelihood(
        pyro_vae.load_dataset("mnist", split="test", data_dir=os.environ.get("PYRO_VAE_DATA"))[0],
        particles=test["particles"], seed=test["seed"])
    # The manifest's figures may come from the first test["images"] of them: within two of its standard errors.
    assert len(scores) == 10_000 >= test["images"]
    assert abs(scores.mean().item() - test["log_likelihood"]) < 2 * test["log_likelihood_se"]


@pytest.mark.slow  # two spawned processes importing torch: half a minute on a busy machine
def test_scoring_side_by_side_gives_the_figures_of_one_after_the_other(shipped, tmp_path, mnist_dir):
    again = pretrained.ship("mnist", tmp_path / "run" / "vae.epoch.2.pt", command="c", log_file=tmp_path / "train.log",
                            data_dir=mnist_dir, particles=4, folder=tmp_path / "again", side_by_side=True,
                            judged=None)
    first = json.loads((shipped / "mnist.json").read_text())
    assert again["fp16"] == first["fp16"] and again["test"] == first["test"] and again["sha256"] == first["sha256"]
