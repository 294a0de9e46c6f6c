"""The calls pyro-vae suggests to its user, as `Hint`s: a command with the settings that continue,
redo or mend a run, named as the Python API's keywords. Only the command line spells them as
command lines (`pyro_vae.cli`); `str()` of an error spells them as Python calls."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from pyro_vae.config import ModelConfig, Paths, TrainConfig, TuneConfig, results_dir_for, split_settings, with_recipe
from pyro_vae.errors import Hint

# Settings with no command-line option of their own (tune's trials leave the test set alone; --labels
# sets the classes from the data).
_NO_OPTION = frozenset({"eval_test", "classes"})
# Settings that only mean something beside another one (an option that would do nothing is refused).
_ONLY_WITH = {"tensorboard_images_every": lambda config: config.tensorboard,
              "pseudo_inputs": lambda config: config.prior == "vamp"}
# TuneConfig fields whose option is named otherwise.
_TUNE_OPTIONS = {"heartbeat_s": "heartbeat", "grace_s": "grace_period"}


def folders(paths: Paths) -> dict[str, Any]:
    """The data set and folder settings of `paths`, None where one is the default (read now: the
    data folder's default is data/<dataset>, MNIST's follows $PYRO_VAE_DATA; the results folder's
    follows the checkpoint folder). A checkpoint does not record its folders, so a hint must repeat
    every one that was given."""
    default = Paths(dataset=paths.dataset)
    return {"dataset": None if paths.dataset == Paths.dataset else paths.dataset,
            "checkpoint_dir": None if paths.checkpoint_dir == default.checkpoint_dir else paths.checkpoint_dir,
            "results_dir": None if paths.results_dir == results_dir_for(paths.checkpoint_dir) else paths.results_dir,
            "data_dir": None if paths.data_dir == default.data_dir else paths.data_dir}


def _device(device: torch.device | None) -> str | None:
    """The device setting's value when `auto` would not pick `device` by itself."""
    from pyro_vae.runtime import resolve_device

    return None if device is None or device.type == resolve_device("auto").type else device.type


def train(config: TrainConfig, *, paths: Paths, model_config: ModelConfig = ModelConfig(),
          device: torch.device | None = None, every: bool = False, fresh: bool = False) -> Hint:
    """The `train` call that continues the run of `config` and `model_config` in `paths`, to the
    same `epochs`.

    It repeats epochs, every setting that differs from its default, the folders and the device.
    A checkpoint carries the architecture and the recipe, but repeating them is harmless (the
    same values are no mismatch) and keeps a run that stopped before its first checkpoint the
    same run. A run from a recipe names it, and the settings where it differs from the recipe.
    With `every`, each setting a checkpoint records is spelled out even at its default
    (a call that must not depend on today's defaults, e.g. a reproduction); `fresh` adds fresh
    (start over in these folders).
    """
    options: dict[str, Any] = {"epochs": config.epochs, **({"recipe": config.recipe} if config.recipe else {})}
    # A recipe's run is spelled as the recipe and what differs from it (the recipe's own name first).
    recipe = with_recipe(config.recipe or None, {})
    model_default, train_default = split_settings(recipe)
    for settings, default in ((config, train_default), (model_config, model_default)):
        for f in fields(settings):
            value = getattr(settings, f.name)
            beside = _ONLY_WITH.get(f.name)
            if f.name not in _NO_OPTION | {"epochs", "recipe"} and (beside is None or beside(settings)) and (
                    (every and "on_resume" in f.metadata) or value != getattr(default, f.name)):
                options[f.name] = value
    return Hint("train", {**options, **folders(paths), "device": _device(device), "fresh": fresh})


def tune(config: TuneConfig, *, paths: Paths, fixed: dict[str, Any], device: torch.device | None = None) -> Hint:
    """The `tune` call that continues the study of `config` with the same search: its settings
    where they differ from the defaults, the fixed ones, the folders and the device."""
    default = TuneConfig()
    options = {_TUNE_OPTIONS.get(f.name, f.name): getattr(config, f.name) for f in fields(config)
               if getattr(config, f.name) != getattr(default, f.name)}
    return Hint("tune", {**options, **fixed, **folders(paths), "device": _device(device)})


def download(dataset: str, folder: Path | None = None) -> Hint:
    """The `download` call that fetches `dataset` into `folder` (None: its default folder)."""
    where = folders(Paths(dataset=dataset, data_dir=folder))
    return Hint("download", {"dataset": where["dataset"], "data_dir": where["data_dir"]})


def first_training(paths: Paths) -> Hint:
    """The `train` call that starts a run in `paths`' folders."""
    return Hint("train", folders(paths))
