"""Shared fixtures: fresh global state before every test, a tiny configuration, a synthetic MNIST."""

from __future__ import annotations

import gzip
import hashlib
import logging
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch

from pyro_vae import data
from pyro_vae.config import DIGIT_EXEMPLARS, ModelConfig, Paths, TrainConfig

# The test networks are tiny: threads only add synchronisation, and on a busy 2-core machine
# OpenMP's spinning threads slow tiny matrix products down tenfold.
torch.set_num_threads(1)

N_TRAIN = 80  # 5 batches of 16
N_TEST = 100  # the highest digit exemplar index is 95


@pytest.fixture(autouse=True)
def _reset_state(tmp_path, monkeypatch):
    """Pyro's parameter store and every RNG are global: reset them so tests cannot leak into each other.
    Each test also runs in its own folder, so default paths (checkpoints/, results/) never touch the repo."""
    monkeypatch.chdir(tmp_path)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()
    logging.getLogger("pyro_vae").handlers = []


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    """Write a uint8 array as an IDX file (magic 0x0000 08 <ndim>, big-endian dims, bytes)."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def synthetic_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Digit-like 28x28 uint8 images: a bright bar whose position depends on the label, plus noise."""
    images = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.uint8)
    for k, label in enumerate(labels):
        images[k, 4:24, 2 + 2 * label : 6 + 2 * label] = 230
    return images


def write_synthetic_mnist(folder: Path, *, seed: int = 0) -> dict[str, str]:
    """Write the four MNIST files, synthetic and small, into `folder`; returns their SHA-256 sums.

    The test set's digit exemplars carry their digit's label, as in the real test set.
    """
    rng = np.random.default_rng(seed)
    train_labels = rng.integers(0, 10, size=N_TRAIN)
    test_labels = rng.integers(0, 10, size=N_TEST)
    for digit, index in enumerate(DIGIT_EXEMPLARS):
        test_labels[index] = digit
    arrays = {
        "train-images-idx3-ubyte": synthetic_images(train_labels, rng),
        "train-labels-idx1-ubyte": train_labels,
        "t10k-images-idx3-ubyte": synthetic_images(test_labels, rng),
        "t10k-labels-idx1-ubyte": test_labels,
    }
    return {name: hashlib.sha256(write_idx(folder / name, a).read_bytes()).hexdigest() for name, a in arrays.items()}


@pytest.fixture
def mnist_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A synthetic MNIST folder that the library accepts as MNIST.

    The expected SHA-256 sums are patched to these files', so verification runs for real.
    """
    folder = tmp_path / "mnist"
    monkeypatch.setattr(data, "SHA256", write_synthetic_mnist(folder))
    monkeypatch.setenv("PYRO_VAE_DATA", str(folder))
    return folder


@pytest.fixture
def tiny_model() -> ModelConfig:
    return ModelConfig(z_dim=2, hidden_dim=16)


@pytest.fixture
def tiny_train() -> TrainConfig:
    return TrainConfig(epochs=2, batch_size=16, save_every=1, keep=10)


@pytest.fixture
def paths(tmp_path: Path, mnist_dir: Path) -> Paths:
    return Paths(data_dir=mnist_dir, checkpoint_dir=tmp_path / "checkpoints", results_dir=tmp_path / "results")
