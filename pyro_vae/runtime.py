"""The process's resources: choosing the device, every random number generator's state (seeding,
saving, restoring), and the signals that stop a long-running command (`StopRequest`)."""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from pyro_vae.config import Device, Precision
from pyro_vae.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """Turn `auto|cpu|cuda` into a torch device; `auto` picks CUDA when present."""
    if name not in Device.values():
        raise ConfigError(f"⟨device⟩ must be one of {', '.join(Device.values())}, got {name!r}")
    if name == Device.auto:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("⟨device⟩ cuda was asked for but no CUDA GPU is visible; use ⟨device⟩ cpu")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix products run natively (not emulated) on `device`."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    # Without bf16 instructions (AVX512-BF16 or AMX on x86, BF16 on ARM) bf16 is emulated on the
    # CPU and slower than fp32. torch.cpu.get_capabilities() is the public reading of the CPU's
    # features (the private torch.ops.mkldnn._is_mkldnn_bf16_supported asks the same of oneDNN).
    capabilities = torch.cpu.get_capabilities()
    return any(capabilities.get(flag) for flag in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))


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
