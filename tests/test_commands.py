"""Every hint the product prints is a command that works: built by `commands`, and pasted back into
the command line here, it does what it says (the same run, to the same target, in the same folders)."""

from __future__ import annotations

import dataclasses

import re
import shlex
import signal
import shutil
from pathlib import Path

import pytest
import torch

from pyro_vae import checkpoint, commands
from pyro_vae.config import ModelConfig, Paths, TrainConfig
from pyro_vae.metrics import HISTORY, read_history


def paste(cli_invoke, line: str, *extra: object):
    """Run a printed `python cli.py ...` line as a user who pastes it would (plus `extra` options)."""
    words = shlex.split(line)
    assert words[:2] == ["python", "cli.py"], line
    return cli_invoke(*words[2:], *extra)


def hint(text: str) -> str:
    """The command line at the end of a message: everything after its last "run: "."""
    assert "run: " in text, text
    return text.strip().splitlines()[-1].rsplit("run: ", 1)[1]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(folder / checkpoint.LAST)["model"]


def test_a_command_is_quoted_and_leaves_out_what_is_not_given():
    line = commands.command("train", epochs=5, lr=None, checkpoint_dir=Path("my runs/a"), fresh=True, keep=False)
    assert line == "python cli.py train --epochs 5 --checkpoint-dir 'my runs/a' --fresh"
    assert shlex.split(commands.command("generate", noise=0.1 + 0.2))[-1] == repr(0.1 + 0.2)  # every digit


def test_a_resume_line_repeats_what_the_checkpoint_does_not_carry(mnist_dir, tmp_path):
    paths = Paths(checkpoint_dir=tmp_path / "ck", results_dir=tmp_path / "res")
    line = commands.train(TrainConfig(epochs=5, keep=3, lr=0.01), paths=paths, model_config=ModelConfig(z_dim=4))
    assert shlex.split(line)[2:] == ["train", "--epochs", "5", "--lr", "0.01", "--keep", "3", "--z-dim", "4",
                                     "--checkpoint-dir", str(tmp_path / "ck"), "--results-dir", str(tmp_path / "res")]
    # The default folders and the data folder of $PYRO_VAE_DATA need no option.
    assert commands.train(TrainConfig(), paths=Paths()) == "python cli.py train --epochs 1000"


def test_ctrl_c_hint_resumes_the_same_run_to_the_same_target_in_the_same_folders(
        tmp_path, mnist_dir, cli_invoke, tiny_options, signal_during_loss):
    other_data = shutil.copytree(mnist_dir, tmp_path / "other data")
    where = ["--checkpoint-dir", tmp_path / "ck", "--results-dir", tmp_path / "res", "--data-dir", other_data]
    straight = cli_invoke("train", "--epochs", "3", *tiny_options, "--checkpoint-dir", tmp_path / "straight",
                          "--results-dir", tmp_path / "straight-res")
    assert straight.exit_code == 0, straight.output
    with signal_during_loss(8, signal.SIGINT):  # epoch 2, batch 3 (5 batches an epoch)
        stopped = cli_invoke("train", "--epochs", "3", *tiny_options, *where)
    assert stopped.exit_code == 130, stopped.output
    line = hint(stopped.stderr)
    assert "--epochs 3" in line and "--data-dir" in line and str(tmp_path / "ck") in line, line
    resumed = paste(cli_invoke, line)
    assert resumed.exit_code == 0, resumed.output
    assert "(epoch 2, after batch 3)" in resumed.stdout and "Epoch 3 " in resumed.stdout
    assert [r.epoch for r in read_history(tmp_path / "res" / HISTORY)] == [1, 2, 3]  # the same run, to epoch 3
    assert not Path("checkpoints").exists() and not Path("results").exists()  # nothing in the default folders
    ours, theirs = weights(tmp_path / "ck"), weights(tmp_path / "straight")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_interrupted_twice_hint_resumes_from_the_newest_checkpoint(
        tmp_path, mnist_dir, cli_invoke, tiny_options, monkeypatch):
    where = ["--checkpoint-dir", tmp_path / "ck", "--results-dir", tmp_path / "res"]
    assert cli_invoke("train", "--epochs", "1", *tiny_options, "--lr", "0.002", *where).exit_code == 0

    def second_ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("pyro_vae.train.train", second_ctrl_c)
        stopped = cli_invoke("train", "--epochs", "3", *where)
    assert stopped.exit_code == 130 and stopped.stderr.startswith("error: interrupted twice")
    resumed = paste(cli_invoke, hint(stopped.stderr))
    assert resumed.exit_code == 0, resumed.output
    assert "Restoring model from" in resumed.stdout
    assert checkpoint.load(tmp_path / "ck" / checkpoint.LAST)["epoch"] == 3


def test_train_first_names_the_folder_that_was_given(tmp_path, mnist_dir, cli_invoke, one_line_error, tiny_run_options):
    empty = tmp_path / "my checkpoints"
    line = one_line_error(cli_invoke("generate", "--checkpoint-dir", empty), "no checkpoint in", "train first")
    train = line.split("train first: ", 1)[1]
    assert shlex.split(train)[2:] == ["train", "--checkpoint-dir", str(empty)]
    assert paste(cli_invoke, train, *tiny_run_options).exit_code == 0  # (a short run, for the test's sake)
    assert cli_invoke("generate", "--checkpoint-dir", empty).exit_code == 0


def test_a_mismatch_offers_a_folder_beside_for_the_other_model(tmp_path, mnist_dir, cli_invoke, one_line_error,
                                                               tiny_run_options):
    main = ["--checkpoint-dir", tmp_path / "ck", "--results-dir", tmp_path / "res"]
    assert cli_invoke("train", *tiny_run_options, *main).exit_code == 0
    before = {p: p.read_bytes() for p in (tmp_path / "ck").glob("*.pt")}
    line = one_line_error(cli_invoke("train", *tiny_run_options, *main, "--z-dim", "3"), "--z-dim 2, not 3",
                          "drop --z-dim to resume", "--fresh")
    beside = re.search(r"add (--checkpoint-dir \S+ --results-dir \S+)", line)[1]
    result = cli_invoke("train", *tiny_run_options, "--z-dim", "3", *shlex.split(beside))
    assert result.exit_code == 0, result.output
    assert checkpoint.load(tmp_path / "ck" / "z-dim-3" / checkpoint.LAST)["model_config"]["z_dim"] == 3
    assert {p: p.read_bytes() for p in (tmp_path / "ck").glob("*.pt")} == before  # the main run untouched


def test_a_diverged_run_offers_a_fresh_start_that_keeps_its_settings(tmp_path, mnist_dir, cli_invoke,
                                                                     one_line_error, tiny_options):
    where = ["--checkpoint-dir", tmp_path / "ck", "--results-dir", tmp_path / "res"]
    line = one_line_error(cli_invoke("train", "--epochs", "2", *tiny_options, "--lr", "1e10", *where),
                          "the loss became")
    words = shlex.split(hint(line))
    assert words[2] == "train" and "--fresh" in words
    for option, value in (("--lr", "1000000000.0"), ("--z-dim", "2"), ("--hidden-dim", "16"), ("--batch-size", "16"),
                          ("--epochs", "2"), ("--checkpoint-dir", str(tmp_path / "ck"))):
        assert words[words.index(option) + 1] == value, (option, words)


def test_plot_without_history_names_the_folder(tmp_path, mnist_dir, cli_invoke, one_line_error):
    line = one_line_error(cli_invoke("plot", "--results-dir", tmp_path / "res"), "no training history")
    train = re.search(r"train first \((.*?)\)", line)[1]
    assert shlex.split(train)[2:] == ["train", "--results-dir", str(tmp_path / "res")]


def test_a_data_hint_downloads_into_the_folder_it_names(tmp_path, mnist_dir, monkeypatch, cli_invoke):
    import gzip

    from pyro_vae import data
    from pyro_vae.errors import DataError

    other = shutil.copytree(mnist_dir, tmp_path / "my data")
    (other / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as missing:
        data.load_split(other, "test")
    line = str(missing.value).split("run: ", 1)[1].split(" (or put", 1)[0]
    assert shlex.split(line)[2:] == ["download", "--data-dir", str(other)]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress((mnist_dir / "t10k-labels-idx1-ubyte").read_bytes()))
    monkeypatch.setitem(data.DATASETS, "mnist", dataclasses.replace(data.get("mnist"), mirrors=(mirror.as_uri() + "/",)))
    result = paste(cli_invoke, line)
    assert result.exit_code == 0 and f"wrote {other / 't10k-labels-idx1-ubyte'}" in result.stdout, result.output


def test_already_trained_offers_a_line_that_trains_on(tmp_path, mnist_dir, cli_invoke, tiny_options):
    where = ["--checkpoint-dir", tmp_path / "ck", "--results-dir", tmp_path / "res"]
    assert cli_invoke("train", "--epochs", "2", *tiny_options, *where).exit_code == 0
    done = cli_invoke("train", "--epochs", "2", *where)
    assert done.exit_code == 0 and "Already trained to epoch 2; to train on, e.g. to epoch 4, run: " in done.stdout
    result = paste(cli_invoke, hint(done.stdout))
    assert result.exit_code == 0, result.output
    assert [r.epoch for r in read_history(tmp_path / "res" / HISTORY)] == [1, 2, 3, 4]
