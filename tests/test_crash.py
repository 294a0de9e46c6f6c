"""kill -9 at random moments, while training and while saving: the next run always resumes from a
whole checkpoint and ends where an uninterrupted run ends. Marked slow (about two minutes)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pyro_vae import checkpoint, data

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
# Full-size networks (16 MB checkpoints, slow to write) on 80 synthetic images (5 steps an epoch):
# most of a run's time is spent saving, so random kills often land mid-write.
ARGS = ["train", "--epochs", "40", "--save-every", "3", "--keep", "3", "--batch-size", "16"]


def start(tmp_path: Path, mnist_dir: Path, folder: str, *, output: int = subprocess.PIPE) -> subprocess.Popen:
    """`python cli.py train ...` in a fresh process that accepts the synthetic MNIST's checksums."""
    driver = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import pyro_vae.data as d; "
              f"d.SHA256.update({json.dumps(data.SHA256)}); import cli; cli.main()")
    return subprocess.Popen(
        [sys.executable, "-c", driver, *ARGS, "--data-dir", str(mnist_dir),
         "--checkpoint-dir", str(tmp_path / folder), "--results-dir", str(tmp_path / f"{folder}-results")],
        cwd=tmp_path, stdout=output, stderr=output, text=True,
    )


def test_kill_9_twenty_times_then_finish_exactly(tmp_path, mnist_dir):
    rng = random.Random(0)
    folder = tmp_path / "killed"
    mid_write = 0
    for _ in range(20):
        process = start(tmp_path, mnist_dir, "killed", output=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 5.0))  # the interpreter and torch take about 2 s to start
        process.kill()
        process.wait()
        mid_write += bool(list(folder.glob(".*.tmp")))
        for path in folder.glob("*.pt"):  # every checkpoint under a real name is whole
            checkpoint.load(path)
    assert mid_write >= 1, "no kill landed while a checkpoint was being written"

    finished = start(tmp_path, mnist_dir, "killed")
    out, err = finished.communicate(timeout=600)
    assert finished.returncode == 0, err
    assert "Restoring model from" in out
    assert not list(folder.glob(".*.tmp"))  # leftovers of killed writers are cleaned up

    straight = start(tmp_path, mnist_dir, "straight")
    _, err = straight.communicate(timeout=600)
    assert straight.returncode == 0, err
    a = checkpoint.load(tmp_path / "killed" / "vae.epoch.40.pt")
    b = checkpoint.load(tmp_path / "straight" / "vae.epoch.40.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [m["lower_bound"] for m in a["metrics"]] == [m["lower_bound"] for m in b["metrics"]]
