"""Windows has no `fcntl`, no `os.fchmod` (before Python 3.13) and may have no SIGTERM: the commands
must not need them. The CLI runs here in processes where importing fcntl fails and os.fchmod is
gone, and the folder lock must still refuse a second run."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from pyro_vae import checkpoint

TINY = ["--z-dim", "2", "--hidden-dim", "16", "--batch-size", "16"]


# What `import fcntl` and os.fchmod are on Windows: missing. Runs before the package is imported.
AS_ON_WINDOWS = "import os, sys; sys.modules['fcntl'] = None; del os.fchmod; "


def cli(python_command, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*python_command("import cli; cli.main()", before=AS_ON_WINDOWS), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_train_resume_and_generate_without_fcntl(tmp_path, mnist_dir, python_command):
    first = cli(python_command, tmp_path, "train", "--epochs", "2", *TINY)
    assert first.returncode == 0 and first.stderr == "", first.stdout + first.stderr
    resumed = cli(python_command, tmp_path, "train", "--epochs", "3", *TINY)
    assert resumed.returncode == 0 and "Restoring model from" in resumed.stdout, resumed.stdout + resumed.stderr
    assert [e for e, _ in checkpoint.list_checkpoints(tmp_path / "checkpoints")] == [2, 3]  # each run's last epoch
    drawn = cli(python_command, tmp_path, "generate", "--mode", "prior")
    assert drawn.returncode == 0 and (tmp_path / "results" / "random_samples.png").is_file(), drawn.stderr


@pytest.mark.slow
def test_the_lock_refuses_a_second_run_without_fcntl(tmp_path, mnist_dir, python_command):
    folder = tmp_path / "checkpoints"
    holder = subprocess.Popen(
        python_command(f"from pyro_vae import checkpoint; import time\n"
                       f"with checkpoint.lock({str(folder)!r}):\n    print('held', flush=True); time.sleep(300)",
                       before=AS_ON_WINDOWS),
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = cli(python_command, tmp_path, "train", "--epochs", "1", *TINY)
        assert second.returncode == 1, second.stdout + second.stderr
        assert second.stderr.strip().splitlines() == [
            f"error: another training run (pid {holder.pid}) is using checkpoints; wait for it to finish or pick "
            "another --checkpoint-dir"]
        assert not checkpoint.list_checkpoints(folder)
    finally:
        holder.kill()
        holder.communicate()


def test_a_platform_without_sigterm_still_stops_on_ctrl_c(paths, tiny_model, tiny_train, monkeypatch,
                                                            signal_during_loss):
    from pyro_vae.errors import Interrupted
    from pyro_vae.trainer import train

    monkeypatch.delattr(signal, "SIGTERM")
    with signal_during_loss(3, signal.SIGINT), pytest.raises(Interrupted, match="SIGINT: stopped at epoch 1"):
        train(tiny_train, model_config=tiny_model, paths=paths)
    assert checkpoint.load(paths.checkpoint_dir / checkpoint.LAST)["position"]["batch"] == 3
    # The handlers were put back: a later Ctrl-C is Python's own again.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
