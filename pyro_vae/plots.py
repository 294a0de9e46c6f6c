"""Training curves from `results/metrics/history.csv`, drawn with matplotlib (Agg, no display)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyro_vae.fsutil import atomic_write
from pyro_vae.metrics import EpochRecord

CURVES = Path("metrics") / "curves.png"  # under the results folder

# (field, label): the bounds drawn against the epoch, all per image in nats.
_BOUNDS = (
    ("lower_bound", "train lower bound"),
    ("valid_elbo", "validation ELBO"),
    ("valid_log_likelihood", "validation log p(x)"),
    ("test_elbo", "test ELBO"),
    ("test_log_likelihood", "test log p(x)"),
)


_CLIP_FROM_EPOCHS = 20  # a shorter run shows every point: its first epochs are much of what there is


def series(records: list[EpochRecord]) -> dict[str, tuple[list[int], list[float]]]:
    """label -> (epochs, values) for every bound the history has at least one value of."""
    found = {}
    for name, label in _BOUNDS:
        points = [(r.epoch, getattr(r, name)) for r in records if getattr(r, name) is not None]
        if points:
            found[label] = ([e for e, _ in points], [v for _, v in points])
    return found


def plot_history(records: list[EpochRecord], path: Path, *, evaluations: Sequence[dict[str, Any]] = (),
                 run: str = "") -> Path:
    """Draw `figure(records, evaluations=..., run=...)` to a PNG at `path`, atomically."""
    import matplotlib.pyplot as plt

    fig = figure(records, evaluations=evaluations, run=run)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    with atomic_write(Path(path)) as handle:
        handle.write(buffer.getvalue())
    return Path(path)


def figure(records: list[EpochRecord], *, evaluations: Sequence[dict[str, Any]] = (), run: str = "") -> Any:
    """The bounds (left) and seconds per epoch (right) against whole epochs, as a matplotlib figure.

    Args:
        run: the run's name (its results folder), in the title: one figure draws one run.
        evaluations: `evaluate`'s records (metrics.read_evaluations), drawn as points with error
            bars at their checkpoint's epoch.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curves = series(records)
    fig, (bounds, seconds) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    colours = {}
    for label, (epochs, values) in curves.items():
        single = len(epochs) == 1
        (line,) = bounds.plot(epochs, values, marker="o" if single or len(epochs) < 30 else None, markersize=3,
                              label=label)
        colours[label] = line.get_color()
    for particles, name, marker in _evaluated(evaluations):
        points = [r for r in evaluations if r.get("particles") == particles and r.get("epoch") is not None]
        bounds.errorbar([r["epoch"] for r in points], [r[name] for r in points],
                        yerr=[r.get(f"{name}_se") or 0 for r in points], fmt=marker, markersize=9, capsize=3,
                        label=f"evaluate: test {'log p(x)' if name == 'log_likelihood' else 'ELBO'}, K={particles}")
    _limit(bounds, curves, colours, evaluations)
    bounds.set(xlabel="epoch", ylabel="nats per image", title="bounds (higher is better)")
    bounds.grid(alpha=0.3)
    bounds.legend(fontsize="small")
    seconds.plot([r.epoch for r in records], [r.seconds for r in records], color="gray",
                 marker="o" if len(records) < 30 else None, markersize=3)
    seconds.set(xlabel="epoch", ylabel="seconds", title="training time per epoch", ylim=(0, None))
    if run:
        fig.suptitle(f"run: {run}", fontsize="medium")
    seconds.grid(alpha=0.3)
    for axes in (bounds, seconds):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    fig.tight_layout()
    return fig


def _evaluated(evaluations: Sequence[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """(particles, figure, marker) for each K the evaluations were made with: log p(x) as stars,
    the ELBO as diamonds."""
    ks = sorted({r["particles"] for r in evaluations if r.get("epoch") is not None and "particles" in r})
    return [(k, name, marker) for k in ks for name, marker in (("elbo", "D"), ("log_likelihood", "*"))]


def _limit(axes: Any, curves: dict[str, tuple[list[int], list[float]]], colours: dict[str, str],
           evaluations: Sequence[dict[str, Any]]) -> None:
    """Show every point, unless a long run's first epochs (a hundred nats below the rest) would
    squash the curves into a line: then the scale keeps to where they settle, and each point below
    it is a triangle on the bottom edge, with a note of the lowest."""
    evaluated = [r[name] for r in evaluations for name in ("elbo", "log_likelihood")
                 if r.get("epoch") is not None and isinstance(r.get(name), (int, float))]
    values = [v for _, vs in curves.values() for v in vs] + evaluated
    if not values:
        return
    epochs = max((e for es, _ in curves.values() for e in es), default=1)
    # evaluate's figures are never clipped: they are few, and the reason to draw them.
    settled = [v for es, vs in curves.values() for e, v in zip(es, vs) if e > max(1, epochs // 20)] + evaluated
    top, lowest, floor = max(values), min(values), min(settled or values)
    if epochs < _CLIP_FROM_EPOCHS or top - lowest <= 4 * (top - floor + 1):
        return
    margin = 0.05 * (top - floor + 1)
    low = floor - margin
    axes.set_ylim(low, top + margin)
    below = [(e, v, label) for label, (es, vs) in curves.items() for e, v in zip(es, vs) if v < low]
    for label in dict.fromkeys(label for _, _, label in below):
        es = [e for e, _, name in below if name == label]
        axes.plot(es, [low] * len(es), linestyle="none", marker="v", markersize=8, color=colours[label],
                  clip_on=False)
    e, v, label = min(below, key=lambda point: point[1])
    axes.annotate(f"\u25bc {len(below)} point{'s' * (len(below) > 1)} below the axis; lowest {v:.1f} "
                  f"({label}, epoch {e})", xy=(0.99, 0.02), xycoords="axes fraction", ha="right", va="bottom",
                  fontsize="small", color="dimgray")
