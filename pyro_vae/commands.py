"""The command lines pyro-vae tells its user to run, built in one place so that every hint pastes
back and does what it says: `python cli.py <command> --option value ...`, shell-quoted."""

from __future__ import annotations

import enum
import shlex
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from pyro_vae.config import ModelConfig, Paths, TrainConfig, TuneConfig

PROGRAM = ("python", "cli.py")
# Settings with no command-line option of their own (tune's trials leave the test set alone).
_NO_OPTION = frozenset({"eval_test"})
# TuneConfig fields whose option is named otherwise.
_TUNE_OPTIONS = {"heartbeat_s": "heartbeat", "grace_s": "grace_period"}


def command(name: str, **options: Any) -> str:
    """`python cli.py NAME --an-option value ...`, shell-quoted, options in the order given.

    An option whose value is None or False is left out; True gives a bare flag (`--fresh`).
    Floats keep every digit (`repr`), so a pasted learning rate is the same number.
    """
    words = [*PROGRAM, name]
    for key, value in options.items():
        if value is None or value is False:
            continue
        words.append("--" + key.replace("_", "-"))
        if value is not True:
            words.append(_text(value))
    return shlex.join(words)


def _text(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def folders(paths: Paths) -> dict[str, Any]:
    """The data set and folder options of `paths`, None where one is the default (read now: the
    data folder's default is data/<dataset>, MNIST's follows $PYRO_VAE_DATA). A checkpoint does not
    record its folders, so a hint must repeat every one that was given."""
    default = Paths(dataset=paths.dataset)
    return {"dataset": None if paths.dataset == Paths.dataset else paths.dataset,
            **{name: None if getattr(paths, name) == getattr(default, name) else getattr(paths, name)
               for name in ("checkpoint_dir", "results_dir", "data_dir")}}


def _device(device: torch.device | None) -> str | None:
    """`--device`'s value when `auto` would not pick `device` by itself."""
    from pyro_vae.runtime import resolve_device

    return None if device is None or device.type == resolve_device("auto").type else device.type


def train(config: TrainConfig, *, paths: Paths, model_config: ModelConfig = ModelConfig(),
          device: torch.device | None = None, every: bool = False, fresh: bool = False) -> str:
    """The `train` line that continues the run of `config` and `model_config` in `paths`, to the
    same `--epochs`.

    It repeats --epochs, every setting that differs from its default, the folders and the
    device. A checkpoint carries the architecture and the recipe, but repeating them is harmless
    (the same values are no mismatch) and keeps a run that stopped before its first checkpoint
    the same run. With `every`, each setting a checkpoint records is spelled out even at its
    default (a line that must not depend on today's defaults, e.g. a reproduction); `fresh`
    adds --fresh (start over in these folders).
    """
    options: dict[str, Any] = {"epochs": config.epochs}
    for settings, default in ((config, TrainConfig()), (model_config, ModelConfig())):
        for f in fields(settings):
            value = getattr(settings, f.name)
            if f.name not in _NO_OPTION | {"epochs"} and (
                    (every and "on_resume" in f.metadata) or value != getattr(default, f.name)):
                options[f.name] = value
    return command("train", **options, **folders(paths), device=_device(device), fresh=fresh)


def tune(config: TuneConfig, *, paths: Paths, fixed: dict[str, Any], device: torch.device | None = None) -> str:
    """The `tune` line that continues the study of `config` with the same search: its settings
    where they differ from the defaults, the fixed ones, the folders and the device."""
    default = TuneConfig()
    options = {_TUNE_OPTIONS.get(f.name, f.name): getattr(config, f.name) for f in fields(config)
               if getattr(config, f.name) != getattr(default, f.name)}
    return command("tune", **options, **fixed, **folders(paths), device=_device(device))
