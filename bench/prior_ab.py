"""The training step with the standard prior against the VampPrior at several K, interleaved in one
process: `python bench/prior_ab.py [--objective iwae --particles 5] [--pseudo-inputs 500,100,50]`
(real MNIST from $PYRO_VAE_DATA or the default data folder).

Every arm is the product's own `run_epoch` (step_compare.after) on a model seeded alike, with the
same matrix kernels; blocks of `--steps` steps go round the arms for `--rounds` rounds, the order
reversed every other round, so every arm sees the same machine, noise included. The VampPrior's
extra cost is its K pseudo-inputs' pass through the encoder at every step, and the mixture's
log density: its ratio per round against the standard arm is the figure docs/results.md quotes.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_compare import after, against, interleave  # noqa: E402  (a script beside this one)

from pyro_vae import data, kernels  # noqa: E402
from pyro_vae.config import ModelConfig, TrainConfig, default_data_dir  # noqa: E402
from pyro_vae.trainer import build  # noqa: E402

EPOCH_STEPS = 469  # 60000 images in batches of 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps a block")
    parser.add_argument("--rounds", type=int, default=12, help="blocks of each arm")
    parser.add_argument("--objective", default="elbo", choices=("elbo", "iwae"))
    parser.add_argument("--particles", type=int, default=1)
    parser.add_argument("--pseudo-inputs", default="500,100,50", help="the VampPrior arms' K, comma-separated")
    args = parser.parse_args()
    images, _ = data.load_split(default_data_dir(), "train")
    config = TrainConfig(objective=args.objective, particles=args.particles)
    arms = {"standard": ModelConfig()}
    arms.update({f"vamp {k}": ModelConfig(prior="vamp", pseudo_inputs=int(k)) for k in args.pseudo_inputs.split(",")})
    plan = None
    runners = {}
    for name, model_config in arms.items():
        vae, optimizer, generator = build(model_config, config, device=torch.device("cpu"), plan=plan)
        plan = plan or kernels.plan_of(vae)  # timed once, on the first arm: every arm uses the same kernels
        runners[name] = after(vae, optimizer, images, objective=args.objective, particles=args.particles,
                              batch_size=config.batch_size, generator=copy.deepcopy(generator))
    ms = interleave(runners, rounds=args.rounds, steps=args.steps, warm_up=3)

    report = {"objective": args.objective, "particles": args.particles, "threads": torch.get_num_threads(),
              "steps_per_block": args.steps, "rounds": args.rounds,
              "arms": against(ms, lambda name: "standard", label="over_standard_median_of_rounds",
                              epoch_steps=EPOCH_STEPS)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
