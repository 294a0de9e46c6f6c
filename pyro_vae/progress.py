"""Progress bars: one transient rich display with named rows, or nothing at all when disabled
(not a terminal), so callers never check which."""

from __future__ import annotations

from types import TracebackType
from typing import Any


class Bars:
    """`with Bars(enabled) as bars: bars.add("epochs", total=10); bars.advance("epochs")`.

    Rows keep their order; `update` moves a row to a count (a resumed run starts mid-way).
    Log lines printed while it is live stay above it.
    """

    def __init__(self, enabled: bool) -> None:
        self._progress: Any = None
        self._rows: dict[str, Any] = {}
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

    def add(self, name: str, *, total: int, completed: int = 0) -> None:
        if self._progress is not None:
            self._rows[name] = self._progress.add_task(name, total=total, completed=completed)

    def update(self, name: str, *, completed: int, total: int | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._rows[name], completed=completed, total=total)

    def advance(self, name: str) -> None:
        if self._progress is not None:
            self._progress.advance(self._rows[name])
