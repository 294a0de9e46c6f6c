"""Per-epoch figures and their history file, `results/metrics/history.csv`."""

from __future__ import annotations

import csv
import io
import math
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from pyro_vae import commands
from pyro_vae.config import Paths, results_dir_for
from pyro_vae.errors import HINT, ConfigError, HistoryError
from pyro_vae.fsutil import atomic_write

HISTORY = Path("metrics") / "history.csv"  # under the results folder
EVALUATION = Path("metrics") / "evaluation.json"


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's figures, per image in nats: the mean training lower bound (the ELBO, or the
    IWAE bound when that trained it; never weighted by beta) and its two terms, and on evaluation
    epochs the held-out ELBO, its terms, the importance-sampled log-likelihood and the active
    units. None: not computed that epoch (or by the version that trained it)."""

    epoch: int
    seconds: float  # training time, evaluation excluded
    lower_bound: float
    lr: float | None = None
    test_elbo: float | None = None
    test_log_likelihood: float | None = None
    valid_elbo: float | None = None
    valid_log_likelihood: float | None = None
    # E_q[log p(x | z)] and KL(q(z | x) || p(z)), estimated from the training draws: for the ELBO,
    # lower_bound = reconstruction - kl; for IWAE they are each draw's ELBO terms, averaged over the
    # particles, and sum to less than the IWAE bound.
    reconstruction: float | None = None
    kl: float | None = None
    beta: float | None = None  # the KL term's weight in this epoch's loss
    test_reconstruction: float | None = None
    test_kl: float | None = None
    test_active_units: int | None = None  # of z_dim (latent.active_units)
    valid_reconstruction: float | None = None
    valid_kl: float | None = None
    valid_active_units: int | None = None
    # A labels model's accuracy on the held-out labels (q(y | x)'s most probable class), a fraction.
    test_accuracy: float | None = None
    valid_accuracy: float | None = None


def write_history(records: list[EpochRecord], path: Path) -> Path:
    """Write every record as CSV, replacing the file atomically.

    The whole history is rewritten from the run's records (which a checkpoint carries), so a
    resumed run continues the same file with no epoch twice and none the checkpoint lost.
    """
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[f.name for f in fields(EpochRecord)], lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(asdict(record))
    with atomic_write(Path(path)) as handle:
        handle.write(text.getvalue().encode())
    return Path(path)


def read_history(path: Path, *, run: Paths | None = None) -> list[EpochRecord]:
    """The records of a history file written by `write_history`; HistoryError when there is none
    or it is not one, whose hint trains `run` (the folders the history was looked for with; None:
    a run whose results folder holds `path`)."""
    def value(text: str | None) -> float | None:
        if text in (None, ""):
            return None
        number = float(text)
        if not math.isfinite(number):
            raise ValueError(f"{text!r} is not a finite number")
        return number

    def count(number: float | None) -> int | None:
        if number is not None and number != int(number):
            raise ValueError(f"{number!r} is not a whole number")
        return None if number is None else int(number)

    path = Path(path)
    if not path.is_file():
        raise HistoryError(f"no training history at {path}; train first ({HINT}), "
                           "or point ⟨results_dir⟩ at the folder a run wrote",
                           hint=commands.first_training(run or Paths(results_dir=path.parent.parent)))
    try:
        with open(path, newline="") as handle:
            records = [
                EpochRecord(epoch=int(row["epoch"]),
                            **{f.name: count(value(row.get(f.name))) if str(f.type).startswith("int") else
                               value(row.get(f.name)) for f in fields(EpochRecord) if f.name != "epoch"})
                for row in csv.DictReader(handle)
            ]
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise HistoryError(f"{path} is not a pyro-vae history ({type(exc).__name__}: {exc}); "
                           "delete it and the next epoch of training rewrites it whole") from None
    if not records:
        raise HistoryError(f"{path} has no epochs yet; train at least one")
    if any(r.seconds is None or r.lower_bound is None for r in records):
        raise HistoryError(f"{path} lacks the seconds or lower_bound of some epoch; delete it and the next "
                           "epoch of training rewrites it whole")
    return records


RUN = Path("metrics") / "run.json"  # whose results these are: {"checkpoint_dir": ...}


def claim(results_dir: Path, checkpoint_dir: Path) -> None:
    """Mark `results_dir` as the results of the run in `checkpoint_dir` (first use), or refuse it when it
    holds another run's: a second model must never replace the first's history, pictures or records.
    A folder written before runs were marked is taken as it is."""
    path, mine = Path(results_dir) / RUN, str(Path(checkpoint_dir).resolve())
    if path.is_file():
        try:
            owner = json.loads(path.read_text()).get("checkpoint_dir")
        except (ValueError, UnicodeDecodeError, AttributeError):
            owner = None
        if owner is not None and owner != mine:
            raise ConfigError(f"{results_dir} holds the results of the run in {owner} ({path}); give this run its "
                              f"own ⟨results_dir⟩, or leave it out: it follows ⟨checkpoint_dir⟩ "
                              f"({results_dir_for(Path(checkpoint_dir))})")
        return
    write_json({"checkpoint_dir": mine}, path)


def write_json(record: dict[str, Any] | list[dict[str, Any]], path: Path) -> Path:
    """Write a record (or a list of them) as indented JSON, atomically."""
    with atomic_write(Path(path)) as handle:
        handle.write((json.dumps(record, indent=2) + "\n").encode())
    return Path(path)


# One evaluation.json record per checkpoint and setting: a later evaluation with the same key
# replaces its record (the same seed gives the same figures), any other adds one.
EVALUATION_KEY = ("checkpoint", "epoch", "dataset", "particles", "seed")


def read_evaluations(path: Path) -> list[dict[str, Any]]:
    """The records of a list of records such as `evaluation.json` or `judge.json` (none when it does not
    exist); a file written before records were kept as a list holds one record. HistoryError when it is
    not such a file."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        found = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise HistoryError(f"{path} is not a list of records ({exc}); move it away and run the command again") from None
    records = found if isinstance(found, list) else [found]
    if not all(isinstance(r, dict) for r in records):
        raise HistoryError(f"{path} is not a list of records; move it away and run the command again")
    return records


def add_evaluation(record: dict[str, Any], path: Path) -> tuple[Path, bool]:
    """Add `record` to the list in `path`, atomically, replacing the one with the same
    EVALUATION_KEY; returns the path and whether a record was replaced."""
    records = read_evaluations(path)
    return add_records([record], path, key=EVALUATION_KEY), len(_kept(records, [record], EVALUATION_KEY)) < len(records)


def add_records(new: list[dict[str, Any]], path: Path, *, key: tuple[str, ...]) -> Path:
    """Add `new` to the list of records in `path`, atomically, replacing those with the same `key` values."""
    return write_json([*_kept(read_evaluations(path), new, key), *new], path)


def _kept(records: list[dict[str, Any]], new: list[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """`records` less those that one of `new` replaces (the same values of every field of `key`)."""
    replaced = {tuple(r.get(name) for name in key) for r in new}
    return [r for r in records if tuple(r.get(name) for name in key) not in replaced]
