"""The training loop: epochs of SVI on the ELBO (or the IWAE bound, either with its KL term weighted;
or with labels, the semi-supervised M2's bound), one log line an epoch, evaluations on held-out
images, checkpoint cadence and resume."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import pyro
import torch

from pyro_vae import checkpoint, commands, data, kernels, m2, tensorboard
from pyro_vae.checkpoint import resumed
from pyro_vae.config import ModelConfig, Paths, TrainConfig
from pyro_vae.errors import (HINT, CheckpointError, DeviceMismatch, Hint, Interrupted, InterruptedTwice,
                             TrainingDiverged)
from pyro_vae.evaluate import Stopped, evaluate
from pyro_vae.fsutil import remove_temporaries
from pyro_vae.m2 import M2
from pyro_vae.metrics import HISTORY, EpochRecord, claim, write_history
from pyro_vae.model import VAE
from pyro_vae.objectives import Loss, loss_fn, semi_supervised_loss
from pyro_vae.progress import Bars
from pyro_vae.runtime import StopRequest, ThreadGovernor, autocast, computing, flush_denormals, fused_adam, seed_all

log = logging.getLogger(__name__)

_EVAL_SEED = 0  # evaluations during training draw from their own seeded stream


@dataclass
class TrainResult:
    """What a call to `train` did (`pyro_vae.train` returns it): the run's history, its newest
    checkpoint, the settings it ran with, and what this call wrote or found."""

    history: list[EpochRecord]  # every epoch of the run so far, resumed ones included
    checkpoint: Path  # the newest checkpoint
    model_config: ModelConfig
    train_config: TrainConfig
    saved: list[Path] = field(default_factory=list)  # the numbered checkpoints this call wrote
    restored_from: Path | None = None
    archived_to: Path | None = None
    further: Hint | None = None  # already trained to `epochs`: the call that trains on
    first_epoch: int = 1  # the first epoch this call trained (or would have)

    @property
    def metrics(self) -> list[EpochRecord]:
        """The epochs this call trained: the end of `history`."""
        return [record for record in self.history if record.epoch >= self.first_epoch]


class NonFiniteLoss(Exception):
    """The loss of batch `batch` (1-based) was `value`, not a finite number; no non-finite update was taken."""

    def __init__(self, batch: int, value: float) -> None:
        super().__init__(batch, value)
        self.batch, self.value = batch, value


def build(model_config: ModelConfig, train_config: TrainConfig, *, device: torch.device,
          plan: kernels.Plan | None = None) -> tuple[VAE | M2, torch.optim.Optimizer, torch.Generator]:
    """A new run's seeded model, optimizer and data generator (shuffling and binarization).

    The one place a model gets the measured kernels (`kernels.use`): its training steps, and the
    evaluations inside the run, use them; a model loaded for anything else runs on torch's default.

    Args:
        plan: the matrix kernels (a resumed run's, from its checkpoint); None times them here.
    """
    seed_all(train_config.seed)
    vae = m2.build(model_config).to(device)
    if plan is None and train_config.precision == "fp32":  # bf16 autocast picks its own kernels
        plan = kernels.calibrate(vae, rows=train_config.batch_size * train_config.particles, backward=True,
                                 device=device)
    kernels.use(vae, plan or {})
    log.debug("matrix products: %s", kernels.summary(kernels.plan_of(vae)))
    # One fused Adam over all parameters: the same update as pyro.optim.Adam (which wraps
    # torch's Adam per parameter), in one kernel instead of one per parameter per step.
    # Where a device has no fused kernel, `foreach` (and non-finite losses are still caught, at the
    # epoch's end, before anything is saved; only fused Adam can skip the bad update itself).
    optimizer = torch.optim.Adam(vae.parameters(), lr=train_config.lr, fused=fused_adam(device) or None)
    generator = torch.Generator(device=device).manual_seed(train_config.seed)
    return vae, optimizer, generator


@dataclass
class Position:
    """Where a run is inside an epoch: its image order, the batches done and their summed bound and terms."""

    order: torch.Tensor  # (n,) int64, the epoch's shuffled image indices
    batch: int  # batches done
    loss_sum: torch.Tensor  # (), the negative (unweighted) bound summed over the images of those batches
    seconds: float = 0.0  # time spent in this epoch before the run was interrupted
    # (2,): the reconstruction and KL terms summed over those images; None where a checkpoint from
    # before they were recorded stopped mid-epoch (that epoch's terms are then not known).
    terms_sum: torch.Tensor | None = None

    @classmethod
    def restored(cls, saved: dict[str, Any], *, device: torch.device) -> Position:
        """A checkpoint's position (read onto the CPU, as all of it is) with its tensors on `device`,
        where the images they index and the losses they sum live."""
        terms = saved.get("terms_sum")
        return cls(**{**saved, "order": saved["order"].to(device), "loss_sum": saved["loss_sum"].to(device),
                      "terms_sum": None if terms is None else terms.to(device)})


def run_epoch(vae: VAE, optimizer: torch.optim.Optimizer, images: torch.Tensor, *, batch_size: int,
              generator: torch.Generator, loss: Loss | None = None, precision: str = "fp32",
              resume: Position | None = None, stop: Callable[[], bool] | None = None,
              on_batch: Callable[[], None] | None = None) -> Position:
    """SVI over all `images` in a fresh order (or from `resume` on), each batch binarized afresh.

    The steps never wait for the device: no value goes back to the host inside the epoch. A
    non-finite loss is caught on the device instead: that step's update is skipped (fused Adam's
    `_skip_update_unless_finite`), and each batch's loss, kept on the device, is checked once, when the epoch ends
    or stops, the first bad one raised as `NonFiniteLoss` (before anything could save the state).

    Args:
        optimizer: a fused torch Adam (`build`'s): only fused optimizers can skip a step on the device.
        images: (n, 784) uint8 on the training device.
        loss: the batch's loss and recorded sums (`objectives.loss_fn`); default the ELBO.
        precision: fp32, or bf16 for autocast (see `runtime.autocast`).
        resume: continue an interrupted epoch from here.
        stop: asked after every step; True ends the epoch early (an interrupt).
        on_batch: called after every step (the progress bar).
    Returns:
        the position reached (the true bound and its terms summed); `batch` equals the number of
        batches when the epoch is complete.
    Raises:
        NonFiniteLoss: some batch's loss was not finite (its update, and any later bad one's, skipped).
    """
    loss = loss or loss_fn()
    step_context = autocast(images.device, precision)
    if resume is None:
        resume = Position(order=data.shuffle(len(images), generator=generator), batch=0,
                          loss_sum=torch.zeros((), device=images.device),
                          terms_sum=torch.zeros(2, device=images.device))
    order, done = resume.order, resume.batch
    # One running sum of (negative bound, reconstruction, KL): a single add a step.
    known = resume.terms_sum is not None
    sums = torch.cat([resume.loss_sum.reshape(1), resume.terms_sum if known else resume.loss_sum.new_zeros(2)])
    losses = []  # each batch's, on the device, for the check at the end
    vae.train()
    # Pyro's validation re-checks every distribution's arguments at every step; the model is
    # fixed and the data binarized by construction, so in the hot loop it only costs time.
    try:
        with pyro.validation_enabled(False):
            for x in data.batches(images, order, batch_size=batch_size, generator=generator, start=done):
                with step_context:
                    value, step_sums = loss(vae, x)
                _skip_update_unless_finite(optimizer, value)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                losses.append(value.detach())
                sums += step_sums  # summed in order: a resumed epoch sums the same way
                done += 1
                if on_batch is not None:
                    on_batch()
                if stop is not None and stop():
                    break
    finally:
        _skip_update_unless_finite(optimizer, None)  # a step outside this loop must not inherit it
    finite = torch.isfinite(torch.stack(losses)) if losses else torch.ones(0, dtype=torch.bool)
    if not finite.all():  # the epoch's one host sync
        first = int(finite.logical_not().nonzero()[0])
        raise NonFiniteLoss(resume.batch + first + 1, losses[first].item())
    return Position(order=order, batch=done, loss_sum=sums[0].clone(), seconds=resume.seconds,
                    terms_sum=sums[1:].clone() if known else None)


def _skip_update_unless_finite(optimizer: torch.optim.Optimizer, value: torch.Tensor | None) -> None:
    """Make the fused optimizer's next `step` skip its whole update (parameters, both moments and the
    step count) where `value` is not finite, decided on the device without a host sync; None stops
    skipping.

    The one place that touches `found_inf`, a private hook of torch's fused Adam that GradScaler
    sets from inside torch.amp: torch has no public way to skip a step on a device-side flag
    (`Optimizer.step` takes no such argument). tests/test_trainer.py holds the kernel to it. A
    non-fused Adam (a device without the kernel) refuses the hook: there the bad update is taken,
    and the epoch's end still raises before anything is saved.
    """
    if not optimizer.defaults.get("fused"):
        return
    if value is not None:
        optimizer.found_inf = torch.isfinite(value).logical_not().float()  # 1.0: skip
    else:
        with contextlib.suppress(AttributeError):
            del optimizer.found_inf


@dataclass
class _Run:
    """A run in progress: what it trains, and everything its checkpoints hold."""

    vae: VAE | M2
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    config: TrainConfig
    paths: Paths
    metrics: list[EpochRecord]
    best: float  # the best validation log p(x) so far (best.pt's), -inf without one
    dataset: dict[str, Any]  # what the run trains on (`data.record`, and the labelled images' indices)
    labelled: data.LabelledSet | None = None  # a labels run's labelled images (`train --labels`)

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
          progress: bool = False, explicit: frozenset[str] = frozenset(), threads: str | int | None = None,
          on_evaluation: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train the VAE on `paths.dataset`'s training images, resuming from the furthest checkpoint unless `fresh`.

    Checkpoints: `last.pt` every epoch, `vae.epoch.N.pt` every `save_every` epochs and at the last,
    `best.pt` when the validation log p(x) improves; `results/metrics/history.csv` every epoch; held-out
    scores every `eval_every` epochs. SIGINT or SIGTERM finishes the step (or evaluation batch), saves
    the position in `last.pt` and raises `Interrupted`; the next call continues from that batch.

    Args:
        train_config, model_config: a new run's settings; a resumed run keeps its checkpoint's
            (`checkpoint.resumed`), and refuses those in `explicit` (the options given) that differ.
        paths: data, checkpoint and results folders (default `Paths()`, read at call time).
        fresh: archive existing checkpoints (to `archive-<time>/`) and start from epoch 1.
        progress: draw progress bars (for terminals).
        threads: torch's CPU threads, a number or auto (None: $PYRO_VAE_THREADS, else auto), see
            `runtime.computing`; auto keeps the faster count as the load changes (`runtime.ThreadGovernor`).
        on_evaluation: called with the epoch and its held-out figures after each evaluation epoch
            is saved; an exception it raises ends the run there (`tune` prunes a trial this way).
    """
    paths = paths or Paths()
    found = _read_data(paths, train_config, device=device)
    with checkpoint.lock(paths.checkpoint_dir), StopRequest().installed() as request, flush_denormals(device), \
            computing(threads) as chosen:
        run, begun = _start(model_config, train_config, paths=paths, found=found, device=device, fresh=fresh,
                            explicit=explicit)
        config, saved, position = run.config, [], begun.position
        if begun.epoch > config.epochs:
            return _result(run, begun, saved, further=_already_trained(run, begun.epoch - 1, device=device))
        again = commands.train(config, paths=paths, model_config=run.vae.config, device=device)
        images, held_out = _split(found, config, device=device)
        n_batches, governor = -(-len(images) // config.batch_size), ThreadGovernor.of(chosen, device=device)
        try:
            with Bars(progress) as bars, tensorboard.opened(paths.results_dir, config=config, first_epoch=begun.epoch,
                                                            device=device, fresh=fresh,
                                                            archived_to=begun.archived_to) as board:
                # A resumed run starts mid-way; without a terminal the epoch lines say how far it is.
                bars.add("epochs ", total=config.epochs, completed=begun.epoch - 1, lines=False, unit_of="batches")
                bars.add("batches", total=n_batches)
                for epoch in range(begun.epoch, config.epochs + 1):
                    reached = _train_epoch(run, epoch, images, n_batches=n_batches, position=position,
                                           stop=request.requested, bars=bars, governor=governor)
                    position = None
                    figures = _evaluate_if_due(run, epoch=epoch, reached=reached, held_out=held_out,
                                               stop=request.requested, bars=bars)
                    saved += _end_epoch(run, epoch=epoch, reached=reached, n_images=len(images), figures=figures,
                                        board=board)
                    bars.advance("epochs ")
                    if figures and on_evaluation is not None:
                        on_evaluation(epoch, figures)
                    if request.requested():
                        raise _Stop(f"after epoch {epoch}")
        except _Stop as stop:  # the one way a signal ends a run: where it stopped is in last.pt
            raise _interrupted(request, stop.where, last=run.last, again=again) from None
        except KeyboardInterrupt:  # a second Ctrl-C, mid-step: the position is not saved
            raise InterruptedTwice(f"interrupted twice; checkpoints on disk are whole; to resume from the newest, "
                                   f"run: {HINT}", hint=again) from None
    return _result(run, begun, saved)


class _Data(NamedTuple):
    """A run's data, read and verified: the training and test images, (n, 784) uint8 on the CPU,
    with their (n,) int64 labels; the data set's class names and the noun for one; and what a
    checkpoint records of it (`data.record`)."""

    images: torch.Tensor
    labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    names: Sequence[str]
    noun: str
    record: dict[str, Any]


def _read_data(paths: Paths, train_config: TrainConfig, *, device: torch.device) -> _Data:
    """The run's data; each check that can fail before any work (precision, TensorBoard, the data,
    the labels asked for) first."""
    autocast(device, train_config.precision)  # an unsupported precision fails before any work
    if train_config.tensorboard:
        tensorboard.require()  # so does --tensorboard without TensorBoard
    images, labels = data.ensure_split(paths.data_dir, "train", dataset=paths.dataset)
    # Read (and verified) now even when no evaluation needs it, so bad data fails before
    # --fresh moves anything; a resumed run may turn evaluations on.
    test, test_labels = data.ensure_split(paths.data_dir, "test", dataset=paths.dataset)
    found = _Data(images, labels, test, test_labels, names=data.class_names(paths.dataset, paths.data_dir),
                  noun=data.get(paths.dataset).noun, record=data.record(paths.dataset, paths.data_dir))
    # Bad labels fail before anything is written (a resumed run's were checked when it started).
    _labelled(found, train_config, generator=torch.Generator())
    return found


def _labelled(found: _Data, train_config: TrainConfig, *, generator: torch.Generator) -> data.LabelledSet | None:
    """The labelled images of a run with `train_config.labels` (None for 0), among the images it
    trains on (the validation images held out), drawn with `generator` and on its device."""
    n_train = len(found.labels) - train_config.valid_size
    return data.labelled_set(found.images[:n_train], found.labels[:n_train], count=train_config.labels,
                             names=found.names, seed=train_config.seed, batch_size=train_config.batch_size,
                             generator=generator, noun=found.noun)


class _Begun(NamedTuple):
    """Where a call starts: its first epoch, the position inside it where an interrupted run
    stopped, the checkpoint restored and the folder earlier checkpoints were archived to."""

    epoch: int
    position: Position | None
    restored_from: Path | None
    archived_to: Path | None


def _start(model_config: ModelConfig, train_config: TrainConfig, *, paths: Paths, found: _Data,
           device: torch.device, fresh: bool, explicit: frozenset[str]) -> tuple[_Run, _Begun]:
    """Restore the furthest checkpoint (unless `fresh`) or start a new run: the run, and where it begins."""
    claim(paths.results_dir, paths.checkpoint_dir)  # another run's results folder is refused, untouched
    for leftover in remove_temporaries(paths.checkpoint_dir):
        log.info("removed %s, left by a run that was killed while saving", leftover.name)
    # Labels train the labels model over the data's classes (a resumed run keeps its own).
    model_config = replace(model_config, classes=len(found.names) if train_config.labels else 0)
    restored_from, state = _restorable(paths, fresh=fresh, device=device, dataset=found.record)
    if state is not None:
        recorded_model, recorded_train = checkpoint.configs_of(state)
        model_config = resumed(recorded_model, model_config, explicit=explicit, source=restored_from)
        train_config = resumed(recorded_train, train_config, explicit=explicit, source=restored_from)
        epoch, batch = checkpoint.progress(state)
        where = f" (epoch {epoch + 1}, after batch {batch})" if batch else ""
        log.info("Restoring model from %s%s...", restored_from, where)
    train_config.check_held_out(len(found.images))  # the settings the run will use, before --fresh moves anything
    archived_to = checkpoint.archive(paths.checkpoint_dir) if fresh else None
    if archived_to is not None:
        log.info("Moved earlier checkpoints to %s", archived_to)
    # A resumed run keeps its kernels: another kernel rounds differently, and the continuation
    # would not be exact.
    vae, optimizer, generator = build(model_config, train_config, device=device,
                                      plan=state["kernels"] if state is not None else None)
    metrics = checkpoint.restore(state, vae=vae, optimizer=optimizer, generator=generator) if state else []
    best = max((r.valid_log_likelihood for r in metrics if r.valid_log_likelihood is not None), default=-math.inf)
    labelled = _labelled(found, train_config, generator=generator)  # its draws take the data generator's turns
    run = _Run(vae=vae, optimizer=optimizer, generator=generator, config=train_config, paths=paths,
               metrics=metrics, best=best, labelled=labelled,
               dataset={**found.record, **({"labelled": list(labelled.indices)} if labelled else {})})
    if state is None:
        return run, _Begun(1, None, None, archived_to)
    position = Position.restored(state["position"], device=device) if state["position"] else None
    return run, _Begun(state["epoch"] + 1, position, restored_from, archived_to)


def _restorable(paths: Paths, *, fresh: bool, device: torch.device, dataset: dict[str, Any]
                ) -> tuple[Path | None, dict[str, Any] | None]:
    """The furthest readable checkpoint and its state, (None, None) without one or when `fresh`;
    refused when it was trained on another kind of device or other data."""
    found = None if fresh else checkpoint.newest_valid(paths.checkpoint_dir)
    if found is None:
        return None, None
    path, state = found
    if state["device"] != device.type:
        # The data order's generator state belongs to the device it ran on.
        raise DeviceMismatch(f"{path} was trained on {state['device']}; resume it with ⟨device⟩ {state['device']}, "
                             "or pass ⟨fresh⟩ to start over here", recorded=state["device"])
    if (why := data.mismatch(state["dataset"], dataset)) is not None:
        raise CheckpointError(f"{path} {why}; resume it with ⟨dataset⟩ {state['dataset']['name']} and its data, "
                              "pass ⟨fresh⟩ to start over, or pick another ⟨checkpoint_dir⟩")
    return path, state


def _result(run: _Run, begun: _Begun, saved: list[Path], *, further: Hint | None = None) -> TrainResult:
    """The call's result: a call that trained wrote the numbered checkpoint of its last epoch, the newest."""
    return TrainResult(history=list(run.metrics), checkpoint=saved[-1] if saved else begun.restored_from,
                       model_config=run.vae.config, train_config=run.config, saved=saved,
                       restored_from=begun.restored_from, archived_to=begun.archived_to, further=further,
                       first_epoch=begun.epoch)


def _already_trained(run: _Run, epoch: int, *, device: torch.device) -> Hint:
    """Say that the run has trained to `epoch`, its target, already; returns the call that trains on."""
    log.info("Already trained to epoch %d", epoch)
    return commands.train(replace(run.config, epochs=2 * epoch), paths=run.paths, model_config=run.vae.config,
                          device=device)


def _train_epoch(run: _Run, epoch: int, images: torch.Tensor, *, n_batches: int, position: Position | None,
                 stop: Callable[[], bool], bars: Bars, governor: ThreadGovernor) -> Position:
    """Epoch `epoch` (the rest of it from `position`) at its learning rate and KL weight, and its log line;
    `governor` times every step (and may change torch's threads between them).

    Raises:
        _Stop: a stop request ended it early (the position reached is saved in last.pt first).
        TrainingDiverged: a loss was not finite.
    """
    config = run.config
    bars.update("batches", completed=position.batch if position else 0)
    for group in run.optimizer.param_groups:
        group["lr"] = config.lr_at(epoch)
    loss = loss_fn(config.objective, particles=config.particles, beta=config.beta_at(epoch)) if run.labelled is None \
        else semi_supervised_loss(run.labelled, alpha=config.alpha, beta=config.beta_at(epoch))
    start = time.perf_counter()
    governor.begin()
    try:
        reached = run_epoch(run.vae, run.optimizer, images, batch_size=config.batch_size, generator=run.generator,
                            loss=loss, precision=config.precision, resume=position, stop=stop,
                            on_batch=lambda: (bars.advance("batches"), governor()))
    except NonFiniteLoss as exc:
        raise _diverged(exc, epoch=epoch, run=run) from None
    reached.seconds += time.perf_counter() - start
    if reached.batch < n_batches:
        run.save(run.last, epoch=epoch - 1, at=reached)
        raise _Stop(f"at epoch {epoch}, batch {reached.batch} of {n_batches}")
    log.info("Epoch %d (%.1fs): Lower bound = %.2f%s", epoch, reached.seconds, _lower_bound(reached, len(images)),
             _terms_note(config, epoch, reached, len(images)))  # the epoch's line first, then its evaluation's
    return reached


class _Stop(Exception):
    """A stop request honoured `where` (e.g. "after epoch 3"), with the run's position saved."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


def _interrupted(request: StopRequest, where: str, *, last: Path, again: Hint) -> Interrupted:
    """The exception that ends a run stopped by `request`'s signal; `again` is the call that continues it."""
    stopped = f"{request.name}: stopped {where} and saved {last}"
    return Interrupted(f"{stopped}; to continue from there, run: {HINT}", exit_code=128 + request.signum,
                       stopped=stopped, hint=again, checkpoint=last)


def _split(found: _Data, train_config: TrainConfig, *, device: torch.device
           ) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The images to train on, and the held-out sets to evaluate every `eval_every` epochs:
    the last `valid_size` training images and the test images, each binarized once (on the
    CPU, as for `evaluate`), with their labels (a labels model's accuracy), all on `device`."""
    images, held_out = found.images, {}
    if train_config.valid_size:
        images, valid = images[: -train_config.valid_size], images[-train_config.valid_size :]
        held_out["valid"] = (data.binarize_once(valid).to(device), found.labels[-train_config.valid_size :].to(device))
    if train_config.eval_every and train_config.eval_test:
        held_out["test"] = (data.binarize_once(found.test).to(device), found.test_labels.to(device))
    return images.to(device), held_out


def _evaluate_if_due(run: _Run, *, epoch: int, reached: Position,
                     held_out: dict[str, tuple[torch.Tensor, torch.Tensor]], stop: Callable[[], bool],
                     bars: Bars | None = None) -> dict[str, float]:
    """EpochRecord fields (`test_elbo`, `valid_log_likelihood`, a labels model's `test_accuracy`, ...)
    for each held-out set (images and labels), on the
    `eval_every` cadence only (not also at the last epoch, so the history and best.pt do not
    depend on how a run was split into calls).

    Raises:
        _Stop: a stop request came during an evaluation; `reached`, the epoch's end, is saved first.
    """
    if not run.config.eval_every or epoch % run.config.eval_every:
        return {}
    figures = {}
    bars = bars or Bars(False)
    for name, (x, y) in held_out.items():
        row = f"{name} images"  # a row of its own while it runs (the whole test set takes seconds)
        bars.add(row, total=len(x))
        try:
            result = evaluate(run.vae, x, particles=run.config.eval_particles, seed=_EVAL_SEED, stop=stop,
                              on_batch=lambda done: bars.update(row, completed=done), y=y)
        except Stopped:
            # Saved as "every batch of the epoch done": the next run goes straight to this evaluation.
            run.save(run.last, epoch=epoch - 1, at=reached)
            raise _Stop(f"in the evaluation after epoch {epoch}") from None
        finally:
            bars.remove(row)
        for figure in ("elbo", "log_likelihood", "reconstruction", "kl", "active_units", "accuracy"):
            figures[f"{name}_{figure}"] = getattr(result, figure)
        log.info("  %s: ELBO %.2f, log p(x) %.2f (%d images, K=%d); reconstruction %.2f, KL %.2f; %d of %d "
                 "latent dimensions active", name, result.elbo, result.log_likelihood, result.images,
                 run.config.eval_particles, result.reconstruction, result.kl, result.active_units, run.vae.config.z_dim)
        if result.accuracy is not None:
            log.info("  %s: accuracy %.2f%% +- %.2f", name, 100 * result.accuracy, 100 * result.accuracy_se)
    return figures


def _end_epoch(run: _Run, *, epoch: int, reached: Position, n_images: int, figures: dict[str, float],
               board: tensorboard.Board) -> list[Path]:
    """Record the epoch, rewrite the history, log it to TensorBoard (with --tensorboard), save
    (best.pt, the numbered file, last.pt) and prune; returns the numbered checkpoint written, if any."""
    record = EpochRecord(epoch=epoch, seconds=reached.seconds, lower_bound=_lower_bound(reached, n_images),
                         lr=run.config.lr_at(epoch), beta=run.config.beta_at(epoch), **_terms(reached, n_images),
                         **figures)
    run.metrics.append(record)
    write_history(run.metrics, run.paths.results_dir / HISTORY)
    # Before the checkpoints: a run killed between the two redoes this epoch, and its purge
    # (tensorboard.opened) drops the first logging of it.
    board.write(record, vae=run.vae)
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


def _lower_bound(reached: Position, n_images: int) -> float:
    """The epoch's mean bound per training image, in nats."""
    return -reached.loss_sum.item() / n_images


def _terms(reached: Position, n_images: int) -> dict[str, float | None]:
    """The epoch's mean reconstruction and KL terms per training image, in nats (None when a
    checkpoint from before they were recorded stopped inside the epoch)."""
    if reached.terms_sum is None:
        return {"reconstruction": None, "kl": None}
    reconstruction, kl = (reached.terms_sum.double() / n_images).tolist()
    return {"reconstruction": reconstruction, "kl": kl}


def _terms_note(config: TrainConfig, epoch: int, reached: Position, n_images: int) -> str:
    """What the epoch's line (the seed program's) adds where the KL is weighted: the weight and the KL."""
    if config.beta == 1 and not config.kl_warmup:
        return ""
    kl = _terms(reached, n_images)["kl"]
    return f" (KL weight {config.beta_at(epoch):.3g}" + ("" if kl is None else f", KL {kl:.2f}") + ")"


def _diverged(exc: NonFiniteLoss, *, epoch: int, run: _Run) -> TrainingDiverged:
    kept = checkpoint.latest(run.paths.checkpoint_dir)
    device = next(run.vae.parameters()).device
    slower = replace(run.config, lr=run.config.lr / 10)
    return TrainingDiverged(
        f"the loss became {exc.value} at epoch {epoch}, batch {exc.batch}; training stopped and "
        f"{f'the last checkpoint, {kept}, is untouched' if kept else 'no checkpoint was written'}; "
        f"to start over with a lower ⟨lr⟩ (earlier checkpoints are archived), run: {HINT}",
        hint=commands.train(slower, paths=run.paths, model_config=run.vae.config, device=device, every=True, fresh=True),
    )
