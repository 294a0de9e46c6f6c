"""The IDX reader, verification, class names, what a checkpoint records of its data, and batching."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
import torch

from pyro_vae import data
from pyro_vae.errors import DataError


def test_reads_raw_and_gz_alike(tmp_path, write_idx):
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    raw = write_idx(tmp_path / "a", array)
    gz = write_idx(tmp_path / "b.gz", array, compress=True)
    np.testing.assert_array_equal(data.read_idx(raw, ndim=3), array)
    np.testing.assert_array_equal(data.read_idx(gz, ndim=3), array)


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda raw: b"\x00\x00\x09\x03" + raw[4:], "magic number"),  # signed bytes, not unsigned
        (lambda raw: raw[:4] + raw[4:], None),  # untouched: control
        (lambda raw: raw[:-5], "truncated"),
        (lambda raw: raw + b"\x00", "too long"),
        (lambda raw: raw[:6], "truncated"),
        (lambda raw: b"\x89PNG\r\n\x1a\n" + raw[8:], "magic number"),
    ],
)
def test_malformed_files_are_named_and_explained(tmp_path, mangle, message, write_idx):
    path = write_idx(tmp_path / "f", np.zeros((3, 28, 28)))
    path.write_bytes(mangle(path.read_bytes()))
    if message is None:
        assert data.read_idx(path, ndim=3).shape == (3, 28, 28)
        return
    with pytest.raises(DataError, match=message) as info:
        data.read_idx(path, ndim=3)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_corrupt_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(b"\x00" * 100)[:20])
    with pytest.raises(DataError, match="cannot be read"):
        data.read_idx(path, ndim=3)


def test_hash_mismatch_is_refused(tmp_path, write_idx):
    path = write_idx(tmp_path / "f", np.zeros((3, 28, 28)))
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    data.read_idx(path, ndim=3, sha256=good)
    with pytest.raises(DataError, match="SHA-256"):
        data.read_idx(path, ndim=3, sha256="0" * 64)


def test_load_split_checks_everything(mnist_dir, n_train):
    images, labels = data.load_split(mnist_dir, "train")
    assert images.shape == (n_train, 784) and images.dtype == torch.uint8
    assert labels.shape == (n_train,) and int(labels.max()) <= 9


def test_missing_file_says_what_to_do(mnist_dir):
    (mnist_dir / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte is missing.*pyro_vae\.download\("):
        data.load_split(mnist_dir, "test")


def test_gz_file_dropped_in_by_hand_is_found(mnist_dir, n_train):
    raw = (mnist_dir / "train-labels-idx1-ubyte").read_bytes()
    (mnist_dir / "train-labels-idx1-ubyte").unlink()
    (mnist_dir / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw))
    assert data.load_split(mnist_dir, "train")[1].shape == (n_train,)


def test_modified_file_fails_verification(mnist_dir):
    path = mnist_dir / "train-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # same structure, different content
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="SHA-256"):
        data.load_split(mnist_dir, "train")


def test_labels_out_of_range_and_count_mismatch(mnist_dir, monkeypatch, n_train, write_idx):
    def rewrite(name, array):
        path = write_idx(mnist_dir / name, array)
        monkeypatch.setitem(data.SHA256, name, hashlib.sha256(path.read_bytes()).hexdigest())

    rewrite("train-labels-idx1-ubyte", np.full(n_train, 11))
    with pytest.raises(DataError, match="labels must be 0 to 9"):
        data.load_split(mnist_dir, "train")
    rewrite("train-labels-idx1-ubyte", np.zeros(n_train - 1))
    with pytest.raises(DataError, match="do not belong together"):
        data.load_split(mnist_dir, "train")


def test_binarize_draws_bernoulli_of_intensity():
    images = torch.tensor([[0, 255, 128]], dtype=torch.uint8).expand(20000, 3)
    x = data.binarize(images, generator=torch.Generator().manual_seed(0))
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert x[:, 0].sum() == 0 and x[:, 1].all()
    assert abs(x[:, 2].mean().item() - 128 / 255) < 0.02


def test_an_epochs_batches_cover_every_image_once_with_fresh_binarization():
    n, batch = 50, 16
    # Image k has intensity 255 in pixel k only, so its binarization identifies it.
    images = torch.zeros(n, 784, dtype=torch.uint8)
    images[torch.arange(n), torch.arange(n)] = 255
    generator = torch.Generator().manual_seed(0)
    batches = list(data.batches(images, data.shuffle(n, generator=generator), batch_size=batch, generator=generator))
    assert [len(b) for b in batches] == [16, 16, 16, 2]
    seen = torch.cat(batches)[:, :n].argmax(dim=1)
    assert sorted(seen.tolist()) == list(range(n))
    again = torch.cat(list(data.batches(images, data.shuffle(n, generator=generator), batch_size=batch,
                                        generator=generator)))
    assert not torch.equal(again[:, :n].argmax(dim=1), seen)  # reshuffled


def test_test_set_binarization_is_fixed():
    images = torch.randint(0, 256, (10, 784), dtype=torch.uint8)
    assert torch.equal(data.binarize_once(images), data.binarize_once(images))


def test_every_offered_data_set_is_registered():
    from pyro_vae.config import DatasetName

    assert list(data.DATASETS) == list(DatasetName.values())
    for spec in data.DATASETS.values():
        assert len(spec.exemplars) == len(spec.classes)  # idx: both read from the folder


@pytest.fixture
def own_dir(tmp_path, write_synthetic_mnist):
    """A user's own IDX folder: the synthetic files gzipped, labels 0 to 9."""
    folder = tmp_path / "own"
    write_synthetic_mnist(folder, seed=3)
    for path in list(folder.iterdir()):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    return folder


def test_a_users_own_idx_folder_is_read_unhashed_and_says_so(own_dir, caplog, n_train):
    caplog.set_level("INFO", logger="pyro_vae")
    images, labels = data.load_split(own_dir, "train", dataset="idx")
    data.load_split(own_dir, "test", dataset="idx")
    assert images.shape == (n_train, 784) and labels.max() <= 9
    said = [r.getMessage() for r in caplog.records if "SHA-256 is not" in r.getMessage()]
    assert len(said) == 1 and str(own_dir.resolve()) in said[0]
    assert data.class_names("idx", own_dir) == tuple(map(str, range(10)))
    (own_dir / data.CLASSES_FILE).write_text("\n".join(f"kind {k}" for k in range(12)) + "\n")
    assert data.class_names("idx", own_dir)[11] == "kind 11"
    _, test_labels = data.load_split(own_dir, "test", dataset="idx")
    first = data.exemplars("idx", own_dir)
    assert [int(test_labels[i]) for i in first[:10]] == list(range(10)) and first[10:] == (-1, -1)
    record = data.record("idx", own_dir)
    assert record["sha256"]["t10k-labels-idx1-ubyte"] == hashlib.sha256(
        gzip.decompress((own_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())).hexdigest()
    assert record["classes"][11] == "kind 11"


def test_a_users_own_idx_folder_is_checked_as_strictly(own_dir, write_idx):
    (own_dir / data.CLASSES_FILE).write_text("a\nb\nc\n")
    with pytest.raises(DataError, match=r"labels must be 0 to 2, found 9 \(classes.txt names 3 classes\)"):
        data.load_split(own_dir, "train", dataset="idx")
    (own_dir / data.CLASSES_FILE).unlink()
    write_idx(own_dir / "t10k-images-idx3-ubyte.gz", np.zeros((100, 32, 32)), compress=True)
    with pytest.raises(DataError, match=r"images are \(32, 32\), expected 28x28"):
        data.load_split(own_dir, "test", dataset="idx")
    (own_dir / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="file t10k-images-idx3-ubyte is missing from .*pass data_dir"):
        data.load_split(own_dir, "test", dataset="idx")
