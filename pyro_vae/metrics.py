"""Per-epoch figures and their history file, `results/metrics/history.csv`."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from pyro_vae.fsutil import atomic_write

HISTORY = Path("metrics") / "history.csv"  # under the results folder
EVALUATION = Path("metrics") / "evaluation.json"


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's figures: wall seconds and the mean training lower bound per image, in nats."""

    epoch: int
    seconds: float
    lower_bound: float


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


def read_history(path: Path) -> list[EpochRecord]:
    """The records of a history file written by `write_history`."""
    with open(path, newline="") as handle:
        return [
            EpochRecord(epoch=int(row["epoch"]), seconds=float(row["seconds"]),
                        lower_bound=float(row["lower_bound"]))
            for row in csv.DictReader(handle)
        ]


def write_json(record: dict[str, Any], path: Path) -> Path:
    """Write a record as indented JSON, atomically."""
    with atomic_write(Path(path)) as handle:
        handle.write((json.dumps(record, indent=2) + "\n").encode())
    return Path(path)
