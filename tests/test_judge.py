"""The judge (pyro_vae/judge.py): its figures on sets whose answer is known, its cache, its seeding,
the `judge` command's records and its refusals of what cannot be judged."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pyro_vae
from pyro_vae import generate as gen, judge as jg
from pyro_vae.config import JudgeConfig, Paths
from pyro_vae.runtime import isolated_rng
from pyro_vae.trainer import train

TINY = dict(z_dim=2, hidden_dim=16, batch_size=16)
# A judge that learns the synthetic bars in a second: many small steps over the 80 training images.
QUICK = dict(judge_epochs=30, judge_batch_size=16, judge_lr=3e-3, judge_width=8, c2st_epochs=8, c2st_batch_size=16, c2st_width=8)
KEYS = {"source", "samples", "judge_accuracy", "legible", "judge_score", "frechet_distance", "c2st_accuracy",
        "c2st_se"}


def bars(n: int, seed: int) -> torch.Tensor:
    """n digit-like images (n, 784) in [0, 1]: a bright bar at one of ten places, on faint noise."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 0.15, size=(n, 28, 28))
    for k, label in enumerate(rng.integers(0, 10, size=n)):
        images[k, 4:24, 2 + 2 * label: 6 + 2 * label] = rng.uniform(0.8, 1.0)
    return torch.as_tensor(images.reshape(n, 784), dtype=torch.float32)


C2ST = JudgeConfig(c2st_epochs=6, c2st_batch_size=32, c2st_width=8)


def test_c2st_of_real_against_real_is_near_a_half():
    a, b = bars(400, seed=1), bars(400, seed=2)
    accuracy, se = jg.c2st((a[:200], b[:200]), (a[200:], b[200:]), config=C2ST, seed=0)
    assert abs(accuracy - 0.5) < 0.1 and 0.02 < se < 0.03


@pytest.mark.parametrize("fake", ["noise", "blank"])
def test_c2st_of_noise_or_blank_images_against_real_is_near_one(fake):
    real = bars(200, seed=1)
    generator = torch.Generator().manual_seed(3)
    other = torch.rand(200, 784, generator=generator) if fake == "noise" else torch.zeros(200, 784)
    accuracy, se = jg.c2st((other[:100], real[:100]), (other[100:], real[100:]), config=C2ST, seed=0)
    assert accuracy > 0.97 and se < 0.01


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_noise():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(500, 16, generator=generator) @ torch.randn(16, 16, generator=generator)
    assert jg.frechet_distance(features, features) == pytest.approx(0, abs=1e-6)
    noisy = [jg.frechet_distance(features, features + s * torch.randn(500, 16, generator=generator))
             for s in (0.1, 0.5, 2.0)]
    assert 0 < noisy[0] < noisy[1] < noisy[2]


def test_frechet_distance_matches_the_closed_form_of_independent_gaussians():
    # Diagonal covariances a and b: ||mu_a - mu_b||^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    generator = torch.Generator().manual_seed(0)
    scale_a, scale_b = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([3.0, 1.0, 0.5])
    a = torch.randn(200_000, 3, generator=generator, dtype=torch.float64) * scale_a
    b = torch.randn(200_000, 3, generator=generator, dtype=torch.float64) * scale_b + torch.tensor([1.0, 0, 0])
    expected = 1.0 + float(((scale_a - scale_b) ** 2).sum())
    assert jg.frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_the_scores_own_bounds():
    confident = torch.eye(10).repeat(5, 1)  # 50 images, each class five times, each sure of its class
    assert jg.judge_score(confident.double()) == pytest.approx(10)
    assert jg.legible(confident) == 1
    assert jg.judge_score(torch.full((50, 10), 0.1, dtype=torch.float64)) == pytest.approx(1)  # all ambiguous
    assert jg.legible(torch.full((50, 10), 0.1)) == 0
    one_class = torch.zeros(50, 10, dtype=torch.float64)
    one_class[:, 3] = 1
    assert jg.judge_score(one_class) == pytest.approx(1)  # all alike
    assert jg.total_variation(jg.class_shares(one_class), jg.class_shares(confident)) == pytest.approx(0.9)


def test_the_judge_reads_the_real_images_and_their_score_is_near_the_number_of_classes(mnist_dir):
    judge = jg.load_judge(Paths(data_dir=mnist_dir), JudgeConfig(**QUICK))
    sets = jg.labelled(Paths(data_dir=mnist_dir))
    probs, features = judge.classify(sets.x_test)
    assert judge.trained and judge.accuracy > 0.9 and judge.accuracy_binarized > 0.9
    assert features.shape == (len(sets.x_test), jg.FEATURES)
    # The synthetic test labels are not quite even: the most a perfect judge could score is exp(their entropy).
    shares = torch.bincount(sets.y_test, minlength=10).double() / len(sets.y_test)
    ceiling = float(torch.exp(-(shares * shares.log()).sum()))
    assert ceiling > 9 and jg.judge_score(probs) > 0.85 * ceiling
    assert jg.legible(probs) > 0.8


def test_a_cached_judge_is_reused_and_changed_data_trains_a_new_one(mnist_dir, tmp_path, write_synthetic_mnist,
                                                                      accept_as, monkeypatch):
    paths, config = Paths(data_dir=mnist_dir), JudgeConfig(**QUICK)
    first = jg.load_judge(paths, config)
    again = jg.load_judge(paths, config)
    assert first.trained and not again.trained and again.path == first.path
    assert again.path.parent == tmp_path / "cache" / jg.CACHE_FOLDER  # $PYRO_VAE_CACHE, the user cache folder
    assert all(torch.equal(a, b) for a, b in zip(first.net.state_dict().values(), again.net.state_dict().values()))
    assert again.accuracy == first.accuracy
    accept_as("mnist", write_synthetic_mnist(mnist_dir, seed=5), monkeypatch)  # other files, accepted as MNIST
    changed = jg.load_judge(paths, config)
    assert changed.trained and changed.key != first.key
    retrained = jg.load_judge(paths, JudgeConfig(**{**QUICK, "judge_epochs": 31}))  # its settings are in the key
    assert retrained.trained and retrained.key not in (first.key, changed.key)
    assert len(list(again.path.parent.glob("*.pt"))) == 3


@pytest.fixture
def trained(tmp_path, mnist_dir) -> Path:
    """A tiny model of two epochs in tmp/checkpoints."""
    pyro_vae.train(epochs=2, checkpoint_dir=tmp_path / "checkpoints", device="cpu", **TINY)
    return tmp_path / "checkpoints"


def test_judging_is_seeded_and_the_records_have_the_issues_keys(trained, monkeypatch):
    model = pyro_vae.load(trained)
    first = model.judge(samples=40, noises=(0.0, 1.4), seed=3)
    again = model.judge(samples=40, noises=(1.4,), seed=3)  # a source's figures do not hang on the others asked
    other = model.judge(samples=40, noises=(), seed=4)
    assert again == [first[0], first[2], first[3]]
    assert [r["source"] for r in other] == ["prior", "real"] and other[0] != first[0]
    assert [(r["source"], r["noise"]) for r in first] == [("prior", None), ("more_like_this", 0.0),
                                                         ("more_like_this", 1.4), ("real", None)]
    for record in first:
        assert KEYS <= set(record) and record["samples"] == 40 and record["epoch"] == 2
        assert 0 <= record["c2st_accuracy"] <= 1 and 0 <= record["c2st_grey_accuracy"] <= 1
        assert 1 <= record["judge_score"] <= 10 + 1e-9 and sum(record["classes"].values()) == pytest.approx(1)
    assert "target_share" in first[1] and "target_share" not in first[0] and "target_share" not in first[-1]
    assert not list(Path("results").glob("**/judge.json"))  # the API writes nothing but the judge's cache


def test_a_labels_model_is_judged_on_the_classes_it_is_asked_for(trained, paths, tiny_model, tiny_train, tmp_path):
    labels_paths = dataclasses.replace(paths, checkpoint_dir=tmp_path / "labels",
                                       results_dir=tmp_path / "labels_results")
    train(dataclasses.replace(tiny_train, epochs=1, labels=10), model_config=tiny_model, paths=labels_paths)
    config = JudgeConfig(**QUICK, samples=40, noises=(0.7,), seed=3)
    plain = jg.judge(pyro_vae.load(trained), config, paths=paths).records
    assert [r["source"] for r in plain] == ["prior", "more_like_this", "real"]  # no labels, no label source
    model = pyro_vae.load(labels_paths.checkpoint_dir)
    judged = jg.judge(model, config, paths=paths)
    assert [r["source"] for r in judged.records] == ["prior", "more_like_this", "label", "real"]
    label = judged.records[2]
    assert KEYS <= set(label) and label["noise"] is None and label["samples"] == 40
    assert jg.judge(model, config, paths=paths).records[2] == label  # seeded
    assert jg.judge(model, dataclasses.replace(config, seed=4), paths=paths).records[2] != label
    # The same draws by hand: the source's seed, each class asked for in turn (four of each of ten),
    # decoded with that class, and read by the same judge: the share read as the class asked for.
    source = jg.label_source(model)
    targets = torch.arange(40) % 10
    with isolated_rng(jg.source_seed(config.seed, source)):
        grey = gen.label_samples(model.vae, n=40, digit=targets)
    with isolated_rng(jg.source_seed(config.seed, source)):
        drawn = source.draw(40, torch.Generator())
    assert torch.equal(drawn.targets, targets) and torch.equal(drawn.grey, grey)  # the classes decoded with
    probs, _ = judged.judge.classify(grey)
    assert label["target_share"] == float((probs.argmax(-1) == targets).double().mean())
    assert label["legible"] == jg.legible(probs) and label["judge_score"] == jg.judge_score(probs)


def test_the_command_writes_a_record_per_source_and_replaces_them_when_run_again(trained, cli_invoke, tmp_path):
    args = ("judge", "--samples", "40", "--noise", "0.7", "--noise", "2.1", "--device", "cpu")
    result = cli_invoke(*args)
    assert result.exit_code == 0, result.output
    path = tmp_path / "results" / "metrics" / "judge.json"
    assert f"wrote {Path('results') / 'metrics' / 'judge.json'}" in result.output
    records = json.loads(path.read_text())
    assert [(r["source"], r["noise"]) for r in records] == [("prior", None), ("more_like_this", 0.7),
                                                           ("more_like_this", 2.1), ("real", None)]
    assert all(KEYS <= set(r) for r in records)
    assert "real" in result.output and "more_like_this noise 2.1" in result.output
    assert cli_invoke(*args).exit_code == 0
    assert json.loads(path.read_text()) == records  # replaced, the same figures: seeded
    other = cli_invoke("judge", "--samples", "40", "--seed", "1", "--device", "cpu")
    assert other.exit_code == 0 and "more_like_this noise 0.7" in other.output  # --noise's default: the seed's 0.7
    assert len(json.loads(path.read_text())) == 4 + 3  # another seed: records of its own


def test_the_page_export_carries_the_judges_figure(trained, cli_invoke, tmp_path):
    assert cli_invoke("judge", "--samples", "40", "--device", "cpu").exit_code == 0
    assert cli_invoke("explore", "--export", tmp_path / "page").exit_code == 0
    figure = json.loads((tmp_path / "page" / "manifest.json").read_text())["judge"]
    record = next(r for r in json.loads((tmp_path / "results" / "metrics" / "judge.json").read_text())
                  if r["source"] == "more_like_this")
    assert figure["c2st_accuracy"] == record["c2st_grey_accuracy"] and figure["epoch"] == 2


def _nothing_written(tmp_path: Path) -> None:
    assert not list((tmp_path / "cache").glob(f"{jg.CACHE_FOLDER}/*")), "a judge was trained"
    assert not list(tmp_path.glob("results/**/judge.json")), "a record was written"


def test_no_samples_is_one_line_and_writes_nothing(trained, cli_invoke, one_line_error, tmp_path):
    one_line_error(cli_invoke("judge", "--samples", "0"), "--samples must be between 2 and")
    _nothing_written(tmp_path)
    one_line_error(cli_invoke("judge", "--samples", "81"), "--samples must be at most 80 here")
    _nothing_written(tmp_path)


def test_a_checkpoint_of_another_data_set_is_one_line_and_writes_nothing(trained, fashion_dir, cli_invoke,
                                                                         one_line_error, tmp_path):
    one_line_error(cli_invoke("judge", "--samples", "40", "--dataset", "fashion-mnist"),
                   "was trained on MNIST, not Fashion-MNIST", "leave --dataset and --data-dir out")
    _nothing_written(tmp_path)


@pytest.mark.parametrize("unlabelled", ["one class", "no label files"])
def test_a_data_set_without_labels_is_one_line_and_writes_nothing(unlabelled, tmp_path, write_synthetic_mnist,
                                                                  write_idx, cli_invoke, one_line_error):
    own = tmp_path / "own"
    write_synthetic_mnist(own)
    for split, n in (("train", 80), ("t10k", 100)):  # images with no classes: every label 0
        write_idx(own / f"{split}-labels-idx1-ubyte", np.zeros(n))
    pyro_vae.train(epochs=1, checkpoint_dir=tmp_path / "checkpoints", dataset="idx", data_dir=own, device="cpu",
                   **TINY)
    if unlabelled == "no label files":
        for split in ("train", "t10k"):
            (own / f"{split}-labels-idx1-ubyte").unlink()
    line = one_line_error(cli_invoke("judge", "--samples", "40"), "the judge learns the classes from labels")
    assert ("all one class" in line) == (unlabelled == "one class")
    _nothing_written(tmp_path)
