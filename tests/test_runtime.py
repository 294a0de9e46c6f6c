"""Device choice, precision and random generator state."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from pyro_vae import runtime
from pyro_vae.errors import ConfigError


def test_auto_device_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        runtime.resolve_device("cuda")
    with pytest.raises(ConfigError, match="--device must be one of"):
        runtime.resolve_device("tpu")


def test_rng_state_round_trip_covers_every_generator():
    runtime.seed_all(1)
    state = runtime.get_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    runtime.seed_all(99)
    runtime.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_bf16_autocasts_matrix_products_when_native(monkeypatch):
    monkeypatch.setattr(runtime, "native_bf16", lambda device: True)
    linear = torch.nn.Linear(4, 4)
    with runtime.autocast(torch.device("cpu"), "bf16"):
        assert linear(torch.ones(2, 4)).dtype == torch.bfloat16
    with runtime.autocast(torch.device("cpu"), "fp32"):
        assert linear(torch.ones(2, 4)).dtype == torch.float32


def test_bf16_without_native_support_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)
    with pytest.raises(ConfigError, match="--precision bf16 needs native bf16 support"):
        runtime.autocast(torch.device("cpu"), "bf16")
