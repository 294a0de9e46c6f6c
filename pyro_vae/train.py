"""The training loop: epochs of SVI on the ELBO (or the IWAE bound), one log line an epoch, evaluations
on held-out images, checkpoint cadence and resume."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_vae import __version__, checkpoint, data, kernels
from pyro_vae.config import ModelConfig, Paths, TrainConfig
from pyro_vae.errors import CheckpointError, Interrupted, TrainingDiverged
from pyro_vae.evaluate import Stopped, evaluate
from pyro_vae.fsutil import remove_temporaries
from pyro_vae.metrics import HISTORY, EpochRecord, write_history
from pyro_vae.model import VAE
from pyro_vae.objectives import Loss, loss_fn
from pyro_vae.runtime import autocast, get_rng_state, seed_all, set_rng_state

log = logging.getLogger(__name__)

# Settings a resumed run must share with its checkpoint for the continuation to be exact.
# (Checkpoints from before a setting existed were trained with its default.)
# eval_particles too: log p(x) estimates with different K are not comparable, and best.pt
# compares them.
_FIXED_ON_RESUME = ("batch_size", "lr", "seed", "objective", "particles", "lr_decay", "valid_size",
                    "eval_particles")
# Settings a resumed run keeps from its checkpoint unless given again.
_CARRIED_ON_RESUME = ("eval_every",)
_EVAL_SEED = 0  # evaluations during training draw from their own seeded stream


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
    the caller's epochs and checkpoint cadence, the checkpoint's evaluation cadence unless given.
    An explicit option that disagrees with a fixed setting is an error."""
    given = {name: getattr(model_config, name) for name in ("z_dim", "hidden_dim") if name in explicit}
    resumed_model = checkpoint.model_config_of(state, path=path, **given)
    recorded = {name: state["train_config"].get(name, getattr(TrainConfig, name))
                for name in _FIXED_ON_RESUME + _CARRIED_ON_RESUME}
    for name in _FIXED_ON_RESUME:
        if name in explicit and getattr(train_config, name) != recorded[name]:
            flag = "--" + name.replace("_", "-")
            raise CheckpointError(
                f"{path} was trained with {flag} {recorded[name]}, not {getattr(train_config, name)}; "
                "drop the option to resume, or pass --fresh to start over"
            )
    carried = [name for name in _CARRIED_ON_RESUME if name not in explicit]
    resumed_train = replace(train_config, **{name: recorded[name] for name in _FIXED_ON_RESUME + tuple(carried)})
    return resumed_model, resumed_train


def _state(*, epoch: int, vae: VAE, optimizer: torch.optim.Optimizer, train_config: TrainConfig,
           generator: torch.Generator, metrics: list[EpochRecord], position: Position | None = None) -> dict[str, Any]:
    """Everything a run needs to continue: `epoch` complete epochs, plus `position` inside the next."""
    return {
        "format": checkpoint.FORMAT_VERSION,
        "version": __version__,
        "epoch": epoch,
        "device": generator.device.type,
        "model_config": asdict(vae.config),
        "train_config": asdict(train_config),
        "model": vae.state_dict(),
        "kernels": kernels.plan_of(vae),
        "optimizer": optimizer.state_dict(),
        "rng": {"global": get_rng_state(), "data": generator.get_state()},
        "metrics": [asdict(record) for record in metrics],
        "position": asdict(position) if position is not None else None,
    }


class _NonFiniteLoss(Exception):
    def __init__(self, batch: int, value: float) -> None:
        super().__init__(batch, value)
        self.batch, self.value = batch, value


def build(model_config: ModelConfig, train_config: TrainConfig, *, device: torch.device,
          plan: kernels.Plan | None = None) -> tuple[VAE, torch.optim.Optimizer, torch.Generator]:
    """A new run's seeded model, optimizer and data generator (shuffling and binarization).

    Args:
        plan: the matrix kernels (a resumed run's, from its checkpoint); None times them here.
    """
    seed_all(train_config.seed)
    vae = VAE(model_config).to(device)
    if plan is None and train_config.precision == "fp32":  # bf16 autocast picks its own kernels
        plan = kernels.calibrate(vae, rows=train_config.batch_size * train_config.particles, backward=True,
                                 device=device)
    kernels.use(vae, plan or {})
    log.debug("matrix products: %s", kernels.describe(kernels.plan_of(vae)))
    # One fused Adam over all parameters: the same update as pyro.optim.Adam (which wraps
    # torch's Adam per parameter), in one kernel instead of one per parameter per step.
    optimizer = torch.optim.Adam(vae.parameters(), lr=train_config.lr, fused=True)
    generator = torch.Generator(device=device).manual_seed(train_config.seed)
    return vae, optimizer, generator


@dataclass
class Position:
    """Where a run is inside an epoch: its image order, the batches done and their summed loss."""

    order: torch.Tensor  # (n,) int64, the epoch's shuffled image indices
    batch: int  # batches done
    loss_sum: torch.Tensor  # (), the negative bound summed over the images of those batches
    seconds: float = 0.0  # time spent in this epoch before the run was interrupted


def run_epoch(vae: VAE, optimizer: torch.optim.Optimizer, images: torch.Tensor, *, batch_size: int,
              generator: torch.Generator, loss: Loss | None = None, precision: str = "fp32",
              resume: Position | None = None, stop: Callable[[], bool] | None = None,
              on_batch: Callable[[], None] | None = None) -> Position:
    """SVI over all `images` in a fresh order (or from `resume` on), each batch binarized afresh.

    Args:
        images: (n, 784) uint8 on the training device.
        loss: the negative bound summed over a batch (`objectives.loss_fn`); default the ELBO.
        precision: fp32, or bf16 for autocast (see `runtime.autocast`).
        resume: continue an interrupted epoch from here.
        stop: asked after every step; True ends the epoch early (an interrupt).
        on_batch: called after every step (the progress bar).
    Returns:
        the position reached; `batch` equals the number of batches when the epoch is complete.
    """
    loss = loss or loss_fn()
    step_context = autocast(images.device, precision)
    if resume is None:
        # Summed on the device: no host sync inside the epoch.
        resume = Position(order=data.shuffle(len(images), generator=generator), batch=0,
                          loss_sum=torch.zeros((), device=images.device))
    order, done, total_loss = resume.order, resume.batch, resume.loss_sum.clone()
    vae.train()
    # Pyro's validation re-checks every distribution's arguments at every step; the model is
    # fixed and the data binarized by construction, so in the hot loop it only costs time.
    with pyro.validation_enabled(False):
        for x in data.batches(images, order, batch_size=batch_size, generator=generator, start=done):
            with step_context:
                value = loss(vae, x)
            # Checked before the step, so the parameters never take a non-finite update.
            # (One host sync a step: free on the CPU, a small cost on a GPU.)
            if not torch.isfinite(value):
                raise _NonFiniteLoss(done + 1, value.item())
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            total_loss += value.detach()
            done += 1
            if on_batch is not None:
                on_batch()
            if stop is not None and stop():
                break
    return Position(order=order, batch=done, loss_sum=total_loss, seconds=resume.seconds)


class _StopRequest:
    """Signal handler: the first SIGINT or SIGTERM asks the loop to stop after its current step;
    a second SIGINT stops at once (checkpoints on disk stay whole: they are written atomically)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[_StopRequest]:
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():  # handlers live in the main thread
        yield request
        return
    previous = {signum: signal.signal(signum, request) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
    """Train the VAE on MNIST's training images, resuming from the furthest checkpoint unless `fresh`.

    Checkpoints: `vae.epoch.N.pt` every `save_every` epochs and at the last, `last.pt` after
    every epoch, `best.pt` whenever the validation log-likelihood improves (with `valid_size`
    and `eval_every`). Every `eval_every` epochs the test images (and the validation images)
    are scored with `evaluate` and the figures recorded. SIGINT/SIGTERM finish the current
    step (or evaluation batch), save `last.pt` with the position inside the epoch and raise
    `Interrupted`; the next call continues from that batch.

    Args:
        train_config, model_config: settings for a new run; a resumed run keeps the checkpoint's
            architecture and the settings in `_FIXED_ON_RESUME`, and its evaluation cadence
            unless given in `explicit`.
        paths: data, checkpoint and results folders; every epoch rewrites `results/metrics/history.csv`.
        device: where the model and the data live.
        fresh: archive existing checkpoints (to `archive-<time>/`) and start from epoch 1.
        progress: draw a progress bar (for terminals).
        explicit: names of the options the user gave, checked against a resumed checkpoint.
    """
    autocast(device, train_config.precision)  # an unsupported precision fails before any work
    images, _ = data.ensure_split(paths.data_dir, "train")
    # Read (and verified) now even when no evaluation needs it, so bad data fails before
    # --fresh moves anything; a resumed run may turn evaluations on.
    test, _ = data.ensure_split(paths.data_dir, "test")
    with checkpoint.lock(paths.checkpoint_dir), _stop_on_signals() as request:
        for leftover in remove_temporaries(paths.checkpoint_dir):
            log.info("removed %s, left by a run that was killed while saving", leftover.name)
        return _train_locked(train_config, model_config=model_config, paths=paths, images=images.to(device),
                             test=test.to(device), device=device, fresh=fresh, progress=progress, explicit=explicit,
                             request=request)


def _split(images: torch.Tensor, test: torch.Tensor,
           train_config: TrainConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The images to train on, and the held-out sets to evaluate every `eval_every` epochs:
    the last `valid_size` training images and the test images, each binarized once."""
    held_out = {}
    if train_config.valid_size:
        images, valid = images[: -train_config.valid_size], images[-train_config.valid_size :]
        held_out["valid"] = data.binarize_once(valid)
    if train_config.eval_every:
        held_out["test"] = data.binarize_once(test)
    return images, held_out


def _evaluate_held_out(vae: VAE, held_out: dict[str, torch.Tensor], *, particles: int,
                       stop: Callable[[], bool]) -> dict[str, float]:
    """EpochRecord fields (`test_elbo`, `valid_log_likelihood`, ...) for each held-out set."""
    figures = {}
    for name, x in held_out.items():
        result = evaluate(vae, x, particles=particles, seed=_EVAL_SEED, stop=stop)
        figures[f"{name}_elbo"], figures[f"{name}_log_likelihood"] = result.elbo, result.log_likelihood
        log.info("  %s: ELBO %.2f, log p(x) %.2f (%d images, K=%d)", name, result.elbo, result.log_likelihood,
                 result.images, particles)
    return figures


def _train_locked(train_config: TrainConfig, *, model_config: ModelConfig, paths: Paths, images: torch.Tensor,
                  test: torch.Tensor, device: torch.device, fresh: bool, progress: bool,
                  explicit: frozenset[str], request: _StopRequest) -> TrainResult:
    result = TrainResult(model_config=model_config, train_config=train_config)
    found = None if fresh else checkpoint.newest_valid(paths.checkpoint_dir, map_location=device)
    restore, state = found if found is not None else (None, None)
    if restore is not None:
        trained_on = state.get("device", "cpu")
        if trained_on != device.type:
            # The data order's generator state belongs to the device it ran on.
            raise CheckpointError(f"{restore} was trained on {trained_on}; resume it with --device {trained_on}, "
                                  "or pass --fresh to start over here")
        model_config, train_config = _resolve_resume(
            state, path=restore, model_config=model_config, train_config=train_config, explicit=explicit
        )
        result.model_config, result.train_config, result.restored_from = model_config, train_config, restore
        epoch, batch = checkpoint.progress(state)
        where = f" (epoch {epoch + 1}, after batch {batch})" if batch else ""
        log.info("Restoring model from %s%s...", restore, where)
    train_config.check_held_out(len(images))  # the settings the run will use, before --fresh moves anything
    if fresh:
        result.archived_to = checkpoint.archive(paths.checkpoint_dir)
        if result.archived_to is not None:
            log.info("Moved earlier checkpoints to %s", result.archived_to)

    # A resumed run keeps its kernels (a checkpoint from before they were chosen used the default):
    # another kernel rounds differently, and the continuation would not be exact.
    plan = state.get("kernels", {}) if state is not None else None
    vae, optimizer, generator = build(model_config, train_config, device=device, plan=plan)
    metrics: list[EpochRecord] = []
    first_epoch, position = 1, None
    if state is not None:
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"]["global"])
        generator.set_state(state["rng"]["data"])
        metrics = [EpochRecord(**record) for record in state["metrics"]]
        first_epoch = state["epoch"] + 1
        if state.get("position"):
            position = Position(**state["position"])
    if first_epoch > train_config.epochs:
        log.info("Already trained to epoch %d; pass --epochs above that to continue", first_epoch - 1)
        return result

    def save(*targets: Path, epoch: int, at: Position | None = None) -> Path:
        return checkpoint.save(_state(epoch=epoch, vae=vae, optimizer=optimizer, train_config=train_config,
                                      generator=generator, metrics=metrics, position=at), *targets)

    images, held_out = _split(images, test, train_config)
    loss = loss_fn(train_config.objective, particles=train_config.particles)
    last, best = paths.checkpoint_dir / checkpoint.LAST, paths.checkpoint_dir / checkpoint.BEST
    n_images = len(images)
    n_batches = -(-n_images // train_config.batch_size)
    with _progress_bar(progress, first_epoch=first_epoch, epochs=train_config.epochs) as bar:
        batch_task = bar.add_task("batches", total=n_batches) if bar is not None else None
        for epoch in range(first_epoch, train_config.epochs + 1):
            if bar is not None:
                bar.reset(batch_task, total=n_batches, completed=position.batch if position else 0)
            for group in optimizer.param_groups:
                group["lr"] = train_config.lr_at(epoch)
            start = time.perf_counter()
            try:
                reached = run_epoch(
                    vae, optimizer, images, batch_size=train_config.batch_size, generator=generator, loss=loss,
                    precision=train_config.precision, resume=position, stop=lambda: request.signum is not None,
                    on_batch=(lambda: bar.advance(batch_task)) if bar is not None else None,
                )
            except _NonFiniteLoss as exc:
                kept = checkpoint.latest(paths.checkpoint_dir)
                raise TrainingDiverged(
                    f"the loss became {exc.value} at epoch {epoch}, batch {exc.batch}; training stopped and "
                    f"{f'the last checkpoint, {kept}, is untouched' if kept else 'no checkpoint was written'}; "
                    f"try a lower --lr than {train_config.lr} with --fresh"
                ) from None
            position = None
            reached.seconds += time.perf_counter() - start
            if reached.batch < n_batches:
                save(last, epoch=epoch - 1, at=reached)
                raise _interrupted(request.signum, f"at epoch {epoch}, batch {reached.batch} of {n_batches}", last)
            lower_bound = -reached.loss_sum.item() / n_images
            log.info("Epoch %d (%.1fs): Lower bound = %.2f", epoch, reached.seconds, lower_bound)
            # On the cadence only (not also at the last epoch), so the history and best.pt do
            # not depend on how a run was split into calls.
            figures = {}
            if train_config.eval_every and epoch % train_config.eval_every == 0:
                try:
                    figures = _evaluate_held_out(vae, held_out, particles=train_config.eval_particles,
                                                 stop=lambda: request.signum is not None)
                except Stopped:
                    # Saved as "every batch of the epoch done": the next run goes straight to this evaluation.
                    save(last, epoch=epoch - 1, at=reached)
                    raise _interrupted(request.signum, f"in the evaluation after epoch {epoch}", last) from None
            best_before = max((r.valid_log_likelihood for r in metrics if r.valid_log_likelihood is not None),
                              default=-math.inf)
            record = EpochRecord(epoch=epoch, seconds=reached.seconds, lower_bound=lower_bound,
                                 lr=train_config.lr_at(epoch), **figures)
            metrics.append(record)
            result.metrics.append(record)
            write_history(metrics, paths.results_dir / HISTORY)
            if bar is not None:
                bar.advance(0)
            # last.pt is rolling, so a power cut or kill -9 costs at most the epoch in progress.
            # best.pt goes first: a run killed after it but before this epoch's resumable files
            # redoes the epoch, identically, and rewrites them all.
            numbered = checkpoint.path_for(paths.checkpoint_dir, epoch) if (
                epoch % train_config.save_every == 0 or epoch == train_config.epochs) else None
            improved = record.valid_log_likelihood is not None and record.valid_log_likelihood > best_before
            save(*([best] if improved else []), *([numbered] if numbered else []), last, epoch=epoch)
            if improved:
                log.info("Saved %s (best validation log p(x) so far)", best)
            if numbered:
                result.saved.append(numbered)
                for old in checkpoint.prune(paths.checkpoint_dir, keep=train_config.keep):
                    log.debug("removed old checkpoint %s", old)
                log.info("Saved %s", numbered)
            if request.signum is not None:
                raise _interrupted(request.signum, f"after epoch {epoch}", last)
    return result


def _interrupted(signum: int, where: str, path: Path) -> Interrupted:
    name = signal.Signals(signum).name
    return Interrupted(f"{name}: stopped {where} and saved {path}; run `python cli.py train` again to "
                       "continue from there (or pass --fresh to start over)", exit_code=128 + signum)
