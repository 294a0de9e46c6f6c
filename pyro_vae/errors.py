"""The exceptions users see, with fields, and the one way their messages name settings and commands.

A message names a setting as `setting.z_dim` and a command to run as `HINT` (the exception's
`hint`): `str(exc)` reads them as Python (`z_dim`, `pyro_vae.train(epochs=10)`); the command line
spells them as its options and command lines (`--z-dim`, `pyro-vae train --epochs 10`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SETTING = re.compile(r"\u27e8([a-z_]+)\u27e9")  # ⟨z_dim⟩
HINT = "\u27e8\u27e9"  # ⟨⟩: where the exception's hint goes


class _Settings:
    """`setting.z_dim` is the marker a message names the z_dim setting with."""

    def __getattr__(self, name: str) -> str:
        return f"\u27e8{name}\u27e9"


setting = _Settings()


@dataclass(frozen=True)
class Hint:
    """A call that does what a message suggests: `command` with keyword `options` (None and False left out,
    True a bare flag), named as the Python API's keywords, e.g. Hint("train", {"epochs": 10})."""

    command: str
    options: dict[str, Any] = field(default_factory=dict)

    def python(self) -> str:
        """The call as Python: pyro_vae.train(epochs=10, checkpoint_dir='ck')."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.given().items())
        return f"pyro_vae.{self.command.replace('-', '_')}({args})"

    def given(self) -> dict[str, Any]:
        """The options that are given (not None, not False), as plain values: paths as text, enums as their value."""
        plain = lambda v: str(v) if isinstance(v, Path) else getattr(v, "value", v)  # noqa: E731
        return {k: plain(v) for k, v in self.options.items() if v is not None and v is not False}

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "options": self.given()}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Hint:
        return cls(record["command"], dict(record["options"]))


@dataclass(frozen=True)
class Hinted:
    """A log message that names settings or holds a hint: `str()` reads it as Python; the command
    line's log handler spells it as options and a command line. `text` is formatted already."""

    text: str
    hint: Hint | None = None

    def __str__(self) -> str:
        return render(self.text, self.hint, name=str, call=Hint.python)


def render(text: str, hint: Hint | None, *, name: Callable[[str], str], call: Callable[[Hint], str]) -> str:
    """`text` with each setting marker as `name(setting)` and the hint marker as `call(hint)`."""
    text = _SETTING.sub(lambda m: name(m[1]), text)
    return text.replace(HINT, call(hint)) if hint is not None else text


class PyroVAEError(Exception):
    """A mistake the user can fix; the CLI prints it as one line and exits non-zero.

    Args:
        message: one line; names settings as `setting.NAME` and puts `hint` where `HINT` stands.
        hint: the call that mends it, if one does.
    """

    def __init__(self, message: str, *, hint: Hint | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    @property
    def template(self) -> str:
        return self.args[0] if self.args else ""

    def __str__(self) -> str:
        return render(self.template, self.hint, name=str, call=Hint.python)


class DataError(PyroVAEError):
    """MNIST files are missing, damaged or cannot be fetched."""


class CheckpointError(PyroVAEError):
    """No usable checkpoint, or one that does not fit the options given."""


class CheckpointNotFound(CheckpointError):
    """`folder` holds no readable checkpoint (train first)."""

    def __init__(self, message: str, *, folder: Path, hint: Hint | None = None) -> None:
        super().__init__(message, hint=hint)
        self.folder = Path(folder)


class DamagedCheckpoint(CheckpointError):
    """A checkpoint file whose bytes are not a whole pyro-vae checkpoint: the one kind of load
    failure that lets a resume fall back to an older checkpoint."""


class DeviceMismatch(CheckpointError):
    """A run to resume was trained on another kind of device (`recorded`: "cpu" or "cuda")."""

    def __init__(self, message: str, *, recorded: str, hint: Hint | None = None) -> None:
        super().__init__(message, hint=hint)
        self.recorded = recorded


class ConfigError(PyroVAEError):
    """An option value is out of range."""


class NoLabels(ConfigError):
    """A class was asked of a model trained without labels (`train --labels` makes one that knows them)."""


class HistoryError(PyroVAEError):
    """The metrics history is missing or not one this program wrote."""


class TrainingDiverged(PyroVAEError):
    """The loss stopped being a finite number."""


class WriteError(PyroVAEError):
    """A file could not be written (disk full, folder not writable); what was there is intact."""


class InterruptedTwice(PyroVAEError):
    """A second Ctrl-C stopped training at once, without saving the position (the files on disk are whole)."""

    exit_code = 130


class Interrupted(PyroVAEError):
    """Training stopped on a signal after saving where it was; `exit_code` is 128 + the signal,
    `stopped` the part of the message that says where it stopped (a caller may give its own way on),
    `checkpoint` the file that holds the position."""

    def __init__(self, message: str, *, exit_code: int, stopped: str = "", hint: Hint | None = None,
                 checkpoint: Path | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code, self.stopped, self.checkpoint = exit_code, stopped or message, checkpoint


class MissingExtra(PyroVAEError):
    """A feature needs `package`, an optional dependency that comes with pyro-vae's `extra`; the
    message names the feature as `feature` (e.g. `setting.tensorboard`), or else as the extra."""

    def __init__(self, *, extra: str, package: str, feature: str | None = None) -> None:
        super().__init__(f"{feature or extra} needs {package}, which is not installed: pip install 'pyro-vae[{extra}]'")
        self.extra, self.package = extra, package
