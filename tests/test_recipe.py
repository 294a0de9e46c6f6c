"""The opt-in recipe of training: evaluation during training, a validation split with the best
checkpoint, the learning-rate schedule and the IWAE objective; all of them resume exactly."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch

from pyro_vae import checkpoint, data
from pyro_vae.errors import CheckpointError, ConfigError
from pyro_vae.metrics import HISTORY, read_history
from pyro_vae.trainer import train


def _params(path):
    return checkpoint.load(path)["model"]


def _same_params(a, b):
    return all(torch.equal(a[key], b[key]) for key in a)


def test_eval_every_records_test_figures_and_leaves_training_alone(tmp_path, paths, tiny_model, tiny_train, caplog,
                                                                   n_test):
    plain = dataclasses.replace(paths, checkpoint_dir=tmp_path / "plain", results_dir=tmp_path / "r1")
    train(dataclasses.replace(tiny_train, epochs=5), model_config=tiny_model, paths=plain)
    config = dataclasses.replace(tiny_train, epochs=5, eval_every=2, eval_particles=10)
    with caplog.at_level("INFO", logger="pyro_vae"):
        train(config, model_config=tiny_model, paths=paths)
    records = read_history(paths.results_dir / HISTORY)
    # Every 2 epochs (not also at the last: the history must not depend on how a run was split).
    assert [r.epoch for r in records if r.test_log_likelihood is not None] == [2, 4]
    assert all(r.valid_elbo is None for r in records)
    for r in records:
        if r.test_log_likelihood is not None:
            assert r.test_elbo <= r.test_log_likelihood < 0
    assert "test: ELBO" in caplog.text and f"({n_test} images, K=10)" in caplog.text
    # Evaluation draws from its own stream: the trained parameters are those of a run without it.
    assert _same_params(_params(plain.checkpoint_dir / "last.pt"), _params(paths.checkpoint_dir / "last.pt"))


def _scripted_validation(monkeypatch, scores):
    """evaluate() as a script: the validation images (16 of them) get `scores` in turn."""
    from pyro_vae import trainer as train_module
    from pyro_vae.evaluate import Evaluation

    scores = iter(scores)

    def scripted(vae, x, *, particles, **kwargs):
        value = next(scores) if len(x) == 16 else -50.0
        return Evaluation(images=len(x), particles=particles, elbo=value - 1, elbo_se=0.1, log_likelihood=value,
                          log_likelihood_se=0.1, reconstruction=value - 11, kl=10.0, active_units=2)

    monkeypatch.setattr(train_module, "evaluate", scripted)


def test_validation_split_keeps_the_best_checkpoint(paths, tiny_model, tiny_train, monkeypatch):
    _scripted_validation(monkeypatch, [-60.0, -55.0, -58.0, -52.0, -53.0, -70.0])  # best: epoch 4
    config = dataclasses.replace(tiny_train, epochs=6, valid_size=16, eval_every=1, eval_particles=5)
    train(config, model_config=tiny_model, paths=paths)
    records = read_history(paths.results_dir / HISTORY)
    assert [r.valid_log_likelihood for r in records] == [-60.0, -55.0, -58.0, -52.0, -53.0, -70.0]
    assert all(r.test_log_likelihood == -50.0 for r in records)
    state = checkpoint.load(paths.checkpoint_dir / checkpoint.BEST)
    assert state["epoch"] == 4 and state["train_config"]["valid_size"] == 16
    assert _same_params(state["model"], _params(paths.checkpoint_dir / "vae.epoch.4.pt"))
    # best.pt is never mistaken for the run's newest state, and --fresh archives it too.
    assert checkpoint.newest_valid(paths.checkpoint_dir)[1]["epoch"] == 6
    folder = checkpoint.archive(paths.checkpoint_dir)
    assert (folder / checkpoint.BEST).is_file() and not (paths.checkpoint_dir / checkpoint.BEST).exists()


def test_validation_split_trains_on_the_rest(tmp_path, paths, tiny_model, tiny_train, mnist_dir, monkeypatch,
                                            n_train, write_idx):
    # Holding out the last 16 images trains exactly as a run on a training set of the first
    # n_train - 16 images alone: same parameters, same lower bound (evaluations draw from their own stream).
    config = dataclasses.replace(tiny_train, epochs=1)
    held_out = dataclasses.replace(paths, checkpoint_dir=tmp_path / "held-out", results_dir=tmp_path / "r1")
    result = train(dataclasses.replace(config, valid_size=16, eval_every=1, eval_particles=2), model_config=tiny_model,
                   paths=held_out)
    assert result.metrics[0].valid_log_likelihood is not None  # the 16 were evaluated

    images, labels = data.load_split(mnist_dir, "train")
    for name, rest in [("train-images-idx3-ubyte", images[: n_train - 16].reshape(-1, 28, 28)),
                       ("train-labels-idx1-ubyte", labels[: n_train - 16])]:
        raw = write_idx(mnist_dir / name, rest.numpy()).read_bytes()
        monkeypatch.setitem(data.SHA256, name, hashlib.sha256(raw).hexdigest())
    alone = dataclasses.replace(paths, checkpoint_dir=tmp_path / "alone", results_dir=tmp_path / "r2")
    reference = train(config, model_config=tiny_model, paths=alone)

    assert _same_params(_params(held_out.checkpoint_dir / "last.pt"), _params(alone.checkpoint_dir / "last.pt"))
    assert result.metrics[0].lower_bound == reference.metrics[0].lower_bound


def test_validation_needs_images_left_and_an_evaluation_cadence(paths, tiny_model, tiny_train, n_train):
    with pytest.raises(ConfigError, match="valid_size 80 leaves no training images: there are 80"):
        train(dataclasses.replace(tiny_train, valid_size=n_train, eval_every=1), model_config=tiny_model, paths=paths)
    with pytest.raises(ConfigError, match="valid_size needs eval_every N"):
        train(dataclasses.replace(tiny_train, valid_size=10), model_config=tiny_model, paths=paths)
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
    with pytest.raises(CheckpointError, match="trained with objective iwae, not elbo"):
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


class _Killed(BaseException):
    """Stands for the process dying: nothing after it runs, no handler catches it."""


def test_a_kill_between_best_and_last_never_leaves_a_stale_best(tmp_path, paths, tiny_model, tiny_train,
                                                                 monkeypatch):
    scores = [-60.0, -55.0, -52.0, -58.0]  # best: epoch 3
    config = dataclasses.replace(tiny_train, epochs=4, valid_size=16, eval_every=1, eval_particles=2)
    straight = dataclasses.replace(paths, checkpoint_dir=tmp_path / "straight", results_dir=tmp_path / "r1")
    _scripted_validation(monkeypatch, scores)
    train(config, model_config=tiny_model, paths=straight)

    real_save = checkpoint.save

    def dying_save(state, path, *more):
        real_save(state, path)  # the first file of the set reaches the disk...
        if state["epoch"] == 3:
            raise _Killed  # ...and the process dies before the others
        return real_save(state, path, *more)

    _scripted_validation(monkeypatch, scores)
    monkeypatch.setattr(checkpoint, "save", dying_save)
    with pytest.raises(_Killed):
        train(config, model_config=tiny_model, paths=paths)
    monkeypatch.setattr(checkpoint, "save", real_save)
    _scripted_validation(monkeypatch, scores[2:])  # the rerun redoes epoch 3
    train(config, model_config=tiny_model, paths=paths)
    best = checkpoint.load(paths.checkpoint_dir / checkpoint.BEST)
    assert best["epoch"] == 3
    assert _same_params(best["model"], _params(straight.checkpoint_dir / checkpoint.BEST))


def test_an_interrupt_during_the_evaluation_resumes_into_it(tmp_path, paths, tiny_model, tiny_train, monkeypatch):
    import os
    import signal

    from pyro_vae import evaluate as evaluate_module
    from pyro_vae.errors import Interrupted

    config = dataclasses.replace(tiny_train, epochs=3, eval_every=2, eval_particles=3)
    straight = dataclasses.replace(paths, checkpoint_dir=tmp_path / "straight", results_dir=tmp_path / "r1")
    train(config, model_config=tiny_model, paths=straight)

    real = evaluate_module.log_weight_terms

    def signalling(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # during the first batch of the first evaluation (epoch 2)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "log_weight_terms", signalling)
    with pytest.raises(Interrupted, match="stopped in the evaluation after epoch 2"):
        train(config, model_config=tiny_model, paths=paths)
    state = checkpoint.load(paths.checkpoint_dir / "last.pt")
    assert state["epoch"] == 1 and state["position"]["batch"] == 5  # epoch 2's batches all done
    monkeypatch.setattr(evaluate_module, "log_weight_terms", real)
    result = train(config, model_config=tiny_model, paths=paths)
    assert [m.epoch for m in result.metrics] == [2, 3]
    assert _same_params(_params(straight.checkpoint_dir / "last.pt"), _params(paths.checkpoint_dir / "last.pt"))
    ours, theirs = read_history(paths.results_dir / HISTORY), read_history(straight.results_dir / HISTORY)
    assert [(r.lower_bound, r.test_log_likelihood) for r in ours] == \
        [(r.lower_bound, r.test_log_likelihood) for r in theirs]


def test_eval_particles_are_fixed_on_resume(paths, tiny_model, tiny_train):
    train(dataclasses.replace(tiny_train, epochs=1, eval_every=1, eval_particles=4), model_config=tiny_model,
          paths=paths)
    with pytest.raises(CheckpointError, match="trained with eval_particles 4, not 8"):
        train(dataclasses.replace(tiny_train, epochs=2, eval_every=1, eval_particles=8), model_config=tiny_model,
              paths=paths, explicit=frozenset({"eval_particles"}))
