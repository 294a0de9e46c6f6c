"""TensorBoard events (`train --tensorboard`), read back with TensorBoard's own reader and, in a slow
test, from the real `tensorboard` server's HTTP API."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import pyro_vae
from pyro_vae import checkpoint, images
from pyro_vae import tensorboard as board
from pyro_vae.errors import ConfigError, Interrupted, MissingExtra
from pyro_vae.metrics import HISTORY, EpochRecord, read_history
from pyro_vae.trainer import train


def _events(folder: Path) -> EventAccumulator:
    """Every scalar and image in `folder` (size_guidance 0: keep them all, not a reservoir's sample)."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def _steps(events: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in events.Scalars(tag)]


@pytest.fixture
def logged(tiny_train):
    """`tiny_train` with TensorBoard on and a grid every second epoch."""
    return dataclasses.replace(tiny_train, tensorboard=True, tensorboard_images_every=2)


def test_every_figure_of_every_epoch_is_a_scalar(paths, tiny_model, logged):
    train(dataclasses.replace(logged, epochs=3, eval_every=2, eval_particles=5), model_config=tiny_model,
          paths=paths)
    history = read_history(paths.results_dir / HISTORY)
    events = _events(paths.results_dir / board.FOLDER)
    assert set(events.Tags()["scalars"]) == {
        "train/seconds", "train/lower_bound", "train/lr", "train/reconstruction", "train/kl", "train/beta",
        "test/elbo", "test/log_likelihood", "test/reconstruction", "test/kl", "test/active_units"}
    for field in dataclasses.fields(EpochRecord):
        recorded = [(r.epoch, getattr(r, field.name)) for r in history if getattr(r, field.name) is not None]
        if field.name == "epoch" or not recorded:
            continue
        logged_points = events.Scalars(board.tag(field.name))
        assert [e.step for e in logged_points] == [epoch for epoch, _ in recorded], field.name
        # Event values are float32.
        assert [e.value for e in logged_points] == pytest.approx([v for _, v in recorded], rel=1e-6), field.name
    assert _steps(events, "train/lower_bound") == [1, 2, 3]
    assert _steps(events, "test/elbo") == _steps(events, "test/active_units") == [2]  # evaluated at epoch 2 only


def test_a_field_added_to_the_record_is_logged_by_its_name():
    wider = dataclasses.make_dataclass("Wider", [("gradient_norm", float, 12.5), ("test_sharpness", int, 7)],
                                       bases=(EpochRecord,), frozen=True)
    record = wider(epoch=4, seconds=1.5, lower_bound=-100.0, lr=1e-3, valid_elbo=-101.0)
    assert board.scalars(record) == {"train/seconds": 1.5, "train/lower_bound": -100.0, "train/lr": 1e-3,
                                     "valid/elbo": -101.0, "train/gradient_norm": 12.5, "test/sharpness": 7.0}


def test_the_samples_grid_is_the_checkpoints_prior_samples(paths, tiny_model, logged):
    train(dataclasses.replace(logged, epochs=3), model_config=tiny_model, paths=paths)
    shown = _events(paths.results_dir / board.FOLDER).Images(board.IMAGE_TAG)
    assert [e.step for e in shown] == [1, 2, 3]  # the first, every second, the last
    png = Image.open(io.BytesIO(shown[-1].encoded_image_string))
    assert png.size == (8 * 28, 8 * 28)
    pixels = np.asarray(png.convert("L"), dtype=np.int16)
    model = pyro_vae.load(checkpoint.path_for(paths.checkpoint_dir, 3))
    expected = images.grid(model.sample(board.SAMPLES, seed=board.SAMPLES_SEED)).astype(np.int16)
    # Training's measured kernels may round the last bit otherwise than the loaded model's torch default.
    assert np.abs(pixels - expected).max() <= 1


def test_no_images_with_images_every_zero(paths, tiny_model, logged):
    train(dataclasses.replace(logged, epochs=2, tensorboard_images_every=0), model_config=tiny_model, paths=paths)
    assert _events(paths.results_dir / board.FOLDER).Tags()["images"] == []


def test_training_is_the_same_with_or_without_tensorboard(tmp_path, paths, tiny_model, logged):
    without = dataclasses.replace(paths, checkpoint_dir=tmp_path / "without", results_dir=tmp_path / "r1")
    with_board = dataclasses.replace(paths, checkpoint_dir=tmp_path / "with", results_dir=tmp_path / "r2")
    train(dataclasses.replace(logged, epochs=3, tensorboard=False), model_config=tiny_model, paths=without)
    train(dataclasses.replace(logged, epochs=3), model_config=tiny_model, paths=with_board)  # samples at 1, 2, 3
    a, b = (checkpoint.load(checkpoint.latest(p.checkpoint_dir)) for p in (without, with_board))
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [m["lower_bound"] for m in a["metrics"]] == [m["lower_bound"] for m in b["metrics"]]
    assert not (without.results_dir / board.FOLDER).exists()


def test_an_interrupted_and_resumed_run_continues_the_curves(paths, tiny_model, logged, signal_during_loss):
    config = dataclasses.replace(logged, epochs=3)
    with signal_during_loss(8, signal.SIGINT), pytest.raises(Interrupted, match="epoch 2, batch 3"):
        train(config, model_config=tiny_model, paths=paths)  # 5 batches an epoch: call 8 is epoch 2, batch 3
    assert _steps(_events(paths.results_dir / board.FOLDER), "train/lower_bound") == [1]
    train(config, model_config=tiny_model, paths=paths)
    events = _events(paths.results_dir / board.FOLDER)
    assert len(list((paths.results_dir / board.FOLDER).glob("*tfevents*"))) == 2  # one file per call
    for tag in events.Tags()["scalars"]:
        assert _steps(events, tag) == [1, 2, 3], tag
    assert [e.step for e in events.Images(board.IMAGE_TAG)] == [1, 2, 3]
    history = read_history(paths.results_dir / HISTORY)
    assert [e.value for e in events.Scalars("train/lower_bound")] == pytest.approx(
        [r.lower_bound for r in history], rel=1e-6)


def test_an_epoch_logged_by_a_run_killed_before_its_checkpoint_is_shown_once(paths, tiny_model, logged):
    config = dataclasses.replace(logged, epochs=3)
    with _killed_at_the_second_save(), pytest.raises(_Killed):
        train(config, model_config=tiny_model, paths=paths)
    folder = paths.results_dir / board.FOLDER
    assert _steps(_events(folder), "train/lower_bound") == [1, 2]  # epoch 2 logged, its checkpoint never written
    assert checkpoint.load(checkpoint.latest(paths.checkpoint_dir))["epoch"] == 1
    train(config, model_config=tiny_model, paths=paths)  # redoes epoch 2
    events = _events(folder)
    for tag in events.Tags()["scalars"]:
        assert _steps(events, tag) == [1, 2, 3], tag  # the first run's epoch 2 purged
    assert [e.step for e in events.Images(board.IMAGE_TAG)] == [1, 2, 3]


class _Killed(Exception):
    """Stands for kill -9 between an epoch's events and its checkpoint."""


@contextlib.contextmanager
def _killed_at_the_second_save() -> Iterator[None]:
    """Inside the block, the second checkpoint save (epoch 2's) raises _Killed instead of writing."""
    real, calls = checkpoint.save, []

    def save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise _Killed
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint, "save", save)
        yield


def test_a_resumed_runs_file_sorts_after_one_opened_in_the_same_second(tmp_path):
    # TensorBoard reads a run's files in name order; a purge only drops the steps read before it.
    folder = tmp_path / board.FOLDER
    folder.mkdir()
    earlier = folder / f"events.out.tfevents.{int(time.time()):010d}.zzz.99999.99"
    earlier.write_bytes(b"")
    config = pyro_vae.TrainConfig(tensorboard=True)
    with board.opened(tmp_path, config=config, first_epoch=2, device=torch.device("cpu")):
        pass
    files = sorted(folder.glob("*tfevents*"))
    assert len(files) == 2 and files[0] == earlier


def test_fresh_moves_the_earlier_runs_events_aside(paths, tiny_model, logged):
    train(dataclasses.replace(logged, epochs=2), model_config=tiny_model, paths=paths)
    result = train(dataclasses.replace(logged, epochs=1), model_config=tiny_model, paths=paths, fresh=True)
    folder = paths.results_dir / board.FOLDER
    assert _steps(_events(folder), "train/lower_bound") == [1]
    aside = folder / result.archived_to.name  # beside the archived checkpoints' name
    assert _steps(_events(aside), "train/lower_bound") == [1, 2]


def test_the_command_line_writes_events(cli_invoke, mnist_dir, tiny_run_options):
    result = cli_invoke("train", *tiny_run_options, "--tensorboard", "--tensorboard-images-every", "1")
    assert result.exit_code == 0, result.output
    events = _events(Path("results") / board.FOLDER)
    assert _steps(events, "train/lower_bound") == [1] and len(events.Images(board.IMAGE_TAG)) == 1


@pytest.fixture
def without_tensorboard(monkeypatch):
    """As if the tensorboard package were not installed: importing it (and torch's writer) fails."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)


def test_without_tensorboard_the_flag_says_what_to_install(cli_invoke, one_line_error, mnist_dir, tiny_run_options,
                                                           without_tensorboard, tmp_path):
    before = sorted(tmp_path.rglob("*"))
    result = cli_invoke("train", *tiny_run_options, "--tensorboard")
    one_line_error(result, "--tensorboard needs tensorboard, which is not installed: pip install "
                   "'pyro-vae[tensorboard]'")
    assert sorted(tmp_path.rglob("*")) == before  # nothing written: no checkpoint, results or lock
    with pytest.raises(MissingExtra) as info:
        pyro_vae.train(epochs=1, tensorboard=True, z_dim=2, hidden_dim=16, batch_size=16)
    assert (info.value.extra, info.value.package) == ("tensorboard", "tensorboard")
    assert str(info.value).startswith("tensorboard needs tensorboard, which is not installed")
    assert cli_invoke("train", *tiny_run_options).exit_code == 0  # without the flag it is not needed


def test_images_every_without_the_flag_is_refused(cli_invoke, one_line_error, mnist_dir, tiny_run_options):
    one_line_error(cli_invoke("train", *tiny_run_options, "--tensorboard-images-every", "5"),
                   "--tensorboard-images-every does nothing without --tensorboard")
    with pytest.raises(ConfigError, match="does nothing without tensorboard"):
        pyro_vae.train(epochs=1, tensorboard_images_every=5)
    one_line_error(cli_invoke("train", *tiny_run_options, "--tensorboard", "--tensorboard-images-every", "-1"),
                   "--tensorboard-images-every must be 0 (none) or more")


# ---------------------------------------------------------------------------------------------
# The real server

_WAIT_S = 90  # for the server to start, and then to have read the run (bounded: the test fails after)


@pytest.mark.slow
def test_the_tensorboard_server_shows_the_resumed_curves(paths, tiny_model, logged):
    config = dataclasses.replace(logged, epochs=3)
    with _killed_at_the_second_save(), pytest.raises(_Killed):
        train(config, model_config=tiny_model, paths=paths)
    train(config, model_config=tiny_model, paths=paths)
    history = read_history(paths.results_dir / HISTORY)

    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(paths.results_dir), "--host", "127.0.0.1",
               "--port", "0", "--reload_interval", "1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as server:
        output = _Output(server)
        try:
            url = output.url()
            assert board.FOLDER in _poll(f"{url}data/runs", lambda found: board.FOLDER in found)
            points = _poll(f"{url}data/plugin/scalars/scalars?run={board.FOLDER}&tag=train/lower_bound",
                           lambda found: len(found) >= 3)
            assert [step for _, step, _ in points] == [1, 2, 3]  # each once: the killed run's epoch 2 purged
            assert [value for _, _, value in points] == pytest.approx([r.lower_bound for r in history], rel=1e-6)
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
            output.reader.join(timeout=10)  # it has read to the end before the pipe closes


class _Output:
    """The server's output, read line by line in a thread (a pipe's read has no timeout)."""

    def __init__(self, server: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.server, self.changed = server, threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.server.stdout:
            self.lines.append(line)
            self.changed.set()
        self.changed.set()

    def url(self) -> str:
        """The URL the server prints once it listens ("TensorBoard 2.x at http://127.0.0.1:PORT/"); fails
        if it exits, or says no such thing within _WAIT_S."""
        deadline = time.monotonic() + _WAIT_S
        while (found := self._url()) is None and self.reader.is_alive() and time.monotonic() < deadline:
            self.changed.wait(1)  # a second at most: the deadline is checked in between
            self.changed.clear()
        found = found or self._url()
        if found is None and not self.reader.is_alive():  # its output ended: it exits
            self.server.wait(timeout=10)
        assert found, (f"tensorboard did not start (exit status {self.server.poll()}; waited {_WAIT_S} s at most):\n"
                       + "".join(self.lines))
        return found

    def _url(self) -> str | None:
        return next((m[0] for line in list(self.lines) if (m := re.search(r"http://127\.0\.0\.1:\d+/", line))), None)


def _poll(url: str, done) -> object:
    """GET `url` as JSON until `done(answer)`, or fail after _WAIT_S (the server loads events as it goes)."""
    deadline, answer = time.monotonic() + _WAIT_S, None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                answer = json.load(response)
            if done(answer):
                return answer
        except (OSError, ValueError):
            pass  # not ready: the run or the tag is not loaded yet
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer as expected within {_WAIT_S} s: {answer!r}")
