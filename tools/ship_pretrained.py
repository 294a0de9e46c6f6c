"""The maintainer's packaging step: a trained checkpoint -> a shipped model in pyro_vae/weights/.

    OMP_NUM_THREADS=1 nice python tools/ship_pretrained.py NAME CHECKPOINT --log TRAINING_LOG \
        --data-dir DATA --command "THE COMMAND THAT TRAINED IT" [--note "..."]

It scores the weights in fp32 and fp16, side by side, on the test set (K=1000, seed 0: ten minutes of
a CPU each, hours on a machine shared with trainings; --images N scores the first N only), keeps
fp16 when it loses under 0.05 nats of log p(x), and writes NAME.pt, NAME.test.pt and NAME.json
(docs/pretrained.md). Run it from the clone; the files are package data.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's pyro_vae, not an installed one

from pyro_vae import pretrained  # noqa: E402
from pyro_vae.config import JudgeConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the shipped model's name, e.g. mnist")
    parser.add_argument("checkpoint", type=Path, help="a checkpoint file (copy it out of a running run first)")
    parser.add_argument("--log", type=Path, required=True, help="the training's log ('Epoch N (T s)' lines)")
    parser.add_argument("--data-dir", type=Path, required=True, help="the data set's folder (its test split is scored)")
    parser.add_argument("--command", required=True, help="the exact command that trained it")
    parser.add_argument("--note", default="", help="what a reader should know, e.g. the epoch reached of a longer run")
    parser.add_argument("--machine", default="", help="where it trained [default: this machine]")
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--images", type=int, default=None,
                        help="score the first N test images only [default: all]; for a machine too busy for all")
    parser.add_argument("--one-process", action="store_true",
                        help="score fp32 and fp16 one after the other in this process (one CPU) [default: side by side]")
    parser.add_argument("--no-judge", action="store_true", help="leave the judge's figures out of the manifest")
    parser.add_argument("--folder", type=Path, default=None, help="write here instead of pyro_vae/weights/")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.monotonic()
    record = pretrained.ship(args.name, args.checkpoint, command=args.command, log_file=args.log,
                             data_dir=args.data_dir, note=args.note, particles=args.particles,
                             trained_on=args.machine, folder=args.folder, images=args.images,
                             judged=None if args.no_judge else JudgeConfig(), side_by_side=not args.one_process,
                             on_step=lambda text: print(f"[{time.monotonic() - started:6.0f} s] {text}", flush=True))
    print(json.dumps({k: record[k] for k in ("name", "epoch", "dtype", "bytes", "test", "fp16")}, indent=1))
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
