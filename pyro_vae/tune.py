"""Recipe search on Optuna: each trial is one ordinary training run of this product (the same
trainer, checkpoints and history) in folders of its own, scored by the importance-sampled
validation log p(x); a study is shared by every worker, process or machine, given its storage URL.

A trial keeps its folder (`trial-<n>`, n its first number) when it is retried: after a worker is
killed (Optuna's heartbeat marks its trial stale and `RetryHeartbeatStaleTrialCallback` queues it
again) or stopped with Ctrl-C (queued here), the retry resumes from that folder's newest
checkpoint, exactly as `train` resumes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from pyro_vae import checkpoint, commands, data, plots
from pyro_vae.config import ModelConfig, Objective, Paths, TrainConfig, TuneConfig, split_settings
from pyro_vae.errors import HINT, ConfigError, DeviceMismatch, Hint, Hinted, Interrupted, MissingExtra
from pyro_vae.evaluate import evaluate
from pyro_vae.fsutil import atomic_write
from pyro_vae.metrics import HISTORY, read_history
from pyro_vae.runtime import resolve_device
from pyro_vae.progress import Bars
from pyro_vae.trainer import train

log = logging.getLogger(__name__)

TUNE_DIR = "tune"  # under the checkpoint and results folders
REPRODUCE_DIR = "reproduce"  # the same, for `train` lines that reproduce a trial
DATABASE = "optuna.db"  # the default storage, under results/tune/
BEST = "best.json"
TRIALS_CSV = "trials.csv"
HISTORY_PNG = "optimization_history.png"
IMPORTANCE_PNG = "param_importances.png"
MIN_IMPORTANCE_TRIALS = 5  # fewer completed trials say nothing about which setting matters
RUN_ATTR = "run"  # the trial's folder name, carried to its retries
_OPEN_ATTEMPTS = 5
_CREATION_RACE = ("UNIQUE constraint", "already exists", "database is locked", "duplicate key")


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a log-uniform or uniform float, an int range, or a set of choices."""

    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: int | None = None  # an int range when set
    choices: tuple[Any, ...] = ()


# The default search space (the README lists it); an option given on the command line fixes that
# setting instead. Around the seed's recipe and the IWAE paper's: lr 1e-3, k up to 10.
SEARCH_SPACE: dict[str, Dimension] = {
    "objective": Dimension(choices=Objective.values()),
    "particles": Dimension(low=1, high=10, step=1),
    "lr": Dimension(low=1e-4, high=3e-3, log=True),
    "lr_decay": Dimension(low=0.99, high=1.0),
    "z_dim": Dimension(low=10, high=100, step=10),
    "hidden_dim": Dimension(low=200, high=1000, step=100),
}


def _optuna() -> Any:
    """Optuna, quiet: its own log lines and experimental-feature warnings would drown ours.
    Raises MissingExtra where it is not installed (it comes with the `tune` extra)."""
    try:
        import optuna
    except ModuleNotFoundError as exc:
        if exc.name != "optuna":  # Optuna is there but something it needs is not: its own error says what
            raise
        raise MissingExtra(extra="tune", package="optuna") from None

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # e.g. its traceback for a trial stopped by Ctrl-C
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def default_storage(results_dir: Path) -> str:
    return f"sqlite:///{(Path(results_dir) / TUNE_DIR / DATABASE).resolve()}"


def trial_paths(paths: Paths, study: str, run: str) -> Paths:
    """A trial's folders: checkpoints/tune/<study>/<run>/ and results/tune/<study>/<run>/."""
    return replace(paths, checkpoint_dir=paths.checkpoint_dir / TUNE_DIR / study / run,
                   results_dir=paths.results_dir / TUNE_DIR / study / run)


def study_dir(paths: Paths, study: str) -> Path:
    return paths.results_dir / TUNE_DIR / study


@contextmanager
def opened_study(config: TuneConfig, *, paths: Paths, resume: bool = False, create: bool = True) -> Iterator[Any]:
    """The study `config.study` in its storage (created unless `resume` or not `create`), for the
    block; its database connections are closed after it.

    Raises ConfigError, in one line, when the storage cannot be reached or the study must exist
    and does not.
    """
    optuna = _optuna()
    from sqlalchemy.engine import make_url

    url = config.storage or default_storage(paths.results_dir)
    if config.storage is None:
        (Path(paths.results_dir) / TUNE_DIR).mkdir(parents=True, exist_ok=True)
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 (any malformed URL is the user's to fix)
        raise ConfigError(f"⟨storage⟩ {url!r} is not a database URL; use e.g. sqlite:///results/tune/optuna.db "
                          "or postgresql://user:password@host/db") from None
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=config.heartbeat_s, grace_period=config.grace_s,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    inherit_intermediate_values=True))
            break
        except Exception as exc:  # noqa: BLE001 (driver, network, permission: each is one line for the user)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            # Workers started together race to create the tables; the loser finds them made.
            if attempt + 1 < _OPEN_ATTEMPTS and any(word in reason for word in _CREATION_RACE):
                time.sleep(0.5 * (attempt + 1))
                continue
            raise ConfigError(f"cannot open the study storage {shown} ({reason[:200]}); check the URL and that "
                              "the database server is running and reachable") from None
    try:
        if resume or not create:
            try:
                study = optuna.load_study(study_name=config.study, storage=storage, pruner=pruner(config))
            except KeyError:
                raise ConfigError(f"there is no study {config.study!r} in {shown}; drop ⟨resume⟩ to create it, "
                                  "or check ⟨study⟩ and ⟨storage⟩") from None
        else:
            study = optuna.create_study(study_name=config.study, storage=storage, direction="maximize",
                                        load_if_exists=True, pruner=pruner(config))
        yield study
    finally:
        # Optuna has no public way to close an RDBStorage; disposing its SQLAlchemy engine closes
        # the connections now rather than in the garbage collector (where psycopg warns of them).
        storage.engine.dispose()


def pruner(config: TuneConfig) -> Any:
    """Optuna's median pruner: once 2 trials have completed, a trial whose validation log p(x) at an
    evaluation is below the median of the earlier trials' at the same epoch stops there; no
    trial is pruned before its second evaluation (the first epochs of good recipes are noisy)."""
    optuna = _optuna()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2 * config.eval_every)


def search(config: TuneConfig, *, fixed: dict[str, Any], paths: Paths, device: torch.device | str = "auto",
           resume: bool = False, progress: bool = False, threads: str | int | None = None) -> dict[str, Any] | None:
    """Run this worker's `config.trials` trials of the study, then score the study's best trial on
    the test set (`score_best`); returns that record, None when no trial has completed yet.

    Args:
        fixed: settings given on the command line (names of SEARCH_SPACE), not searched.
        progress: draw progress bars (for terminals); otherwise long steps log how far they are.
    Raises:
        Interrupted: on Ctrl-C or SIGTERM, after saving the trial's position and queueing it again.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    unknown = set(fixed) - set(SEARCH_SPACE)
    if unknown:
        raise ConfigError(f"cannot fix {sorted(unknown)}: the search space is {sorted(SEARCH_SPACE)}")
    _configs(config, {**_valid_example(), **fixed})  # fixed values out of range fail now, in one line
    optuna = _optuna()

    def objective(trial: Any) -> float:
        run = trial.user_attrs.get(RUN_ATTR)
        if run is None:
            run = f"trial-{trial.number}"
            trial.set_user_attr(RUN_ATTR, run)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        settings = {name: fixed[name] if name in fixed else _suggest(trial, name, dimension)
                    for name, dimension in SEARCH_SPACE.items()}
        trial.set_user_attr("settings", settings)
        model_config, train_config = _configs(config, settings)
        where = trial_paths(paths, config.study, run)
        log.info("Trial %d (%s): %s", trial.number, run, _describe(settings))

        def report(epoch: int, figures: dict[str, float]) -> None:
            trial.report(figures["valid_log_likelihood"], epoch)
            trial.set_user_attr("epochs", epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation log p(x) {figures['valid_log_likelihood']:.2f} at epoch {epoch}")

        explicit = frozenset(settings) | {"valid_size", "eval_every", "eval_particles"}
        def train_on(on: torch.device) -> None:
            train(train_config, model_config=model_config, paths=where, device=on, progress=progress,
                  explicit=explicit, threads=threads, on_evaluation=report)

        try:
            try:
                train_on(device)
            except DeviceMismatch as exc:  # a retry of a trial begun on the other kind of device
                recorded = _resume_device(exc.recorded)
                if recorded is None:
                    command = commands.train(train_config, paths=where, model_config=model_config,
                                             device=torch.device(exc.recorded))
                    log.warning(Hinted(f"Trial {trial.number} ({run}) was trained on {exc.recorded}, which this "
                                       f"worker lacks; it is marked failed and this worker goes on (`{HINT}` "
                                       "continues it outside the study)", command))
                    raise _TrialSkipped from None
                log.info("Trial %d (%s): resuming on %s, where it was trained", trial.number, run, recorded)
                train_on(recorded)
        except Interrupted as exc:
            study.enqueue_trial(trial.params, user_attrs={RUN_ATTR: run})  # the next worker resumes it
            again = commands.tune(config, paths=paths, fixed=fixed, device=device)
            raise Interrupted(f"{exc.stopped}; trial {trial.number} is queued again; to continue the study, run: "
                              f"{HINT}", exit_code=exc.exit_code, stopped=exc.stopped, hint=again,
                              checkpoint=exc.checkpoint) from None
        records = read_history(where.results_dir / HISTORY)
        scores = [r.valid_log_likelihood for r in records if r.valid_log_likelihood is not None]
        trial.set_user_attr("epochs", records[-1].epoch)
        log.info("Trial %d (%s): validation log p(x) %.2f after %d epochs", trial.number, run, scores[-1],
                 records[-1].epoch)
        return scores[-1]

    with opened_study(config, paths=paths, resume=resume) as study:
        study.optimize(objective, n_trials=config.trials, catch=(_TrialSkipped,))
        return score_best(study, config, paths=paths, device=device, progress=progress)


class _TrialSkipped(Exception):
    """A trial this worker cannot run (said in one log line); Optuna marks it failed and goes on."""


def _resume_device(recorded: str) -> torch.device | None:
    """The device a trial trained on `recorded` ("cpu" or "cuda") resumes on here, None where there
    is none of that kind: its data generator's state belongs to that kind of device."""
    try:
        return resolve_device(recorded)
    except ConfigError:
        return None


def _valid_example() -> dict[str, Any]:
    """A valid value of every searched setting (to check the fixed ones before any trial runs)."""
    return {name: d.choices[0] if d.choices else (int(d.low) if d.step else d.low) for name, d in SEARCH_SPACE.items()}


def _suggest(trial: Any, name: str, dimension: Dimension) -> Any:
    if dimension.choices:
        return trial.suggest_categorical(name, list(dimension.choices))
    if dimension.step is not None:
        return trial.suggest_int(name, int(dimension.low), int(dimension.high), step=dimension.step)
    return trial.suggest_float(name, dimension.low, dimension.high, log=dimension.log)


def _configs(config: TuneConfig, settings: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """The trial's model and training configs (their validation makes a bad fixed value one line)."""
    return split_settings({**settings, "epochs": config.epochs, "eval_every": config.eval_every,
                           "valid_size": config.valid_size, "eval_particles": config.eval_particles,
                           "eval_test": False})


def _describe(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())


def reproduce_paths(paths: Paths, study: str, run: str) -> Paths:
    """Where a reproduction of a trial trains: checkpoints/reproduce/<study>-<run>/ and
    results/reproduce/<study>-<run>/, folders of its own beside the main run's and the trial's."""
    name = f"{study}-{run}"
    return replace(paths, checkpoint_dir=paths.checkpoint_dir / REPRODUCE_DIR / name,
                   results_dir=paths.results_dir / REPRODUCE_DIR / name)


def train_command(config: TuneConfig, settings: dict[str, Any], *, paths: Paths, run: str) -> Hint:
    """The `train` call that reproduces a trial outside the study, every setting
    spelled out, in folders of its own (`reproduce_paths`): pasted where the main run lives, it
    starts the trial's run rather than resuming (or colliding with) the main one."""
    model, training = _configs(config, settings)
    return commands.train(training, paths=reproduce_paths(paths, config.study, run), model_config=model, every=True)


def score_best(study: Any, config: TuneConfig, *, paths: Paths, device: torch.device,
               progress: bool = False) -> dict[str, Any] | None:
    """Score the study's best trial on the test set with `config.test_particles` particles and
    write results/tune/<study>/best.json (with the train command that reproduces it); None when
    no trial has completed. The checkpoint scored is the trial's best.pt (chosen on validation)."""
    completed = [t for t in study.trials if t.value is not None and t.state.name == "COMPLETE"]
    if not completed:
        return None
    best = max(completed, key=lambda t: t.value)
    out = study_dir(paths, config.study) / BEST
    if out.is_file():
        earlier = json.loads(out.read_text())
        if (earlier.get("trial"), earlier.get("test_particles"), "reproduce" in earlier) == (
                best.number, config.test_particles, True):
            return earlier
    where = trial_paths(paths, config.study, best.user_attrs[RUN_ATTR])
    path = where.checkpoint_dir / checkpoint.BEST
    vae, path = checkpoint.load_vae(path if path.is_file() else None, checkpoint_dir=where.checkpoint_dir,
                                    device=device)
    x = data.test_images(paths.data_dir, dataset=paths.dataset)[0].to(device)
    log.info("Scoring the best trial, %d, on %d test images with K=%d (%s)", best.number, len(x),
             config.test_particles, path)
    with Bars(progress) as bars:
        bars.add("test images", total=len(x))
        result = evaluate(vae, x, particles=config.test_particles,
                          on_batch=lambda done: bars.update("test images", completed=done))
    settings = best.user_attrs["settings"]
    record = {"study": config.study, "trial": best.number, "run": best.user_attrs[RUN_ATTR],
              "valid_log_likelihood": best.value, "checkpoint": str(path), "test_particles": config.test_particles,
              "test_elbo": result.elbo, "test_elbo_se": result.elbo_se, "test_log_likelihood": result.log_likelihood,
              "test_log_likelihood_se": result.log_likelihood_se, "settings": settings,
              "reproduce": train_command(config, settings, paths=paths, run=best.user_attrs[RUN_ATTR]).to_json()}
    with atomic_write(out) as handle:
        handle.write((json.dumps(record, indent=2) + "\n").encode())
    return record


def report(config: TuneConfig, *, paths: Paths) -> tuple[list[dict[str, Any]], list[Path], list[str]]:
    """The study's trials as rows (number, state, run, worker, epochs, value, settings) and the files
    written: results/tune/<study>/trials.csv and PNGs of the optimisation history and, once
    MIN_IMPORTANCE_TRIALS trials have completed with at least two settings that vary, of those
    settings' importances; and notes on what was not drawn, and why."""
    with opened_study(config, paths=paths, create=False) as study:
        trials = study.trials
    rows = []
    for t in trials:
        epochs = t.user_attrs.get("epochs", max(t.intermediate_values, default=0))
        rows.append({"number": t.number, "state": t.state.name, "run": t.user_attrs.get(RUN_ATTR, ""),
                     "epochs": epochs, "value": t.value, "worker": t.user_attrs.get("worker", ""),
                     **t.user_attrs.get("settings", t.params)})
    folder = study_dir(paths, config.study)
    written, notes = [], []
    columns = list(dict.fromkeys(k for row in rows for k in row)) or ["number", "state", "value"]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(folder / TRIALS_CSV) as handle:
        handle.write(text.getvalue().encode())
    written.append(folder / TRIALS_CSV)
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    varied = [name for name in SEARCH_SPACE if len({t.params.get(name) for t in completed} - {None}) > 1]
    target = f"validation log p(x), nats (K={config.eval_particles})"
    with opened_study(config, paths=paths, create=False) as study:
        if completed:
            written.append(plots.study_history(study, folder / HISTORY_PNG, target=target))
        if len(completed) >= MIN_IMPORTANCE_TRIALS and len(varied) >= 2:
            written.append(plots.study_importances(study, folder / IMPORTANCE_PNG, params=varied, target=target,
                                                   completed=len(completed)))
        else:
            notes.append(f"no {IMPORTANCE_PNG}: it needs {MIN_IMPORTANCE_TRIALS} completed trials with at least 2 "
                         f"settings that vary (has {len(completed)}, varying: {', '.join(varied) or 'none'})")
    return rows, written, notes

