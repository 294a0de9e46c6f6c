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
    with pytest.raises(ConfigError, match="device must be one of"):
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
    with pytest.raises(ConfigError, match="precision bf16 needs native bf16 support"):
        runtime.autocast(torch.device("cpu"), "bf16")


class FakeCuda:
    """torch.cuda's generator functions on a machine with `visible` GPUs, recorded (no GPU needed)."""

    def __init__(self, monkeypatch, visible: int = 1) -> None:
        self.states = [torch.full((16,), i, dtype=torch.uint8) for i in range(visible)]
        self.calls: list[tuple] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_rng_state", self.get)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set)
        for name in ("get_rng_state_all", "set_rng_state_all", "init"):
            monkeypatch.setattr(torch.cuda, name, lambda *args, name=name: self.calls.append((name,)))

    def index(self, device) -> int:
        device = torch.device(device)
        return 0 if device.index is None else device.index

    def get(self, device="cuda"):
        self.calls.append(("get", self.index(device)))
        return self.states[self.index(device)].clone()

    def set(self, state, device="cuda"):
        assert state.device.type == "cpu" and state.dtype == torch.uint8, state  # what torch insists on
        if self.index(device) >= len(self.states):
            raise IndexError("no such GPU")
        self.calls.append(("set", self.index(device), int(state[0])))


def test_only_the_runs_own_cuda_generator_is_saved_and_restored(monkeypatch):
    cuda = FakeCuda(monkeypatch, visible=3)
    state = runtime.get_rng_state(torch.device("cuda", 1))
    assert torch.equal(state["cuda"], cuda.states[1]) and cuda.calls == [("get", 1)]
    runtime.set_rng_state(state, device=torch.device("cuda", 1))
    assert cuda.calls[-1] == ("set", 1, 1)


def test_a_cpu_run_never_touches_cuda_even_where_there_is_a_gpu(monkeypatch):
    cuda = FakeCuda(monkeypatch, visible=2)
    state = runtime.get_rng_state(torch.device("cpu"))
    runtime.set_rng_state({**state, "cuda": [torch.zeros(16, dtype=torch.uint8)] * 2}, device=torch.device("cpu"))
    with runtime.isolated_rng(0):
        torch.rand(1)
    assert "cuda" not in state and cuda.calls == []


def test_an_old_checkpoints_list_of_gpus_restores_with_fewer_visible(monkeypatch):
    # Written on a machine with 4 GPUs (a state each), resumed where only one is visible.
    cuda = FakeCuda(monkeypatch, visible=1)
    state = runtime.get_rng_state(torch.device("cpu"))
    old = {**state, "cuda": [torch.full((16,), 10 + i, dtype=torch.uint8) for i in range(4)]}
    runtime.set_rng_state(old, device=torch.device("cuda"))
    assert cuda.calls == [("set", 0, 10)]


def test_a_stop_request_is_asked_for_by_the_first_signal_and_a_second_ctrl_c_stops_at_once():
    import os
    import signal

    woken, before = [], signal.getsignal(signal.SIGTERM)
    request = runtime.StopRequest(on_stop=lambda: woken.append(request.signum))
    with request.installed():
        assert signal.getsignal(signal.SIGTERM) is request and not request.requested()
        os.kill(os.getpid(), signal.SIGTERM)
        assert request.requested() and request.name == "SIGTERM" and woken == [signal.SIGTERM]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and signal.getsignal(signal.SIGTERM) is before
