"""The training loop: epochs of SVI on the ELBO, one log line an epoch, checkpoint cadence and resume."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro.infer import Trace_ELBO

from pyro_vae import __version__, checkpoint, data
from pyro_vae.config import ModelConfig, Paths, TrainConfig
from pyro_vae.errors import CheckpointError, TrainingDiverged
from pyro_vae.metrics import HISTORY, EpochRecord, write_history
from pyro_vae.model import VAE
from pyro_vae.runtime import autocast, get_rng_state, seed_all, set_rng_state

log = logging.getLogger(__name__)

# Settings a resumed run must share with its checkpoint for the continuation to be exact.
_FIXED_ON_RESUME = ("batch_size", "lr", "seed")


@dataclass
class TrainResult:
    """What a call to `train` did."""

    model_config: ModelConfig
    train_config: TrainConfig
    restored_from: Path | None = None
    archived_to: Path | None = None
    metrics: list[EpochRecord] = field(default_factory=list)
    saved: list[Path] = field(default_factory=list)


def _resolve_resume(state: dict[str, Any], *, path: Path, model_config: ModelConfig,
                    train_config: TrainConfig, explicit: frozenset[str]) -> tuple[ModelConfig, TrainConfig]:
    """The configs a resumed run uses: the checkpoint's architecture and optimisation settings,
    the caller's epochs and checkpoint cadence. An explicit option that disagrees is an error."""
    given = {name: getattr(model_config, name) for name in ("z_dim", "hidden_dim") if name in explicit}
    resumed_model = checkpoint.model_config_of(state, path=path, **given)
    recorded = state["train_config"]
    for name in _FIXED_ON_RESUME:
        if name in explicit and getattr(train_config, name) != recorded[name]:
            flag = "--" + name.replace("_", "-")
            raise CheckpointError(
                f"{path} was trained with {flag} {recorded[name]}, not {getattr(train_config, name)}; "
                "drop the option to resume, or pass --fresh to start over"
            )
    resumed_train = replace(train_config, **{name: recorded[name] for name in _FIXED_ON_RESUME})
    return resumed_model, resumed_train


def _state(*, epoch: int, vae: VAE, optimizer: torch.optim.Optimizer, train_config: TrainConfig,
           generator: torch.Generator, metrics: list[EpochRecord]) -> dict[str, Any]:
    return {
        "format": checkpoint.FORMAT_VERSION,
        "version": __version__,
        "epoch": epoch,
        "device": generator.device.type,
        "model_config": asdict(vae.config),
        "train_config": asdict(train_config),
        "model": vae.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {"global": get_rng_state(), "data": generator.get_state()},
        "metrics": [asdict(record) for record in metrics],
    }


class _NonFiniteLoss(Exception):
    def __init__(self, batch: int, value: float) -> None:
        super().__init__(batch, value)
        self.batch, self.value = batch, value


def build(model_config: ModelConfig, train_config: TrainConfig, *,
          device: torch.device) -> tuple[VAE, torch.optim.Optimizer, torch.Generator]:
    """A new run's seeded model, optimizer and data generator (shuffling and binarization)."""
    seed_all(train_config.seed)
    vae = VAE(model_config).to(device)
    # One fused Adam over all parameters: the same update as pyro.optim.Adam (which wraps
    # torch's Adam per parameter), in one kernel instead of one per parameter per step.
    optimizer = torch.optim.Adam(vae.parameters(), lr=train_config.lr, fused=True)
    generator = torch.Generator(device=device).manual_seed(train_config.seed)
    return vae, optimizer, generator


def run_epoch(vae: VAE, optimizer: torch.optim.Optimizer, images: torch.Tensor, *, batch_size: int,
              generator: torch.Generator, precision: str = "fp32",
              on_batch: Callable[[], None] | None = None) -> float:
    """One pass of SVI over all `images` in a fresh order, each batch binarized afresh.

    Args:
        images: (n, 784) uint8 on the training device.
        precision: fp32, or bf16 for autocast (see `runtime.autocast`).
        on_batch: called after every step (the progress bar).
    Returns:
        the summed loss, -ELBO over all n images, in nats.
    """
    elbo = Trace_ELBO()
    step_context = autocast(images.device, precision)
    vae.train()
    # Summed on the device: no host sync inside the epoch.
    total_loss = torch.zeros((), device=images.device)
    # Pyro's validation re-checks every distribution's arguments at every step; the model is
    # fixed and the data binarized by construction, so in the hot loop it only costs time.
    with pyro.validation_enabled(False):
        for batch, x in enumerate(data.epoch_batches(images, batch_size=batch_size, generator=generator), 1):
            # Trace_ELBO's loss is -ELBO summed over the batch, one z sample per image.
            with step_context:
                loss = elbo.differentiable_loss(vae.model, vae.guide, x)
            # Checked before the step, so the parameters never take a non-finite update.
            # (One host sync a step: free on the CPU, a small cost on a GPU.)
            if not torch.isfinite(loss):
                raise _NonFiniteLoss(batch, loss.item())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach()
            if on_batch is not None:
                on_batch()
    return total_loss.item()


@contextlib.contextmanager
def _progress_bar(enabled: bool, *, first_epoch: int, epochs: int) -> Iterator[Any]:
    """A rich progress bar (whole run, and batches within the epoch), or None when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        transient=True,
    ) as bar:
        # The run bar starts where a resumed run left off.
        bar.add_task("epochs ", total=epochs, completed=first_epoch - 1)
        yield bar


def train(train_config: TrainConfig = TrainConfig(), *, model_config: ModelConfig = ModelConfig(),
          paths: Paths = Paths(), device: torch.device = torch.device("cpu"), fresh: bool = False,
          progress: bool = False, explicit: frozenset[str] = frozenset()) -> TrainResult:
    """Train the VAE on MNIST's training images, resuming from the newest checkpoint unless `fresh`.

    Args:
        train_config, model_config: settings for a new run; a resumed run keeps the checkpoint's
            architecture, batch size, learning rate and seed.
        paths: data, checkpoint and results folders; every epoch rewrites `results/metrics/history.csv`.
        device: where the model and the data live.
        fresh: archive existing checkpoints (to `archive-<time>/`) and start from epoch 1.
        progress: draw a progress bar (for terminals).
        explicit: names of the options the user gave, checked against a resumed checkpoint.
    """
    autocast(device, train_config.precision)  # an unsupported precision fails before any work
    images, _ = data.ensure_split(paths.data_dir, "train")
    images = images.to(device)
    result = TrainResult(model_config=model_config, train_config=train_config)

    found = None if fresh else checkpoint.newest_valid(paths.checkpoint_dir, map_location=device)
    if fresh:
        result.archived_to = checkpoint.archive(paths.checkpoint_dir)
        if result.archived_to is not None:
            log.info("Moved earlier checkpoints to %s", result.archived_to)
    restore, state = found if found is not None else (None, None)
    if restore is not None:
        trained_on = state.get("device", "cpu")
        if trained_on != device.type:
            # The data order's generator state belongs to the device it ran on.
            raise CheckpointError(f"{restore} was trained on {trained_on}; resume it with --device {trained_on}, "
                                  "or pass --fresh to start over here")
        model_config, resumed = _resolve_resume(
            state, path=restore, model_config=model_config, train_config=train_config, explicit=explicit
        )
        train_config = resumed
        result.model_config, result.train_config, result.restored_from = model_config, train_config, restore
        log.info("Restoring model from %s...", restore)

    vae, optimizer, generator = build(model_config, train_config, device=device)
    metrics: list[EpochRecord] = []
    first_epoch = 1
    if state is not None:
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"]["global"])
        generator.set_state(state["rng"]["data"])
        metrics = [EpochRecord(**record) for record in state["metrics"]]
        first_epoch = state["epoch"] + 1
    if first_epoch > train_config.epochs:
        log.info("Already trained to epoch %d; pass --epochs above that to continue", first_epoch - 1)
        return result

    n_images = len(images)
    n_batches = -(-n_images // train_config.batch_size)
    with _progress_bar(progress, first_epoch=first_epoch, epochs=train_config.epochs) as bar:
        batch_task = bar.add_task("batches", total=n_batches) if bar is not None else None
        for epoch in range(first_epoch, train_config.epochs + 1):
            if bar is not None:
                bar.reset(batch_task, total=n_batches)
            start = time.perf_counter()
            try:
                total_loss = run_epoch(
                    vae, optimizer, images, batch_size=train_config.batch_size, generator=generator,
                    precision=train_config.precision,
                    on_batch=(lambda: bar.advance(batch_task)) if bar is not None else None,
                )
            except _NonFiniteLoss as exc:
                kept = checkpoint.latest(paths.checkpoint_dir)
                raise TrainingDiverged(
                    f"the loss became {exc.value} at epoch {epoch}, batch {exc.batch}; training stopped and "
                    f"{f'the last checkpoint, {kept}, is untouched' if kept else 'no checkpoint was written'}; "
                    f"try a lower --lr than {train_config.lr} with --fresh"
                ) from None
            record = EpochRecord(
                epoch=epoch, seconds=time.perf_counter() - start, lower_bound=-total_loss / n_images
            )
            metrics.append(record)
            result.metrics.append(record)
            log.info("Epoch %d (%.1fs): Lower bound = %.2f", epoch, record.seconds, record.lower_bound)
            write_history(metrics, paths.results_dir / HISTORY)
            if bar is not None:
                bar.advance(0)
            if epoch % train_config.save_every == 0 or epoch == train_config.epochs:
                path = checkpoint.save(
                    _state(epoch=epoch, vae=vae, optimizer=optimizer, train_config=train_config,
                           generator=generator, metrics=metrics),
                    checkpoint.path_for(paths.checkpoint_dir, epoch),
                )
                result.saved.append(path)
                for old in checkpoint.prune(paths.checkpoint_dir, keep=train_config.keep):
                    log.debug("removed old checkpoint %s", old)
                log.info("Saved %s", path)
    return result
