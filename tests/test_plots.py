"""The curves' data: every bound the history has, and only those; the ELBO's terms; KL per latent dimension."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pyro_vae.errors import HistoryError
from pyro_vae.metrics import EpochRecord, read_history, write_history
from pyro_vae.plots import figure, plot_history, series


def test_series_takes_what_each_epoch_has(tmp_path):
    records = [EpochRecord(epoch=e, seconds=1.0, lower_bound=-100.0 + e, lr=1e-3,
                           test_elbo=-99.0 + e if e % 2 == 0 else None,
                           test_log_likelihood=-95.0 + e if e % 2 == 0 else None) for e in range(1, 6)]
    # Through the file, as `plot` reads it: empty cells come back as None.
    path = write_history(records, tmp_path / "history.csv")
    curves = series(read_history(path))
    assert list(curves) == ["train lower bound", "test ELBO", "test log p(x)"]
    assert curves["train lower bound"] == ([1, 2, 3, 4, 5], [-99.0, -98.0, -97.0, -96.0, -95.0])
    assert curves["test log p(x)"] == ([2, 4], [-93.0, -91.0])


def test_plot_history_writes_a_png(tmp_path):
    records = [EpochRecord(epoch=e, seconds=2.0, lower_bound=-200.0 + 10 * e) for e in range(1, 4)]
    path = plot_history(records, tmp_path / "metrics" / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("text, message", [
    ("epoch,seconds,lower_bound\n", "has no epochs yet"),
    ("epoch,seconds,lower_bound\n1,2.0,nan\n", "not a pyro-vae history .*not a finite number"),
    ("epoch,seconds,lower_bound\n1,2.0,-inf\n", "not a finite number"),
    ("epoch\n1\n", "lacks the seconds or lower_bound"),
    ("epoch,seconds,lower_bound\none,2.0,-90\n", "not a pyro-vae history"),
])
def test_a_history_that_cannot_be_drawn_is_refused(tmp_path, text, message):
    (tmp_path / "history.csv").write_text(text)
    with pytest.raises(HistoryError, match=message):
        read_history(tmp_path / "history.csv")


@pytest.fixture
def drawn():
    import matplotlib.pyplot as plt

    figures = []
    yield lambda records, **kwargs: figures.append(figure(records, **kwargs)) or figures[-1]
    for fig in figures:
        plt.close(fig)


def test_epochs_are_whole_and_a_short_run_shows_every_point(drawn):
    fig = drawn([EpochRecord(epoch=e, seconds=2.0, lower_bound=v) for e, v in ((1, -206.0), (2, -150.0), (3, -140.0))])
    bounds, seconds = fig.axes
    for axes in (bounds, seconds):
        assert all(t == int(t) for t in axes.get_xticks()), axes.get_xticks()  # no 1.25, 1.75
    low, high = bounds.get_ylim()
    assert low <= -206.0 and high >= -140.0  # epoch 1 too


def test_a_clipped_start_is_marked_and_evaluations_are_drawn(drawn):
    records = [EpochRecord(epoch=e, seconds=2.0, lower_bound=-500.0 if e == 1 else -100.0 + e / 10) for e in range(1, 41)]
    evaluations = [{"checkpoint": "c/last.pt", "epoch": 40, "particles": 1000, "seed": 0, "elbo": -97.0,
                    "elbo_se": 0.3, "log_likelihood": -93.0, "log_likelihood_se": 0.2}]
    bounds = drawn(records, evaluations=evaluations).axes[0]
    low, _ = bounds.get_ylim()
    assert -500.0 < low <= -97.0  # the scale keeps to where the curves settle, and shows the evaluation
    notes = [text.get_text() for text in bounds.texts]
    assert any("1 point below the axis; lowest -500.0 (train lower bound, epoch 1)" in note for note in notes), notes
    labels = bounds.get_legend_handles_labels()[1]
    assert "evaluate: test log p(x), K=1000" in labels and "evaluate: test ELBO, K=1000" in labels


def test_the_two_terms_are_drawn_below_the_bounds_with_the_kl_weight(drawn):
    records = [EpochRecord(epoch=e, seconds=2.0, lower_bound=-150.0 + e, reconstruction=-130.0 + e, kl=20.0,
                           beta=min(1.0, (e - 1) / 3), test_kl=21.0 if e % 2 == 0 else None) for e in range(1, 7)]
    fig = drawn(records)
    bounds, seconds, reconstruction, kl, weight = fig.axes
    assert [line.get_label() for line in reconstruction.lines] == ["train"]
    assert [line.get_label() for line in kl.lines] == ["train", "test"]
    assert list(weight.lines[0].get_ydata()) == [r.beta for r in records]
    assert len(drawn([EpochRecord(epoch=1, seconds=1.0, lower_bound=-99.0)]).axes) == 2  # an old history
    assert len(drawn([dataclasses.replace(r, beta=1.0) for r in records]).axes) == 4  # no weight, no axis for it
    assert series(records, [("kl", "train KL")]) == {"train KL": ([1, 2, 3, 4, 5, 6], [20.0] * 6)}


def test_the_history_keeps_the_terms_and_counts_whole(tmp_path):
    records = [EpochRecord(epoch=1, seconds=1.0, lower_bound=-90.0, reconstruction=-70.0, kl=20.0, beta=1.0,
                           test_active_units=17)]
    back = read_history(write_history(records, tmp_path / "history.csv"))
    assert back == records and isinstance(back[0].test_active_units, int)
    (tmp_path / "bad.csv").write_text("epoch,seconds,lower_bound,test_active_units\n1,1.0,-90,2.5\n")
    with pytest.raises(HistoryError, match="not a whole number"):
        read_history(tmp_path / "bad.csv")


def test_kl_per_dimension_draws_every_dimension_largest_first(tmp_path):
    import matplotlib.pyplot as plt

    from pyro_vae import plots

    kl = torch.tensor([0.001, 3.0, 0.5, 0.0], dtype=torch.float64)
    active = torch.tensor([False, True, True, False])
    captured = []
    real = plots._save
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "_save", lambda fig, path, **kw: captured.append(fig) or real(fig, path, **kw))
        path = plots.kl_per_dimension(kl, active, tmp_path / "kl.png", about="4 test images")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = captured[0].axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["1", "2", "0", "3"]
    assert [round(bar.get_height(), 3) for bar in axes.patches[:4]] == [3.0, 0.5, 0.001, 0.0]
    assert [bar.get_hatch() for bar in axes.patches[:4]] == [None, None, "//", "//"]
    assert axes.get_title().startswith("2 of 4 latent dimensions active")
    plt.close("all")
