"""The opt-in recipe of training: evaluation during training, a validation split with the best
checkpoint, the learning-rate schedule and the IWAE objective; all of them resume exactly."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pyro_vae import checkpoint
from pyro_vae.errors import CheckpointError, ConfigError
from pyro_vae.metrics import HISTORY, read_history
from pyro_vae.train import train

from conftest import N_TEST, N_TRAIN


def _params(path):
    return checkpoint.load(path)["model"]


def _same_params(a, b):
    return all(torch.equal(a[key], b[key]) for key in a)


def test_eval_every_records_test_figures_and_leaves_training_alone(tmp_path, paths, tiny_model, tiny_train, caplog):
    plain = dataclasses.replace(paths, checkpoint_dir=tmp_path / "plain", results_dir=tmp_path / "r1")
    train(dataclasses.replace(tiny_train, epochs=5), model_config=tiny_model, paths=plain)
    config = dataclasses.replace(tiny_train, epochs=5, eval_every=2, eval_particles=10)
    with caplog.at_level("INFO", logger="pyro_vae"):
        train(config, model_config=tiny_model, paths=paths)
    records = read_history(paths.results_dir / HISTORY)
    # Every 2 epochs, and at the last.
    assert [r.epoch for r in records if r.test_log_likelihood is not None] == [2, 4, 5]
    assert all(r.valid_elbo is None for r in records)
    for r in records:
        if r.test_log_likelihood is not None:
            assert r.test_elbo <= r.test_log_likelihood < 0
    assert f"test: ELBO" in caplog.text and f"({N_TEST} images, K=10)" in caplog.text
    # Evaluation draws from its own stream: the trained parameters are those of a run without it.
    assert _same_params(_params(plain.checkpoint_dir / "last.pt"), _params(paths.checkpoint_dir / "last.pt"))


def test_validation_split_keeps_the_best_checkpoint(paths, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, epochs=6, lr=3e-2, valid_size=16, eval_every=1, eval_particles=5)
    train(config, model_config=tiny_model, paths=paths)
    records = read_history(paths.results_dir / HISTORY)
    assert all(r.valid_log_likelihood is not None and r.test_log_likelihood is not None for r in records)
    best = max(records, key=lambda r: r.valid_log_likelihood)
    state = checkpoint.load(paths.checkpoint_dir / checkpoint.BEST)
    assert state["epoch"] == best.epoch
    assert state["train_config"]["valid_size"] == 16
    # best.pt is never mistaken for the run's newest state, and --fresh archives it too.
    assert checkpoint.newest_valid(paths.checkpoint_dir)[1]["epoch"] == 6
    folder = checkpoint.archive(paths.checkpoint_dir)
    assert (folder / checkpoint.BEST).is_file() and not (paths.checkpoint_dir / checkpoint.BEST).exists()


def test_validation_split_trains_on_the_rest(paths, tiny_model, tiny_train, monkeypatch):
    from pyro_vae import train as train_module

    seen = []
    real = train_module.run_epoch
    monkeypatch.setattr(train_module, "run_epoch", lambda vae, opt, images, **kw: seen.append(len(images)) or
                        real(vae, opt, images, **kw))
    train(dataclasses.replace(tiny_train, epochs=1, valid_size=16, eval_every=1, eval_particles=2),
          model_config=tiny_model, paths=paths)
    assert seen == [N_TRAIN - 16]


def test_validation_needs_images_left_and_an_evaluation_cadence(paths, tiny_model, tiny_train):
    with pytest.raises(ConfigError, match="--valid-size 80 leaves no training images: there are 80"):
        train(dataclasses.replace(tiny_train, valid_size=N_TRAIN, eval_every=1), model_config=tiny_model, paths=paths)
    with pytest.raises(ConfigError, match="--valid-size needs --eval-every N"):
        dataclasses.replace(tiny_train, valid_size=10)
    assert not paths.checkpoint_dir.exists() or not list(paths.checkpoint_dir.glob("*.pt"))


def test_learning_rate_decays_every_epoch(paths, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, epochs=3, lr=1e-2, lr_decay=0.5)
    train(config, model_config=tiny_model, paths=paths)
    assert [r.lr for r in read_history(paths.results_dir / HISTORY)] == [1e-2, 5e-3, 2.5e-3]
    state = checkpoint.load(paths.checkpoint_dir / "last.pt")
    assert state["optimizer"]["param_groups"][0]["lr"] == 2.5e-3


@pytest.mark.parametrize("recipe", [
    dict(lr_decay=0.7),
    dict(objective="iwae", particles=4),
    dict(valid_size=16, eval_every=1, eval_particles=3),
])
def test_every_recipe_resumes_exactly(tmp_path, paths, tiny_model, tiny_train, recipe):
    config = dataclasses.replace(tiny_train, epochs=4, **recipe)
    straight = dataclasses.replace(paths, checkpoint_dir=tmp_path / "straight", results_dir=tmp_path / "r1")
    train(config, model_config=tiny_model, paths=straight)
    split = dataclasses.replace(paths, checkpoint_dir=tmp_path / "split", results_dir=tmp_path / "r2")
    train(dataclasses.replace(config, epochs=2), model_config=tiny_model, paths=split)
    torch.manual_seed(999)
    # Resumed from defaults: the recipe comes back from the checkpoint.
    result = train(dataclasses.replace(tiny_train, epochs=4), model_config=tiny_model, paths=split)
    assert all(getattr(result.train_config, k) == v for k, v in recipe.items())
    assert _same_params(_params(straight.checkpoint_dir / "last.pt"), _params(split.checkpoint_dir / "last.pt"))
    assert read_history(straight.results_dir / HISTORY) == [
        dataclasses.replace(r, seconds=a.seconds) for r, a in
        zip(read_history(split.results_dir / HISTORY), read_history(straight.results_dir / HISTORY))]


def test_iwae_trains_and_the_checkpoint_records_it(paths, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, epochs=6, lr=1e-2, objective="iwae", particles=5)
    result = train(config, model_config=tiny_model, paths=paths)
    bounds = [m.lower_bound for m in result.metrics]
    assert bounds[-1] > bounds[0] + 30
    state = checkpoint.load(paths.checkpoint_dir / "last.pt")
    assert state["train_config"]["objective"] == "iwae" and state["train_config"]["particles"] == 5
    with pytest.raises(CheckpointError, match="trained with --objective iwae, not elbo"):
        train(dataclasses.replace(tiny_train, epochs=7), model_config=tiny_model, paths=paths,
              explicit=frozenset({"objective"}))


def test_a_checkpoint_from_before_the_recipe_resumes_as_the_seed_recipe(paths, tiny_model, tiny_train):
    train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=paths)
    for path in paths.checkpoint_dir.glob("*.pt"):
        state = checkpoint.load(path)
        for name in ("objective", "particles", "lr_decay", "valid_size", "eval_every", "eval_particles"):
            del state["train_config"][name]
        for record in state["metrics"]:
            for name in ("lr", "test_elbo", "test_log_likelihood", "valid_elbo", "valid_log_likelihood"):
                del record[name]
        checkpoint.save(state, path)
    result = train(dataclasses.replace(tiny_train, epochs=2), model_config=tiny_model, paths=paths)
    assert result.train_config.objective == "elbo" and result.train_config.lr_decay == 1.0
    assert [r.epoch for r in read_history(paths.results_dir / HISTORY)] == [1, 2]


def test_a_bad_valid_size_with_fresh_moves_nothing(paths, tiny_model, tiny_train):
    train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=paths)
    before = sorted(p.name for p in paths.checkpoint_dir.iterdir())
    with pytest.raises(ConfigError, match="leaves no training images"):
        train(dataclasses.replace(tiny_train, valid_size=500, eval_every=1), model_config=tiny_model, paths=paths,
              fresh=True)
    assert sorted(p.name for p in paths.checkpoint_dir.iterdir()) == before
