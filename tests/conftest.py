"""Shared fixtures: fresh global state before every test, a tiny configuration, a synthetic MNIST,
the command line run in process, and the one-line error every failing command must end in.

Test files take what they share from here as fixtures, never by importing this module."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import logging
import sys
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import pyro
import pytest
import torch
from pyro.distributions.util import scale_and_mask
from typer.testing import CliRunner

from pyro_vae import cli
from pyro_vae import data, fetch, objectives
from pyro_vae.config import ModelConfig, Paths, TrainConfig

# The test networks are tiny: threads only add synchronisation, and on a busy 2-core machine
# OpenMP's spinning threads slow tiny matrix products down tenfold.
torch.set_num_threads(1)

N_TRAIN = 80  # 5 batches of 16
N_TEST = 100  # the highest exemplar index (MNIST's digits) is 95


@pytest.fixture(autouse=True)
def _reset_state(tmp_path, monkeypatch):
    """Pyro's parameter store and every RNG are global: reset them so tests cannot leak into each other.
    Each test also runs in its own folder, so default paths (checkpoints/, results/) never touch the repo."""
    monkeypatch.chdir(tmp_path)
    # Kernel measurements are kept per machine; a test (and the processes it starts) keeps its own.
    monkeypatch.setenv("PYRO_VAE_CACHE", str(tmp_path / "cache"))
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


def write_synthetic_mnist(folder: Path, *, seed: int = 0, dataset: str = "mnist") -> dict[str, str]:
    """Write the four IDX files of a data set (MNIST's by default), synthetic and small, into
    `folder`; returns their SHA-256 sums.

    The test set's exemplars carry their class's label, as in the real test set.
    """
    rng = np.random.default_rng(seed)
    train_labels = rng.integers(0, 10, size=N_TRAIN)
    test_labels = rng.integers(0, 10, size=N_TEST)
    for digit, index in enumerate(data.get(dataset).exemplars):
        test_labels[index] = digit
    arrays = {
        "train-images-idx3-ubyte": synthetic_images(train_labels, rng),
        "train-labels-idx1-ubyte": train_labels,
        "t10k-images-idx3-ubyte": synthetic_images(test_labels, rng),
        "t10k-labels-idx1-ubyte": test_labels,
    }
    return {name: hashlib.sha256(write_idx(folder / name, a).read_bytes()).hexdigest() for name, a in arrays.items()}


def accept_as(dataset: str, sums: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the library take files with these SHA-256 `sums` for `dataset`'s originals."""
    for name, digest in sums.items():
        monkeypatch.setitem(data.get(dataset).sha256, name, digest)


@pytest.fixture
def synthetic_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """`synthetic_dataset(name, *, seed=0)`: a synthetic folder data/<name> under the test's folder
    (the data set's default, relative to it) that the library accepts as data set `name`: the
    expected SHA-256 sums are patched to these files', so verification runs for real. `idx` has no
    sums to patch."""

    def make(name: str, *, seed: int = 0) -> Path:
        folder = tmp_path / "data" / name
        sums = write_synthetic_mnist(folder, seed=seed, dataset=name if data.get(name).exemplars else "mnist")
        if data.get(name).sha256 is not None:
            accept_as(name, sums, monkeypatch)
        return folder

    return make


@pytest.fixture
def mnist_dir(synthetic_dataset: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A synthetic MNIST folder that the library accepts as MNIST (and $PYRO_VAE_DATA names)."""
    folder = synthetic_dataset("mnist")
    monkeypatch.setenv("PYRO_VAE_DATA", str(folder))
    return folder


@pytest.fixture
def fashion_dir(synthetic_dataset: Callable[..., Path]) -> Path:
    """A synthetic Fashion-MNIST folder, data/fashion-mnist, accepted as Fashion-MNIST; its files
    differ from `mnist_dir`'s (another seed)."""
    return synthetic_dataset("fashion-mnist", seed=7)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No mirror answers and no package tool (npm, apt-get) is on the PATH."""
    for name, route in fetch.ROUTES.items():
        monkeypatch.setitem(fetch.ROUTES, name, dataclasses.replace(route, mirrors=()))
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))


@pytest.fixture(name="accept_as", scope="session")
def _accept_as() -> Callable[..., None]:
    """`accept_as(dataset, sums, monkeypatch)`: patch `dataset`'s SHA-256 table to these sums."""
    return accept_as


@pytest.fixture
def tiny_model() -> ModelConfig:
    return ModelConfig(z_dim=2, hidden_dim=16)


@pytest.fixture
def tiny_train() -> TrainConfig:
    return TrainConfig(epochs=2, batch_size=16, save_every=1, keep=10)


@pytest.fixture
def paths(tmp_path: Path, mnist_dir: Path) -> Paths:
    return Paths(data_dir=mnist_dir, checkpoint_dir=tmp_path / "checkpoints", results_dir=tmp_path / "results")


@pytest.fixture(scope="session")
def n_train() -> int:
    """How many images the synthetic training split holds (5 batches of 16)."""
    return N_TRAIN


@pytest.fixture(scope="session")
def n_test() -> int:
    """How many images the synthetic test split holds."""
    return N_TEST


@pytest.fixture(name="write_idx", scope="session")
def _write_idx() -> Callable[..., Path]:
    """`write_idx(path, array, *, compress=False)`: write a uint8 array as an IDX file; returns the path."""
    return write_idx


@pytest.fixture(name="write_synthetic_mnist", scope="session")
def _write_synthetic_mnist() -> Callable[..., dict[str, str]]:
    """`write_synthetic_mnist(folder, *, seed=0)`: the four synthetic MNIST files; returns their SHA-256 sums.
    (The `mnist_dir` fixture is one such folder, already accepted as MNIST.)"""
    return write_synthetic_mnist


# ---------------------------------------------------------------------------------------------
# The command line, in process

def invoke(*args: object):
    """Run `python cli.py ARGS...` in this process (each argument passed through `str`); returns click's Result.

    Its hints start `python cli.py`, as in a shell with the venv active; how the program is spelled
    however it was started is tested by running it for real (tests/test_commands.py)."""
    with mock.patch.object(cli, "program", return_value=["python", "cli.py"]):
        return CliRunner().invoke(cli.app, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str | re.Pattern[str], code: int | None = None) -> str:
    """The command failed, with exit status `code` when given, and said why in exactly one line on
    stderr that starts with "error: ": no traceback, no exception other than the exit itself.
    Fragments are substrings of that line, or compiled patterns searched in it. Returns the line."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for fragment in fragments:
        if isinstance(fragment, re.Pattern):
            assert fragment.search(line), (fragment.pattern, line)
        else:
            assert fragment in line, (fragment, line)
    return line


@pytest.fixture(scope="session")
def cli_invoke() -> Callable[..., object]:
    """`cli_invoke(*args)`: run the command line in process; returns click's Result."""
    return invoke


@pytest.fixture(scope="session")
def one_line_error() -> Callable[..., str]:
    """`one_line_error(result, *fragments, code=None)`: assert a command failed with one "error: " line
    containing every fragment (substrings or compiled patterns); returns the line."""
    return assert_one_line_error


@pytest.fixture(scope="session")
def tiny_options() -> tuple[str, ...]:
    """The tiny network and batch of `tiny_model` and `tiny_train`, as command-line options."""
    return ("--z-dim", "2", "--hidden-dim", "16", "--batch-size", "16")


@pytest.fixture(scope="session")
def tiny_run_options(tiny_options: tuple[str, ...]) -> tuple[str, ...]:
    """`tiny_options` for a run of one epoch: the cheapest `train` that gets anywhere."""
    return ("--epochs", "1", *tiny_options)


# ---------------------------------------------------------------------------------------------
# Signals at an exact batch

@pytest.fixture
def signal_during_loss() -> Callable[[int, int], contextlib.AbstractContextManager[None]]:
    """`with signal_during_loss(call, signum): ...` sends `signum` to this process during the
    `call`-th loss evaluation inside the block, i.e. during training batch `call` counted across
    epochs (5 batches an epoch on the synthetic data: call 8 is epoch 2, batch 3).

    This patches `objectives.log_weight_terms` as the training losses call it (both objectives; the
    evaluation imports its own reference and is not counted), and it is the only way to land a
    signal at an exact batch in process: neither `train()` nor the command line has a per-batch
    hook, and a signal sent from outside lands at no particular batch. (tests/test_crash.py, a
    slow test, kills a real training process with kill -9.)
    """

    @contextlib.contextmanager
    def during(call: int, signum: int) -> Iterator[None]:
        real = objectives.log_weight_terms
        calls = 0

        def signalling(*args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == call:
                os.kill(os.getpid(), signum)
            return real(*args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(objectives, "log_weight_terms", signalling)
            yield

    return during


@pytest.fixture
def python_command(mnist_dir: Path) -> Callable[..., list[str]]:
    """`python_command(code, before="")`: a `python -c` command line that runs `code` in a fresh
    process which imports this checkout and accepts the synthetic data sets' checksums; `before` runs
    first, ahead of any import of the package (to take a module away, say)."""
    root = Path(__file__).resolve().parent.parent

    def command(code: str, *, before: str = "") -> list[str]:
        return [sys.executable, "-c", f"{before}import sys; sys.path.insert(0, {str(root)!r}); "
                f"import pyro_vae.data as d; d.SHA256.update({json.dumps(data.SHA256)}); "
                f"d.FASHION_SHA256.update({json.dumps(data.FASHION_SHA256)}); {code}"]

    return command


# ---------------------------------------------------------------------------------------------
# Today's training step, as main's trainer took it at f6a49c5 (before the KL weight, the terms and
# the labels model): its log weights, its loss, and run_epoch's loop without the resume and stop branches.

def _todays_log_weights(vae, x):
    guide_trace = pyro.poutine.trace(vae.guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    weights = x.new_zeros(1, x.shape[0], dtype=torch.float32)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in trace.nodes.values():
            if site["type"] == "sample":
                log_prob = scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"])
                weights = weights.add(log_prob, alpha=sign)
    return weights


def _todays_epoch(vae, optimizer, images, *, batch_size, generator):
    order = data.shuffle(len(images), generator=generator)
    total = torch.zeros(())
    vae.train()
    with pyro.validation_enabled(False):
        for x in data.batches(images, order, batch_size=batch_size, generator=generator, start=0):
            value = _todays_log_weights(vae, x).sum().div(-1)
            optimizer.found_inf = torch.isfinite(value).logical_not().float()
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            total += value.detach()
    del optimizer.found_inf
    return -total.item() / len(images)


@pytest.fixture(scope="session")
def todays_epoch() -> Callable[..., float]:
    """`todays_epoch(vae, optimizer, images, *, batch_size, generator)`: one epoch of the unsupervised
    VAE as main's trainer took it before any option changed the step; returns its mean bound."""
    return _todays_epoch
