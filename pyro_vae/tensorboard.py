"""Opt-in TensorBoard events of a training run (`train --tensorboard`), in `results/<run>/tensorboard/`:
every figure of each epoch's record as a scalar, and now and then a grid of prior samples.

TensorBoard itself comes in the `tensorboard` extra; nothing here imports it unless a run asks for it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from pyro_vae import generate, images
from pyro_vae.config import TrainConfig
from pyro_vae.errors import MissingExtra, setting
from pyro_vae.metrics import EpochRecord
from pyro_vae.model import VAE
from pyro_vae.runtime import isolated_rng

log = logging.getLogger(__name__)

FOLDER = "tensorboard"  # under the results folder: `tensorboard --logdir results` shows every run
SAMPLES = 64  # the prior-samples grid, 8 x 8
# The same draws of z every time, so the image's slider shows one set of latents being learnt;
# the grid is `pyro_vae.load(checkpoint).sample(SAMPLES, seed=SAMPLES_SEED)` of that epoch.
SAMPLES_SEED = 0
IMAGE_TAG = "samples/prior"
_SPLITS = ("test", "valid")  # EpochRecord's held-out figures are named <split>_<figure>


def require() -> None:
    """Raise MissingExtra unless TensorBoard's writer can be imported (before a run does any work)."""
    try:
        import torch.utils.tensorboard  # noqa: F401  (it raises ImportError without the tensorboard package)
    except ImportError:
        raise MissingExtra(extra="tensorboard", package="tensorboard", feature=setting.tensorboard) from None


def tag(name: str) -> str:
    """The tag of an EpochRecord field: `test_elbo` -> `test/elbo`, `valid_...` -> `valid/...`, any
    other -> `train/<name>` (`train/lower_bound`, `train/lr`, `train/seconds`, ...)."""
    for split in _SPLITS:
        if name.startswith(split + "_"):
            return f"{split}/{name[len(split) + 1:]}"
    return f"train/{name}"


def scalars(record: EpochRecord) -> dict[str, float]:
    """Every number `record` holds, by its tag; the epoch is the step, and a figure not computed
    that epoch (None) is left out. By field name, so a field added to EpochRecord appears by itself."""
    return {tag(name): float(value) for name, value in asdict(record).items()
            if name != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)}


class Board:
    """The writer of one call to `train`, or one that writes nothing (`writer` None: not asked for)."""

    def __init__(self, writer: Any = None, *, config: TrainConfig = TrainConfig(),
                 device: torch.device = torch.device("cpu")) -> None:
        self.writer, self.config, self.device = writer, config, device

    def images_due(self, epoch: int) -> bool:
        """A grid at epoch 1, at every `tensorboard_images_every`-th, and at the run's last."""
        every = self.config.tensorboard_images_every
        return bool(every) and (epoch == 1 or epoch % every == 0 or epoch == self.config.epochs)

    def write(self, record: EpochRecord, *, vae: VAE) -> None:
        """The epoch's scalars (and its grid, when due), flushed to disk: a run killed after its
        checkpoint has lost none of them."""
        if self.writer is None:
            return
        for name, value in scalars(record).items():
            self.writer.add_scalar(name, value, record.epoch)
        if self.images_due(record.epoch):
            # Drawn from its own seeded stream: training is the same with or without --tensorboard.
            with isolated_rng(SAMPLES_SEED, device=self.device):
                x_probs = generate.prior_samples(vae, n=SAMPLES)
            self.writer.add_image(IMAGE_TAG, images.grid(x_probs), record.epoch, dataformats="HW")
        self.writer.flush()


@contextlib.contextmanager
def opened(results_dir: Path, *, config: TrainConfig, first_epoch: int, device: torch.device, fresh: bool = False,
           archived_to: Path | None = None) -> Iterator[Board]:
    """The run's Board while the block runs: a writer into `results_dir/tensorboard/` when
    `config.tensorboard`, else one that writes nothing.

    A resumed run continues the same curves: its writer opens with TensorBoard's purge at
    `first_epoch`, the first epoch it trains, so readers drop whatever an earlier call wrote from
    that epoch on (an epoch logged by a run killed before its checkpoint is logged once).

    Args:
        fresh: a run started over: the earlier run's events move to a subfolder (TensorBoard shows
            it as a run of its own) named as `archived_to`, the checkpoints' archive, or archive-<time>.
    """
    folder = Path(results_dir) / FOLDER
    if fresh:  # with or without --tensorboard now: a later call's curves must not resume the old run's
        _archive(folder, archived_to.name if archived_to else time.strftime("archive-%Y%m%d-%H%M%S"))
    if not config.tensorboard:
        yield Board()
        return
    from torch.utils.tensorboard import SummaryWriter

    _after_the_newest(folder)
    writer = SummaryWriter(str(folder), purge_step=first_epoch)
    try:
        yield Board(writer, config=config, device=device)
    finally:
        writer.close()


def _event_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*tfevents*") if p.is_file()) if folder.is_dir() else []


def _archive(folder: Path, name: str) -> None:
    found = _event_files(folder)
    if found:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for path in found:
            path.rename(folder / name / path.name)
        log.info("Moved earlier TensorBoard events to %s", folder / name)


def _after_the_newest(folder: Path) -> None:
    """Wait (a second at most) until the clock's second is past that of every event file in `folder`.

    TensorBoard reads a run's files in name order, events.out.tfevents.<second>.<host>.<pid>.<n>, and a
    purge drops only the steps read before it: the new file must sort after the old ones, which a
    file opened within the same second (a run stopped at once and resumed) might not.
    """
    seconds = [int(p.name.split(".")[3]) for p in _event_files(folder)
               if len(p.name.split(".")) > 3 and p.name.split(".")[3].isdigit()]
    if not seconds:
        return
    wait = max(seconds) + 1 - time.time()
    if wait > 2:  # a file from the future: the clock was set back
        log.warning("%s holds TensorBoard events written %.0f s in the future (was the clock set back?); "
                    "TensorBoard may show this run's steps out of order", folder, wait)
    elif wait > 0:
        time.sleep(wait)
