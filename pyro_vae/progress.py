"""Progress: one transient rich display with named rows on a terminal; elsewhere (a log file, a
pipe, a cluster's output) a log line now and then for a row that is slow, so a long step is never
silent. Callers never check which."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

# Without a terminal a row says how far it is at most every LINE_EVERY_S seconds, and only after
# another LINE_STEP of it is done: a step of a few seconds prints nothing, a 3-minute evaluation
# a line every 10% or so. A slower one (evaluate's 1000 particles on a small CPU take an hour)
# still says something every LINE_QUIET_S seconds, however little it did meanwhile.
LINE_EVERY_S = 10.0
LINE_STEP = 0.1
LINE_QUIET_S = 60.0


@dataclass
class _Row:
    total: int
    done: int
    lines: bool
    said_done: int
    said_at: float


class Bars:
    """`with Bars(enabled) as bars: bars.add("epochs", total=10); bars.advance("epochs")`.

    Rows keep their order; `update` moves a row to a count (a resumed run starts mid-way).
    Log lines printed while it is live stay above it. Not `enabled` (no terminal), a row logs
    "name: done/total (p%)" as LINE_EVERY_S and LINE_STEP allow, unless added with `lines=False`
    (a row whose steps log lines of their own, like training's epochs).
    """

    def __init__(self, enabled: bool) -> None:
        self._progress: Any = None
        self._rows: dict[str, Any] = {}
        self._lines: dict[str, _Row] = {}
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), transient=True)

    def __enter__(self) -> Bars:
        if self._progress is not None:
            self._progress.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(kind, value, traceback)

    def add(self, name: str, *, total: int, completed: int = 0, lines: bool = True) -> None:
        if self._progress is not None:
            self._rows[name] = self._progress.add_task(name, total=total, completed=completed)
        else:
            self._lines[name] = _Row(total=total, done=completed, lines=lines, said_done=completed,
                                     said_at=time.monotonic())

    def update(self, name: str, *, completed: int, total: int | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._rows[name], completed=completed, total=total)
            return
        row = self._lines[name]
        row.total = row.total if total is None else total
        row.done = completed
        if completed < row.said_done:  # a row started over (the next epoch's batches)
            row.said_done, row.said_at = completed, time.monotonic()
        self._say(name, row)

    def advance(self, name: str) -> None:
        if self._progress is not None:
            self._progress.advance(self._rows[name])
            return
        row = self._lines[name]
        row.done += 1
        self._say(name, row)

    def remove(self, name: str) -> None:
        """Take a row away (a step that is over, such as one evaluation of many)."""
        if self._progress is not None:
            self._progress.remove_task(self._rows.pop(name))
            self._progress.refresh()  # now, or the next log line is printed above the stale row
        else:
            self._lines.pop(name, None)

    @staticmethod
    def _say(name: str, row: _Row) -> None:
        now = time.monotonic()
        quiet = now - row.said_at
        if row.lines and row.total and row.done > row.said_done and quiet >= LINE_EVERY_S and (
                row.done - row.said_done >= LINE_STEP * row.total or quiet >= LINE_QUIET_S):
            log.info("%s: %d/%d (%d%%)", name.strip(), row.done, row.total, 100 * row.done // row.total)
            row.said_done, row.said_at = row.done, now
