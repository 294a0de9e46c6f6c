"""The benchmark's own arithmetic (its timings are not asserted: speed is checked by running it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SPEC = importlib.util.spec_from_file_location("train_speed", Path(__file__).parent.parent / "bench" / "train_speed.py")
train_speed = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(train_speed)


def test_floor_counts_the_epoch_flops_of_the_issue():
    # One epoch is about 437 GFLOP: forward and backward of 784-500-500-40(x2) and 40-500-500-784.
    floor = train_speed.matmul_floor(repeats=1)
    assert floor["fp32"]["gflop_per_epoch"] == pytest.approx(437, rel=0.01)
    fp32 = floor["fp32"]
    assert 0 < fp32["fastest"]["floor_epoch_s"] <= fp32["default"]["floor_epoch_s"]
    assert floor["bf16"]["default"]["gflops"] > 0
    # IWAE k=5: the decoder's products see 5 x 128 rows, the encoder's still 128. Per row, the
    # encoder does 2 x 784x500 + 3 x (500x500 + 2 x 500x40) multiply-adds (no input gradient for
    # the images), the decoder 3 x (40x500 + 500x500 + 500x784).
    encoder, decoder = 2 * 784 * 500 + 3 * (500 * 500 + 2 * 500 * 40), 3 * (40 * 500 + 500 * 500 + 500 * 784)
    iwae = train_speed.matmul_floor(repeats=1, decoder_rows=640, dtypes=(torch.float32,))
    assert iwae["fp32"]["gflop_per_epoch"] == pytest.approx(437 * (encoder + 5 * decoder) / (encoder + decoder),
                                                            rel=0.01)


def test_both_contenders_learn(mnist_dir):
    from pyro_vae import data

    images, _ = data.load_split(mnist_dir, "train")
    runners = {"product": train_speed.product_runner(images, precision="fp32"),
               "iwae": train_speed.product_runner(images, precision="fp32", objective="iwae", particles=2),
               "handwritten": train_speed.handwritten_runner(images, fused=True)}
    result = train_speed.interleaved(runners, epochs=3)
    for name in runners:
        assert len(result[name]["epochs_s"]) == 3
        assert result[name]["lower_bounds"][-1] > result[name]["lower_bounds"][0]
