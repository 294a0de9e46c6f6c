"""Atomic file writes, shared by checkpoints, downloaded data and images.

A file appears under its real name only once it is whole: it is written to a temporary
file in the same folder, flushed to disk and renamed, so a crash never leaves a half file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pyro_vae.errors import WriteError

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary binary file that replaces `path` when the block exits without error.

    On any error the temporary file is removed and `path` is left as it was; an OSError (disk
    full, folder not writable) becomes a one-line WriteError naming the file.
    """
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            # mkstemp makes files private (0600); give the result the permissions a plain open() would.
            # (Windows has no such modes, and Python there has no os.fchmod before 3.13.)
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), 0o666 & ~_umask())
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        if tmp_name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        if isinstance(exc, OSError):
            hint = "free some disk space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "choose another folder"
            raise WriteError(f"could not write {path} ({exc.strerror or exc}); nothing there was replaced: {hint}") from None
        raise
    _fsync_dir(path.parent)


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in `folder`; call it only while no writer runs."""
    leftovers = [p for p in Path(folder).glob(f".*{TMP_SUFFIX}") if p.is_file()] if Path(folder).is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets a folder be opened.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
