"""Checkpoint files: naming, atomic saving, pruning, archiving, and refusing what is not a checkpoint."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from pyro_vae import checkpoint, runtime
from pyro_vae.config import ModelConfig
from pyro_vae.errors import CheckpointError, DamagedCheckpoint, WriteError
from pyro_vae.model import VAE


def make_state(epoch: int, model_config: ModelConfig = ModelConfig(z_dim=2, hidden_dim=16)) -> dict:
    vae = VAE(model_config)
    return {
        "format": checkpoint.FORMAT_VERSION, "epoch": epoch,
        "model_config": {"z_dim": model_config.z_dim, "hidden_dim": model_config.hidden_dim},
        "train_config": {"epochs": 3}, "model": vae.state_dict(),
        "optimizer": torch.optim.Adam(vae.parameters()).state_dict(), "rng": {"torch": torch.get_rng_state()},
        "metrics": [{"epoch": epoch, "seconds": 1.0, "lower_bound": -100.0}],
    }


def test_round_trip(tmp_path):
    state = make_state(3)
    path = checkpoint.save(state, checkpoint.path_for(tmp_path, 3))
    assert path.name == "vae.epoch.3.pt"
    loaded = checkpoint.load(path)
    assert loaded["epoch"] == 3 and loaded["metrics"] == state["metrics"]
    for key, value in state["model"].items():
        assert torch.equal(loaded["model"][key], value)
    vae, _ = checkpoint.load_vae(path, checkpoint_dir=tmp_path, device=torch.device("cpu"))
    assert vae.config == ModelConfig(z_dim=2, hidden_dim=16) and not vae.training


def test_latest_is_by_epoch_number_not_name(tmp_path):
    for epoch in (9, 10, 100, 2):
        checkpoint.save(make_state(epoch), checkpoint.path_for(tmp_path, epoch))
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert checkpoint.latest(tmp_path).name == "vae.epoch.100.pt"
    assert [e for e, _ in checkpoint.list_checkpoints(tmp_path)] == [2, 9, 10, 100]
    assert checkpoint.latest(tmp_path / "absent") is None


def test_prune_keeps_the_newest(tmp_path):
    for epoch in range(1, 6):
        checkpoint.save(make_state(epoch), checkpoint.path_for(tmp_path, epoch))
    removed = checkpoint.prune(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == ["vae.epoch.1.pt", "vae.epoch.2.pt", "vae.epoch.3.pt"]
    assert [e for e, _ in checkpoint.list_checkpoints(tmp_path)] == [4, 5]


def test_failed_save_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = checkpoint.save(make_state(1), checkpoint.path_for(tmp_path, 1))
    before = path.read_bytes()

    def crash(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(WriteError, match="could not write .*vae.epoch.1.pt \\(No space left on device\\)"):
        checkpoint.save(make_state(2), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["vae.epoch.1.pt"]  # no temporary file left behind


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"PK\x03\x04 truncated zip"])
def test_unreadable_checkpoint_is_one_line(tmp_path, content):
    path = tmp_path / "vae.epoch.1.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="unreadable") as info:
        checkpoint.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_truncated_checkpoint_is_refused(tmp_path):
    path = checkpoint.save(make_state(1), tmp_path / "vae.epoch.1.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="unreadable"):
        checkpoint.load(path)


class Payload:
    """Unpickling this would run code; weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_checkpoint_carrying_code_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = make_state(1)
    state["metrics"] = Payload()
    path = tmp_path / "vae.epoch.1.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="unreadable"):
        checkpoint.load(path)
    assert not (tmp_path / "pwned").exists()


def test_not_a_checkpoint_dict(tmp_path):
    path = tmp_path / "vae.epoch.1.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a pyro-vae checkpoint"):
        checkpoint.load(path)


def test_architecture_mismatch_with_explicit_flag(tmp_path):
    path = checkpoint.save(make_state(1), tmp_path / "vae.epoch.1.pt")
    checkpoint.load_vae(None, checkpoint_dir=tmp_path, device=torch.device("cpu"), z_dim=2)
    with pytest.raises(CheckpointError, match="z_dim 2, not 40"):
        checkpoint.load_vae(path, checkpoint_dir=tmp_path, device=torch.device("cpu"), z_dim=40)


def test_no_checkpoint_says_train_first(tmp_path):
    with pytest.raises(CheckpointError, match=r"train first: pyro_vae\.train\("):
        checkpoint.load_resolved(None, checkpoint_dir=tmp_path)


@pytest.mark.parametrize("damage", [lambda raw: raw[: len(raw) // 2], lambda raw: b"", lambda raw: b"\x00junk" * 50])
def test_damaged_newest_is_named_and_skipped(tmp_path, caplog, damage):
    for epoch in (1, 2, 3):
        checkpoint.save(make_state(epoch), checkpoint.path_for(tmp_path, epoch))
    newest = checkpoint.path_for(tmp_path, 3)
    newest.write_bytes(damage(newest.read_bytes()))
    path, state = checkpoint.newest_valid(tmp_path)
    assert path.name == "vae.epoch.2.pt" and state["epoch"] == 2
    assert "skipping damaged checkpoint vae.epoch.3.pt" in caplog.text
    assert newest.exists()  # reported, never deleted


def test_only_damaged_checkpoints_is_an_error(tmp_path):
    assert checkpoint.newest_valid(tmp_path) is None
    for epoch in (1, 2):
        checkpoint.path_for(tmp_path, epoch).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no readable checkpoint.*vae.epoch.2.pt, vae.epoch.1.pt.*fresh"):
        checkpoint.newest_valid(tmp_path)


def test_archive_moves_everything_aside(tmp_path):
    for epoch in (1, 2):
        checkpoint.save(make_state(epoch), checkpoint.path_for(tmp_path, epoch))
    folder = checkpoint.archive(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["vae.epoch.1.pt", "vae.epoch.2.pt"]
    assert checkpoint.latest(tmp_path) is None
    assert checkpoint.archive(tmp_path) is None


def test_a_load_error_that_is_not_about_the_bytes_is_said_as_it_is_and_never_skipped(tmp_path, monkeypatch, caplog):
    checkpoint.save(make_state(1), checkpoint.path_for(tmp_path, 1))
    checkpoint.save(make_state(2), tmp_path / checkpoint.LAST)
    real_load = torch.load

    def out_of_memory(path, *args, **kwargs):
        if os.path.basename(path) == checkpoint.LAST:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 8 GiB")
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", out_of_memory)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(tmp_path / checkpoint.LAST)
    message = str(info.value)
    assert not isinstance(info.value, DamagedCheckpoint)
    assert "CUDA out of memory" in message and "\n" not in message
    assert "unreadable" not in message and "delete" not in message
    # The newest state stays the one to resume from: no falling back to vae.epoch.1.pt.
    with pytest.raises(CheckpointError, match="CUDA out of memory"):
        checkpoint.newest_valid(tmp_path)
    assert "skipping" not in caplog.text


def test_every_damage_to_the_bytes_is_named_damaged(tmp_path):
    # Truncated at many points or with flipped bytes, a checkpoint either still loads or is
    # DamagedCheckpoint: torch's weights-only reader raises a zoo of types for garbage (KeyError,
    # IndexError, OSError(EINVAL), RuntimeErrors of its zip reader, ...), none may escape.
    raw = checkpoint.save(make_state(1), tmp_path / "whole.pt").read_bytes()
    rng = np.random.default_rng(0)
    damaged = [raw[:cut] for cut in range(0, len(raw), len(raw) // 40)]
    for _ in range(150):
        flipped = bytearray(raw)
        for i in rng.integers(0, len(raw), size=rng.integers(1, 12)):
            flipped[i] = int(rng.integers(0, 256))
        damaged.append(bytes(flipped))
    path = tmp_path / "vae.epoch.1.pt"
    kinds = set()
    for content in damaged:
        path.write_bytes(content)
        try:
            checkpoint.load(path)
        except DamagedCheckpoint as exc:
            assert "\n" not in str(exc)
            kinds.add(str(exc).split("(")[1][:20] if "(" in str(exc) else str(exc)[-30:])
    assert len(kinds) > 3  # many different failures were met, all of them named damage


# Copying weights into meta parameters is a no-op, and torch says so; the weights' copy to a
# parameter's device is load_state_dict's own, tested by torch.
@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter:UserWarning")
def test_restore_puts_each_part_where_it_belongs(tmp_path):
    # A run on another device (`meta` stands in for a GPU: it holds shapes, no data): weights
    # and optimizer state go to the parameters' device, generator states stay on the CPU.
    state = make_state(1)
    vae = VAE(ModelConfig(z_dim=2, hidden_dim=16))
    optimizer = torch.optim.Adam(vae.parameters())
    for p in vae.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    state["optimizer"] = optimizer.state_dict()
    state["rng"] = {"global": runtime.get_rng_state(), "data": torch.Generator().manual_seed(5).get_state()}
    state["metrics"] = []
    elsewhere = VAE(ModelConfig(z_dim=2, hidden_dim=16)).to("meta")
    optimizer = torch.optim.Adam(elsewhere.parameters())
    generator = torch.Generator()
    checkpoint.restore(state, vae=elsewhere, optimizer=optimizer, generator=generator)
    moments = [value for per_param in optimizer.state.values() for key, value in per_param.items() if key != "step"]
    assert moments and all(m.device.type == "meta" for m in moments)
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(5).get_state())
