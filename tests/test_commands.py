"""Every hint the product prints is a command that works: built by `commands`, and pasted back into
the command line here, it does what it says (the same run, to the same target, in the same folders)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import re
import shlex
import signal
import shutil
from pathlib import Path
from unittest import mock

import pytest
import torch

from pyro_vae import checkpoint, cli, commands
from pyro_vae.errors import Hint
from pyro_vae.config import ModelConfig, Paths, TrainConfig
from pyro_vae.metrics import HISTORY, read_history


def paste(cli_invoke, line: str, *extra: object):
    """Run a printed `python cli.py ...` line as a user who pastes it would (plus `extra` options)."""
    words = shlex.split(line)
    assert words[:2] == ["python", "cli.py"], line
    return cli_invoke(*words[2:], *extra)


def line_of(hinted: Hint) -> str:
    """A hint as the command line prints it in the clone."""
    with mock.patch.object(cli, "program", return_value=["python", "cli.py"]):
        return cli.command_line(hinted)


def hint(text: str) -> str:
    """The command line at the end of a message: everything after its last "run: "."""
    assert "run: " in text, text
    return text.strip().splitlines()[-1].rsplit("run: ", 1)[1]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(folder / checkpoint.LAST)["model"]


def test_a_command_is_quoted_and_leaves_out_what_is_not_given():
    hinted = Hint("train", dict(epochs=5, lr=None, checkpoint_dir=Path("my runs/a"), fresh=True, keep=False))
    with mock.patch.object(cli, "program", return_value=["python", "cli.py"]):
        assert cli.command_line(hinted) == "python cli.py train --epochs 5 --checkpoint-dir 'my runs/a' --fresh"
        assert shlex.split(cli.command_line(Hint("generate", dict(noise=0.1 + 0.2))))[-1] == repr(0.1 + 0.2)
    # From Python, the same hint is the API's call.
    assert hinted.python() == "pyro_vae.train(epochs=5, checkpoint_dir='my runs/a', fresh=True)"


def test_a_resume_line_repeats_what_the_checkpoint_does_not_carry(mnist_dir, tmp_path):
    paths = Paths(checkpoint_dir=tmp_path / "ck", results_dir=tmp_path / "res")
    line = line_of(commands.train(TrainConfig(epochs=5, keep=3, lr=0.01), paths=paths, model_config=ModelConfig(z_dim=4)))
    assert shlex.split(line)[2:] == ["train", "--epochs", "5", "--lr", "0.01", "--keep", "3", "--z-dim", "4",
                                     "--checkpoint-dir", str(tmp_path / "ck"), "--results-dir", str(tmp_path / "res")]
    # The default folders and the data folder of $PYRO_VAE_DATA need no option.
    assert line_of(commands.train(TrainConfig(), paths=Paths())) == "python cli.py train --epochs 1000"


def test_a_resume_line_logs_to_tensorboard_again_only_when_the_run_did(cli_invoke, mnist_dir, tiny_options,
                                                                       signal_during_loss):
    with signal_during_loss(3, signal.SIGINT):
        stopped = cli_invoke("train", "--epochs", "2", *tiny_options, "--tensorboard", "--tensorboard-images-every", "3")
    line = hint(stopped.stderr)
    assert "--tensorboard --tensorboard-images-every 3" in line, line
    assert paste(cli_invoke, line).exit_code == 0
    # A run that does not log has no use for the cadence: the option alone would be refused.
    assert line_of(commands.train(TrainConfig(tensorboard_images_every=3), paths=Paths())) == \
        "python cli.py train --epochs 1000"


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
        patch.setattr("pyro_vae.trainer.run_epoch", second_ctrl_c)  # the handler raises it mid-step
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
    beside, results = re.search(r"add (--checkpoint-dir \S+) \(a folder of its own; its results go to (\S+)\)", line).groups()
    result = cli_invoke("train", *tiny_run_options, "--z-dim", "3", *shlex.split(beside))
    assert result.exit_code == 0, result.output
    assert checkpoint.load(tmp_path / "ck" / "z-dim-3" / checkpoint.LAST)["model_config"]["z_dim"] == 3
    assert [r.epoch for r in read_history(Path(results) / HISTORY)] == [1]  # its own history, not the main run's
    assert Path(results) != tmp_path / "res"
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

    from pyro_vae import data, fetch
    from pyro_vae.errors import DataError

    other = shutil.copytree(mnist_dir, tmp_path / "my data")
    (other / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as missing:
        data.load_split(other, "test")
    assert "pyro_vae.download(data_dir=" in str(missing.value)  # from Python, the API's call
    with mock.patch.object(cli, "program", return_value=["python", "cli.py"]):
        spelled = cli._spelled(missing.value.template, missing.value.hint)
    line = spelled.split("run: ", 1)[1].split(" (or put", 1)[0]
    assert shlex.split(line)[2:] == ["download", "--data-dir", str(other)]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress((mnist_dir / "t10k-labels-idx1-ubyte").read_bytes()))
    monkeypatch.setitem(fetch.ROUTES, "mnist", dataclasses.replace(fetch.ROUTES["mnist"], mirrors=(mirror.as_uri() + "/",)))
    result = paste(cli_invoke, line)
    assert result.exit_code == 0 and f"wrote {other / 't10k-labels-idx1-ubyte'}" in result.stdout, result.output


def test_already_trained_offers_a_line_that_trains_on(tmp_path, mnist_dir, cli_invoke, tiny_options):
    where = ["--checkpoint-dir", tmp_path / "ck", "--results-dir", tmp_path / "res"]
    assert cli_invoke("train", "--epochs", "2", *tiny_options, *where).exit_code == 0
    done = cli_invoke("train", "--epochs", "2", *where)
    assert done.exit_code == 0 and "Already trained to epoch 2\nto train on, e.g. to epoch 4, run: " in done.stdout
    result = paste(cli_invoke, hint(done.stdout))
    assert result.exit_code == 0, result.output
    assert [r.epoch for r in read_history(tmp_path / "res" / HISTORY)] == [1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------
# Hints that paste back however the program was started, in a shell without the venv

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
TINY_IDX = ("--epochs", "1", "--z-dim", "2", "--hidden-dim", "16", "--batch-size", "16", "--dataset", "idx")


def _bare_env() -> dict[str, str]:
    """This environment with the venv taken off PATH (as after `make run`, which never activates it)."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != VENV_BIN]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return {**env, "PATH": os.pathsep.join(path or ["/usr/bin", "/bin"])}


@pytest.mark.parametrize("started", ["cli.py", pytest.param("relative cli.py", marks=pytest.mark.slow),
                                     pytest.param("-m", marks=pytest.mark.slow),
                                     pytest.param("console script", marks=pytest.mark.slow)])
def test_a_hint_pastes_back_in_a_shell_without_the_venv(started, tmp_path, write_synthetic_mnist):
    own = tmp_path / "own data"
    write_synthetic_mnist(own)
    empty = tmp_path / "empty"
    program, cwd = {
        "cli.py": ([sys.executable, str(ROOT / "cli.py")], tmp_path),
        "relative cli.py": ([os.path.relpath(sys.executable, ROOT), "cli.py"], ROOT),  # `make run`'s .venv/bin/python
        "-m": ([sys.executable, "-m", "pyro_vae"], tmp_path),
        "console script": ([str(VENV_BIN / "pyro-vae")], tmp_path),
    }[started]
    if started == "console script":
        assert Path(program[0]).is_file(), "the console script is installed with the package (make install)"
    failed = subprocess.run([*program, "generate", "--checkpoint-dir", str(empty)], cwd=cwd, env=_bare_env(),
                            capture_output=True, text=True)
    assert failed.returncode == 1, failed.stderr
    line = failed.stderr.strip().split("train first: ", 1)[1]
    assert shlex.split(line)[-3:] == ["train", "--checkpoint-dir", str(empty)], line
    if started == "console script":
        assert shlex.split(line)[0] == str(VENV_BIN / "pyro-vae")  # PATH has no pyro-vae: its path, as run
    else:
        assert shlex.split(line)[0] != "python"  # PATH's python is not this one: spelled out
    pasted = subprocess.run(["bash", "-c", f"{line} {shlex.join(TINY_IDX)} --data-dir {shlex.quote(str(own))}"],
                            cwd=cwd, env=_bare_env(), capture_output=True, text=True)
    assert pasted.returncode == 0, pasted.stderr
    assert (empty / "vae.epoch.1.pt").is_file()
    assert (tmp_path / "results" / "empty" / HISTORY).is_file()  # the run's own results folder


def test_with_the_venv_active_a_hint_says_python(tmp_path):
    env = {**_bare_env(), "PATH": f"{VENV_BIN}{os.pathsep}{_bare_env()['PATH']}"}
    if not (VENV_BIN / "python").exists():
        pytest.fail(f"{VENV_BIN} has no python: run the tests with the project's venv")
    python = str(VENV_BIN / "python")
    done = subprocess.run([python, str(ROOT / "cli.py"), "generate", "--checkpoint-dir", "empty"], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert done.stderr.strip().endswith(f"train first: python {ROOT / 'cli.py'} train --checkpoint-dir empty"), \
        done.stderr
