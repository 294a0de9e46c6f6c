"""The data sets in MNIST's IDX format (MNIST, Fashion-MNIST, a user's own): finding, verifying
and reading their files, their class names, and batches binarized afresh (fetch.py fetches them).

Images stay uint8 in memory; a batch becomes x ~ Bernoulli(intensity / 255) only when drawn.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyro_vae.config import DatasetName, default_data_dir
from pyro_vae.errors import HINT, ConfigError, DataError, Hint

log = logging.getLogger(__name__)

IMAGE_SIZE = 28
IMAGE_PIXELS = IMAGE_SIZE * IMAGE_SIZE
NUM_CLASSES = 10  # MNIST's and Fashion-MNIST's

# split -> (images file, labels file), under their original names (the same for every data set).
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
# Fashion-MNIST's, taken from Debian's package of Zalando's files.
FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
CLASSES_FILE = "classes.txt"  # beside a user's own IDX files: one class name a line, in label order

# Test-set indices of one exemplar of each digit 0..9, chosen by the seed program.
DIGIT_EXEMPLARS: tuple[int, ...] = (3, 2, 1, 90, 95, 23, 11, 0, 84, 7)
# Fashion-MNIST's: the first test image of each class. A rule anyone can re-derive, rather than
# hand-picked "nice" items (which would flatter the samples); each is a plain, centred item.
FASHION_EXEMPLARS: tuple[int, ...] = (19, 2, 1, 13, 6, 8, 4, 9, 18, 0)
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")

# The test set is binarized once, with this seed, so every run encodes the same digits.
TEST_BINARIZE_SEED = 1234

_IDX_UBYTE = 0x08  # IDX type code for unsigned bytes


@dataclass(frozen=True)
class Dataset:
    """One data set in MNIST's IDX format: the four files under their MNIST names, in a folder of its own."""

    name: str  # the --dataset value, and its folder under data/
    title: str  # as people write it
    sha256: dict[str, str] | None  # of the uncompressed files; None: a user's own, not checked
    classes: tuple[str, ...] = ()  # in label order; () reads them from the folder (see `class_names`)
    exemplars: tuple[int, ...] = ()  # a test image of each class for `generate --mode digit`; (): the first
    noun: str = "class"  # what one class is called in messages ("digit" for MNIST)
    black_and_white: bool = False  # ink on paper, by nature: the page's quiz thresholds it as the blog did

    def download_hint(self, folder: Path | None = None) -> Hint | None:
        """The `download` call that fetches this data set into `folder`; None for data that cannot be fetched."""
        from pyro_vae import commands

        return None if self.sha256 is None else commands.download(self.name, folder)

    def remedy(self, folder: Path | None = None) -> str:
        """What to do about a damaged or missing file in `folder` (with `download_hint(folder)` as the hint)."""
        if self.sha256 is None:
            return "put a well-formed IDX file there (raw or .gz)"
        return f"delete it and run: {HINT}"


DATASETS: dict[str, Dataset] = {
    DatasetName.mnist.value: Dataset(
        name="mnist", title="MNIST", sha256=SHA256, classes=tuple(map(str, range(NUM_CLASSES))),
        exemplars=DIGIT_EXEMPLARS, noun="digit", black_and_white=True),
    DatasetName.fashion_mnist.value: Dataset(
        name="fashion-mnist", title="Fashion-MNIST", sha256=FASHION_SHA256, classes=FASHION_CLASSES,
        exemplars=FASHION_EXEMPLARS),
    DatasetName.idx.value: Dataset(name="idx", title="your IDX data", sha256=None),
}


def get(name: str) -> Dataset:
    """The registered data set called `name` (a `--dataset` value)."""
    try:
        return DATASETS[str(name)]
    except KeyError:
        raise ConfigError(f"⟨dataset⟩ must be one of {', '.join(DATASETS)}, got {name!r}") from None


def parse_idx(raw: bytes, *, name: str, ndim: int, dataset: Dataset | None = None,
               folder: Path | None = None) -> np.ndarray:
    """Parse IDX bytes of unsigned bytes with `ndim` dimensions; raise DataError if malformed
    (naming the `download` into `folder`, where the file came from one)."""
    dataset = dataset or DATASETS[DatasetName.mnist.value]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX file ({len(raw)} bytes, shorter than its header)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or raw[3] != ndim:
        original = "a well-formed IDX file" if dataset.sha256 is None else f"the original {dataset.title} file"
        raise DataError(
            f"{name}: not an IDX file of {ndim}-d unsigned bytes (magic number "
            f"0x{raw[:4].hex()}, expected 0x000008{ndim:02x}); replace it with {original}"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)  # Python ints: numpy's product can wrap around
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "too long"
        raise DataError(f"{name}: {kind} ({len(raw)} bytes where its header {shape} needs {expected}); "
                        f"{dataset.remedy(folder)}", hint=dataset.download_hint(folder))
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_bytes(path: Path, *, dataset: Dataset | None = None) -> bytes:
    """The file's uncompressed content, un-gzipping `.gz` files."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        dataset = dataset or DATASETS["mnist"]
        raise DataError(f"{path}: cannot be read ({exc}); {dataset.remedy(path.parent)}",
                        hint=dataset.download_hint(path.parent))


def read_idx(path: Path, *, ndim: int, sha256: str | None = None, dataset: Dataset | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes, raw or `.gz`, checking magic number, shape and hash.

    Args:
        path: the file.
        ndim: expected number of dimensions (3 for images, 1 for labels).
        sha256: expected hash of the uncompressed content, or None to skip that check.
        dataset: whose file it is, for the messages (default MNIST).
    Returns:
        uint8 array of the shape its header gives, e.g. (60000, 28, 28).
    """
    path = Path(path)
    dataset = dataset or DATASETS[DatasetName.mnist.value]
    raw = _read_bytes(path, dataset=dataset)
    array = parse_idx(raw, name=str(path), ndim=ndim, dataset=dataset, folder=path.parent)
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise DataError(f"{path}: SHA-256 does not match the original {dataset.title} file; {dataset.remedy(path.parent)}",
                        hint=dataset.download_hint(path.parent))
    return array


def find_file(data_dir: Path, name: str) -> Path | None:
    """`data_dir/name`, else `data_dir/name.gz`, else None."""
    for candidate in (Path(data_dir) / name, Path(data_dir) / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def missing_files(data_dir: Path) -> list[str]:
    """Names of the four IDX files not present (raw or .gz) in `data_dir`."""
    return [name for split in FILES.values() for name in split if find_file(data_dir, name) is None]


def require_folder(data_dir: Path) -> None:
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"the data folder {data_dir} is a file, not a folder; pass ⟨data_dir⟩ a folder")


def _require_file(data_dir: Path, name: str, dataset: Dataset) -> Path:
    path = find_file(data_dir, name)
    if path is None:
        how = ("put it there (raw or .gz), or pass ⟨data_dir⟩ the folder that holds the four IDX files"
               if dataset.sha256 is None else f"run: {HINT} (or put the file, raw or .gz, there by hand)")
        raise DataError(f"{dataset.title} file {name} is missing from {data_dir}; {how}",
                        hint=dataset.download_hint(data_dir))
    return path


@functools.cache
def _say_unchecked(folder: Path) -> None:
    # Once a folder and process: train reads both splits, and one line says it.
    log.info("%s: your own IDX data; the format, sizes and labels are checked, the files' SHA-256 is not", folder)


def load_split(data_dir: Path, split: str, *, dataset: str = DatasetName.mnist.value
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one verified split of `dataset` from `data_dir`.

    Returns:
        images: (n, 784) uint8; labels: (n,) int64, each below the data set's number of classes.
    """
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    spec = get(dataset)
    data_dir = Path(data_dir)
    image_name, label_name = FILES[split]
    require_folder(data_dir)
    paths = {name: _require_file(data_dir, name, spec) for name in (image_name, label_name)}
    if spec.sha256 is None:
        _say_unchecked(data_dir.resolve())
    sums = spec.sha256 or {}
    images = read_idx(paths[image_name], ndim=3, sha256=sums.get(image_name), dataset=spec)
    labels = read_idx(paths[label_name], ndim=1, sha256=sums.get(label_name), dataset=spec)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{paths[image_name]}: images are {images.shape[1:]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
    if len(images) != len(labels):
        raise DataError(
            f"{data_dir}: {len(images)} {split} images but {len(labels)} labels; "
            "the files do not belong together"
        )
    n_classes = len(class_names(dataset, data_dir))
    if labels.size and labels.max() >= n_classes:
        which = f"{CLASSES_FILE} names {n_classes}" if spec.sha256 is None else f"{spec.title} has {n_classes}"
        raise DataError(f"{paths[label_name]}: labels must be 0 to {n_classes - 1}, found {labels.max()} ({which} "
                        "classes)")
    return (
        torch.from_numpy(images.reshape(len(images), IMAGE_PIXELS).copy()),
        torch.from_numpy(labels.astype(np.int64)),
    )


def class_names(dataset: str, data_dir: Path | None = None) -> tuple[str, ...]:
    """A data set's class names in label order: the registry's, or for `idx` the lines of
    `classes.txt` beside the files, else the numbers 0 to the highest label found."""
    spec = get(dataset)
    if spec.classes:
        return spec.classes
    if data_dir is None:
        raise ValueError("a user's own data set's classes are read from its folder")
    names_file = Path(data_dir) / CLASSES_FILE
    if names_file.is_file():
        try:
            names = tuple(line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{names_file}: cannot be read ({exc}); write one class name a line, as UTF-8")
        if not names:
            raise DataError(f"{names_file} is empty; write one class name a line, or delete it to number the classes")
        return names
    highest = 0
    for _, label_name in FILES.values():
        path = _require_file(Path(data_dir), label_name, spec)
        labels = read_idx(path, ndim=1, dataset=spec)
        highest = max(highest, int(labels.max()) if labels.size else 0)
    return tuple(map(str, range(highest + 1)))


def exemplars(dataset: str, data_dir: Path | None = None) -> tuple[int, ...]:
    """The test image `generate --mode digit` encodes for each class, in label order: the
    registry's, or for `idx` the first test image of each class (-1 where a class has none)."""
    spec = get(dataset)
    if spec.exemplars:
        return spec.exemplars
    _, labels = load_split(data_dir, "test", dataset=dataset)
    first = {}
    for index, label in enumerate(labels.tolist()):
        first.setdefault(label, index)
    return tuple(first.get(k, -1) for k in range(len(class_names(dataset, data_dir))))


def ensure_split(data_dir: Path, split: str, *, dataset: str = DatasetName.mnist.value
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """`load_split`, fetching first (`fetch.download`) when a file of a data set that can be fetched
    is missing, saying so and what it wrote, as the `download` command does."""
    missing = missing_files(data_dir)
    if missing and get(dataset).sha256 is not None:
        from pyro_vae import fetch  # the routes are fetch.py's: reading only knows that it can ask

        log.info("%s lacks %s; fetching %s", data_dir, ", ".join(missing), get(dataset).title)
        for path in fetch.download(data_dir, dataset=dataset):
            log.info("wrote %s", path)
    return load_split(data_dir, split, dataset=dataset)


def test_images(data_dir: Path, *, indices: Sequence[int] | None = None, dataset: str = DatasetName.mnist.value
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images every command encodes, all or those at `indices`, fetched first if missing.

    Returns:
        (n, 784) float in {0, 1}, binarized once with `TEST_BINARIZE_SEED` (what the guide sees),
        and (n, 784) float intensities in [0, 1] (what a person sees).
    Raises:
        ConfigError: an index outside the test set.
    """
    images, _ = ensure_split(data_dir, "test", dataset=dataset)
    for i in indices or ():
        if not 0 <= i < len(images):
            raise ConfigError(f"test image {i} does not exist: the test set has {len(images)} (0 to {len(images) - 1})")
    binarized = binarize_once(images)
    if indices is not None:
        images, binarized = images[list(indices)], binarized[list(indices)]
    return binarized, images.to(torch.float32).div_(255.0)


# ---------------------------------------------------------------------------------------------
# What a checkpoint records of its data

def record(dataset: str, data_dir: Path) -> dict[str, Any]:
    """What a checkpoint keeps of the data it was trained on: the data set's name; for `idx` also
    the folder, its files' SHA-256 (uncompressed) and its class names, which name that data."""
    spec = get(dataset)
    if spec.sha256 is not None:
        return {"name": spec.name}
    data_dir = Path(data_dir)
    sums = {name: hashlib.sha256(_read_bytes(_require_file(data_dir, name, spec), dataset=spec)).hexdigest()
            for split in FILES.values() for name in split}
    return {"name": spec.name, "folder": str(data_dir.resolve()), "sha256": sums,
            "classes": list(class_names(dataset, data_dir))}


MNIST_RECORD = {"name": DatasetName.mnist.value}  # what checkpoints written before data sets were trained on


def same_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two records name the same data: the same registered set, or the same files."""
    return a["name"] == b["name"] and a.get("sha256") == b.get("sha256")


def mismatch(recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why data `current` is not the data `recorded` (a checkpoint's), in words; None when it is."""
    if same_data(recorded, current):
        return None
    if recorded["name"] == current["name"]:
        return f"was trained on other IDX files than those now in {current['folder']}"
    return f"was trained on {title_of(recorded)}, not {title_of(current)}"


def title_of(rec: dict[str, Any]) -> str:
    """A record in words: "Fashion-MNIST", or "idx data in /path"."""
    spec = get(rec["name"])
    return spec.title if spec.sha256 is not None else f"the IDX data of {rec.get('folder', '?')}"


def reading(trained: dict[str, Any], *, dataset: str | None = None, data_dir: Path | None = None
            ) -> tuple[str, Path]:
    """The data set and folder a command reading a checkpoint trained on `trained` (its record)
    uses: `dataset` when given, else the checkpoint's; `data_dir` when given, else that data
    set's default folder, or for the checkpoint's own IDX data the folder it was trained on."""
    name = str(dataset) if dataset is not None else trained["name"]
    get(name)
    if data_dir is not None:
        return name, Path(data_dir)
    if name == trained["name"] and "folder" in trained:
        return name, Path(trained["folder"])
    return name, default_data_dir(name)


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


# ---------------------------------------------------------------------------------------------
# The labelled images of a semi-supervised run (`train --labels N`)

@dataclass(frozen=True)
class LabelledSet:
    """The training images that keep their labels, and how a training step draws from them."""

    images: torch.Tensor  # (count, 784) uint8, on the training device
    labels: torch.Tensor  # (count,) int64
    indices: tuple[int, ...]  # which training images they are (what a checkpoint records)
    epoch_images: int  # the images of an epoch, every one seen unlabelled
    batch_size: int  # labelled images drawn a step
    generator: torch.Generator  # the run's data generator: its state, saved with the run, makes resume exact

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`batch_size` labelled images drawn at random (with replacement), binarized afresh:
        (batch_size, 784) float32 in {0, 1} and their (batch_size,) labels."""
        pick = torch.randint(len(self.labels), (self.batch_size,), generator=self.generator,
                             device=self.generator.device)
        return binarize(self.images[pick], generator=self.generator), self.labels[pick]


def choose_labelled(labels: torch.Tensor, count: int, *, names: Sequence[str], seed: int, noun: str = "class"
                    ) -> torch.Tensor:
    """`count` training images balanced across the classes, chosen by `seed` alone (a generator of
    its own, so the run's random streams are untouched): count // classes of each, and one more of
    count % classes classes picked by the seed.

    Args:
        labels: (n,) int64, the training images' labels; names: the data set's class names.
    Returns:
        (count,) int64 indices into the training images, ascending (none for 0).
    Raises:
        ConfigError: more labels than images (of all, or of a class), or data whose labels name one class.
    """
    n, classes = len(labels), len(names)
    if count == 0:
        return torch.zeros(0, dtype=torch.int64)
    if count > n:
        raise ConfigError(f"⟨labels⟩ {count} is more than the {n} training images; pass at most {n}")
    if classes < 2 or len(labels.unique()) < 2:
        raise ConfigError(f"⟨labels⟩ needs labelled data, and the training labels here name one {noun} only; "
                          "train without ⟨labels⟩, or give the IDX labels of each image")
    generator = torch.Generator().manual_seed(seed)
    base, extra = divmod(count, classes)
    more = set(torch.randperm(classes, generator=generator)[:extra].tolist())
    chosen = []
    for k in range(classes):
        members = (labels == k).nonzero().flatten()
        wanted = base + (k in more)
        if len(members) < wanted:
            raise ConfigError(f"⟨labels⟩ {count} takes {wanted} images of {noun} {names[k]}, and the training images "
                              f"have {len(members)}; pass at most {len(members) * classes}")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:wanted]])
    return torch.cat(chosen).sort().values


def labelled_set(images: torch.Tensor, labels: torch.Tensor, *, count: int, names: Sequence[str], seed: int,
                 batch_size: int, generator: torch.Generator, noun: str = "class") -> LabelledSet | None:
    """The labelled images of a run with `count` labels (None for 0, the unsupervised VAE).

    Args:
        images: (n, 784) uint8, the images a run trains on; labels: (n,) int64.
        batch_size: the run's batch size; a step draws min(batch_size, count) labelled images.
        generator: the run's data generator; the labelled images go to its device.
    """
    if count == 0:
        return None
    indices = choose_labelled(labels.cpu(), count, names=names, seed=seed, noun=noun)
    device = generator.device
    return LabelledSet(images=images[indices.to(images.device)].to(device),
                       labels=labels[indices.to(labels.device)].to(device), indices=tuple(indices.tolist()),
                       epoch_images=len(images), batch_size=min(batch_size, count), generator=generator)
