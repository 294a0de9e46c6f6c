"""Device choice, precision and random generator state."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vae import runtime
from pyro_vae.errors import ConfigError


def machine_with(monkeypatch, *, accelerator: str | None = None, cuda: bool = False, mps: bool = False,
                 has_accelerator_api: bool = True) -> None:
    """Stand-ins for what torch reports on a machine with these devices (none is needed here)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    if not has_accelerator_api:
        monkeypatch.delattr(torch, "accelerator", raising=False)
        return
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: accelerator is not None)
    monkeypatch.setattr(torch.accelerator, "current_accelerator",
                        lambda: None if accelerator is None else torch.device(accelerator))


def test_auto_device_is_cpu_without_an_accelerator(monkeypatch):
    machine_with(monkeypatch)
    assert runtime.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        runtime.resolve_device("cuda")
    with pytest.raises(ConfigError, match="device mps was asked for but this torch sees no Apple MPS device"):
        runtime.resolve_device("mps")
    with pytest.raises(ConfigError, match="device must be one of"):
        runtime.resolve_device("tpu")


@pytest.mark.parametrize("api", [True, False], ids=["torch.accelerator", "older torch"])
def test_auto_picks_cuda_then_mps_then_the_cpu(monkeypatch, api):
    machine_with(monkeypatch, accelerator="cuda", cuda=True, has_accelerator_api=api)
    assert runtime.resolve_device("auto") == torch.device("cuda")
    machine_with(monkeypatch, accelerator="mps", mps=True, has_accelerator_api=api)
    assert runtime.resolve_device("auto") == torch.device("mps")
    assert runtime.resolve_device("mps") == torch.device("mps")
    machine_with(monkeypatch, accelerator="xpu", has_accelerator_api=api)  # a kind the product does not run on
    assert runtime.resolve_device("auto") == torch.device("cpu")


def test_bf16_and_fused_adam_only_where_the_device_has_them(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: major <= 13)
    assert not runtime.native_bf16(torch.device("mps"))  # macOS 13: Metal has no bf16
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: True)
    assert runtime.native_bf16(torch.device("mps"))
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True})
    assert not runtime.native_bf16(torch.device("cpu"))
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})
    assert runtime.native_bf16(torch.device("cpu"))
    assert [runtime.fused_adam(torch.device(kind)) for kind in ("cpu", "cuda", "mps", "xpu")] == [True] * 3 + [False]
    # And the trainer builds what the device has: a foreach Adam where there is no fused kernel.
    from pyro_vae import trainer
    from pyro_vae.config import ModelConfig, TrainConfig

    monkeypatch.setattr(runtime, "FUSED_ADAM", ())
    vae, optimizer, generator = trainer.build(ModelConfig(z_dim=2, hidden_dim=8), TrainConfig(),
                                              device=torch.device("cpu"), plan={})
    assert not optimizer.defaults["fused"]
    images = torch.randint(0, 256, (64, 784), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in vae.parameters()]
    reached = trainer.run_epoch(vae, optimizer, images, batch_size=16, generator=generator)  # it trains
    assert reached.batch == 4 and not any(torch.equal(a, b) for a, b in zip(before, vae.parameters()))
    monkeypatch.setattr(runtime, "FUSED_ADAM", ("cpu",))
    _, optimizer, _ = trainer.build(ModelConfig(z_dim=2, hidden_dim=8), TrainConfig(), device=torch.device("cpu"),
                                    plan={})
    assert optimizer.defaults["fused"]


def test_an_mps_run_saves_and_restores_its_own_generator(monkeypatch):
    saved = torch.arange(8, dtype=torch.uint8)
    restored = []
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: saved)
    monkeypatch.setattr(torch.mps, "set_rng_state", restored.append)
    state = runtime.get_rng_state(torch.device("mps"))
    assert torch.equal(state["mps"], saved)
    runtime.set_rng_state(state, device=torch.device("mps"))
    assert len(restored) == 1 and torch.equal(restored[0], saved)
    assert "mps" not in runtime.get_rng_state(torch.device("cpu"))


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


# --- Threads -------------------------------------------------------------------------------------

def test_cpus_available_follow_the_affinity_mask_not_the_machine():
    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("this test needs a machine with at least 2 CPUs")
    # A real affinity mask, set in a process of its own (the test process keeps its CPUs).
    script = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
              "from pyro_vae import runtime; print(runtime.cpus_available())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.startswith("(1, ") and "1 in the process's affinity mask" in out
    assert runtime.cpus_available()[0] == len(os.sched_getaffinity(0))


def test_choose_threads_auto_number_and_errors(monkeypatch):
    monkeypatch.setattr(runtime, "cpus_available", lambda: (4, "4 CPUs on the machine"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    auto = runtime.choose_threads()
    assert (auto.count, auto.adapt, auto.most) == (4, True, 4) and "auto: 4 CPUs on the machine" in auto.why
    shared = runtime.choose_threads("auto", share=3)
    assert (shared.count, shared.most) == (1, 4) and "3 pyro-vae processes" in shared.why
    assert runtime.choose_threads("3") == runtime.Threads(count=3, adapt=False, why="3, as asked")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's own cap holds
    assert runtime.choose_threads("auto").count == 2
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(ConfigError, match="threads must be auto or a whole number of at least 1"):
            runtime.choose_threads(bad)
    monkeypatch.setenv(runtime.THREADS_ENV, "lots")
    with pytest.raises(ConfigError, match=f"{runtime.THREADS_ENV} must be auto .* got 'lots'; fix or unset it"):
        runtime.choose_threads()
    monkeypatch.setenv(runtime.THREADS_ENV, "1")
    assert runtime.choose_threads().count == 1


def test_computing_processes_share_the_cpus(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "cpus_available", lambda: (2, "2 CPUs on the machine"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        with runtime.computing("auto") as alone:
            assert alone.count == 2 and torch.get_num_threads() == 2
        # Another process computing (its lock held open) halves this one's start.
        other = subprocess.Popen([sys.executable, "-c", "import time\nfrom pyro_vae import runtime\n"
                                  "with runtime.computing('1'):\n    print('in', flush=True); time.sleep(60)"],
                                 stdout=subprocess.PIPE, text=True, env=os.environ)
        try:
            assert other.stdout.readline() == "in\n"
            with runtime.computing("auto") as shared:
                assert shared.count == 1 and shared.most == 2 and torch.get_num_threads() == 1
        finally:
            other.kill()
            other.wait()
            other.stdout.close()
        # A dead process's file (its lock gone with it) is not counted, and is cleared away.
        running = Path(os.environ["PYRO_VAE_CACHE"]) / runtime.RUNNING
        assert len(list(running.iterdir())) == 1
        with runtime.computing("auto") as again:
            assert again.count == 2
        assert list(running.iterdir()) == []
    finally:
        torch.set_num_threads(before)


class Machine:
    """A fake clock whose steps take `cost(count, step)` seconds at the governor's thread count."""

    def __init__(self, cost):
        self.now, self.count, self.cost, self.steps = 0.0, 2, cost, 0
        self.at = []  # the count each step ran with

    def clock(self):
        return self.now

    def set_count(self, count):
        self.count = count

    def run(self, governor, steps):
        for _ in range(steps):
            self.at.append(self.count)
            self.now += self.cost(self.count, self.steps)
            self.steps += 1
            governor()


def test_governor_with_its_threads_fixed_never_changes_them():
    machine = Machine(lambda count, step: {1: 0.01, 2: 0.05}[count])
    governor = runtime.ThreadGovernor(2, clock=machine.clock, set_count=machine.set_count,  # most=None: fixed
                                      share=lambda: 2)  # even beside another computing process
    machine.run(governor, 3000)
    assert governor.changes == [] and set(machine.at) == {2}


def test_governor_keeps_two_threads_when_quiet_and_pays_little_for_probing():
    machine = Machine(lambda count, step: {1: 0.018, 2: 0.012}[count])
    governor = runtime.ThreadGovernor(2, most=2, clock=machine.clock, set_count=machine.set_count)
    machine.run(governor, 5000)
    assert governor.count == 2 and governor.changes == []
    # Probes ran some steps on one thread: a fraction of a percent of the run's time.
    extra = sum(0.018 - 0.012 for c in machine.at if c == 1)
    assert extra / (5000 * 0.012) < 0.01


def test_governor_drops_to_one_thread_under_load_and_comes_back():
    # Steps 300-2999: another process holds a core, and two threads wait at every barrier.
    def cost(count, step):
        busy = 300 <= step < 3000
        return {1: 0.018, 2: 0.060 if busy else 0.012}[count]

    machine = Machine(cost)
    governor = runtime.ThreadGovernor(2, most=2, clock=machine.clock, set_count=machine.set_count)
    machine.run(governor, 6000)
    assert governor.changes == [(2, 1), (1, 2)]
    assert machine.at[340] == 1 and machine.at[-1] == 2  # within a few dozen steps of the load
    busy_time = sum(cost(c, s) for s, c in enumerate(machine.at) if 300 <= s < 3000)
    assert busy_time < 1.1 * 2700 * 0.018  # about the one-thread speed, not the two-thread collapse


def test_governor_starting_on_a_share_can_rise_to_every_cpu():
    machine = Machine(lambda count, step: {1: 0.02, 2: 0.012, 4: 0.008}[count])
    machine.count = 1
    governor = runtime.ThreadGovernor(1, most=4, clock=machine.clock, set_count=machine.set_count)
    machine.run(governor, 3000)
    assert governor.changes == [(1, 2), (2, 4)] and machine.at[-1] == 4


def test_governor_keeps_to_its_part_while_other_pyro_vae_processes_compute():
    # A noisy machine: every other probe step runs fast, so a free governor would climb to two
    # threads. While a second pyro-vae process computes (steps 200-2999) this one keeps to its
    # part, one of two CPUs: it drops to one at its next probe and never tries two, then rises again.
    def cost(count, step):
        return {1: 0.018, 2: 0.010 if step % 2 else 0.014}[count]

    others = lambda: 2 if 200 <= machine.steps < 3000 else 1  # noqa: E731  (the registry's count)
    machine = Machine(cost)
    governor = runtime.ThreadGovernor(2, most=2, clock=machine.clock, set_count=machine.set_count, share=others)
    machine.run(governor, 6000)
    assert governor.changes == [(2, 1), (1, 2)]
    assert set(machine.at[260:3000]) == {1}  # within a probe interval of the other's start, and no probe of 2
    assert machine.at[-1] == 2


def test_the_thread_count_does_not_change_the_numbers():
    """Changing torch's threads between steps leaves a run bit-identical (so the governor may)."""
    from pyro_vae import trainer
    from pyro_vae.config import ModelConfig, TrainConfig

    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("this test needs a machine with at least 2 CPUs")
    images = (torch.rand(128 * 4, 784, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    before = torch.get_num_threads()
    runs = []
    try:
        for model_config, schedule in ((ModelConfig(), (2,)), (ModelConfig(), (1, 2)),
                                       (ModelConfig(prior="vamp", pseudo_inputs=50), (2,)),
                                       (ModelConfig(prior="vamp", pseudo_inputs=50), (2, 1))):
            turn = iter(schedule * 10)
            torch.set_num_threads(next(turn))
            vae, optimizer, generator = trainer.build(model_config, TrainConfig(), device=torch.device("cpu"), plan={})
            trainer.run_epoch(vae, optimizer, images, batch_size=128, generator=generator,
                              on_batch=lambda: torch.set_num_threads(next(turn)))
            runs.append(torch.cat([p.detach().flatten() for p in vae.parameters()]))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[2], runs[3])
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
