"""Routes to a faster quiet fp32 epoch, against the product's: `python bench/quiet_routes.py`.

In one process, blocks of `--steps` steps alternate (as in step_compare.py) between:
  product        `trainer.run_epoch` with its fused Adam;
  foreach Adam   the same loop with torch's multi-tensor (foreach) Adam instead of the fused kernel;
  Adam in backward  each parameter's fused Adam stepped from its gradient hook, inside the backward
                 pass, while its weights and moments are still in cache (the step's memory traffic);
and, as whole processes (`cli.py train --epochs 1`, the epoch's own time), OpenMP's wait policy:
  spin (OMP_WAIT_POLICY=ACTIVE), sleep (PASSIVE), and a longer spin than the default (GOMP_SPINCOUNT=3000000),
against torch's default. Ratios are route / product, per round, median.
Needs MNIST for the process routes (data/mnist, or $PYRO_VAE_DATA).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import pyro
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import run  # noqa: E402
from step_compare import after, interleave  # noqa: E402

from pyro_vae import data  # noqa: E402
from pyro_vae.config import ModelConfig, TrainConfig  # noqa: E402
from pyro_vae.objectives import loss_fn  # noqa: E402
from pyro_vae.trainer import build  # noqa: E402


def adam_in_backward(images: torch.Tensor, config: TrainConfig) -> Callable[[int], None]:
    vae, _, generator = build(ModelConfig(), config, device=torch.device("cpu"))
    optimizers = {p: torch.optim.Adam([p], lr=config.lr, fused=True) for p in vae.parameters()}

    def step_now(p: torch.Tensor) -> None:
        optimizers[p].step()
        optimizers[p].zero_grad(set_to_none=True)

    for p in vae.parameters():
        p.register_post_accumulate_grad_hook(step_now)
    loss = loss_fn(config.objective, particles=config.particles)

    def stream():
        while True:
            order = data.shuffle(len(images), generator=generator)
            yield from data.batches(images, order, batch_size=config.batch_size, generator=generator)

    batches = stream()

    def go(steps: int) -> None:
        with pyro.validation_enabled(False):
            for _ in range(steps):
                value, _ = loss(vae, next(batches))
                value.backward()

    return go


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--process-rounds", type=int, default=3)
    args = parser.parse_args()
    config = TrainConfig()
    images = torch.randint(0, 256, (60000, 784), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

    def product(fused: bool) -> Callable[[int], None]:
        vae, optimizer, generator = build(ModelConfig(), config, device=torch.device("cpu"))
        if not fused:
            optimizer = torch.optim.Adam(vae.parameters(), lr=config.lr, foreach=True, fused=False)
        return after(vae, optimizer, images, objective="elbo", particles=1, batch_size=config.batch_size,
                     generator=generator)

    runners = {"product": product(True), "foreach Adam": product(False),
               "Adam in backward": adam_in_backward(images, config)}
    ms = interleave(runners, rounds=args.rounds, steps=args.steps)
    print(f"\nin-process, {torch.get_num_threads()} threads, ms a step (wall), median; route / product per round")
    for name in runners:
        ratio = statistics.median(a / b for a, b in zip(ms[name]["wall"], ms["product"]["wall"]))
        print(f"  {name:<18} {statistics.median(ms[name]['wall']):7.2f} ms   {ratio:.3f}")

    envs = {"default": {}, "OMP_WAIT_POLICY=ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"},
            "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}, "GOMP_SPINCOUNT=3000000": {"GOMP_SPINCOUNT": "3000000"}}
    epochs: dict[str, list[float]] = {name: [] for name in envs}
    for round_ in range(args.process_rounds):
        for name in (list(envs) if round_ % 2 == 0 else list(reversed(envs))):
            epochs[name] += run(ROOT, epochs=1, threads=None, env=envs[name])
        print(f"round {round_ + 1}: " + "; ".join(f"{n} {epochs[n][-1]:.1f} s" for n in envs), flush=True)
    print("\nwhole processes, the epoch (s), median; route / default per round")
    for name in envs:
        ratio = statistics.median(a / b for a, b in zip(epochs[name], epochs["default"]))
        print(f"  {name:<24} {statistics.median(epochs[name]):6.1f} s   {ratio:.3f}")


if __name__ == "__main__":
    main()
