"""Progress: one transient rich display with named rows on a terminal; elsewhere (a log file, a
pipe, a cluster's output) a log line now and then for a row that is slow, so a long step is never
silent. Either way each row says the time it has left (and a row counting whole passes of another,
like training's epochs, the time left in the run). Callers never check which."""

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
    unit_of: str | None = None  # a row each of whose units is one whole pass of that row
    started: float = 0.0  # the pace is measured from here ...
    start_done: int = 0  # ... and this count
    pace: float | None = None  # seconds per unit, the latest measure

    def restart(self, done: int) -> None:
        self.started, self.start_done = time.monotonic(), done

    def measure(self) -> None:
        if self.done > self.start_done:
            self.pace = (time.monotonic() - self.started) / (self.done - self.start_done)


def duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `2 h 07 min`: a time left, as a person reads it."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


class Bars:
    """`with Bars(enabled) as bars: bars.add("epochs", total=10); bars.advance("epochs")`.

    Rows keep their order; `update` moves a row to a count (a resumed run starts mid-way, a row
    starting over at 0 is a new pass). Log lines printed while it is live stay above it. Not
    `enabled` (no terminal), a row logs "name: done/total (p%), T left" as LINE_EVERY_S and
    LINE_STEP allow, unless added with `lines=False` (a row whose steps log lines of their own,
    like training's epochs). A row added with `unit_of="batches"` counts whole passes of that
    row: its time left is the pass in progress plus the passes after it at the latest pace, and
    the other row's lines say it too ("20 s left, 1 h 05 min in all").
    """

    def __init__(self, enabled: bool) -> None:
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._rows: dict[str, _Row] = {}
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[left]}"), transient=True)

    def __enter__(self) -> Bars:
        if self._progress is not None:
            self._progress.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(kind, value, traceback)

    def add(self, name: str, *, total: int, completed: int = 0, lines: bool = True,
            unit_of: str | None = None) -> None:
        row = _Row(total=total, done=completed, lines=lines, said_done=completed, said_at=time.monotonic(),
                   unit_of=unit_of)
        row.restart(completed)
        self._rows[name] = row
        if self._progress is not None:
            self._tasks[name] = self._progress.add_task(name, total=total, completed=completed, left="")

    def update(self, name: str, *, completed: int, total: int | None = None) -> None:
        row = self._rows[name]
        row.total = row.total if total is None else total
        if completed < row.done:  # a row started over (the next epoch's batches)
            row.restart(completed)
            row.said_done, row.said_at = completed, time.monotonic()
        row.done = completed
        self._moved(name, row)

    def advance(self, name: str) -> None:
        row = self._rows[name]
        row.done += 1
        self._moved(name, row)

    def remove(self, name: str) -> None:
        """Take a row away (a step that is over, such as one evaluation of many)."""
        self._rows.pop(name, None)
        if self._progress is not None:
            self._progress.remove_task(self._tasks.pop(name))
            self._progress.refresh()  # now, or the next log line is printed above the stale row

    def left(self, name: str) -> float | None:
        """Seconds the row has left at its latest pace (None before there is a pace)."""
        row = self._rows[name]
        if row.unit_of is None:
            return None if row.pace is None else row.pace * max(0, row.total - row.done)
        inner = self._rows.get(row.unit_of)
        if inner is None or inner.pace is None:
            return None
        passes_after = max(0, row.total - row.done - 1)
        return (self.left(row.unit_of) or 0.0) + passes_after * inner.pace * inner.total

    def _moved(self, name: str, row: _Row) -> None:
        row.measure()
        if self._progress is not None:
            self._progress.update(self._tasks[name], completed=row.done, total=row.total, left=self._left_text(name))
            for other, outer in self._rows.items():
                if outer.unit_of == name:
                    self._progress.update(self._tasks[other], left=self._left_text(other))
            return
        now = time.monotonic()
        quiet = now - row.said_at
        if row.lines and row.total and row.done > row.said_done and quiet >= LINE_EVERY_S and (
                row.done - row.said_done >= LINE_STEP * row.total or quiet >= LINE_QUIET_S):
            log.info("%s: %d/%d (%d%%)%s", name.strip(), row.done, row.total, 100 * row.done // row.total,
                     self._left_text(name, whole=True))
            row.said_done, row.said_at = row.done, now

    def _left_text(self, name: str, *, whole: bool = False) -> str:
        left = self.left(name)
        if left is None:
            return ""
        text = f"{duration(left)} left"
        if not whole:  # a terminal shows the run's time on its own row
            return text
        outer = next((other for other, row in self._rows.items() if row.unit_of == name), None)
        in_all = None if outer is None else self.left(outer)
        if in_all is not None and self._rows[outer].total - self._rows[outer].done > 1:
            text += f", {duration(in_all)} in all"
        return f", {text}"
