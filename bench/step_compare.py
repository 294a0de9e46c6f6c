"""The training step before and after it stopped synchronising with the device, timed in one process:
`python bench/step_compare.py` (real MNIST from $PYRO_VAE_DATA or the default data folder).

"before" is the loop body the trainer had until then, kept here as the reference: Pyro's
Trace_ELBO (or the IWAE bound from `Trace.compute_log_prob`), then `if not torch.isfinite(loss)`
before the step. "after" is the product's own `train.run_epoch`, driven in the same blocks through
its `stop` hook. Both train the same seeded model with the same kernels; blocks of `--steps`
steps alternate between them for `--rounds` rounds, so both see the same machine, noise included.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings
from collections.abc import Callable, Iterator

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import Trace_ELBO

from pyro_vae import data
from pyro_vae.config import ModelConfig, TrainConfig, default_data_dir
from pyro_vae.model import VAE
from pyro_vae.objectives import PARTICLES_PLATE, Loss, iwae_bound, loss_fn
from pyro_vae.runtime import flush_denormals
from pyro_vae.trainer import Position, build, run_epoch


def _old_log_weights(vae: VAE, x: torch.Tensor, *, particles: int) -> torch.Tensor:
    """The log weights as they were computed before (Trace.compute_log_prob, a sum per site)."""
    with pyro.plate(PARTICLES_PLATE, particles, dim=-2):
        guide_trace = poutine.trace(vae.guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    weights = x.new_zeros(particles, x.shape[0], dtype=torch.float32)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] == "sample":
                weights = weights + sign * site["log_prob"]
    return weights


def before(vae: VAE, optimizer: torch.optim.Optimizer, images: torch.Tensor, *, objective: str, particles: int,
           batch_size: int, generator: torch.Generator) -> Callable[[int], None]:
    """`run(steps)`: that many steps of the loop body as it was, epoch after epoch."""
    if objective == "elbo":
        elbo = Trace_ELBO()
        loss = lambda vae, x: elbo.differentiable_loss(vae.model, vae.guide, x)  # noqa: E731
    else:
        loss = lambda vae, x: -iwae_bound(_old_log_weights(vae, x, particles=particles)).sum()  # noqa: E731
    total = torch.zeros(())

    def batches() -> Iterator[torch.Tensor]:
        while True:
            yield from data.batches(images, data.shuffle(len(images), generator=generator), batch_size=batch_size,
                                    generator=generator)

    stream = batches()

    def run(steps: int) -> None:
        nonlocal total
        with pyro.validation_enabled(False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
            for _ in range(steps):
                x = next(stream)
                value = loss(vae, x)
                if not torch.isfinite(value):
                    raise RuntimeError("non-finite loss")
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                total += value.detach()

    return run


def after(vae: VAE, optimizer: torch.optim.Optimizer, images: torch.Tensor, *, objective: str = "elbo",
          particles: int = 1, batch_size: int, generator: torch.Generator, loss: Loss | None = None,
          precision: str = "fp32") -> Callable[[int], None]:
    """`run(steps)`: that many steps of the product's `run_epoch`, stopped and resumed at block ends
    (with `loss`, e.g. a labels model's, in place of the `objective`'s)."""
    loss = loss or loss_fn(objective, particles=particles)
    n_batches = -(-len(images) // batch_size)
    position: Position | None = None

    def run(steps: int) -> None:
        nonlocal position
        left = steps
        while left:
            first = position.batch if position else 0
            budget = min(left, n_batches - first)
            done = [0]

            def stop() -> bool:
                done[0] += 1
                return done[0] >= budget

            position = run_epoch(vae, optimizer, images, batch_size=batch_size, generator=generator, loss=loss,
                                 precision=precision, resume=position, stop=stop)
            left -= position.batch - first
            if position.batch == n_batches:
                position = None

    return run


def interleave(runners: dict[str, Callable[[int], None]], *, rounds: int, steps: int,
               warm_up: int = 5) -> dict[str, dict[str, list[float]]]:
    """Blocks of `steps` steps of each runner in turn, `rounds` times, the order reversed every
    other round: each runner's ms per step of every block, by "wall" and "cpu" clock.

    Wall time, and the process's CPU time: on a shared machine other processes steal the cores,
    which lengthens the wall time of whichever block they hit but not its CPU time (with one
    thread, CPU time is the work the step did).
    """
    ms: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in runners}
    with flush_denormals(torch.device("cpu")):
        for run in runners.values():
            run(warm_up)
        for round_ in range(rounds):
            order = list(runners.items()) if round_ % 2 == 0 else list(reversed(runners.items()))
            for name, run in order:
                wall, cpu = time.perf_counter(), time.process_time()
                run(steps)
                ms[name]["wall"].append(1e3 * (time.perf_counter() - wall) / steps)
                ms[name]["cpu"].append(1e3 * (time.process_time() - cpu) / steps)
            print(f"round {round_ + 1}: " + ", ".join(f"{n} {ms[n]['wall'][-1]:.2f} ms/step ({ms[n]['cpu'][-1]:.2f} CPU)"
                                                      for n in runners), flush=True)
    return ms


def against(ms: dict[str, dict[str, list[float]]], base_of: Callable[[str], str], *, label: str,
            epoch_steps: int = 469) -> dict[str, dict]:
    """Each arm of `interleave`'s timings against its baseline arm `base_of(name)`, by clock: the
    median ms a step, the epoch it makes, and the median of the per-round ratios (key `label`)."""
    arms = {}
    for name in ms:
        arms[name] = {}
        for clock in ("wall", "cpu"):
            ratios = [a / b for a, b in zip(ms[name][clock], ms[base_of(name)][clock])]
            median = statistics.median(ms[name][clock])
            arms[name][clock] = {"ms_per_step": round(median, 2), "epoch_s": round(median * epoch_steps / 1e3, 1),
                                 label: round(statistics.median(ratios), 3)}
    return arms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps a block")
    parser.add_argument("--rounds", type=int, default=30, help="blocks of each, alternating")
    parser.add_argument("--objective", default="elbo", choices=("elbo", "iwae"))
    parser.add_argument("--particles", type=int, default=1)
    args = parser.parse_args()
    images, _ = data.load_split(default_data_dir(), "train")
    config = TrainConfig(objective=args.objective, particles=args.particles)
    vae, optimizer, generator = build(ModelConfig(), config, device=torch.device("cpu"))  # kernels calibrated once
    runners = {}
    for name, make in (("before", before), ("after", after)):
        own = copy.deepcopy(vae)
        own_optimizer = torch.optim.Adam(own.parameters(), lr=config.lr, fused=True)
        runners[name] = make(own, own_optimizer, images, objective=args.objective, particles=args.particles,
                             batch_size=config.batch_size, generator=copy.deepcopy(generator))
    ms = interleave(runners, rounds=args.rounds, steps=args.steps)

    def summary(values: list[float]) -> dict[str, float]:
        return {"min": round(min(values), 3), "lower_quartile": round(statistics.quantiles(values)[0], 3),
                "median": round(statistics.median(values), 3)}

    report = {"objective": args.objective, "particles": args.particles, "threads": torch.get_num_threads(),
              "steps_per_block": args.steps, "rounds": args.rounds}
    for clock in ("wall", "cpu"):
        # A busy machine only ever adds time: the fastest blocks show what the code costs, the
        # median what a run would see, the per-round ratio how the two compare at one moment.
        ratios = [a / b for a, b in zip(ms["after"][clock], ms["before"][clock])]
        report[clock] = {**{f"{n}_ms_per_step": summary(ms[n][clock]) for n in runners},
                         "after_over_before_per_round": {**summary(ratios), "max": round(max(ratios), 3)}}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
