"""Checkpoints: one file holds everything needed to continue or to sample.

Files are `vae.epoch.N.pt` (every --save-every epochs), a rolling `last.pt` (every epoch,
and wherever an interrupted run stopped) and, with a validation split, `best.pt` (the best
validation log-likelihood so far; never taken for the newest), written atomically and loaded with
`weights_only=True`, so a checkpoint can carry tensors and plain data but never code.
One training run at a time holds a folder's lock.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import pickle
import re
import time
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch

from pyro_vae import __version__, commands, data, kernels, m2
from pyro_vae.config import FIXED, ModelConfig, Paths, TrainConfig, results_dir_for
from pyro_vae.errors import HINT, CheckpointError, CheckpointNotFound, DamagedCheckpoint
from pyro_vae.fsutil import atomic_write
from pyro_vae.metrics import EpochRecord
from pyro_vae.model import VAE
from pyro_vae.runtime import get_rng_state, set_rng_state

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"  # by validation log-likelihood, with --valid-size
LOCK = ".lock"
LOCK_PID = ".lock.pid"  # the pid of the run holding the lock
_NAME = re.compile(r"^vae\.epoch\.(\d+)\.pt$")
# The schema (`make_state` writes it): keys every checkpoint has, and keys later versions added,
# with what a checkpoint without them was: no position inside an epoch, trained on the CPU on
# torch's default kernels, on MNIST. `load` fills those in, so no reader needs a fallback of its own.
REQUIRED_KEYS = ("format", "epoch", "model_config", "train_config", "model", "optimizer", "rng", "metrics")
_ADDED_KEYS = {"version": "unknown", "device": "cpu", "position": None, "kernels": {}, "dataset": data.MNIST_RECORD}


def make_state(*, epoch: int, vae: VAE, optimizer: torch.optim.Optimizer, train_config: TrainConfig,
               generator: torch.Generator, metrics: list[Any], position: Any = None,
               dataset: dict[str, Any] = data.MNIST_RECORD) -> dict[str, Any]:
    """Everything a run needs to continue: `epoch` complete epochs, plus `position` (a dataclass:
    the image order, batches done, their loss) inside the next one, and the data it trains on
    (`data.record`)."""
    return {
        "format": FORMAT_VERSION,
        "version": __version__,
        "epoch": epoch,
        "device": generator.device.type,  # the data generator's state belongs to its device
        "model_config": asdict(vae.config),
        "train_config": asdict(train_config),
        "model": vae.state_dict(),
        "kernels": kernels.plan_of(vae),
        "optimizer": optimizer.state_dict(),
        "rng": {"global": get_rng_state(generator.device), "data": generator.get_state()},
        "metrics": [asdict(record) for record in metrics],
        "position": asdict(position) if position is not None else None,
        "dataset": dataset,
    }


def restore(state: dict[str, Any], *, vae: VAE, optimizer: torch.optim.Optimizer,
            generator: torch.Generator) -> list[EpochRecord]:
    """Put a checkpoint's weights, optimizer state and random generators back, each where it
    belongs whatever device `state`'s tensors are on: weights and optimizer state on the
    parameters' device (torch's `load_state_dict`s move them), generator states on the CPU
    (torch's setters take CPU ByteTensors, even for a CUDA generator). Returns its records."""
    vae.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"]["global"], device=generator.device)
    generator.set_state(state["rng"]["data"].cpu())
    return [EpochRecord(**record) for record in state["metrics"]]


def configs_of(state: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """The architecture and training settings a checkpoint records (settings added since it was
    written take their defaults, which is what it was trained with)."""
    return ModelConfig(**state["model_config"]), TrainConfig(**state["train_config"])


def path_for(checkpoint_dir: Path, epoch: int) -> Path:
    """`checkpoint_dir/vae.epoch.<epoch>.pt`."""
    return Path(checkpoint_dir) / f"vae.epoch.{epoch}.pt"


def list_checkpoints(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every checkpoint in the folder, oldest first."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest(checkpoint_dir: Path) -> Path | None:
    """The checkpoint with the highest epoch, or None."""
    found = list_checkpoints(checkpoint_dir)
    return found[-1][1] if found else None


def progress(state: dict[str, Any]) -> tuple[int, int]:
    """How far a checkpoint's run got: (complete epochs, batches done in the next one)."""
    position = state["position"]
    return state["epoch"], position["batch"] if position else 0


def newest_valid(checkpoint_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The readable checkpoint that got furthest, `last.pt` included, as (path, state).

    Damaged files are named and skipped; any other failure to load one (out of memory, say) is
    raised, never a reason to fall back to an older checkpoint. Returns None when the folder
    holds no checkpoint; raises CheckpointError when it holds only damaged ones (starting over
    silently could bury a long run).
    """
    if Path(checkpoint_dir).exists() and not Path(checkpoint_dir).is_dir():
        raise CheckpointError(f"the checkpoint folder {checkpoint_dir} is a file; pass ⟨checkpoint_dir⟩ a folder")
    damaged, found, warnings = [], [], []
    last = Path(checkpoint_dir) / LAST
    candidates = [path for _, path in reversed(list_checkpoints(checkpoint_dir))]
    for path in ([last] if last.is_file() else []) + candidates:
        try:
            found.append((path, load(path)))
        except DamagedCheckpoint as exc:
            warnings.append(f"warning: skipping damaged checkpoint {path.name} ({exc})")
            damaged.append(path.name)
            continue
        if path != last:
            break  # older numbered checkpoints cannot be further along
    if found:
        for warning in warnings:  # only worth saying when a readable one is used instead
            log.warning("%s", warning)
        # On a tie the numbered file wins: the same state, under a name that says which epoch.
        return max(found, key=lambda item: (progress(item[1]), item[0] != last))
    if damaged:
        raise CheckpointError(
            f"no readable checkpoint in {checkpoint_dir} ({', '.join(damaged)} damaged); "
            "move them away, or pass ⟨fresh⟩ to start over"
        )
    return None


@contextlib.contextmanager
def lock(checkpoint_dir: Path) -> Iterator[None]:
    """Hold the folder's training lock; a second run is refused with a one-line error naming it.

    The lock is filelock's `FileLock` on `.lock`: an operating-system lock (flock on Linux and
    macOS, msvcrt's on Windows) that dies with its process, however it ends, so a crashed run
    never leaves it stuck. filelock rather than fcntl by hand: it is torch's own dependency and
    covers every platform torch does. The holder's pid goes to `.lock.pid` for that error line.
    """
    folder = Path(checkpoint_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot use checkpoint folder {folder} ({exc.strerror or exc}); "
                              "pick another ⟨checkpoint_dir⟩") from None
    with warnings.catch_warnings():
        # Where the OS lock is missing filelock falls back to a lock file and says so on import.
        warnings.simplefilter("ignore")
        import filelock
    held = filelock.FileLock(folder / LOCK)
    try:
        held.acquire(timeout=0)
    except filelock.Timeout:
        try:
            holder = (folder / LOCK_PID).read_text().strip() or "unknown"
        except OSError:
            holder = "unknown"
        raise CheckpointError(f"another training run (pid {holder}) is using {folder}; wait for it to finish "
                              "or pick another ⟨checkpoint_dir⟩") from None
    except OSError as exc:
        raise CheckpointError(f"cannot use checkpoint folder {folder} ({exc.strerror or exc}); "
                              "pick another ⟨checkpoint_dir⟩") from None
    try:
        (folder / LOCK_PID).write_text(str(os.getpid()))
        yield
    finally:
        held.release()


def load_resolved(path: Path | None, *, checkpoint_dir: Path) -> tuple[Path, dict[str, Any]]:
    """`path` loaded when given, else the newest readable checkpoint in `checkpoint_dir`."""
    if path is not None:
        return Path(path), load(path)
    found = newest_valid(checkpoint_dir)
    if found is None:
        # The folder in full: a relative one means little to a notebook or a script run elsewhere.
        from pyro_vae import pretrained  # it reads checkpoints' settings: imported here, not at the top

        shipped = pretrained.names()
        # Never a shipped model in place of the user's run: the hint offers it, the user chooses.
        # The command to paste stays last, after "train first: ".
        offer = (f"use ⟨pretrained⟩ {'mnist' if 'mnist' in shipped else shipped[0]} for a model shipped with pyro-vae, "
                 "or " if shipped else "")
        raise CheckpointNotFound(f"no checkpoint in {Path(checkpoint_dir).absolute()}; {offer}train first: {HINT}",
                                 folder=checkpoint_dir,
                                 hint=commands.first_training(Paths(checkpoint_dir=Path(checkpoint_dir))))
    return found


def save(state: dict[str, Any], path: Path, *more: Path) -> Path:
    """Write `state` atomically to `path` (and to each of `more`); an existing file is replaced
    only once the new one is whole. The state is serialized once, however many files get it.

    Returns `path`.
    """
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    buffer = io.BytesIO()
    for target in (path, *more):
        with atomic_write(Path(target)) as handle:
            if not buffer.tell():  # inside the first write, so its failures get the same error
                torch.save(state, buffer)
            handle.write(buffer.getbuffer())
    return Path(path)


def prune(checkpoint_dir: Path, *, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints; returns what was deleted."""
    found = list_checkpoints(checkpoint_dir)
    doomed = [path for _, path in found[:-keep]] if keep > 0 else []
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def archive(checkpoint_dir: Path) -> Path | None:
    """Move every checkpoint into `checkpoint_dir/archive-<time>/`, so a fresh run loses nothing.

    Returns the archive folder, or None when there was nothing to move.
    """
    found = list_checkpoints(checkpoint_dir)
    for name in (LAST, BEST):
        if (Path(checkpoint_dir) / name).is_file():
            found.append((-1, Path(checkpoint_dir) / name))
    if not found:
        return None
    folder = Path(checkpoint_dir) / time.strftime("archive-%Y%m%d-%H%M%S")
    suffix = 1
    while folder.exists():
        folder = folder.with_name(f"{folder.name.split('.')[0]}.{suffix}")
        suffix += 1
    folder.mkdir(parents=True)
    for _, path in found:
        path.rename(folder / path.name)
    return folder


# What torch.load raises for bytes that are not a whole checkpoint: its weights-only unpickler
# meets garbage (UnpicklingError, ValueError, KeyError, IndexError, TypeError, EOFError, as
# found by truncating and flipping bytes of a checkpoint), its zip reader does (RuntimeErrors
# whose messages hold one of _DAMAGE_MESSAGES), or it reads past a truncated end (OSError
# EINVAL). Any other RuntimeError (out of memory, say) says nothing against the file.
_DAMAGE_ERRORS = (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, KeyError, IndexError, TypeError)
# Reading failures that are not the bytes' fault: permissions, the disk, memory.
_NOT_DAMAGE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EIO, errno.ENOMEM, errno.ENFILE, errno.EMFILE)
_DAMAGE_MESSAGES = ("PytorchStreamReader", "inline_container", "hasRecord", "does not match expected size",
                    "not resizable", "wrong byte size", "corrupt", "EOF", "magic number")


def _first_sentence(exc: BaseException) -> str:
    """torch's messages run to paragraphs: their first sentence, at most 160 characters."""
    text = str(exc).strip()
    return (text.splitlines()[0].split(". ")[0] if text else type(exc).__name__)[:160]


def require_file(path: Path) -> None:
    """Refuse a folder where a checkpoint file is asked for (`load`'s message)."""
    if Path(path).is_dir():
        load(path)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU, refusing anything that is not a whole pyro-vae checkpoint.

    Always the CPU: `restore` and `load_vae` put each part where it belongs (generator states
    must stay CPU ByteTensors), and reading onto a GPU could fail for want of its memory.

    Raises:
        DamagedCheckpoint: the file's bytes are not a whole pyro-vae checkpoint.
        CheckpointError: it could not be read for another reason (permissions, memory), said as it is.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give ⟨checkpoint⟩ a file such as {path}/last.pt, "
                              "or pass the folder as ⟨checkpoint_dir⟩")
    if not path.is_file():
        there = sorted(p.name for p in path.parent.glob("*.pt")) if path.parent.is_dir() else []
        shown = f"holds {', '.join(there[:5])}{' ...' if len(there) > 5 else ''}" if there else "holds no checkpoint"
        raise CheckpointError(f"checkpoint {path} does not exist ({path.parent.absolute()} {shown}); give "
                              "⟨checkpoint⟩ one that does, or ⟨checkpoint_dir⟩ its folder for the furthest in it")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        if exc.errno not in _NOT_DAMAGE_ERRNOS:  # e.g. EINVAL: torch's reader ran past a truncated file's end
            raise DamagedCheckpoint(f"checkpoint {path} is unreadable ({exc.strerror or _first_sentence(exc)}); "
                                    "delete it or pick another with ⟨checkpoint⟩") from None
        raise CheckpointError(f"cannot read checkpoint {path} ({exc.strerror or _first_sentence(exc)}); "
                              "check its permissions and the disk, then run again") from None
    except RuntimeError as exc:
        if not any(message in str(exc) for message in _DAMAGE_MESSAGES):
            raise CheckpointError(f"loading checkpoint {path} failed ({_first_sentence(exc)}); nothing says the "
                                  "file is damaged: fix that cause (free memory, say) and run again") from None
        raise DamagedCheckpoint(f"checkpoint {path} is unreadable ({_first_sentence(exc)}); delete it or pick "
                                "another with ⟨checkpoint⟩") from None
    except _DAMAGE_ERRORS as exc:
        raise DamagedCheckpoint(f"checkpoint {path} is unreadable ({_first_sentence(exc)}); delete it or pick "
                                "another with ⟨checkpoint⟩") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise DamagedCheckpoint(f"{path} is not a pyro-vae checkpoint; pick another with ⟨checkpoint⟩")
    if state["format"] != FORMAT_VERSION:
        raise DamagedCheckpoint(
            f"{path} has checkpoint format {state['format']}, this pyro-vae reads {FORMAT_VERSION}"
        )
    return {**_ADDED_KEYS, **state}


# Resume rules: what a continuing run does with each setting, by its field's metadata in config.py
# (FIXED, CARRIED, or none: this call's value).
FIXED_ON_RESUME = FIXED["on_resume"]
# What fits each goal after a mismatch: resume the run that is there, train the other model in
# folders of its own (checkpoints and history), or archive the run and start over.
RESUME_HINT = ("drop {flag} to resume that run; to train this other model beside it, add ⟨checkpoint_dir⟩ {beside} "
               "(a folder of its own; its results go to {results}); or add ⟨fresh⟩ to start over in this folder "
               "(its checkpoints are archived)")


def resumed(recorded: Any, given: Any, *, explicit: frozenset[str], source: Path, hint: str = RESUME_HINT) -> Any:
    """The config (ModelConfig or TrainConfig) a run continuing from `source` uses, by each field's
    FIXED/CARRIED metadata: `recorded` is the checkpoint's, `given` this call's, `explicit` the
    names the user gave. A FIXED setting given explicitly with another value is an error, whose
    `hint` may name `{flag}`, `{beside}` (a folder next to `source`'s, e.g. z-dim-4) and `{results}` (its results)."""
    kept = {}
    # A recipe's mismatch first: it says more than the first of its settings that differs.
    for f in sorted(fields(given), key=lambda f: f.name != "recipe"):
        rule = f.metadata.get("on_resume")
        if rule is None:
            continue
        old, new = getattr(recorded, f.name), getattr(given, f.name)
        if rule == FIXED_ON_RESUME and f.name in explicit and new != old:
            flag, beside = f"⟨{f.name}⟩", Path(source).parent / f"{f.name.replace('_', '-')}-{new}"
            raise CheckpointError(f"{source} was trained with {flag} {old}, not {new}; "
                                  + hint.format(flag=flag, beside=beside, results=results_dir_for(beside)))
        if rule == FIXED_ON_RESUME or f.name not in explicit:
            kept[f.name] = old
    return replace(given, **kept)


def model_config_of(state: dict[str, Any], *, path: Path, z_dim: int | None = None,
                    hidden_dim: int | None = None) -> ModelConfig:
    """The architecture a checkpoint records, checked against explicitly given sizes (None: not given)."""
    given = {name: value for name, value in (("z_dim", z_dim), ("hidden_dim", hidden_dim)) if value is not None}
    return resumed(configs_of(state)[0], ModelConfig(**given), explicit=frozenset(given), source=path,
                   hint="drop {flag} or pick a matching checkpoint")


def load_vae(path: Path | None, *, checkpoint_dir: Path, device: torch.device, z_dim: int | None = None,
             hidden_dim: int | None = None) -> tuple[VAE, Path]:
    """`read_vae`'s VAE and the checkpoint's path."""
    vae, path, _ = read_vae(path, checkpoint_dir=checkpoint_dir, device=device, z_dim=z_dim, hidden_dim=hidden_dim)
    return vae, path


def read_vae(path: Path | None, *, checkpoint_dir: Path, device: torch.device, z_dim: int | None = None,
             hidden_dim: int | None = None) -> tuple[VAE, Path, dict[str, Any]]:
    """Build the VAE a checkpoint records and load its weights, reading the file once.

    Args:
        path: the checkpoint, or None for the newest readable one in `checkpoint_dir`.
        z_dim, hidden_dim: sizes the user gave explicitly, checked against the checkpoint.
    Returns:
        (the VAE in eval mode on `device`, the checkpoint's path, its state as `load` returns it).
    """
    path, state = load_resolved(path, checkpoint_dir=checkpoint_dir)
    config = model_config_of(state, path=path, z_dim=z_dim, hidden_dim=hidden_dim)
    vae = m2.build(config).to(device)
    try:
        vae.load_state_dict(state["model"])
    except RuntimeError:
        raise CheckpointError(f"{path}: weights do not fit the architecture it records; it is damaged") from None
    vae.eval()
    return vae, path, state
