"""Progress rows: the time left in a pass and in the run, on a terminal and in log lines."""

from __future__ import annotations

import logging

import pytest

from pyro_vae import progress
from pyro_vae.progress import Bars, duration


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress.time, "monotonic", fake)
    return fake


def test_durations_read_as_a_person_reads_them():
    assert [duration(s) for s in (0.4, 42, 185, 3600 + 7 * 60 + 30, -3)] == ["0 s", "42 s", "3 min 05 s",
                                                                             "1 h 07 min", "0 s"]


def test_lines_say_the_time_left_in_the_epoch_and_in_the_run(clock, caplog, monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger="pyro_vae.progress")
    with Bars(False) as bars:
        bars.add("epochs ", total=10, completed=3, lines=False, unit_of="batches")  # resumed after epoch 3
        bars.add("batches", total=100)
        assert bars.left("batches") is None and bars.left("epochs ") is None  # no pace yet
        for _ in range(10):
            clock.now += 0.5  # half a second a batch
            bars.advance("batches")
        # 90 batches left in epoch 4 (45 s), then epochs 5-10: 6 x 50 s.
        assert bars.left("batches") == pytest.approx(45.0)
        assert bars.left("epochs ") == pytest.approx(45.0 + 300.0)
        bars.update("batches", completed=0)  # the next epoch: the pace so far holds until it is measured again
        assert bars.left("batches") == pytest.approx(50.0)
    assert "batches: 10/100 (10%), 45 s left, 5 min 45 s in all" in caplog.messages


def test_a_row_alone_says_only_its_own_time_left(clock, caplog, monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger="pyro_vae.progress")
    with Bars(False) as bars:
        bars.add("test images", total=1000)
        clock.now += 30
        bars.update("test images", completed=100)
    assert caplog.messages == ["test images: 100/1000 (10%), 4 min 30 s left"]


def test_the_terminal_rows_show_the_same_times(clock):
    with Bars(True) as bars:
        bars.add("epochs ", total=2, lines=False, unit_of="batches")
        bars.add("batches", total=4)
        clock.now += 2
        bars.advance("batches")
        tasks = {task.description: task for task in bars._progress.tasks}
        assert tasks["batches"].fields["left"] == "6 s left"
        assert tasks["epochs "].fields["left"] == "14 s left"
