"""The one exception type users see: its message is a single line saying what is wrong and what to do."""


class PyroVAEError(Exception):
    """A mistake the user can fix; the CLI prints it as one line and exits non-zero."""


class DataError(PyroVAEError):
    """MNIST files are missing, damaged or cannot be fetched."""


class CheckpointError(PyroVAEError):
    """No usable checkpoint, or one that does not fit the options given."""


class DamagedCheckpoint(CheckpointError):
    """A checkpoint file whose bytes are not a whole pyro-vae checkpoint: the one kind of load
    failure that lets a resume fall back to an older checkpoint."""


class DeviceMismatch(CheckpointError):
    """A run to resume was trained on another kind of device (`recorded`: "cpu" or "cuda")."""

    def __init__(self, message: str, *, recorded: str) -> None:
        super().__init__(message)
        self.recorded = recorded


class ConfigError(PyroVAEError):
    """An option value is out of range."""


class HistoryError(PyroVAEError):
    """The metrics history is missing or not one this program wrote."""


class TrainingDiverged(PyroVAEError):
    """The loss stopped being a finite number."""


class WriteError(PyroVAEError):
    """A file could not be written (disk full, folder not writable); what was there is intact."""


class Interrupted(PyroVAEError):
    """Training stopped on a signal after saving where it was; `exit_code` is 128 + the signal,
    `stopped` the part of the message that says where it stopped (a caller may give its own way on)."""

    def __init__(self, message: str, *, exit_code: int, stopped: str = "") -> None:
        super().__init__(message)
        self.exit_code, self.stopped = exit_code, stopped or message


class MissingExtra(PyroVAEError):
    """A feature needs `package`, an optional dependency that comes with pyro-vae's `extra`."""

    def __init__(self, *, extra: str, package: str) -> None:
        super().__init__(f"{extra} needs {package}, which is not installed: pip install 'pyro-vae[{extra}]'")
        self.extra, self.package = extra, package
