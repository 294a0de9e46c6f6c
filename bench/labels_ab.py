"""The labels model's training step (M2, `train --labels N`) against the unsupervised VAE's,
interleaved in one process: `python bench/labels_ab.py [--labels 100] [--bf16]`
(real MNIST from $PYRO_VAE_DATA or the default data folder).

Every arm is the product's own `run_epoch` with the loss `train` gives it, on a model built as the
trainer builds it (`trainer.build`, kernels timed once on the first arm and shared). Blocks of
`--steps` steps go round the arms for `--rounds` rounds, the order reversed every other round, so
every arm sees the same machine. The labels step enumerates the class: its unlabelled batch runs
q(z | x, y) and the decoder once per class (10 for MNIST), and it adds a labelled batch of
min(128, N) images. Its ratio per round against the unsupervised arm is the figure
docs/results.md quotes.
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
from pyro_vae.objectives import loss_fn, semi_supervised_loss  # noqa: E402
from pyro_vae.trainer import build  # noqa: E402

EPOCH_STEPS = 469  # 60000 images in batches of 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="steps a block")
    parser.add_argument("--rounds", type=int, default=8, help="blocks of each arm")
    parser.add_argument("--labels", type=int, default=100, help="labelled images of the labels arm")
    parser.add_argument("--bf16", action="store_true", help="add both models' bf16 arms")
    args = parser.parse_args()
    images, labels = data.load_split(default_data_dir(), "train")
    names = [str(k) for k in range(10)]
    precisions = ("fp32", "bf16") if args.bf16 else ("fp32",)
    plan = None
    runners = {}
    for precision in precisions:
        config = TrainConfig(precision=precision)
        for family, classes in (("unsupervised", 0), (f"labels {args.labels}", len(names))):
            vae, optimizer, generator = build(ModelConfig(classes=classes), config, device=torch.device("cpu"),
                                              plan=plan)
            plan = plan or kernels.plan_of(vae)
            generator = copy.deepcopy(generator)
            if classes:
                labelled = data.labelled_set(images, labels, count=args.labels, names=names, seed=config.seed,
                                             batch_size=config.batch_size, generator=generator)
                loss = semi_supervised_loss(labelled, alpha=config.alpha)
            else:
                loss = loss_fn()
            runners[f"{family} {precision}"] = after(vae, optimizer, images, batch_size=config.batch_size,
                                                     generator=generator, loss=loss, precision=precision)
    ms = interleave(runners, rounds=args.rounds, steps=args.steps, warm_up=2)

    report = {"labels": args.labels, "threads": torch.get_num_threads(), "steps_per_block": args.steps,
              "rounds": args.rounds,
              "arms": against(ms, lambda name: "unsupervised " + name.rsplit(" ", 1)[1],
                              label="over_unsupervised_median_of_rounds", epoch_steps=EPOCH_STEPS)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
