"""The one exception type users see: its message is a single line saying what is wrong and what to do."""


class PyroVAEError(Exception):
    """A mistake the user can fix; the CLI prints it as one line and exits non-zero."""


class DataError(PyroVAEError):
    """MNIST files are missing, damaged or cannot be fetched."""


class CheckpointError(PyroVAEError):
    """No usable checkpoint, or one that does not fit the options given."""


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
