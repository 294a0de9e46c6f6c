"""The training loop: checkpoint cadence, exact resume, refusing a mismatched resume, starting fresh."""

from __future__ import annotations

import os
import dataclasses
import errno
import logging
import math
import signal

import pyro
import pyro.poutine
import pytest
import torch
from torch.utils._pytree import tree_map

from pyro_vae import checkpoint, data
from pyro_vae import trainer as train_module
from pyro_vae.config import TrainConfig
from pyro_vae.errors import CheckpointError, Interrupted, TrainingDiverged, WriteError
from pyro_vae.metrics import HISTORY, read_history
from pyro_vae.objectives import loss_fn
from pyro_vae.runtime import flush_denormals
from pyro_vae.trainer import NonFiniteLoss, build, run_epoch, train


def test_checkpoints_at_cadence_and_last_epoch_and_prunes(paths, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, epochs=5, save_every=2, keep=2)
    result = train(config, model_config=tiny_model, paths=paths)
    assert [p.name for p in result.saved] == ["vae.epoch.2.pt", "vae.epoch.4.pt", "vae.epoch.5.pt"]
    assert [e for e, _ in checkpoint.list_checkpoints(paths.checkpoint_dir)] == [4, 5]
    state = checkpoint.load(result.saved[-1])
    assert state["epoch"] == 5 and state["model_config"] == dataclasses.asdict(tiny_model)
    assert [m["epoch"] for m in state["metrics"]] == [1, 2, 3, 4, 5]
    assert all(m["lower_bound"] < 0 for m in state["metrics"])


def test_lower_bound_improves(paths, tiny_model, tiny_train):
    result = train(dataclasses.replace(tiny_train, epochs=8, lr=1e-2), model_config=tiny_model, paths=paths)
    bounds = [m.lower_bound for m in result.metrics]
    assert bounds[-1] > bounds[0] + 50  # nats per image, on images that are easy to model


def _final_state(paths):
    return checkpoint.load(checkpoint.latest(paths.checkpoint_dir))


def test_resume_is_exact(tmp_path, paths, tiny_model, tiny_train):
    straight = dataclasses.replace(paths, checkpoint_dir=tmp_path / "straight", results_dir=None)
    split = dataclasses.replace(paths, checkpoint_dir=tmp_path / "split", results_dir=None)
    train(dataclasses.replace(tiny_train, epochs=4), model_config=tiny_model, paths=straight)
    train(dataclasses.replace(tiny_train, epochs=2), model_config=tiny_model, paths=split)
    # Scramble the global RNG: a resumed run must restore it from the checkpoint, not inherit it.
    torch.manual_seed(12345)
    result = train(dataclasses.replace(tiny_train, epochs=4), model_config=tiny_model, paths=split)
    assert result.restored_from.name == "vae.epoch.2.pt"
    assert [m.epoch for m in result.metrics] == [3, 4]
    a, b = _final_state(straight), _final_state(split)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key, value in a["optimizer"]["state"].items():
        for name in value:
            assert torch.equal(value[name], b["optimizer"]["state"][key][name])
    assert [m["lower_bound"] for m in a["metrics"]] == [m["lower_bound"] for m in b["metrics"]]


def test_history_continues_without_duplicates(paths, tiny_model, tiny_train):
    history = paths.results_dir / HISTORY
    train(dataclasses.replace(tiny_train, epochs=3, save_every=2), model_config=tiny_model, paths=paths)
    assert [r.epoch for r in read_history(history)] == [1, 2, 3]
    # Lose the newest checkpoint: the history still lists epoch 3, which the resumed run redoes.
    (paths.checkpoint_dir / "vae.epoch.3.pt").unlink()
    train(dataclasses.replace(tiny_train, epochs=4, save_every=2), model_config=tiny_model, paths=paths)
    records = read_history(history)
    assert [r.epoch for r in records] == [1, 2, 3, 4]
    state = checkpoint.load(checkpoint.latest(paths.checkpoint_dir))
    assert [r.lower_bound for r in records] == [m["lower_bound"] for m in state["metrics"]]


def test_resume_says_so_and_uses_the_checkpoint_settings(paths, tiny_model, tiny_train, caplog):
    train(dataclasses.replace(tiny_train, epochs=1, lr=1e-2), model_config=tiny_model, paths=paths)
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        # Defaults (not given explicitly) give way to what the checkpoint records.
        result = train(dataclasses.replace(tiny_train, epochs=2), paths=paths)
    assert "Restoring model from" in caplog.text and "vae.epoch.1.pt" in caplog.text
    assert result.model_config == tiny_model and result.train_config.lr == 1e-2


def test_resume_refuses_explicit_mismatch(paths, tiny_model, tiny_train):
    train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=paths)
    before = checkpoint.latest(paths.checkpoint_dir).read_bytes()
    with pytest.raises(CheckpointError, match="z_dim 2, not 3"):
        train(tiny_train, model_config=dataclasses.replace(tiny_model, z_dim=3), paths=paths,
              explicit=frozenset({"z_dim"}))
    with pytest.raises(CheckpointError, match="batch_size 16, not 8.*fresh"):
        train(dataclasses.replace(tiny_train, batch_size=8), model_config=tiny_model, paths=paths,
              explicit=frozenset({"batch_size"}))
    assert checkpoint.latest(paths.checkpoint_dir).read_bytes() == before


def test_resume_on_another_device_is_refused(paths, tiny_model, tiny_train):
    path = train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=paths).saved[-1]
    state = checkpoint.load(path)
    state["device"] = "cuda"
    checkpoint.save(state, path)
    with pytest.raises(CheckpointError, match="trained on cuda; resume it with device cuda"):
        train(tiny_train, model_config=tiny_model, paths=paths)


def test_already_trained_does_nothing(paths, tiny_model, tiny_train):
    train(tiny_train, model_config=tiny_model, paths=paths)
    before = checkpoint.latest(paths.checkpoint_dir).read_bytes()
    result = train(tiny_train, model_config=tiny_model, paths=paths)
    assert result.metrics == [] and result.saved == []
    assert checkpoint.latest(paths.checkpoint_dir).read_bytes() == before


def test_fresh_archives_instead_of_deleting(paths, tiny_model, tiny_train):
    train(tiny_train, model_config=tiny_model, paths=paths)
    result = train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=paths, fresh=True)
    assert result.restored_from is None and [m.epoch for m in result.metrics] == [1]
    assert sorted(p.name for p in result.archived_to.iterdir()) == ["last.pt", "vae.epoch.1.pt", "vae.epoch.2.pt"]
    assert checkpoint.latest(paths.checkpoint_dir).name == "vae.epoch.1.pt"


def test_bf16_trains_close_to_fp32(tmp_path, paths, tiny_model, tiny_train, monkeypatch):
    from pyro_vae import runtime

    monkeypatch.setattr(runtime, "native_bf16", lambda device: True)  # emulated where not native: fine for a test
    bounds = {}
    for precision in ("fp32", "bf16"):
        run_paths = dataclasses.replace(paths, checkpoint_dir=tmp_path / precision, results_dir=None)
        config = dataclasses.replace(tiny_train, epochs=6, lr=1e-2, precision=precision)
        bounds[precision] = train(config, model_config=tiny_model, paths=run_paths).metrics[-1].lower_bound
    state = checkpoint.load(checkpoint.latest(tmp_path / "bf16"))
    assert all(v.dtype == torch.float32 for v in state["model"].values())  # fp32 master weights
    assert bounds["bf16"] != bounds["fp32"]  # autocast really changed the arithmetic
    assert abs(bounds["bf16"] - bounds["fp32"]) < 5.0


def test_non_finite_loss_stops_with_epoch_and_batch_and_keeps_the_checkpoint(paths, tiny_model, tiny_train):
    train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=paths)
    # From epoch 2 on, a learning rate far too large: Adam's first step with it throws every
    # parameter about 1e10 away, and the loss of the next batch is nan for real. (A resumed run
    # takes its --lr from the checkpoint, so that is where it goes.)
    for path in paths.checkpoint_dir.glob("*.pt"):
        state = checkpoint.load(path)
        state["train_config"]["lr"] = 1e10
        checkpoint.save(state, path)
    before = {p.name: p.read_bytes() for p in paths.checkpoint_dir.glob("*.pt")}
    with pytest.raises(TrainingDiverged, match=r"became nan at epoch 2, batch 2.*vae.epoch.1.pt, is untouched.*lr"):
        train(dataclasses.replace(tiny_train, epochs=3), model_config=tiny_model, paths=paths)
    assert [e for e, _ in checkpoint.list_checkpoints(paths.checkpoint_dir)] == [1]
    assert {p.name: p.read_bytes() for p in paths.checkpoint_dir.glob("*.pt")} == before
    assert [r.epoch for r in read_history(paths.results_dir / HISTORY)] == [1]


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_saves_the_position_and_resumes_exactly(tmp_path, paths, tiny_model, tiny_train,
                                                          signal_during_loss, signum, code):
    config = dataclasses.replace(tiny_train, epochs=3, save_every=10)
    straight = dataclasses.replace(paths, checkpoint_dir=tmp_path / "straight", results_dir=tmp_path / "r1")
    train(config, model_config=tiny_model, paths=straight)

    interrupted = dataclasses.replace(paths, checkpoint_dir=tmp_path / "interrupted", results_dir=tmp_path / "r2")
    # 5 batches an epoch: call 8 is during epoch 2, batch 3.
    with signal_during_loss(8, signum), \
            pytest.raises(Interrupted, match=r"stopped at epoch 2, batch 3 of 5 and saved .*last.pt") as info:
        train(config, model_config=tiny_model, paths=interrupted)
    assert info.value.exit_code == code
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    state = checkpoint.load(interrupted.checkpoint_dir / "last.pt")
    assert state["epoch"] == 1 and state["position"]["batch"] == 3 and state["position"]["order"].shape == (80,)

    result = train(config, model_config=tiny_model, paths=interrupted)
    assert [m.epoch for m in result.metrics] == [2, 3]
    a, b = _final_state(straight), _final_state(interrupted)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [m["lower_bound"] for m in a["metrics"]] == [m["lower_bound"] for m in b["metrics"]]


def test_rolling_last_checkpoint_every_epoch(paths, tiny_model, tiny_train):
    train(dataclasses.replace(tiny_train, epochs=3, save_every=10), model_config=tiny_model, paths=paths)
    assert sorted(p.name for p in paths.checkpoint_dir.glob("*.pt")) == ["last.pt", "vae.epoch.3.pt"]
    # Without the numbered checkpoint, last.pt alone carries the run.
    (paths.checkpoint_dir / "vae.epoch.3.pt").unlink()
    result = train(dataclasses.replace(tiny_train, epochs=4, save_every=10), model_config=tiny_model, paths=paths)
    assert result.restored_from.name == "last.pt" and [m.epoch for m in result.metrics] == [4]


def test_a_second_run_on_the_same_folder_is_refused(paths, tiny_model, tiny_train):
    with checkpoint.lock(paths.checkpoint_dir):
        with pytest.raises(CheckpointError, match=r"another training run \(pid \d+\) is using"):
            train(tiny_train, model_config=tiny_model, paths=paths)
    train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=paths)  # released


def test_disk_full_while_saving_keeps_the_previous_checkpoint(paths, tiny_model, tiny_train, monkeypatch):
    train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=paths)
    before = {p.name: p.read_bytes() for p in paths.checkpoint_dir.glob("*.pt")}
    real_save = torch.save

    def full_disk(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(WriteError, match="could not write .*No space left on device"):
        train(dataclasses.replace(tiny_train, epochs=2), model_config=tiny_model, paths=paths)
    monkeypatch.setattr(torch, "save", real_save)
    assert {p.name: p.read_bytes() for p in paths.checkpoint_dir.glob("*.pt")} == before
    assert not list(paths.checkpoint_dir.glob(".*.tmp"))


def test_training_flushes_denormals_and_puts_the_default_back(paths, tiny_model, tiny_train):
    # Adam's moments of weights that never get a gradient decay into denormals, which are many
    # times slower to compute with: inside training they count as zero, outside as usual.
    denormal = torch.tensor(1e-40)
    seen = []
    config = dataclasses.replace(tiny_train, epochs=1, valid_size=16, eval_every=1)
    train(config, model_config=tiny_model, paths=paths, on_evaluation=lambda epoch, figures: seen.append(
        (denormal * 1.0).item()))
    assert seen == [0.0]
    assert (denormal * 1.0).item() > 0.0


# ---------------------------------------------------------------------------------------------
# Devices other than the CPU, and the step without host synchronisation

@pytest.fixture(scope="module")
def other_device() -> torch.device:
    """A device other than the CPU whose tensors hold real values, on any machine: torch's lazy-tensor
    device (its TorchScript backend computes on the CPU). It stands in for a GPU where it matters
    here: torch's generators and NumPy refuse its tensors as they refuse CUDA ones, and a
    generator cannot live on it. (torch._lazy is private; a CPU-only torch has no public device
    of that kind.)"""
    import torch._lazy.ts_backend

    torch._lazy.ts_backend.init()
    return torch.device("lazy")


def test_held_out_images_are_binarized_on_the_cpu_whatever_the_training_device(mnist_dir, tiny_train, other_device):
    images, labels = data.load_split(mnist_dir, "train")
    test, test_labels = data.load_split(mnist_dir, "test")
    config = dataclasses.replace(tiny_train, valid_size=16, eval_every=1)
    found = train_module._Data(images, labels, test, test_labels, names=(), noun="digit", record={})
    kept, held_out = train_module._split(found, config, device=other_device)
    (test_x, test_y), (valid_x, valid_y) = held_out["test"], held_out["valid"]
    assert {kept.device.type, test_x.device.type, valid_x.device.type} == {other_device.type}
    # What `evaluate` and `tune` score, bit for bit (a GPU's own generator would draw others).
    assert torch.equal(test_x.cpu(), data.test_images(mnist_dir)[0])
    assert torch.equal(valid_x.cpu(), data.binarize_once(images[-16:]))
    assert torch.equal(data.binarize_once(test.to(other_device)), data.binarize_once(test))
    # Each with its labels, for a labels model's accuracy.
    assert torch.equal(test_y.cpu(), test_labels) and torch.equal(valid_y.cpu(), labels[-16:])


def test_the_test_images_scored_in_training_are_evaluates(paths, tiny_model, tiny_train, monkeypatch):
    scored = []
    real = train_module.evaluate
    monkeypatch.setattr(train_module, "evaluate", lambda vae, x, **kw: scored.append(x.clone()) or real(vae, x, **kw))
    train(dataclasses.replace(tiny_train, epochs=1, eval_every=1), model_config=tiny_model, paths=paths)
    assert len(scored) == 1 and torch.equal(scored[0], data.test_images(paths.data_dir)[0])


def test_generator_states_that_come_back_on_another_device_resume_exactly(tmp_path, paths, tiny_model, tiny_train,
                                                                          other_device, monkeypatch):
    # Before, `train` loaded checkpoints onto its device: on a GPU the generator states came back
    # there and NumPy and torch refused them with a traceback. Wherever they come back, they are
    # put back on the CPU, and the run continues exactly.
    straight = dataclasses.replace(paths, checkpoint_dir=tmp_path / "straight", results_dir=None)
    split = dataclasses.replace(paths, checkpoint_dir=tmp_path / "split", results_dir=None)
    train(tiny_train, model_config=tiny_model, paths=straight)
    train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=split)
    real_load = torch.load

    def elsewhere(*args, **kwargs):
        state = real_load(*args, **kwargs)
        state["rng"] = tree_map(lambda v: v.to(other_device) if isinstance(v, torch.Tensor) else v, state["rng"])
        return state

    monkeypatch.setattr(torch, "load", elsewhere)
    torch.manual_seed(12345)
    assert [m.epoch for m in train(tiny_train, model_config=tiny_model, paths=split).metrics] == [2]
    monkeypatch.setattr(torch, "load", real_load)
    a, b = _final_state(straight), _final_state(split)
    assert all(torch.equal(a["model"][key], b["model"][key]) for key in a["model"])


def test_fused_adam_skips_the_whole_update_when_found_inf_is_set():
    # What run_epoch relies on instead of checking the loss on the host: torch's fused Adam
    # reads `optimizer.found_inf` (as GradScaler sets it) and, at 1.0, leaves the parameters,
    # both moments and the step count as they were, even with NaN gradients.
    parameter = torch.nn.Parameter(torch.arange(4.0))
    optimizer = torch.optim.Adam([parameter], lr=0.1, fused=True)
    parameter.grad = torch.ones(4)
    optimizer.step()
    before = parameter.detach().clone(), {k: v.clone() for k, v in optimizer.state[parameter].items()}
    parameter.grad = torch.full((4,), float("nan"))
    optimizer.found_inf = torch.ones(())
    optimizer.step()
    assert torch.equal(parameter.detach(), before[0])
    assert all(torch.equal(optimizer.state[parameter][k], v) for k, v in before[1].items())
    assert optimizer.state[parameter]["step"].item() == 1
    parameter.grad = torch.ones(4)
    optimizer.found_inf = torch.zeros(())
    optimizer.step()
    assert not torch.equal(parameter.detach(), before[0]) and optimizer.state[parameter]["step"].item() == 2


def _tiny_run(mnist_dir, tiny_model, **settings):
    images, _ = data.load_split(mnist_dir, "train")
    config = TrainConfig(batch_size=16, **settings)
    vae, optimizer, generator = build(tiny_model, config, device=torch.device("cpu"))
    return images, vae, optimizer, generator, loss_fn(config.objective, particles=config.particles)


def test_a_non_finite_loss_never_reaches_the_parameters(mnist_dir, tiny_model):
    images, vae, optimizer, generator, loss = _tiny_run(mnist_dir, tiny_model)
    calls = 0

    def nan_at_batch_2(vae, x):
        nonlocal calls
        calls += 1
        step = loss(vae, x)
        return step._replace(loss=step.loss * float("nan")) if calls == 2 else step

    with pytest.raises(NonFiniteLoss) as info:
        run_epoch(vae, optimizer, images, batch_size=16, generator=generator, loss=nan_at_batch_2)
    assert info.value.batch == 2 and math.isnan(info.value.value) and calls == 5
    assert all(torch.isfinite(p).all() for p in vae.parameters())
    for state in optimizer.state.values():
        assert all(torch.isfinite(v).all() for v in state.values())
        assert state["step"].item() == 4  # 5 batches, the bad one's update skipped
    assert not hasattr(optimizer, "found_inf")
    # In an epoch resumed after batch 2, the same bad call is batch 4.
    calls, resume = 0, train_module.Position(order=torch.randperm(len(images)), batch=2, loss_sum=torch.zeros(()))
    with pytest.raises(NonFiniteLoss) as info:
        run_epoch(vae, optimizer, images, batch_size=16, generator=generator, loss=nan_at_batch_2, resume=resume)
    assert info.value.batch == 4


SYNCS = ("item", "__bool__", "__float__", "__int__", "__index__", "__complex__", "tolist", "numpy", "cpu",
         "__array__")


@pytest.mark.parametrize("objective, particles", [("elbo", 1), ("elbo", 3), ("iwae", 3)])
def test_a_training_step_never_waits_for_the_device(mnist_dir, tiny_model, monkeypatch, objective, particles):
    # Every way a tensor's value reaches Python (a host synchronisation on a GPU) is counted
    # during run_epoch: none inside the 5 steps, one after them (the epoch's non-finite check).
    # (Syncs inside torch's C++ ops, e.g. nonzero, are invisible here; the step has none.)
    images, vae, optimizer, generator, loss = _tiny_run(mnist_dir, tiny_model, objective=objective,
                                                        particles=particles)
    calls: list[str] = []
    for name in SYNCS:
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _real=real, _name=name, **k:
                            calls.append(_name) or _real(self, *a, **k))
    after_each_step: list[int] = []
    run_epoch(vae, optimizer, images, batch_size=16, generator=generator, loss=loss,
              on_batch=lambda: after_each_step.append(len(calls)))
    monkeypatch.undo()
    assert after_each_step == [0, 0, 0, 0, 0], calls
    assert calls == ["__bool__"]


def test_an_interrupt_after_a_bad_batch_saves_nothing(paths, tiny_model, tiny_train, signal_during_loss):
    train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=paths)
    for path in paths.checkpoint_dir.glob("*.pt"):  # nan from epoch 2, batch 2 on (see above)
        state = checkpoint.load(path)
        state["train_config"]["lr"] = 1e10
        checkpoint.save(state, path)
    before = {p.name: p.read_bytes() for p in paths.checkpoint_dir.glob("*.pt")}
    with signal_during_loss(3, signal.SIGINT), \
            pytest.raises(TrainingDiverged, match=r"became nan at epoch 2, batch 2.*is untouched"):
        train(dataclasses.replace(tiny_train, epochs=3), model_config=tiny_model, paths=paths)
    assert {p.name: p.read_bytes() for p in paths.checkpoint_dir.glob("*.pt")} == before


def test_an_interrupted_runs_position_goes_to_the_training_device(other_device):
    # Checkpoints are read onto the CPU; the image order and the loss sum go where the images are.
    saved = {"order": torch.randperm(80), "batch": 3, "loss_sum": torch.tensor(-1234.5), "seconds": 1.5}
    position = train_module.Position.restored(saved, device=other_device)
    assert position.order.device.type == position.loss_sum.device.type == other_device.type
    assert torch.equal(position.order.cpu(), saved["order"]) and position.batch == 3 and position.seconds == 1.5


@pytest.mark.parametrize("objective, particles", [("elbo", 1), ("elbo", 3), ("iwae", 3)])
def test_the_history_records_the_two_terms_of_the_bound(paths, tiny_model, tiny_train, objective, particles):
    config = dataclasses.replace(tiny_train, epochs=3, objective=objective, particles=particles)
    train(config, model_config=tiny_model, paths=paths)
    records = read_history(paths.results_dir / HISTORY)
    assert [r.epoch for r in records] == [1, 2, 3] and all(r.beta == 1.0 for r in records)
    for r in records:
        assert r.reconstruction < 0 < r.kl
        if objective == "elbo":  # the ELBO is its terms' difference, up to float32 sums over the epoch
            assert r.reconstruction - r.kl == pytest.approx(r.lower_bound, abs=1e-3)
        else:  # each draw's ELBO terms: their difference is below the IWAE bound
            assert r.reconstruction - r.kl < r.lower_bound


def test_beta_1_without_warm_up_trains_bit_for_bit_as_today(paths, tiny_model, tiny_train, monkeypatch, todays_epoch):
    # Both runs on torch's default kernels: the measured plan is chosen by timing, and a plan of
    # other kernels rounds differently whatever the loss.
    from pyro_vae import kernels

    monkeypatch.setattr(kernels, "calibrate", lambda *args, **kwargs: {})
    config = dataclasses.replace(tiny_train, epochs=2)
    assert (config.beta, config.kl_warmup) == (1.0, 0)
    result = train(config, model_config=tiny_model, paths=paths)

    images, _ = data.load_split(paths.data_dir, "train")
    vae, optimizer, generator = build(tiny_model, config, device=torch.device("cpu"), plan={})
    bounds = []
    with flush_denormals(torch.device("cpu")):
        for epoch in (1, 2):
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at(epoch)
            bounds.append(todays_epoch(vae, optimizer, images, batch_size=config.batch_size, generator=generator))
    state = _final_state(paths)
    assert state["epoch"] == 2 and state["kernels"] == kernels.plan_of(vae)
    assert all(torch.equal(state["model"][k], v) for k, v in vae.state_dict().items())
    for key, value in optimizer.state_dict()["state"].items():
        assert all(torch.equal(state["optimizer"]["state"][key][name], v) for name, v in value.items())
    assert [r.lower_bound for r in result.metrics] == bounds


def test_beta_and_warm_up_are_recorded_and_kept_on_resume(paths, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, epochs=2, beta=2.0, kl_warmup=3)
    train(config, model_config=tiny_model, paths=paths)
    state = _final_state(paths)
    assert (state["train_config"]["beta"], state["train_config"]["kl_warmup"]) == (2.0, 3)
    # Not given again, they are the checkpoint's; given otherwise, the resume is refused.
    result = train(dataclasses.replace(tiny_train, epochs=5), model_config=tiny_model, paths=paths)
    assert (result.train_config.beta, result.train_config.kl_warmup) == (2.0, 3)
    assert [r.beta for r in read_history(paths.results_dir / HISTORY)] == [0.0, 2 / 3, 4 / 3, 2.0, 2.0]
    with pytest.raises(CheckpointError, match="trained with beta 2.0, not 1.0"):
        train(dataclasses.replace(tiny_train, epochs=6), model_config=tiny_model, paths=paths,
              explicit=frozenset({"beta"}))
    with pytest.raises(CheckpointError, match="trained with kl_warmup 3, not 0"):
        train(dataclasses.replace(tiny_train, epochs=6), model_config=tiny_model, paths=paths,
              explicit=frozenset({"kl_warmup"}))


def test_a_checkpoint_from_before_the_kl_weight_trained_with_1_and_0(paths, tiny_model, tiny_train):
    train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=paths)
    for path in paths.checkpoint_dir.glob("*.pt"):  # as an older version wrote them
        state = checkpoint.load(path)
        del state["train_config"]["beta"], state["train_config"]["kl_warmup"]
        checkpoint.save(state, path)
    assert (checkpoint.configs_of(state)[1].beta, checkpoint.configs_of(state)[1].kl_warmup) == (1.0, 0)
    result = train(dataclasses.replace(tiny_train, epochs=2), model_config=tiny_model, paths=paths)
    assert result.metrics[-1].beta == 1.0 and result.train_config.kl_warmup == 0


def test_an_interrupt_during_the_warm_up_resumes_exactly(tmp_path, paths, tiny_model, tiny_train, signal_during_loss):
    config = dataclasses.replace(tiny_train, epochs=4, save_every=10, beta=4.0, kl_warmup=3)
    straight = dataclasses.replace(paths, checkpoint_dir=tmp_path / "straight", results_dir=tmp_path / "r1")
    train(config, model_config=tiny_model, paths=straight)
    interrupted = dataclasses.replace(paths, checkpoint_dir=tmp_path / "interrupted", results_dir=tmp_path / "r2")
    with signal_during_loss(8, signal.SIGINT), pytest.raises(Interrupted, match="stopped at epoch 2, batch 3 of 5"):
        train(config, model_config=tiny_model, paths=interrupted)  # call 8: epoch 2 (KL weight 4/3), batch 3
    torch.manual_seed(12345)
    train(dataclasses.replace(tiny_train, epochs=4), model_config=tiny_model, paths=interrupted)
    a, b = _final_state(straight), _final_state(interrupted)
    assert all(torch.equal(a["model"][key], b["model"][key]) for key in a["model"])
    assert a["metrics"] == [{**m, "seconds": a["metrics"][i]["seconds"]} for i, m in enumerate(b["metrics"])]
    assert [m["beta"] for m in b["metrics"]] == [0.0, 4 / 3, 8 / 3, 4.0]


def test_an_epoch_resumed_from_a_position_without_its_terms_records_none(mnist_dir, tiny_model):
    images, vae, optimizer, generator, loss = _tiny_run(mnist_dir, tiny_model)
    old = train_module.Position(order=torch.randperm(len(images)), batch=2, loss_sum=torch.zeros(()))
    reached = run_epoch(vae, optimizer, images, batch_size=16, generator=generator, loss=loss, resume=old)
    assert reached.batch == 5 and reached.terms_sum is None
    assert train_module._terms(reached, len(images)) == {"reconstruction": None, "kl": None}


def test_the_result_names_the_newest_checkpoint_and_the_whole_history(paths, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, epochs=3, save_every=2)
    result = train(config, model_config=tiny_model, paths=paths)
    assert result.checkpoint == checkpoint.newest_valid(paths.checkpoint_dir)[0] == paths.checkpoint_dir / "vae.epoch.3.pt"
    assert result.history == read_history(paths.results_dir / HISTORY) and result.metrics == result.history
    again = train(dataclasses.replace(config, epochs=4), model_config=tiny_model, paths=paths)
    assert again.checkpoint == paths.checkpoint_dir / "vae.epoch.4.pt" and again.history[:3] == result.history
    assert [r.epoch for r in again.metrics] == [4] and again.first_epoch == 4
    done = train(dataclasses.replace(config, epochs=4), model_config=tiny_model, paths=paths)  # already there
    assert done.checkpoint == again.checkpoint and done.history == again.history and done.metrics == []


def test_a_run_whose_threads_change_every_step_resumes_bit_for_bit(tmp_path, paths, tiny_train, signal_during_loss,
                                                                   monkeypatch):
    """Under load the governor moves torch's threads between steps: an interrupted run that did so,
    resumed, ends bit for bit where a straight run on fixed threads does (full-width layers, so
    the products are big enough for torch to split them across threads)."""
    from pyro_vae import runtime
    from pyro_vae.config import ModelConfig

    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("this test needs a machine with at least 2 CPUs")
    model = ModelConfig(z_dim=40, hidden_dim=500)
    config = dataclasses.replace(tiny_train, epochs=3, save_every=10)
    before = torch.get_num_threads()
    try:
        straight = dataclasses.replace(paths, checkpoint_dir=tmp_path / "straight", results_dir=tmp_path / "r1")
        train(config, model_config=model, paths=straight, threads=2)
        flips = []
        monkeypatch.setattr(runtime.ThreadGovernor, "__call__",
                            lambda self: flips.append(torch.get_num_threads()) or torch.set_num_threads(3 - flips[-1]))
        moved = dataclasses.replace(paths, checkpoint_dir=tmp_path / "moved", results_dir=tmp_path / "r2")
        with signal_during_loss(8, signal.SIGTERM), pytest.raises(Interrupted):
            train(config, model_config=model, paths=moved, threads="auto")
        train(config, model_config=model, paths=moved, threads="auto")
    finally:
        torch.set_num_threads(before)
    assert {1, 2} <= set(flips)
    a, b = _final_state(straight), _final_state(moved)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [m["lower_bound"] for m in a["metrics"]] == [m["lower_bound"] for m in b["metrics"]]
