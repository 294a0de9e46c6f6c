"""Which kernel runs the fp32 matrix products of the linear layers, chosen by timing them on the
machine at hand: torch's default (MKL on x86 CPUs, cuBLAS on GPUs) or oneDNN, both bundled in torch.

MKL takes a slower code path on non-Intel CPUs (about half of oneDNN's fp32 speed on an AMD EPYC),
while on Intel CPUs the two are level, so the choice is measured, never assumed. Both are exact
IEEE fp32: no reduced-precision mode is switched on anywhere here.

A `Plan` maps a layer shape to the kernel of each of its three products (forward, grad-input,
grad-weight). `calibrate` times the candidates at the model's shapes; `use` installs a plan on a
model's `nn.Linear` layers. Only the trainer does both (`trainer.build`), and records the plan in
the checkpoint so a resumed run keeps it: `model.py` builds plain `nn.Linear` layers, and a model
loaded to evaluate, sample or explore runs on torch's default without reading the cache.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pyro_vae.config import cache_dir
from pyro_vae.errors import PyroVAEError
from pyro_vae.fsutil import atomic_write

log = logging.getLogger(__name__)

DEFAULT, ONEDNN = "default", "onednn"
KERNELS = (DEFAULT, ONEDNN)
PRODUCTS = ("forward", "grad_input", "grad_weight")
KERNELS_ENV = "PYRO_VAE_KERNELS"  # auto (measure), default or onednn: pins the choice
KERNELS_CACHE = "kernels.json"  # in config.cache_dir(): the plans measured on this machine
# oneDNN must beat the default by this factor to be chosen: the VM's noise never flips a tie (a
# run and its rerun pick the same kernels), and where oneDNN is really faster it is ~2x faster.
MARGIN = 1.25
# Below this many flops a product takes microseconds, and the Python autograd function around
# oneDNN would cost more than any kernel could save.
MIN_FLOPS = 4e6
# Products of more rows than this run at the same speed per row, so calibrate no bigger.
MAX_CALIBRATION_ROWS = 2048

Shape = tuple[int, int]  # (in_features, out_features)
Plan = dict[str, dict[str, str]]  # "784x500" -> {"forward": "onednn", ...}


def onednn_available(device: torch.device) -> bool:
    """Whether this torch has oneDNN's dense fp32 linear on `device` (CPU builds with mkldnn)."""
    return (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _onednn_linear(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b.T (+ bias) on oneDNN, for 2-d `a`; `b` may be a transposed view (oneDNN reads strides).

    torch has no public oneDNN matmul for fp32: `torch.backends.mkldnn.matmul.fp32_precision`
    only routes fp32 to oneDNN in reduced precision. This is the op torch.compile's CPU backend
    emits for a linear layer; dense tensors in and out, no layout conversions.
    """
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


# Each product on each kernel: PRODUCTS_ON[product][kernel](a, b[, bias]) with
# forward (x, w, b): x @ w.T + b;  grad_input (g, w): g @ w;  grad_weight (g, x): g.T @ x,
# for x: (rows, in), w: (out, in), g: (rows, out).
PRODUCTS_ON: dict[str, dict[str, Callable[..., torch.Tensor]]] = {
    "forward": {DEFAULT: F.linear, ONEDNN: _onednn_linear},
    "grad_input": {DEFAULT: lambda g, w: g @ w, ONEDNN: lambda g, w: _onednn_linear(g, w.t())},
    "grad_weight": {DEFAULT: lambda g, x: g.t() @ x, ONEDNN: lambda g, x: _onednn_linear(g.t().contiguous(), x.t())},
}


@dataclass(frozen=True)
class Choice:
    """The kernel of each product of one layer shape."""

    forward: str = DEFAULT
    grad_input: str = DEFAULT
    grad_weight: str = DEFAULT

    @property
    def is_default(self) -> bool:
        return self.forward == self.grad_input == self.grad_weight == DEFAULT


class _Linear(torch.autograd.Function):
    """y = x @ w.T + b with each product on the kernel `choice` names."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,  # type: ignore[override]
                choice: Choice) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        ctx.save_for_backward(x2, weight)
        ctx.choice, ctx.x_shape, ctx.has_bias = choice, x.shape, bias is not None
        return PRODUCTS_ON["forward"][choice.forward](x2, weight, bias).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x2, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1]).contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = PRODUCTS_ON["grad_input"][ctx.choice.grad_input](g, weight).reshape(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            grad_w = PRODUCTS_ON["grad_weight"][ctx.choice.grad_weight](g, x2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b, None


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, same state dict) whose products run on the kernels of `choice`;
    `use` turns a model's `nn.Linear` layers into these where a plan puts a product on oneDNN.

    With the default choice, under autocast, or off the CPU it is exactly `nn.Linear`.
    """

    choice: Choice = Choice()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.choice.is_default or x.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
            return F.linear(x, self.weight, self.bias)
        return _Linear.apply(x, self.weight, self.bias, self.choice)


def shape_key(shape: Shape) -> str:
    return f"{shape[0]}x{shape[1]}"


def layer_shapes(model: nn.Module) -> list[Shape]:
    """The distinct (in, out) shapes of `model`'s linear layers, in order of first appearance."""
    shapes = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    return list(dict.fromkeys(shapes))


def default_plan(model: nn.Module) -> Plan:
    return {shape_key(s): {p: DEFAULT for p in PRODUCTS} for s in layer_shapes(model)}


def _best_seconds(candidates: dict[str, Callable[[], torch.Tensor]], *, budget_s: float) -> dict[str, float]:
    """The fastest of several timed calls of each candidate, taken in turn so all see the same machine."""
    for run in candidates.values():  # warm-up: first calls allocate and pick oneDNN primitives
        run()
    best = {name: float("inf") for name in candidates}
    deadline, rounds = time.perf_counter() + budget_s, 0
    while rounds < 3 or (time.perf_counter() < deadline and rounds < 20):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
        rounds += 1
    return best


def calibrate(model: nn.Module, *, rows: int, backward: bool, device: torch.device,
              budget_s: float = 0.01) -> Plan:
    """The fastest kernel of each product of `model`'s layer shapes on this machine.

    Measured once per machine, torch version, thread count and shapes (`measure`), then kept in
    the cache folder's `kernels.json`, so every later run on the machine picks the same kernels
    (a run and its rerun stay bit-identical even when a busy machine would time them otherwise).
    Delete that file to measure again.

    Args:
        rows: rows of the products (batch size x particles in training).
        backward: also time grad-input and grad-weight (training); forward only otherwise.
        budget_s: timing budget per product (the whole calibration of the VAE is ~0.2 s).
    Returns:
        the plan: for every shape, each product's kernel. oneDNN only where it is available,
        the product is big enough to matter, and it beat the default by `MARGIN`.
    """
    pinned = os.environ.get(KERNELS_ENV, "auto")
    if pinned not in ("auto", *KERNELS):
        raise ValueError(f"${KERNELS_ENV} must be auto, {DEFAULT} or {ONEDNN}, got {pinned!r}")
    plan = default_plan(model)
    if not onednn_available(device) or pinned == DEFAULT:
        return plan
    rows = min(rows, MAX_CALIBRATION_ROWS)
    if pinned == ONEDNN:
        return {key: {p: ONEDNN if backward or p == "forward" else DEFAULT for p in PRODUCTS} for key in plan}
    key = _machine_key(model, rows=rows, backward=backward)
    path = cache_dir() / KERNELS_CACHE
    cached = _read_cache(path)
    if key in cached and set(cached[key]) == set(plan):
        log.debug("kernels: measured before on this machine (%s)", path)
        return cached[key]
    plan = measure(model, rows=rows, backward=backward, budget_s=budget_s)
    try:
        with atomic_write(path) as handle:
            handle.write((json.dumps({**_read_cache(path), key: plan}, indent=1) + "\n").encode())
    except PyroVAEError as exc:  # an unwritable cache only costs the next run a measurement
        log.debug("kernels: not kept (%s)", exc)
    return plan


def _machine_key(model: nn.Module, *, rows: int, backward: bool) -> str:
    """The cache's key: the machine, torch, the shapes, and the CPUs the process may use. Not the
    threads of the moment: a run sharing the CPUs, or one whose threads the governor moved, keeps
    the kernels (and so the numbers) of the same command run alone."""
    from pyro_vae.runtime import cpus_available

    cpu = torch.cpu.get_capabilities()
    return json.dumps([cpu.get("cpu_name"), cpu.get("architecture"), platform.machine(), torch.__version__,
                       cpus_available()[0], rows, backward, layer_shapes(model)])


def _read_cache(path: Path) -> dict[str, Plan]:
    try:
        cached = json.loads(path.read_text())
        return cached if isinstance(cached, dict) else {}
    except (OSError, ValueError):
        return {}


def measure(model: nn.Module, *, rows: int, backward: bool, budget_s: float = 0.01) -> Plan:
    """Time each kernel on each product of `model`'s layer shapes at `rows` rows (CPU, oneDNN
    available) and keep oneDNN where it beats the default by `MARGIN`."""
    plan = default_plan(model)
    generator = torch.Generator().manual_seed(0)  # the global stream is the run's; leave it alone
    for fan_in, fan_out in layer_shapes(model):
        x = torch.randn(rows, fan_in, generator=generator)
        w = torch.randn(fan_out, fan_in, generator=generator)
        b = torch.randn(fan_out, generator=generator)
        g = torch.randn(rows, fan_out, generator=generator)
        operands = {"forward": (x, w, b), "grad_input": (g, w), "grad_weight": (g, x)}
        choice = plan[shape_key((fan_in, fan_out))]
        for product in PRODUCTS if backward else ("forward",):
            if 2.0 * rows * fan_in * fan_out < MIN_FLOPS:
                continue
            calls = {k: functools.partial(PRODUCTS_ON[product][k], *operands[product]) for k in KERNELS}
            seconds = _best_seconds(calls, budget_s=budget_s)
            if seconds[ONEDNN] * MARGIN < seconds[DEFAULT]:
                choice[product] = ONEDNN
            log.debug("kernels: %s %s at %d rows: default %.0f, oneDNN %.0f GFLOP/s -> %s",
                      shape_key((fan_in, fan_out)), product, rows,
                      *(2e-9 * rows * fan_in * fan_out / seconds[k] for k in KERNELS), choice[product])
    return plan


def use(model: nn.Module, plan: Plan) -> None:
    """Install `plan` on `model`'s linear layers; shapes the plan lacks (or kernels this machine
    lacks) keep the default. A layer only becomes this module's `Linear` where some product of
    it runs on oneDNN: with the default plan the model stays plain `nn.Linear`."""
    onednn = onednn_available(next(model.parameters()).device)
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            kernels = dict(plan.get(shape_key((layer.in_features, layer.out_features)), {}))
            choice = Choice(**{p: kernels.get(p, DEFAULT) if onednn else DEFAULT for p in PRODUCTS})
            if type(layer) is nn.Linear and not choice.is_default:
                # The class swap torch.nn.utils.parametrize makes too: the module, its parameters
                # (which an optimizer may already hold) and its state-dict keys stay; `forward` changes.
                layer.__class__ = Linear
            if isinstance(layer, Linear):
                layer.choice = choice


def plan_of(model: nn.Module) -> Plan:
    """The plan installed on `model` (what a checkpoint records); plain `nn.Linear` runs the default."""
    return {shape_key((m.in_features, m.out_features)): {p: getattr(getattr(m, "choice", Choice()), p)
                                                         for p in PRODUCTS}
            for m in model.modules() if isinstance(m, nn.Linear)}


@contextmanager
def used(model: nn.Module, plan: Plan) -> Iterator[None]:
    """`use(model, plan)` inside the block, the model's previous plan after it."""
    before = plan_of(model)
    use(model, plan)
    try:
        yield
    finally:
        use(model, before)


def summary(plan: Plan) -> str:
    """One line: which products run on oneDNN, or that all run on torch's default."""
    fast = [f"{shape} {product}" for shape, choice in plan.items() for product, k in choice.items() if k == ONEDNN]
    return "oneDNN for " + ", ".join(fast) if fast else "torch's default for every product"
