"""The process's resources: the device, torch's threads (and adapting them to load), every random
number generator's state (seeding, saving, restoring), and the signals that stop a long-running
command (`StopRequest`)."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import random
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pyro_vae.config import Device, Precision
from pyro_vae.errors import ConfigError

log = logging.getLogger(__name__)


ACCELERATORS = ("cuda", "mps")  # the kinds `auto` picks, in this order, before the CPU


def _available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    return kind == "mps" and mps is not None and mps.is_available()


def resolve_device(name: str) -> torch.device:
    """Turn `auto|cpu|cuda|mps` into a torch device: `auto` picks the machine's accelerator (CUDA,
    then Apple's MPS; through `torch.accelerator` where this torch has it), else the CPU."""
    if name not in Device.values():
        raise ConfigError(f"⟨device⟩ must be one of {', '.join(Device.values())}, got {name!r}")
    if name == Device.auto:
        accelerator = getattr(torch, "accelerator", None)
        found = accelerator.current_accelerator() if accelerator is not None and accelerator.is_available() else None
        if found is not None and found.type in ACCELERATORS:
            return torch.device(found.type)
        name = next((kind for kind in ACCELERATORS if _available(kind)), "cpu")
    if name != "cpu" and not _available(name):
        what = "no CUDA GPU is visible" if name == "cuda" else "this torch sees no Apple MPS device"
        raise ConfigError(f"⟨device⟩ {name} was asked for but {what}; use ⟨device⟩ cpu (or auto)")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix products run natively (not emulated) on `device`."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "mps":  # Metal has bf16 from macOS 14
        return bool(torch.backends.mps.is_macos_or_newer(14, 0))
    # Without bf16 instructions (AVX512-BF16 or AMX on x86, BF16 on ARM) bf16 is emulated on the
    # CPU and slower than fp32. torch.cpu.get_capabilities() is the public reading of the CPU's
    # features (the private torch.ops.mkldnn._is_mkldnn_bf16_supported asks the same of oneDNN).
    capabilities = torch.cpu.get_capabilities()
    return any(capabilities.get(flag) for flag in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))


# torch's fused Adam kernels exist for these device kinds (torch.optim's list of them is private).
FUSED_ADAM = ("cpu", "cuda", "mps")


def fused_adam(device: torch.device) -> bool:
    """Whether torch has a fused Adam kernel for `device` (elsewhere the optimizer runs `foreach`)."""
    return device.type in FUSED_ADAM


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context a training step runs in: nothing for fp32; bf16 autocast (fp32 master
    weights, matrix products in bf16) where the hardware has native bf16, else a ConfigError."""
    if precision == Precision.fp32:
        return contextlib.nullcontext()
    if precision != Precision.bf16:
        raise ConfigError(f"⟨precision⟩ must be one of {', '.join(Precision.values())}, got {precision!r}")
    if not native_bf16(device):
        raise ConfigError(f"⟨precision⟩ bf16 needs native bf16 support, which this {device.type} lacks; use fp32")
    return torch.autocast(device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def flush_denormals(device: torch.device) -> Iterator[None]:
    """Inside the block, CPU arithmetic treats denormal floats as zero (torch's default after it).

    Why: the first layer's weights from MNIST's always-black border pixels get zero gradients,
    so Adam's moments for them decay geometrically into the denormal range (half a million
    entries by epoch 220 of an IWAE run), and CPU arithmetic on denormals is many times slower:
    that run's epoch grew from 6.5 s to 13.4 s. Values below 1e-38 in the moments change no
    update (each is divided by sqrt(v) + 1e-8).
    """
    if device.type != "cpu":
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (Pyro draws from torch's global generator)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


CPU = torch.device("cpu")


@contextlib.contextmanager
def isolated_rng(seed: int, *, device: torch.device = CPU) -> Iterator[None]:
    """Run a block seeded with `seed`, then put every global generator back as it was: an
    evaluation in the middle of training leaves the training's random stream untouched.

    Args:
        device: where the block draws (a CUDA device's own generator is saved and restored too).
    """
    saved = get_rng_state(device)
    seed_all(seed)
    try:
        yield
    finally:
        set_rng_state(saved, device=device)


def get_rng_state(device: torch.device = CPU) -> dict[str, Any]:
    """Every global generator's state a run on `device` draws from, as CPU tensors and plain data
    (types `torch.load(weights_only=True)` accepts).

    Only the run's own CUDA device is saved, and only for a run on CUDA: a CPU run on a machine
    with GPUs never initialises CUDA, and a resume with fewer visible GPUs finds what it needs.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)  # a CPU ByteTensor
    if device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any], *, device: torch.device = CPU) -> None:
    """Restore what `get_rng_state` captured for a run on `device`.

    The generator states may come back from a checkpoint on any device: they are brought to the
    CPU here, where torch's and NumPy's setters need them. Checkpoints written before only the
    run's device was saved hold a list, one state per visible GPU: the run's device takes its own
    entry (the first where the list is shorter).
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].cpu().numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if isinstance(cuda, (list, tuple)) and device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        cuda = cuda[index] if index < len(cuda) else cuda[0] if cuda else None
    if device.type == "cuda" and cuda is not None:
        torch.cuda.set_rng_state(cuda.cpu(), device)
    if device.type == "mps" and state.get("mps") is not None:
        torch.mps.set_rng_state(state["mps"].cpu())


# --- Threads -------------------------------------------------------------------------------------
# torch's CPU threads meet at a barrier after every operation. Beside another busy process each
# barrier waits out a scheduler time slice (the epoch took 3.7 to 4.3x its quiet time next to one
# busy process, 6.7x as one of two runs), so the count comes from what the process may use, and
# training lowers it while that is faster (`ThreadGovernor`).

THREADS_ENV = "PYRO_VAE_THREADS"  # auto or a number: the default of every command's --threads
AUTO = "auto"


@dataclass(frozen=True)
class Threads:
    """How many threads torch computes with, whether training may change it, and why (for `-v`)."""

    count: int
    adapt: bool  # `auto`: a training run measures other counts against this one and keeps the faster
    why: str
    most: int = 0  # with `adapt`: the CPUs the process may use, the most it will try (0: count)


def cpus_available() -> tuple[int, str]:
    """The CPUs this process may use: its affinity mask and its cgroup CPU quota (a container's
    `--cpus`), not the machine's core count; and a phrase saying which limit decided it.

    loky's `cpu_count` reads both (cgroup v1 and v2, and LOKY_MAX_CPU_COUNT): reading quotas by
    hand is a known trap (a quota of -1, "max", per-period units), so a kept library does it.
    """
    from loky import cpu_count

    usable = max(1, cpu_count(only_physical_cores=False))
    machine = os.cpu_count() or 1
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else machine
    why = f"{machine} CPUs on the machine"
    if affinity < machine:
        why += f", {affinity} in the process's affinity mask"
    if usable < min(machine, affinity):
        why += f", {usable} under its CPU quota"
    return usable, why


def choose_threads(spec: str | int | None = None, *, share: int = 1) -> Threads:
    """Resolve a thread setting: `auto`, a positive number, or None for $PYRO_VAE_THREADS (else auto).

    Args:
        share: how many computing processes split the CPUs (this one included, see `computing`):
            `auto` starts each on its part, at least one thread.
    """
    from_env = spec is None
    if from_env:
        spec = os.environ.get(THREADS_ENV) or AUTO
    text = str(spec).strip().lower()
    if text != AUTO:
        count = int(text) if text.isdigit() else 0
        if count < 1:
            raise ConfigError(f"{THREADS_ENV} must be auto or a whole number of at least 1, got {spec!r}; fix or "
                              f"unset it" if from_env else
                              f"⟨threads⟩ must be auto or a whole number of at least 1, got {spec!r}")
        return Threads(count=count, adapt=False, why=f"{count}, as asked" + (f" ({THREADS_ENV})" if from_env else ""))
    usable, why = cpus_available()
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and 0 < int(omp) < usable:  # the user's own cap, set on purpose
        usable, why = int(omp), why + f", capped by OMP_NUM_THREADS={omp}"
    count = max(1, usable // max(1, share))
    if share > 1:
        why += f", {share} pyro-vae processes computing on them"
    return Threads(count=count, adapt=True, why=f"{count}, auto: {why}", most=usable)


def use_threads(threads: Threads) -> None:
    """Make torch compute with `threads.count` threads from now on. The numbers do not depend on
    the count (tests/test_runtime.py trains with 1 and 2 threads and compares bit for bit)."""
    if torch.get_num_threads() != threads.count:
        torch.set_num_threads(threads.count)
    log.debug("threads: %s", threads.why)


RUNNING = "running"  # in config.cache_dir(): one locked file per computing process


@contextlib.contextmanager
def computing(spec: str | int | None = None) -> Iterator[Threads]:
    """Choose and apply torch's threads for a block of work, sharing the CPUs with the other
    pyro-vae processes computing on this machine now (two `train`s, tune's workers, a server).

    Each computing process holds an advisory lock on a file of its own in the cache folder while
    the block runs: the live locks are counted, the files of dead processes (whose locks the
    system dropped) removed. Where locks or the folder are not to be had, the process counts alone.
    """
    held = _announce()
    try:
        threads = choose_threads(spec, share=_count_computing())
        use_threads(threads)
        yield threads
    finally:
        if held is not None:
            held.close()
            with contextlib.suppress(OSError):
                os.unlink(held.name)


def apply_threads(spec: str | int | None = None) -> Threads:
    """Choose and apply torch's threads for a short piece of work (drawing pictures, exporting the
    page): its part of the CPUs beside the pyro-vae processes computing now, without joining them."""
    threads = choose_threads(spec, share=_count_computing())
    use_threads(threads)
    return threads


def _announce() -> Any:
    """Open and lock this process's file in the running folder; None where that cannot be done."""
    try:
        import fcntl

        from pyro_vae.config import cache_dir

        folder = cache_dir() / RUNNING
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / f"{os.getpid()}-{time.monotonic_ns()}", "w")  # noqa: SIM115 (held for the block)
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return handle
    except (ImportError, OSError):
        return None


def _count_computing() -> int:
    """How many processes hold a lock in the running folder (at least 1: this one)."""
    try:
        import fcntl

        from pyro_vae.config import cache_dir

        live = 0
        for path in (cache_dir() / RUNNING).iterdir():
            try:
                with open(path) as other:
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # got it: its process is gone
                path.unlink(missing_ok=True)
            except BlockingIOError:
                live += 1
            except OSError:
                pass
        return max(1, live)
    except (ImportError, OSError):
        return 1


class ThreadGovernor:
    """Keeps the training step at the faster of its thread counts while the machine's load changes.

    Called after every step, it times the steps. Now and then (after 16 steps, then doubling up to
    every 2048 while the choice holds, and at once when the step time drifts by a third) it runs
    a few steps at the next count down or up and keeps whichever ran faster. A probe that is plainly
    slower after one step stops there, so a quiet machine pays about one slow step per probe.

    Only wall time decides; the products do not depend on the count, so a run's numbers are the same
    whatever it chose (the choices are logged, not recorded). It never tries more than its part of
    the CPUs beside the other pyro-vae processes computing now (`share`, read at each probe), and
    drops to that part when others start: two trainings beside a third process, each free to try
    every CPU, were seen to win a noisy probe each and settle both on two threads, 3x slower.
    """

    FIRST, LONGEST = 16, 2048  # steps between probes: at first, and at most
    PROBE = 3  # timed steps at the other count (after one untimed: the pool's wake-up)
    KEEP = 0.95  # the other count must be this much faster (noise never flips a tie)
    GIVE_UP = 1.25  # a probe step this much slower ends the probe
    DRIFT = 1.33  # a step-time change that triggers a probe
    WINDOW = 9  # steps of the current count that make its typical time

    def __init__(self, count: int, *, most: int | None = None, clock: Callable[[], float] = time.perf_counter,
                 set_count: Callable[[int], None] = torch.set_num_threads,
                 share: Callable[[], int] = lambda: 1) -> None:
        """Start on `count` threads; move between 1 and `most` (None: stay on `count`, e.g. threads
        fixed by the user, or a GPU run), never above most // share() (share: how many pyro-vae
        processes compute now, this one included)."""
        # The counts it moves between, e.g. 1, 2, 4, 8 (and the one it starts on).
        self.counts = [count] if most is None else sorted(
            {max(1, max(count, most) >> k) for k in range(max(count, most).bit_length())} | {count})
        self.count = count
        self._clock, self._set = clock, set_count
        self._recent: collections.deque[float] = collections.deque(maxlen=self.WINDOW)
        self._typical: float | None = None  # the current count's typical step when it was last chosen
        self._interval = self.FIRST
        self._until_probe = self.FIRST
        self._probe: tuple[int, list[float]] | None = None  # (count tried, its step times)
        self._skip = True  # the next interval includes something else (a wake-up, an epoch's end)
        self._last = clock()
        self._down = True  # which neighbour the next probe tries
        self._share = share
        self.changes: list[tuple[int, int]] = []  # (from, to), for the log and tests

    @classmethod
    def of(cls, threads: Threads, *, device: torch.device) -> ThreadGovernor:
        """The governor of a run with `threads` on `device`: it adapts on the CPU under `auto`, and
        otherwise keeps the count it was given (a number the user chose, a GPU run)."""
        return cls(threads.count, most=threads.most if threads.adapt and device.type == "cpu" else None,
                   share=_count_computing)

    def begin(self) -> None:
        """A new stretch of steps starts (an epoch, after an evaluation): don't time the gap before it."""
        self._skip, self._last = True, self._clock()

    def __call__(self) -> None:
        now = self._clock()
        took, self._last = now - self._last, now
        if self._skip:
            self._skip = False
            return
        if self._probe is not None:
            self._probing(took)
            return
        self._recent.append(took)
        self._until_probe -= 1
        if len(self._recent) < self.WINDOW:
            return
        typical = statistics.median(self._recent)
        if self._typical is None:
            self._typical = typical
        drifted = not self._typical / self.DRIFT < typical < self._typical * self.DRIFT
        if drifted:
            self._interval = self.FIRST
        if self._until_probe <= 0 or drifted:
            self._start_probe()

    def _neighbours(self) -> list[int]:
        i = self.counts.index(self.count)
        return [c for c in (self.counts[i - 1] if i else None,
                            self.counts[i + 1] if i + 1 < len(self.counts) else None) if c is not None]

    def _start_probe(self) -> None:
        if len(self.counts) == 1:  # threads fixed (by the user, or a GPU run): never moved, nor counted
            self._until_probe = self.LONGEST
            return
        part = max(1, self.counts[-1] // max(1, self._share()))
        if self.count > part:  # others have started computing: down to this run's part, no probe needed
            self._adopt(max(c for c in self.counts if c <= part), why="other pyro-vae processes are computing")
            self._switch(self.count)
            self._until_probe = self._interval
            return
        options = [c for c in self._neighbours() if c <= part]
        if not options:  # one thread is all there is, or all that is this run's part now: ask again later
            self._until_probe = self.LONGEST if part >= self.counts[-1] else self._interval
            self._interval = min(2 * self._interval, self.LONGEST)
            return
        other = options[0] if self._down or len(options) == 1 else options[-1]
        self._down = not self._down
        self._probe = (other, [])
        self._switch(other)

    def _probing(self, took: float) -> None:
        other, times = self._probe
        times.append(took)
        typical = statistics.median(self._recent)
        if len(times) < self.PROBE and took < typical * self.GIVE_UP:
            return
        faster = len(times) == self.PROBE and statistics.median(times) < typical * self.KEEP
        self._probe = None
        if faster:
            self._adopt(other, why=f"a step took {1e3 * typical:.1f} ms with {self.count}, "
                                   f"{1e3 * statistics.median(times):.1f} ms with {other}")
        else:
            self._switch(self.count)
            self._interval = min(2 * self._interval, self.LONGEST)
            self._typical = typical
        self._until_probe = self._interval

    def _adopt(self, count: int, *, why: str) -> None:
        """Make `count` the current count (already set) and time it afresh."""
        log.debug("threads: %d -> %d (%s)", self.count, count, why)
        self.changes.append((self.count, count))
        self.count, self._interval = count, self.FIRST
        self._recent.clear()
        self._typical = None

    def _switch(self, count: int) -> None:
        self._set(count)
        self._skip = True


class StopRequest:
    """The one way a long-running command (training, the explorer's server) stops on a signal.

    While `installed`, the first SIGINT or SIGTERM sets `signum` and calls `on_stop`; the work asks
    `requested()` where it can stop cleanly (training: after every step and evaluation batch, then
    saves where it was). A second SIGINT raises KeyboardInterrupt at once. Outside the main thread,
    where Python delivers no signals, installing changes nothing.

    Args:
        on_stop: called in the handler, on the first signal (e.g. to wake a blocking loop).
    """

    def __init__(self, on_stop: Callable[[], None] | None = None) -> None:
        self.signum: int | None = None
        self.on_stop = on_stop

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if self.on_stop is not None:
            self.on_stop()

    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        """The signal that arrived, e.g. "SIGTERM" (only once one has)."""
        return signal.Signals(self.signum).name

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        if threading.current_thread() is not threading.main_thread():  # handlers live in the main thread
            yield self
            return
        previous = {}
        # SIGTERM only where the platform delivers it to Python (not every one does).
        for signum in (getattr(signal, name, None) for name in ("SIGINT", "SIGTERM")):
            if signum is not None:
                with contextlib.suppress(ValueError, OSError):
                    previous[signum] = signal.signal(signum, self)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
