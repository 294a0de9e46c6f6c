"""Bad input, in a table: every option of `train`, `generate` and `download` given a bad value, and
bad files where the data and checkpoints are read. Each must end in one line on stderr that
starts with "error: " and names the problem, a non-zero exit, and no traceback."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_vae import data

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present, so --device cuda is fine")



@pytest.fixture
def dirs(tmp_path, mnist_dir, offline, monkeypatch):
    """Every run gets its own checkpoint and results folders, and runs in tmp_path, so a case that
    gets further than it should can never touch the project's own checkpoints/ or results/."""
    monkeypatch.chdir(tmp_path)
    return {"--checkpoint-dir": tmp_path / "ck", "--results-dir": tmp_path / "res"}


def dir_args(dirs):
    return [item for pair in dirs.items() for item in pair]


@pytest.fixture(scope="module")
def trained_ck(tmp_path_factory, cli_invoke, tiny_run_options, write_synthetic_mnist, accept_as):
    """A tiny checkpoint folder (z_dim 2, hidden 16, one epoch), trained once through the CLI and only read after."""
    root = tmp_path_factory.mktemp("trained")
    sums = write_synthetic_mnist(root / "mnist", seed=1)
    with pytest.MonkeyPatch.context() as mp:
        accept_as("mnist", sums, mp)
        result = cli_invoke("train", *tiny_run_options, "--data-dir", root / "mnist", "--checkpoint-dir", root / "ck",
                            "--results-dir", root / "res")
    assert result.exit_code == 0, result.output
    assert (root / "ck" / "vae.epoch.1.pt").is_file()
    return root / "ck"


# ---------------------------------------------------------------------------------------------
# Option values

INVALID_INT = "Input should be a valid integer"
INVALID_NUMBER = "Input should be a valid number"


def _sized(items, *, n_train: int, n_test: int) -> list[str]:
    """A case's options or fragments with {n_train} and {n_test}, the synthetic splits' sizes, filled in."""
    return [item.format(n_train=n_train, n_test=n_test) for item in items]


TRAIN_OPTIONS = [
    pytest.param(["--epochs", "0"], ["--epochs must be at least 1, got 0"], id="epochs-0"),
    pytest.param(["--epochs", "-1"], ["--epochs must be at least 1, got -1"], id="epochs-negative"),
    pytest.param(["--epochs", "ten"], ["'--epochs'", INVALID_INT], id="epochs-word"),
    pytest.param(["--epochs", "1.5"], ["'--epochs'", INVALID_INT], id="epochs-fraction"),
    pytest.param(["--epochs"], ["'--epochs' requires an argument"], id="epochs-no-value"),
    pytest.param(["--batch-size", "0"], ["--batch-size must be at least 1, got 0"], id="batch-size-0"),
    pytest.param(["--batch-size", "-3"], ["--batch-size must be at least 1, got -3"], id="batch-size-negative"),
    pytest.param(["--batch-size", "x"], ["'--batch-size'", INVALID_INT], id="batch-size-word"),
    pytest.param(["--lr", "0"], ["--lr must be a positive number"], id="lr-0"),
    pytest.param(["--lr", "-1"], ["--lr must be a positive number"], id="lr-negative"),
    pytest.param(["--lr", "nan"], ["--lr must be a positive number, got nan"], id="lr-nan"),
    pytest.param(["--lr", "inf"], ["--lr must be a positive number, got inf"], id="lr-inf"),
    pytest.param(["--lr", "-inf"], ["--lr must be a positive number, got -inf"], id="lr-minus-inf"),
    pytest.param(["--lr", "abc"], ["'--lr'", INVALID_NUMBER], id="lr-word"),
    pytest.param(["--z-dim", "0"], ["--z-dim must be between 1 and 1024, got 0"], id="z-dim-0"),
    pytest.param(["--z-dim", "-1"], ["--z-dim must be between 1 and 1024, got -1"], id="z-dim-negative"),
    pytest.param(["--z-dim", "a"], ["'--z-dim'", INVALID_INT], id="z-dim-word"),
    pytest.param(["--z-dim", str(10**14)], ["--z-dim must be between 1 and 1024"], id="z-dim-huge"),
    pytest.param(["--hidden-dim", "0"], ["--hidden-dim must be between 1 and 8192, got 0"], id="hidden-dim-0"),
    pytest.param(["--hidden-dim", "b"], ["'--hidden-dim'", INVALID_INT], id="hidden-dim-word"),
    pytest.param(["--hidden-dim", str(10**12)], ["--hidden-dim must be between 1 and 8192"], id="hidden-dim-huge"),
    pytest.param(["--seed", "-1"], ["--seed must be between 0 and 4294967295, got -1"], id="seed-negative"),
    pytest.param(["--seed", "s"], ["'--seed'", INVALID_INT], id="seed-word"),
    pytest.param(["--seed", str(2**32)], ["--seed must be between 0 and 4294967295"], id="seed-above-2**32-1"),
    pytest.param(["--save-every", "0"], ["--save-every must be at least 1, got 0"], id="save-every-0"),
    pytest.param(["--save-every", "z"], ["'--save-every'", INVALID_INT], id="save-every-word"),
    pytest.param(["--keep", "0"], ["--keep must be at least 1, got 0"], id="keep-0"),
    pytest.param(["--keep", "-1"], ["--keep must be at least 1, got -1"], id="keep-negative"),
    pytest.param(["--keep", "k"], ["'--keep'", INVALID_INT], id="keep-word"),
    pytest.param(["--precision", "fp16"], ["--precision must be fp32 or bf16, got 'fp16'"], id="precision-fp16"),
    pytest.param(["--objective", "vimco"], ["--objective must be elbo or iwae, got 'vimco'"], id="objective-vimco"),
    pytest.param(["--particles", "0"], ["--particles must be between 1 and 1000, got 0"], id="particles-0"),
    pytest.param(["--particles", "5000"], ["--particles must be between 1 and 1000, got 5000"], id="particles-huge"),
    pytest.param(["--particles", "k"], ["'--particles'", INVALID_INT], id="particles-word"),
    pytest.param(["--particles", "1000", "--batch-size", "256"],
                 ["--particles 1000 with --batch-size 256 keeps 256000 samples", "at most 128000"],
                 id="particles-times-batch-too-big"),
    pytest.param(["--lr-decay", "0"], ["--lr-decay must be above 0 and at most 1"], id="lr-decay-0"),
    pytest.param(["--lr-decay", "1.5"], ["--lr-decay must be above 0 and at most 1", "1.5"], id="lr-decay-above-1"),
    pytest.param(["--lr-decay", "nan"], ["--lr-decay must be above 0 and at most 1", "nan"], id="lr-decay-nan"),
    pytest.param(["--valid-size", "-1"], ["--valid-size must be between 0 and 59999, got -1"], id="valid-size-negative"),
    pytest.param(["--valid-size", "10"], ["--valid-size needs --eval-every N"], id="valid-size-without-eval"),
    pytest.param(["--valid-size", "{n_train}", "--eval-every", "1"],
                 ["--valid-size {n_train} leaves no training images: there are {n_train}"], id="valid-size-all"),
    pytest.param(["--eval-every", "-2"], ["--eval-every must be 0 (never) or more, got -2"], id="eval-every-negative"),
    pytest.param(["--eval-particles", "0"], ["--eval-particles must be between 1 and 10000, got 0"],
                 id="eval-particles-0"),
    pytest.param(["--device", "tpu"], ["--device must be auto, cpu, cuda or mps, got 'tpu'"], id="device-tpu"),
    pytest.param(["--device", "cuda"], ["--device cuda", "no CUDA GPU"], id="device-cuda-without-gpu", marks=NO_CUDA),
    pytest.param(["--bogus"], ["No such option: --bogus"], id="unknown-option"),
    pytest.param(["--n", "4"], ["No such option: --n"], id="generate-only-option"),
    pytest.param(["extra"], ["unexpected extra argument", "extra"], id="extra-argument"),
]


@pytest.mark.parametrize("args, fragments", TRAIN_OPTIONS)
def test_bad_train_option(dirs, args, fragments, cli_invoke, one_line_error, tiny_run_options, n_train, n_test):
    args, fragments = (_sized(items, n_train=n_train, n_test=n_test) for items in (args, fragments))
    # The case's own options come last, so they override the tiny defaults.
    result = cli_invoke("train", *tiny_run_options, *dir_args(dirs), *args)
    one_line_error(result, *fragments)
    assert not list(dirs["--checkpoint-dir"].glob("*.pt"))


GENERATE_OPTIONS = [
    pytest.param(["--mode", "dream"], ["--mode must be prior, digit, label or style, got 'dream'"], id="mode-dream"),
    pytest.param(["--mode", "Prior"], ["--mode must be prior, digit, label or style, got 'Prior'"], id="mode-wrong-case"),
    pytest.param(["--n", "0"], ["--n must be between 1 and 10000, got 0"], id="n-0"),
    pytest.param(["--n", "-5"], ["--n must be between 1 and 10000, got -5"], id="n-negative"),
    pytest.param(["--n", "x"], ["'--n'", INVALID_INT], id="n-word"),
    pytest.param(["--n", str(10**15)], ["--n must be between 1 and 10000"], id="n-huge"),
    pytest.param(["--mode", "digit", "--noise", "nan"], ["--noise must be a finite number, got nan"], id="noise-nan"),
    pytest.param(["--mode", "digit", "--noise", "inf"], ["--noise must be a finite number, got inf"], id="noise-inf"),
    pytest.param(["--mode", "digit", "--noise", "-inf"], ["--noise must be a finite number, got -inf"],
                 id="noise-minus-inf"),
    pytest.param(["--noise", "abc"], ["'--noise'", INVALID_NUMBER], id="noise-word"),
    pytest.param(["--mode", "digit", "--noise", "1000"], ["--noise must be between 0 and 10, got 1000", "exp(noise)"],
                 id="noise-overflows-exp"),
    # A negative noise would narrow the guide (toward copies of one digit): refused, not taken silently.
    pytest.param(["--mode", "digit", "--noise", "-1"], ["--noise must be between 0 and 10, got -1",
                                                        "0: the guide's own spread"], id="noise-negative"),
    # Options prior mode (the default) would ignore are refused, not dropped silently.
    pytest.param(["--noise", "1.4"], ["--noise does nothing in prior mode", "--mode digit"], id="noise-in-prior-mode"),
    pytest.param(["--mode", "prior", "--digits", "3"], ["--digits does nothing in prior mode"], id="digits-in-prior-mode"),
    pytest.param(["--index", "17"], ["--index does nothing in prior mode"], id="index-in-prior-mode"),
    pytest.param(["--mode", "digit", "--digits", "3", "--index", "17"], ["--digits and --index both choose"],
                 id="digits-and-index"),
    pytest.param(["--scale", "0"], ["--scale must be between 1 and 16, got 0"], id="scale-0"),
    pytest.param(["--scale", "17"], ["--scale must be between 1 and 16, got 17"], id="scale-17"),
    pytest.param(["--scale", "s"], ["'--scale'", INVALID_INT], id="scale-word"),
    pytest.param(["--seed", "-1"], ["--seed must be between 0 and 4294967295, got -1"], id="seed-negative"),
    pytest.param(["--seed", "x"], ["'--seed'", INVALID_INT], id="seed-word"),
    pytest.param(["--seed", str(2**32)], ["--seed must be between 0 and 4294967295"], id="seed-above-2**32-1"),
    pytest.param(["--mode", "digit", "--digits", "12"], ["--digits takes digits 0 to 9, got 12"], id="digits-12"),
    pytest.param(["--mode", "digit", "--digits", "3,-1"], ["--digits takes digits 0 to 9, got -1"],
                 id="digits-negative"),
    pytest.param(["--mode", "digit", "--digits", "a,b"], ["--digits takes digits 0 to 9, got a"], id="digits-words"),
    pytest.param(["--mode", "digit", "--digits", "1.5"], ["--digits takes digits 0 to 9, got 1.5"],
                 id="digits-fraction"),
    pytest.param(["--mode", "digit", "--digits", ","], ["--digits must name at least one digit"], id="digits-none"),
    pytest.param(["--mode", "digit", "--digits", ""], ["--digits must name at least one digit"], id="digits-empty"),
    pytest.param(["--mode", "digit", "--index", "-1"], ["--index must be 0 or more, got -1"], id="index-negative"),
    pytest.param(["--mode", "digit", "--index", "x"], ["--index takes comma-separated whole numbers"],
                 id="index-word"),
    pytest.param(["--mode", "digit", "--index", "{n_test}"],
                 ["test image {n_test} does not exist: the test set has {n_test}"], id="index-past-test-set"),
    pytest.param(["--mode", "digit", "--index", str(10**30)], ["does not exist"], id="index-huge"),
    pytest.param(["--z-dim", "40"], ["--z-dim 2, not 40"], id="z-dim-mismatch"),
    pytest.param(["--z-dim", "x"], ["'--z-dim'", INVALID_INT], id="z-dim-word"),
    pytest.param(["--hidden-dim", "17"], ["--hidden-dim 16, not 17"], id="hidden-dim-mismatch"),
    pytest.param(["--hidden-dim", "x"], ["'--hidden-dim'", INVALID_INT], id="hidden-dim-word"),
    pytest.param(["--device", "tpu"], ["--device must be auto, cpu, cuda or mps, got 'tpu'"], id="device-tpu"),
    pytest.param(["--device", "cuda"], ["--device cuda", "no CUDA GPU"], id="device-cuda-without-gpu", marks=NO_CUDA),
    pytest.param(["--bogus"], ["No such option: --bogus"], id="unknown-option"),
    pytest.param(["--epochs", "3"], ["No such option: --epochs"], id="train-only-option"),
    pytest.param(["extra"], ["unexpected extra argument", "extra"], id="extra-argument"),
    pytest.param(["--checkpoint"], ["'--checkpoint' requires an argument"], id="checkpoint-no-value"),
]


@pytest.mark.parametrize("args, fragments", GENERATE_OPTIONS)
def test_bad_generate_option(dirs, trained_ck, args, fragments, cli_invoke, one_line_error, n_train, n_test):
    args, fragments = (_sized(items, n_train=n_train, n_test=n_test) for items in (args, fragments))
    results = dirs["--results-dir"]
    result = cli_invoke("generate", "--checkpoint-dir", trained_ck, "--results-dir", results, *args)
    one_line_error(result, *fragments)
    assert not list(results.glob("*.png"))


DOWNLOAD_OPTIONS = [
    pytest.param(["--bogus"], ["No such option: --bogus"], id="unknown-option"),
    pytest.param(["--epochs", "3"], ["No such option: --epochs"], id="train-only-option"),
    pytest.param(["extra"], ["unexpected extra argument", "extra"], id="extra-argument"),
    pytest.param(["--data-dir"], ["'--data-dir' requires an argument"], id="data-dir-no-value"),
]


@pytest.mark.parametrize("args, fragments", DOWNLOAD_OPTIONS)
def test_bad_download_option(dirs, args, fragments, cli_invoke, one_line_error):
    one_line_error(cli_invoke("download", *args), *fragments)


@pytest.mark.parametrize("args, fragments", [
    pytest.param(["dream"], ["No such command", "dream"], id="unknown-command"),
    pytest.param(["--bogus", "train"], ["No such option: --bogus"], id="unknown-global-option"),
])
def test_bad_command_line(dirs, args, fragments, cli_invoke, one_line_error):
    one_line_error(cli_invoke(*args), *fragments)


# ---------------------------------------------------------------------------------------------
# Data files

def _rehash(monkeypatch, path: Path, name: str) -> None:
    """Make the (patched) expected SHA-256 that of the rewritten file, so the structural check is what fails."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    monkeypatch.setitem(data.SHA256, name, hashlib.sha256(raw).hexdigest())


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (28, 28)).save(buffer, format="PNG")
    return buffer.getvalue()


def _count(path: Path) -> int:
    """How many images (or labels) the IDX file holds: its first dimension."""
    return int.from_bytes(path.read_bytes()[4:8], "big")


# Each damages file `name` in `folder`: mangle(folder, name, monkeypatch, write_idx).

def bad_magic(folder, name, mp, write_idx):
    path = folder / name
    raw = bytearray(path.read_bytes())
    raw[2] = 0x09  # signed bytes instead of unsigned
    path.write_bytes(bytes(raw))
    _rehash(mp, path, name)


def images_27x27(folder, name, mp, write_idx):
    _rehash(mp, write_idx(folder / name, np.zeros((_count(folder / name), 27, 27))), name)


def labels_above_9(folder, name, mp, write_idx):
    _rehash(mp, write_idx(folder / name, np.full(_count(folder / name), 12)), name)


def one_label_short(folder, name, mp, write_idx):
    _rehash(mp, write_idx(folder / name, np.zeros(_count(folder / name) - 1)), name)


def png_instead(folder, name, mp, write_idx):
    (folder / name).write_bytes(_png_bytes())


def empty(folder, name, mp, write_idx):
    (folder / name).write_bytes(b"")


def truncated_body(folder, name, mp, write_idx):
    path = folder / name
    path.write_bytes(path.read_bytes()[:-3])
    _rehash(mp, path, name)


def one_byte_too_many(folder, name, mp, write_idx):
    path = folder / name
    path.write_bytes(path.read_bytes() + b"\x00")
    _rehash(mp, path, name)


def content_changed(folder, name, mp, write_idx):  # same structure, different bytes: only the hash can tell
    path = folder / name
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


def corrupt_gzip(folder, name, mp, write_idx):
    raw = (folder / name).read_bytes()
    (folder / name).unlink()
    (folder / f"{name}.gz").write_bytes(gzip.compress(raw)[:200])


def gz_not_gzip(folder, name, mp, write_idx):
    (folder / name).unlink()
    (folder / f"{name}.gz").write_bytes(b"this is not gzip data at all")


def dims_overflow(folder, name, mp, write_idx):
    # 2**22 * 2**21 * 2**21 == 2**64: the product wraps to 0 in int64, so an empty body "fits".
    header = bytes([0, 0, 8, 3]) + b"".join((1 << k).to_bytes(4, "big") for k in (22, 21, 21))
    (folder / name).write_bytes(header)
    _rehash(mp, folder / name, name)


IMAGES, LABELS = "images", "labels"
BAD_FILES = [
    pytest.param(bad_magic, IMAGES, ["magic number 0x00000903", "expected 0x00000803"], id="wrong-magic"),
    pytest.param(images_27x27, IMAGES, ["(27, 27)", "expected 28x28"], id="images-27x27"),
    pytest.param(labels_above_9, LABELS, ["labels must be 0 to 9, found 12"], id="labels-above-9"),
    pytest.param(one_label_short, LABELS, ["images but", "labels", "do not belong together"], id="count-mismatch"),
    pytest.param(png_instead, IMAGES, ["not an IDX file", "magic number 0x89504e47"], id="png-instead"),
    pytest.param(empty, LABELS, ["truncated IDX file (0 bytes"], id="empty"),
    pytest.param(truncated_body, IMAGES, ["truncated"], id="truncated"),
    pytest.param(one_byte_too_many, LABELS, ["too long"], id="too-long"),
    pytest.param(content_changed, IMAGES, ["SHA-256 does not match"], id="content-changed"),
    pytest.param(corrupt_gzip, IMAGES, [".gz: cannot be read"], id="corrupt-gzip"),
    pytest.param(gz_not_gzip, LABELS, [".gz: cannot be read", "Not a gzipped file"], id="gz-not-gzip"),
    pytest.param(dims_overflow, IMAGES, [re.compile("truncated|too large|too big|header")], id="dims-overflow-int64"),
]

# The commands that read the data, and the split whose files each one reads.
SPLIT_READ = {
    "train": "train",  # reads the training split
    "generate-digit": "t10k",  # reads the test split
    "download": "t10k",  # verifies every file present
}


@pytest.fixture
def command_args(tiny_run_options):
    """The command line of each command in SPLIT_READ; `train` on the tiny network, for one epoch."""
    return {"train": ["train", *tiny_run_options], "generate-digit": ["generate", "--mode", "digit"],
            "download": ["download"]}


@pytest.mark.parametrize("command", list(SPLIT_READ))
@pytest.mark.parametrize("mangle, kind, fragments", BAD_FILES)
def test_bad_data_file(dirs, trained_ck, mnist_dir, monkeypatch, command, mangle, kind, fragments, command_args,
                       cli_invoke, one_line_error, write_idx):
    split, args = SPLIT_READ[command], command_args[command]
    name = f"{split}-{kind}-idx{3 if kind == IMAGES else 1}-ubyte"
    mangle(mnist_dir, name, monkeypatch, write_idx)
    if command == "generate-digit":
        args = [*args, "--checkpoint-dir", trained_ck, "--results-dir", dirs["--results-dir"]]
    elif command == "train":
        args = [*args, *dir_args(dirs)]
    line = one_line_error(cli_invoke(*args), *fragments)
    if "belong together" not in line:
        assert name in line  # the damaged file is named
    assert not list(dirs["--checkpoint-dir"].glob("*.pt"))
    assert not list(dirs["--results-dir"].glob("*.png"))


@pytest.mark.parametrize("command", list(SPLIT_READ))
def test_data_folder_that_does_not_exist(dirs, trained_ck, tmp_path, command, command_args, cli_invoke,
                                         one_line_error):
    nowhere = tmp_path / "nowhere"
    args = [*command_args[command], "--data-dir", nowhere]
    if command == "generate-digit":
        args += ["--checkpoint-dir", trained_ck, "--results-dir", dirs["--results-dir"]]
    elif command == "train":
        args += dir_args(dirs)
    one_line_error(cli_invoke(*args), "could not fetch", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                   str(nowhere))
    assert not nowhere.exists()


@pytest.mark.parametrize("command", ["train", "download"])
def test_data_dir_that_is_a_file(dirs, tmp_path, command, command_args, cli_invoke, one_line_error):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    args = [*command_args[command], "--data-dir", afile] + (dir_args(dirs) if command == "train" else [])
    one_line_error(cli_invoke(*args), str(afile), re.compile("not a (folder|directory)|is a file"))


# ---------------------------------------------------------------------------------------------
# Checkpoints and output folders

def _garbage(path: Path) -> Path:
    path.write_bytes(b"garbage" * 100)
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _truncated(path: Path, source: Path) -> Path:
    path.write_bytes(source.read_bytes()[:1000])
    return path


def _foreign(path: Path) -> Path:
    torch.save({"weights": torch.zeros(3)}, path)
    return path


@pytest.mark.parametrize("make, fragments", [
    pytest.param(lambda tmp, ck: tmp / "nope.pt", ["nope.pt", "does not exist"], id="missing"),
    pytest.param(lambda tmp, ck: _garbage(tmp / "garbage.pt"), ["garbage.pt", "is unreadable"], id="garbage"),
    pytest.param(lambda tmp, ck: _empty(tmp / "empty.pt"), ["empty.pt", "is unreadable"], id="empty"),
    pytest.param(lambda tmp, ck: _truncated(tmp / "cut.pt", ck / "vae.epoch.1.pt"), ["cut.pt", "is unreadable"],
                 id="truncated"),
    pytest.param(lambda tmp, ck: _foreign(tmp / "other.pt"), ["other.pt", "not a pyro-vae checkpoint"],
                 id="not-ours"),
    pytest.param(lambda tmp, ck: ck, [re.compile("is a (folder|directory)|not a file")], id="a-folder"),
])
def test_bad_checkpoint_file(dirs, trained_ck, tmp_path, make, fragments, cli_invoke, one_line_error):
    path = make(tmp_path, trained_ck)
    result = cli_invoke("generate", "--checkpoint", path, "--results-dir", dirs["--results-dir"])
    one_line_error(result, *fragments)
    assert not list(dirs["--results-dir"].glob("*.png"))


def test_checkpoint_folder_with_only_garbage(dirs, cli_invoke, one_line_error, tiny_run_options):
    dirs["--checkpoint-dir"].mkdir()
    _garbage(dirs["--checkpoint-dir"] / "vae.epoch.3.pt")
    for command in (["generate"], ["train", *tiny_run_options]):
        # One line, naming the damaged file (no separate warning when nothing readable is left).
        one_line_error(cli_invoke(*command, *dir_args(dirs)), "no readable checkpoint", "vae.epoch.3.pt")


def test_empty_checkpoint_folder(dirs, cli_invoke, one_line_error):
    one_line_error(cli_invoke("generate", *dir_args(dirs)), "no checkpoint in", "train first")


def test_generate_checkpoint_dir_that_is_a_file(dirs, trained_ck, tmp_path, cli_invoke, one_line_error):
    afile = _garbage(tmp_path / "afile")
    one_line_error(cli_invoke("generate", "--checkpoint-dir", afile), str(afile),
                   re.compile("not a (folder|directory)|is a file"))


def test_train_checkpoint_dir_that_is_a_file(dirs, tmp_path, cli_invoke, one_line_error, tiny_run_options):
    afile = _garbage(tmp_path / "afile")
    before = afile.read_bytes()
    result = cli_invoke("train", *tiny_run_options, "--checkpoint-dir", afile, "--results-dir", dirs["--results-dir"])
    one_line_error(result, str(afile), "--checkpoint-dir")
    assert afile.read_bytes() == before


def test_results_dir_that_is_a_file(dirs, trained_ck, tmp_path, cli_invoke, one_line_error):
    afile = _garbage(tmp_path / "afile")
    before = afile.read_bytes()
    result = cli_invoke("generate", "--checkpoint-dir", trained_ck, "--results-dir", afile)
    one_line_error(result, "could not write", str(afile))
    assert afile.read_bytes() == before


@pytest.mark.parametrize("args, fragments", [
    (["--noise", "-1"], ["--noise must be between 0 and 10, got -1"]),
    (["--noise", "nan"], ["--noise must be a finite number"]),
    (["--real-fraction", "2"], ["--real-fraction must be between 0 and 1, got 2"]),
    (["--seed", "-1"], ["--seed must be between 0 and 4294967295, got -1"]),
], ids=["noise-negative", "noise-nan", "real-fraction-2", "seed-negative"])
def test_bad_quiz_option_before_reading_a_checkpoint(args, fragments, cli_invoke, one_line_error, tmp_path):
    # No checkpoint anywhere: the option is refused first, so the error is about it.
    one_line_error(cli_invoke("quiz", "--checkpoint-dir", tmp_path / "none", *args), *fragments)
