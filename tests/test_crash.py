"""kill -9 at random moments, while training and while saving: the next run always resumes from a
whole checkpoint and ends where an uninterrupted run ends. Marked slow (about two minutes)."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import pytest
import torch

from pyro_vae import checkpoint

pytestmark = pytest.mark.slow
# Full-size networks (16 MB checkpoints, slow to write) on 80 synthetic images (5 steps an epoch):
# most of a run's time is spent saving, so random kills often land mid-write.
ARGS = ["train", "--save-every", "3", "--keep", "3", "--batch-size", "16"]


def start(python_command, tmp_path: Path, mnist_dir: Path, folder: str, *, epochs: int,
          output: int = subprocess.PIPE) -> subprocess.Popen:
    """`python cli.py train ...` in a fresh process that accepts the synthetic MNIST's checksums."""
    return subprocess.Popen(
        [*python_command("import cli; cli.main()"), *ARGS, "--epochs", str(epochs), "--data-dir", str(mnist_dir),
         "--checkpoint-dir", str(tmp_path / folder), "--results-dir", str(tmp_path / f"{folder}-results")],
        cwd=tmp_path, stdout=output, stderr=output, text=True,
    )


def test_kill_9_twenty_times_then_finish_exactly(tmp_path, mnist_dir, python_command):
    rng = random.Random(0)
    folder = tmp_path / "killed"
    mid_write = 0
    for attempt in range(20):
        # Far more epochs than the kills leave time for: every kill lands in a live run.
        process = start(python_command, tmp_path, mnist_dir, "killed", epochs=100_000, output=subprocess.DEVNULL)
        if attempt % 2:
            # Every other kill waits for a checkpoint write to begin and lands inside it.
            deadline = time.monotonic() + 60
            while not list(folder.glob(".*.tmp")) and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.002)
            mid_write += bool(list(folder.glob(".*.tmp")))
        else:
            time.sleep(rng.uniform(1.0, 6.0))  # anywhere: start-up, a step, a save
        process.kill()
        process.wait()
        for path in folder.glob("*.pt"):  # every checkpoint under a real name is whole
            checkpoint.load(path)
    assert mid_write >= 5, f"only {mid_write} kills landed while a checkpoint was being written"

    # Finish a little past where the kills left the run, and compare with a run never killed.
    _, state = checkpoint.newest_valid(folder)
    epochs = checkpoint.progress(state)[0] + 2
    finished = start(python_command, tmp_path, mnist_dir, "killed", epochs=epochs)
    out, err = finished.communicate(timeout=600)
    assert finished.returncode == 0, err
    assert "Restoring model from" in out
    assert not list(folder.glob(".*.tmp"))  # leftovers of killed writers are cleaned up

    straight = start(python_command, tmp_path, mnist_dir, "straight", epochs=epochs)
    _, err = straight.communicate(timeout=600)
    assert straight.returncode == 0, err
    a = checkpoint.load(tmp_path / "killed" / f"vae.epoch.{epochs}.pt")
    b = checkpoint.load(tmp_path / "straight" / f"vae.epoch.{epochs}.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [m["lower_bound"] for m in a["metrics"]] == [m["lower_bound"] for m in b["metrics"]]
