"""The data sets from the command line: `--dataset` on the commands, the data set a checkpoint
records, refusals across data sets, a user's own IDX folder, and likelihoods across data sets."""

from __future__ import annotations

import gzip
import json
import re

import pytest
import torch

from pyro_vae import checkpoint, data, fetch


@pytest.fixture
def folders(tmp_path, mnist_dir, fashion_dir, offline):
    """Synthetic MNIST ($PYRO_VAE_DATA) and Fashion-MNIST (at its default, data/fashion-mnist)."""
    return {"--checkpoint-dir": tmp_path / "ck", "--results-dir": tmp_path / "res"}


def opts(folders):
    return [item for pair in folders.items() for item in pair]


@pytest.fixture
def fashion_ck(folders, cli_invoke, tiny_run_options):
    """A checkpoint trained one epoch on (synthetic) Fashion-MNIST, found at its default folder."""
    result = cli_invoke("train", "--dataset", "fashion-mnist", *tiny_run_options, *opts(folders))
    assert result.exit_code == 0, result.output
    return folders


def test_train_records_the_data_set_and_later_commands_use_it(fashion_ck, cli_invoke, fashion_dir, mnist_dir):
    assert checkpoint.load(fashion_ck["--checkpoint-dir"] / "last.pt")["dataset"] == {"name": "fashion-mnist"}
    # No --dataset: Fashion-MNIST's exemplars, chosen by name, from the checkpoint's data set.
    result = cli_invoke("generate", "--mode", "digit", "--digits", "Sneaker,bag", "--n", "4", *opts(fashion_ck))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in fashion_ck["--results-dir"].glob("*.png")) == ["7_n4.png", "8_n4.png"]
    # reconstruct reads the checkpoint's data set: the first test image is Fashion-MNIST's.
    assert cli_invoke("reconstruct", "--n", "10", *opts(fashion_ck)).exit_code == 0
    (fashion_dir / "t10k-images-idx3-ubyte").unlink()  # Fashion-MNIST gone (and no route to fetch it) ...
    assert cli_invoke("reconstruct", "--n", "10", *opts(fashion_ck)).exit_code != 0
    # ... while --dataset mnist reads MNIST's test images instead.
    result = cli_invoke("reconstruct", "--n", "10", "--dataset", "mnist", *opts(fashion_ck))
    assert result.exit_code == 0, result.output
    result = cli_invoke("generate", "--mode", "digit", "--digits", "Sneaker", "--dataset", "mnist", *opts(fashion_ck))
    assert "--digits takes digits 0 to 9, got Sneaker" in result.stderr


def test_resuming_on_another_data_set_is_refused_unless_fresh(fashion_ck, cli_invoke, one_line_error,
                                                               tiny_options):
    ck = fashion_ck["--checkpoint-dir"]
    before = (ck / "last.pt").read_bytes()
    one_line_error(cli_invoke("train", "--epochs", "2", *tiny_options, *opts(fashion_ck)),
                   "was trained on Fashion-MNIST, not MNIST", "--dataset fashion-mnist", "--fresh")
    assert (ck / "last.pt").read_bytes() == before
    result = cli_invoke("train", "--epochs", "1", "--fresh", *tiny_options, *opts(fashion_ck))
    assert result.exit_code == 0, result.output
    assert checkpoint.load(ck / "last.pt")["dataset"] == {"name": "mnist"}


def test_checkpoints_from_before_data_sets_read_as_mnist(folders, cli_invoke, one_line_error, tiny_options):
    ck = folders["--checkpoint-dir"]
    assert cli_invoke("train", "--epochs", "1", *tiny_options, *opts(folders)).exit_code == 0
    state = torch.load(ck / "last.pt", weights_only=True)
    del state["dataset"]  # as written before this change
    checkpoint.save(state, ck / "last.pt", ck / "vae.epoch.1.pt")
    assert checkpoint.load(ck / "last.pt")["dataset"] == {"name": "mnist"}
    one_line_error(cli_invoke("train", "--epochs", "2", "--dataset", "fashion-mnist", *tiny_options, *opts(folders)),
                   "was trained on MNIST, not Fashion-MNIST")
    result = cli_invoke("train", "--epochs", "2", *tiny_options, *opts(folders))
    assert result.exit_code == 0 and "Epoch 2" in result.stdout, result.output


def _figures(text):
    return [float(v) for v in re.findall(r"(-?\d+\.\d+) \+-", text)]


def test_evaluate_scores_another_data_set_and_both_in_one_table(fashion_ck, cli_invoke):
    args = ("evaluate", "--particles", "3", *opts(fashion_ck))
    own = cli_invoke(*args)
    assert own.exit_code == 0 and "note:" not in own.stdout, own.output
    other = cli_invoke(*args, "--dataset", "mnist")
    assert other.exit_code == 0, other.output
    notes = [line for line in other.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "was trained on Fashion-MNIST, not MNIST" in notes[0], other.stdout
    assert _figures(own.stdout) != _figures(other.stdout)  # other images, other figures
    both = cli_invoke(*args, "--dataset", "fashion-mnist,mnist")
    assert both.exit_code == 0, both.output
    rows = {line.split()[0]: _figures(line) for line in both.stdout.splitlines() if line.startswith("  ")}
    # The same estimator, seed and images: each row is what the single evaluation printed.
    assert rows["fashion-mnist"] == _figures(own.stdout) and rows["mnist"] == _figures(other.stdout)
    record = json.loads((fashion_ck["--results-dir"] / "metrics" / "evaluation.json").read_text())
    assert [(r["trained_on"], r["dataset"]) for r in record] == [
        ("fashion-mnist", "fashion-mnist"), ("fashion-mnist", "mnist")]


@pytest.mark.parametrize("args, fragments", [
    (["evaluate", "--dataset", "kmnist"], ["--dataset must be one of mnist, fashion-mnist, idx, got 'kmnist'"]),
    (["evaluate", "--dataset", "mnist,fashion-mnist", "--data-dir", "x"], ["--data-dir names one data set's folder"]),
    (["generate", "--dataset", "mnist,fashion-mnist"], ["--dataset takes one data set here"]),
    (["train", "--dataset", "cifar"], ["--dataset must be one of"]),
    (["download", "--dataset", "idx"], ["nothing to download"]),
])
def test_bad_data_set_options_are_one_line(fashion_ck, args, fragments, cli_invoke, one_line_error):
    one_line_error(cli_invoke(*args, *opts(fashion_ck)[: 0 if args[0] == "download" else None]), *fragments)


@pytest.fixture
def own_folder(tmp_path, write_synthetic_mnist):
    folder = tmp_path / "own"
    write_synthetic_mnist(folder, seed=5)
    (folder / data.CLASSES_FILE).write_text("\n".join(f"shape {k}" for k in range(10)) + "\n")
    return folder


def test_a_users_own_idx_folder_end_to_end(own_folder, folders, cli_invoke, one_line_error, tiny_options):
    args = ("--dataset", "idx", "--data-dir", own_folder, *tiny_options, *opts(folders))
    result = cli_invoke("train", "--epochs", "1", *args)
    assert result.exit_code == 0, result.output
    assert "SHA-256 is not" in result.stdout
    trained = checkpoint.load(folders["--checkpoint-dir"] / "last.pt")["dataset"]
    assert trained["folder"] == str(own_folder.resolve()) and trained["classes"][3] == "shape 3"
    # Its own folder is the default for the commands that read the checkpoint; classes by name.
    result = cli_invoke("generate", "--mode", "digit", "--digits", "shape 3", "--n", "4", *opts(folders))
    assert result.exit_code == 0, result.output
    assert (folders["--results-dir"] / "3_n4.png").is_file()
    # Other files in the folder are other data: resuming on them is refused.
    labels = own_folder / "train-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[-1] = (raw[-1] + 1) % 10
    labels.write_bytes(bytes(raw))
    one_line_error(cli_invoke("train", "--epochs", "2", *args), "was trained on other IDX files", "--fresh")


@pytest.mark.parametrize("damage, fragments", [
    ("size", ["t10k-images-idx3-ubyte", "images are (27, 27), expected 28x28"]),
    ("labels", ["train-labels-idx1-ubyte", "labels must be 0 to 9, found 11 (classes.txt names 10 classes)"]),
    ("missing", ["file train-labels-idx1-ubyte is missing from", "pass --data-dir"]),
    ("truncated", ["train-images-idx3-ubyte.gz", "truncated", "put a well-formed IDX file there"]),
])
def test_own_idx_folder_checks_are_one_line(own_folder, folders, damage, fragments, write_idx, cli_invoke,
                                            one_line_error, tiny_run_options):
    import numpy as np

    if damage == "size":
        write_idx(own_folder / "t10k-images-idx3-ubyte", np.zeros((100, 27, 27)))
    elif damage == "labels":
        write_idx(own_folder / "train-labels-idx1-ubyte", np.full(80, 11))
    elif damage == "missing":
        (own_folder / "train-labels-idx1-ubyte").unlink()
    else:
        path = own_folder / "train-images-idx3-ubyte"
        (own_folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(path.read_bytes()[:-5]))
        path.unlink()
    one_line_error(cli_invoke("train", "--dataset", "idx", "--data-dir", own_folder, *tiny_run_options,
                              *opts(folders)), *fragments)
    assert not folders["--checkpoint-dir"].exists()


@pytest.mark.slow
def test_real_fashion_mnist_through_debians_package_then_one_real_epoch(tmp_path):
    """As a fresh machine here fetches it: no mirror (Zalando's host is unreachable here), so
    Debian's package, `apt-get download` and `dpkg-deb -x`, checked file by file; then one epoch."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    folder = tmp_path / "data" / "fashion-mnist"
    written = fetch.download(folder, dataset="fashion-mnist", mirrors=())
    assert sorted(p.name for p in written) == sorted(data.FASHION_SHA256)
    images, labels = data.load_split(folder, "train", dataset="fashion-mnist")
    assert images.shape == (60000, 784) and torch.bincount(labels).tolist() == [6000] * 10
    _, test_labels = data.load_split(folder, "test", dataset="fashion-mnist")
    assert [int(test_labels[i]) for i in data.FASHION_EXEMPLARS] == list(range(10))
    cli = Path(__file__).resolve().parent.parent / "cli.py"
    done = subprocess.run([sys.executable, str(cli), "train", "--dataset", "fashion-mnist", "--epochs", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1800, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    # Measured here: -290.65 at epoch 1 (MNIST's first epoch is near -130: clothes hold more ink).
    bound = float(re.search(r"^Epoch 1 \(\d+\.\d+s\): Lower bound = (-\d+\.\d+)$", done.stdout, re.M).group(1))
    assert -320 < bound < -260, done.stdout
    assert checkpoint.load(tmp_path / "checkpoints" / "vae.epoch.1.pt")["dataset"] == {"name": "fashion-mnist"}
