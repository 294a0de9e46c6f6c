"""The training loop: epochs of SVI on the ELBO (or the IWAE bound), one log line an epoch, evaluations
on held-out images, checkpoint cadence and resume."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_vae import checkpoint, data, kernels
from pyro_vae.config import ModelConfig, Paths, TrainConfig, resumed
from pyro_vae.errors import CheckpointError, Interrupted, TrainingDiverged
from pyro_vae.evaluate import Stopped, evaluate
from pyro_vae.fsutil import remove_temporaries
from pyro_vae.metrics import HISTORY, EpochRecord, write_history
from pyro_vae.model import VAE
from pyro_vae.objectives import Loss, loss_fn
from pyro_vae.progress import Bars
from pyro_vae.runtime import autocast, flush_denormals, seed_all

log = logging.getLogger(__name__)

_EVAL_SEED = 0  # evaluations during training draw from their own seeded stream


@dataclass
class TrainResult:
    """What a call to `train` did: the settings it ran with and the epochs it added."""

    model_config: ModelConfig
    train_config: TrainConfig
    restored_from: Path | None = None
    archived_to: Path | None = None
    metrics: list[EpochRecord] = field(default_factory=list)
    saved: list[Path] = field(default_factory=list)


class NonFiniteLoss(Exception):
    """The loss of batch `batch` (1-based) was `value`, not a finite number; no step was taken."""

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
    # Pyro also warns of a NaN loss; the check below stops the run with one line instead.
    with pyro.validation_enabled(False), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
        for x in data.batches(images, order, batch_size=batch_size, generator=generator, start=done):
            with step_context:
                value = loss(vae, x)
            # Checked before the step, so the parameters never take a non-finite update.
            # (One host sync a step: free on the CPU, a small cost on a GPU.)
            if not torch.isfinite(value):
                raise NonFiniteLoss(done + 1, value.item())
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


class StopRequest:
    """The one way a run stops early. While `installed`, the first SIGINT or SIGTERM sets `signum`;
    the loop asks `requested()` after every step and evaluation batch, saves where it was and
    raises `interrupted(...)`. A second SIGINT stops at once (checkpoints on disk are whole:
    they are written atomically)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def requested(self) -> bool:
        return self.signum is not None

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

    def interrupted(self, where: str, path: Path) -> Interrupted:
        name = signal.Signals(self.signum).name
        return Interrupted(f"{name}: stopped {where} and saved {path}; run `python cli.py train` again to "
                           "continue from there (or pass --fresh to start over)", exit_code=128 + self.signum)


@dataclass
class _Run:
    """A run in progress: what it trains, and everything its checkpoints hold."""

    vae: VAE
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    config: TrainConfig
    paths: Paths
    metrics: list[EpochRecord]
    best: float  # the best validation log p(x) so far (best.pt's), -inf without one
    dataset: dict[str, Any]  # what the run trains on (`data.record`)

    @property
    def last(self) -> Path:
        return self.paths.checkpoint_dir / checkpoint.LAST

    def save(self, *targets: Path, epoch: int, at: Position | None = None) -> Path:
        return checkpoint.save(checkpoint.make_state(epoch=epoch, vae=self.vae, optimizer=self.optimizer,
                                                     train_config=self.config, generator=self.generator,
                                                     metrics=self.metrics, position=at, dataset=self.dataset),
                               *targets)


def train(train_config: TrainConfig = TrainConfig(), *, model_config: ModelConfig = ModelConfig(),
          paths: Paths | None = None, device: torch.device = torch.device("cpu"), fresh: bool = False,
          progress: bool = False, explicit: frozenset[str] = frozenset(),
          on_evaluation: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train the VAE on the training images of `paths.dataset`, resuming from the furthest checkpoint unless `fresh`.

    Checkpoints: `vae.epoch.N.pt` every `save_every` epochs and at the last, `last.pt` after
    every epoch, `best.pt` whenever the validation log-likelihood improves (with `valid_size`
    and `eval_every`). Every `eval_every` epochs the test images (and the validation images)
    are scored with `evaluate` and the figures recorded. SIGINT/SIGTERM finish the current
    step (or evaluation batch), save `last.pt` with the position inside the epoch and raise
    `Interrupted`; the next call continues from that batch.

    Args:
        train_config, model_config: settings for a new run; a resumed run keeps what
            `config.resumed` says (the FIXED and CARRIED fields) from its checkpoint.
        paths: data, checkpoint and results folders (default `Paths()`, read at call time);
            every epoch rewrites `results/metrics/history.csv`.
        device: where the model and the data live.
        fresh: archive existing checkpoints (to `archive-<time>/`) and start from epoch 1.
        progress: draw progress bars (for terminals).
        explicit: names of the options the user gave, checked against a resumed checkpoint.
        on_evaluation: called with the epoch and its held-out figures (`valid_log_likelihood`, ...)
            after each evaluation epoch is saved; an exception it raises ends the run there
            (`tune` prunes a trial this way).
    """
    paths = paths or Paths()
    autocast(device, train_config.precision)  # an unsupported precision fails before any work
    images, _ = data.ensure_split(paths.data_dir, "train", dataset=paths.dataset)
    # Read (and verified) now even when no evaluation needs it, so bad data fails before
    # --fresh moves anything; a resumed run may turn evaluations on.
    test, _ = data.ensure_split(paths.data_dir, "test", dataset=paths.dataset)
    trained_on = data.record(paths.dataset, paths.data_dir)
    with checkpoint.lock(paths.checkpoint_dir), StopRequest().installed() as request, flush_denormals(device):
        for leftover in remove_temporaries(paths.checkpoint_dir):
            log.info("removed %s, left by a run that was killed while saving", leftover.name)
        result = TrainResult(model_config=model_config, train_config=train_config)
        run, first_epoch, position = _start(result, paths=paths, n_images=len(images), device=device,
                                            fresh=fresh, explicit=explicit, dataset=trained_on)
        done_before = len(run.metrics)
        if first_epoch > run.config.epochs:
            log.info("Already trained to epoch %d; pass --epochs above that to continue", first_epoch - 1)
            return result
        config = run.config
        images, held_out = _split(images.to(device), test.to(device), config)
        loss = loss_fn(config.objective, particles=config.particles)
        n_batches = -(-len(images) // config.batch_size)
        with Bars(progress) as bars:
            bars.add("epochs ", total=config.epochs, completed=first_epoch - 1)  # a resumed run starts mid-way
            bars.add("batches", total=n_batches)
            for epoch in range(first_epoch, config.epochs + 1):
                bars.update("batches", completed=position.batch if position else 0)
                for group in run.optimizer.param_groups:
                    group["lr"] = config.lr_at(epoch)
                start = time.perf_counter()
                try:
                    reached = run_epoch(run.vae, run.optimizer, images, batch_size=config.batch_size,
                                        generator=run.generator, loss=loss, precision=config.precision,
                                        resume=position, stop=request.requested,
                                        on_batch=lambda: bars.advance("batches"))
                except NonFiniteLoss as exc:
                    raise _diverged(exc, epoch=epoch, run=run) from None
                position = None
                reached.seconds += time.perf_counter() - start
                if reached.batch < n_batches:
                    run.save(run.last, epoch=epoch - 1, at=reached)
                    raise request.interrupted(f"at epoch {epoch}, batch {reached.batch} of {n_batches}", run.last)
                try:
                    figures = _evaluate_if_due(run, epoch=epoch, held_out=held_out, stop=request.requested)
                except Stopped:
                    # Saved as "every batch of the epoch done": the next run goes straight to this evaluation.
                    run.save(run.last, epoch=epoch - 1, at=reached)
                    raise request.interrupted(f"in the evaluation after epoch {epoch}", run.last) from None
                result.saved += _end_epoch(run, epoch=epoch, reached=reached, n_images=len(images), figures=figures)
                result.metrics = run.metrics[done_before:]
                bars.advance("epochs ")
                if figures and on_evaluation is not None:
                    on_evaluation(epoch, figures)
                if request.requested():
                    raise request.interrupted(f"after epoch {epoch}", run.last)
    return result


def _start(result: TrainResult, *, paths: Paths, n_images: int, device: torch.device, fresh: bool,
           explicit: frozenset[str], dataset: dict[str, Any]) -> tuple[_Run, int, Position | None]:
    """Restore the furthest checkpoint (unless `fresh`) or start a new run: the run, its next
    epoch, and the position inside it where an interrupted run stopped. Fills in `result`."""
    found = None if fresh else checkpoint.newest_valid(paths.checkpoint_dir, map_location=device)
    state = None
    if found is not None:
        result.restored_from, state = found
        if state["device"] != device.type:
            # The data order's generator state belongs to the device it ran on.
            raise CheckpointError(f"{result.restored_from} was trained on {state['device']}; resume it with "
                                  f"--device {state['device']}, or pass --fresh to start over here")
        if (why := data.mismatch(state["dataset"], dataset)) is not None:
            raise CheckpointError(f"{result.restored_from} {why}; resume it with --dataset {state['dataset']['name']} "
                                  "and its data, pass --fresh to start over, or pick another --checkpoint-dir")
        recorded_model, recorded_train = checkpoint.configs_of(state)
        result.model_config = resumed(recorded_model, result.model_config, explicit=explicit,
                                      source=result.restored_from)
        result.train_config = resumed(recorded_train, result.train_config, explicit=explicit,
                                      source=result.restored_from)
        epoch, batch = checkpoint.progress(state)
        where = f" (epoch {epoch + 1}, after batch {batch})" if batch else ""
        log.info("Restoring model from %s%s...", result.restored_from, where)
    result.train_config.check_held_out(n_images)  # the settings the run will use, before --fresh moves anything
    if fresh:
        result.archived_to = checkpoint.archive(paths.checkpoint_dir)
        if result.archived_to is not None:
            log.info("Moved earlier checkpoints to %s", result.archived_to)
    # A resumed run keeps its kernels: another kernel rounds differently, and the continuation
    # would not be exact.
    vae, optimizer, generator = build(result.model_config, result.train_config, device=device,
                                      plan=state["kernels"] if state is not None else None)
    metrics = checkpoint.restore(state, vae=vae, optimizer=optimizer, generator=generator) if state else []
    best = max((r.valid_log_likelihood for r in metrics if r.valid_log_likelihood is not None), default=-math.inf)
    run = _Run(vae=vae, optimizer=optimizer, generator=generator, config=result.train_config, paths=paths,
               metrics=metrics, best=best, dataset=dataset)
    if state is None:
        return run, 1, None
    return run, state["epoch"] + 1, Position(**state["position"]) if state["position"] else None


def _split(images: torch.Tensor, test: torch.Tensor,
           train_config: TrainConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The images to train on, and the held-out sets to evaluate every `eval_every` epochs:
    the last `valid_size` training images and the test images, each binarized once."""
    held_out = {}
    if train_config.valid_size:
        images, valid = images[: -train_config.valid_size], images[-train_config.valid_size :]
        held_out["valid"] = data.binarize_once(valid)
    if train_config.eval_every and train_config.eval_test:
        held_out["test"] = data.binarize_once(test)
    return images, held_out


def _evaluate_if_due(run: _Run, *, epoch: int, held_out: dict[str, torch.Tensor],
                     stop: Callable[[], bool]) -> dict[str, float]:
    """EpochRecord fields (`test_elbo`, `valid_log_likelihood`, ...) for each held-out set, on the
    `eval_every` cadence only (not also at the last epoch, so the history and best.pt do not
    depend on how a run was split into calls); raises `Stopped` on a stop request."""
    if not run.config.eval_every or epoch % run.config.eval_every:
        return {}
    figures = {}
    for name, x in held_out.items():
        result = evaluate(run.vae, x, particles=run.config.eval_particles, seed=_EVAL_SEED, stop=stop)
        figures[f"{name}_elbo"], figures[f"{name}_log_likelihood"] = result.elbo, result.log_likelihood
        log.info("  %s: ELBO %.2f, log p(x) %.2f (%d images, K=%d)", name, result.elbo, result.log_likelihood,
                 result.images, run.config.eval_particles)
    return figures


def _end_epoch(run: _Run, *, epoch: int, reached: Position, n_images: int, figures: dict[str, float]) -> list[Path]:
    """Record the epoch, rewrite the history, save (best.pt, the numbered file, last.pt) and prune;
    returns the numbered checkpoint written, if any."""
    lower_bound = -reached.loss_sum.item() / n_images
    log.info("Epoch %d (%.1fs): Lower bound = %.2f", epoch, reached.seconds, lower_bound)
    record = EpochRecord(epoch=epoch, seconds=reached.seconds, lower_bound=lower_bound, lr=run.config.lr_at(epoch),
                         **figures)
    run.metrics.append(record)
    write_history(run.metrics, run.paths.results_dir / HISTORY)
    improved = record.valid_log_likelihood is not None and record.valid_log_likelihood > run.best
    numbered = checkpoint.path_for(run.paths.checkpoint_dir, epoch) if (
        epoch % run.config.save_every == 0 or epoch == run.config.epochs) else None
    # last.pt is rolling, so a power cut or kill -9 costs at most the epoch in progress. best.pt
    # goes first: a run killed after it but before this epoch's resumable files redoes the epoch,
    # identically, and rewrites them all.
    best = run.paths.checkpoint_dir / checkpoint.BEST
    run.save(*([best] if improved else []), *([numbered] if numbered else []), run.last, epoch=epoch)
    if improved:
        run.best = record.valid_log_likelihood
        log.info("Saved %s (best validation log p(x) so far)", best)
    if numbered is None:
        return []
    for old in checkpoint.prune(run.paths.checkpoint_dir, keep=run.config.keep):
        log.debug("removed old checkpoint %s", old)
    log.info("Saved %s", numbered)
    return [numbered]


def _diverged(exc: NonFiniteLoss, *, epoch: int, run: _Run) -> TrainingDiverged:
    kept = checkpoint.latest(run.paths.checkpoint_dir)
    return TrainingDiverged(
        f"the loss became {exc.value} at epoch {epoch}, batch {exc.batch}; training stopped and "
        f"{f'the last checkpoint, {kept}, is untouched' if kept else 'no checkpoint was written'}; "
        f"try a lower --lr than {run.config.lr} with --fresh"
    )
