"""pyro-vae: the ZhuSuan MNIST variational autoencoder, re-implemented in Pyro.

    import pyro_vae
    model = pyro_vae.load("checkpoints")          # a checkpoint file, or a folder's furthest one
    digits = model.sample(16, seed=0)             # (16, 28, 28) pixel probabilities
    shipped = pyro_vae.load_pretrained("mnist")   # a model shipped with the package, no training
    result = pyro_vae.train(epochs=5, checkpoint_dir="checkpoints/small", z_dim=20)

Importing the package is cheap: torch and Pyro load on first use of a name that needs them.
The names below are the public API (docs/api.md); everything else is the library's inside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it, imported on first use (PEP 562).
_API = {
    "load": "api", "load_pretrained": "api", "Model": "api", "train": "api", "TrainResult": "trainer", "load_dataset": "api", "download": "api",
    "ModelConfig": "config", "TrainConfig": "config", "Paths": "config",
    "EpochRecord": "metrics",
    "PyroVAEError": "errors", "CheckpointError": "errors", "CheckpointNotFound": "errors",
    "DamagedCheckpoint": "errors", "ConfigError": "errors", "DataError": "errors", "HistoryError": "errors",
    "Interrupted": "errors", "UnknownPretrained": "pretrained", "InterruptedTwice": "errors", "TrainingDiverged": "errors", "WriteError": "errors",
    "Hint": "errors", "MissingExtra": "errors",
}
__all__ = sorted(_API)

if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from pyro_vae.api import Model, download, load, load_dataset, load_pretrained, train  # noqa: F401
    from pyro_vae.config import ModelConfig, Paths, TrainConfig  # noqa: F401
    from pyro_vae.errors import (CheckpointError, CheckpointNotFound, ConfigError, DamagedCheckpoint,  # noqa: F401
                                 DataError, Hint, HistoryError, Interrupted, InterruptedTwice, MissingExtra,
                                 PyroVAEError,
                                 TrainingDiverged, WriteError)
    from pyro_vae.metrics import EpochRecord  # noqa: F401
    from pyro_vae.trainer import TrainResult  # noqa: F401


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'pyro_vae' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"pyro_vae.{_API[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
