"""The benchmark's own arithmetic (its timings are not asserted: speed is checked by running it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("train_speed", Path(__file__).parent.parent / "bench" / "train_speed.py")
train_speed = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(train_speed)


def test_floor_counts_the_epoch_flops_of_the_issue():
    # One epoch is about 437 GFLOP: forward and backward of 784-500-500-40(x2) and 40-500-500-784.
    floor = train_speed.matmul_floor(repeats=1)
    assert floor["fp32"]["gflop_per_epoch"] == pytest.approx(437, rel=0.01)
    assert floor["fp32"]["floor_epoch_s"] > 0 and floor["bf16"]["gflops"] > 0


def test_both_contenders_learn(mnist_dir):
    from pyro_vae import data

    images, _ = data.load_split(mnist_dir, "train")
    runners = {"product": train_speed.product_runner(images, precision="fp32"),
               "handwritten": train_speed.handwritten_runner(images, fused=False)}
    result = train_speed.interleaved(runners, epochs=3)
    for name in runners:
        assert len(result[name]["epochs_s"]) == 3
        assert result[name]["lower_bounds"][-1] > result[name]["lower_bounds"][0]
