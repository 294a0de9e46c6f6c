"""Windows has no `fcntl`, no `os.fchmod` (before Python 3.13) and may have no SIGTERM: the commands
must not need them. The CLI runs here in processes where importing fcntl fails and os.fchmod is
gone, and the folder lock must still refuse a second run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyro_vae import checkpoint, data

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--z-dim", "2", "--hidden-dim", "16", "--batch-size", "16"]


def without_fcntl(code: str) -> list[str]:
    """A Python command line that runs `code` where `import fcntl` fails and `os.fchmod` is missing,
    as on Windows, and where the synthetic MNIST's checksums are accepted."""
    return [sys.executable, "-c", f"import os, sys; sys.modules['fcntl'] = None; del os.fchmod; "
            f"sys.path.insert(0, {str(ROOT)!r}); import pyro_vae.data as d; d.SHA256.update({json.dumps(data.SHA256)}); "
            f"{code}"]


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*without_fcntl("import cli; cli.main()"), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_train_resume_and_generate_without_fcntl(tmp_path, mnist_dir):
    first = cli(tmp_path, "train", "--epochs", "2", *TINY)
    assert first.returncode == 0 and first.stderr == "", first.stdout + first.stderr
    resumed = cli(tmp_path, "train", "--epochs", "3", *TINY)
    assert resumed.returncode == 0 and "Restoring model from" in resumed.stdout, resumed.stdout + resumed.stderr
    assert [e for e, _ in checkpoint.list_checkpoints(tmp_path / "checkpoints")] == [2, 3]  # each run's last epoch
    drawn = cli(tmp_path, "generate", "--mode", "prior")
    assert drawn.returncode == 0 and (tmp_path / "results" / "random_samples.png").is_file(), drawn.stderr


@pytest.mark.slow
def test_the_lock_refuses_a_second_run_without_fcntl(tmp_path, mnist_dir):
    folder = tmp_path / "checkpoints"
    holder = subprocess.Popen(
        without_fcntl(f"from pyro_vae import checkpoint; import time\n"
                      f"with checkpoint.lock({str(folder)!r}):\n    print('held', flush=True); time.sleep(300)"),
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = cli(tmp_path, "train", "--epochs", "1", *TINY)
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
    from pyro_vae.train import train

    monkeypatch.delattr(signal, "SIGTERM")
    with signal_during_loss(3, signal.SIGINT), pytest.raises(Interrupted, match="SIGINT: stopped at epoch 1"):
        train(tiny_train, model_config=tiny_model, paths=paths)
    assert checkpoint.load(paths.checkpoint_dir / checkpoint.LAST)["position"]["batch"] == 3
    # The handlers were put back: a later Ctrl-C is Python's own again.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
