"""Every matplotlib figure of the project: the training curves, the latent map and tune's study plots,
drawn without a display (Agg, selected in `_pyplot`) and written through one helper, `_save`.
(Grids of digits are PNGs of their own pixels: `images.py`.) What is drawn is computed elsewhere.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyro_vae.fsutil import atomic_write
from pyro_vae.metrics import EpochRecord

if TYPE_CHECKING:  # latent.py brings torch; `plot` draws without it
    import torch

    from pyro_vae.latent import Classes, Map

CURVES = Path("metrics") / "curves.png"  # under the results folder
LATENT_MAP = "latent_map.png"  # under the results folder


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (PNGs only, no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, *, dpi: int = 100, tight: bool = False) -> Path:
    """Write `fig` as a PNG at `path` atomically (fsutil.atomic_write), then close it, even on error.

    Args:
        tight: crop to what is drawn (bbox_inches="tight"), for Optuna's plots.
    """
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
        with atomic_write(Path(path)) as handle:
            handle.write(buffer.getvalue())
    finally:
        _pyplot().close(fig)
    return Path(path)

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
    return _save(figure(records, evaluations=evaluations, run=run), path, dpi=100)


def figure(records: list[EpochRecord], *, evaluations: Sequence[dict[str, Any]] = (), run: str = "") -> Any:
    """The bounds (left) and seconds per epoch (right) against whole epochs, as a matplotlib figure.

    Args:
        run: the run's name (its results folder), in the title: one figure draws one run.
        evaluations: `evaluate`'s records (metrics.read_evaluations), drawn as points with error
            bars at their checkpoint's epoch.
    """
    plt = _pyplot()
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


def latent_map(views: Map, labels: torch.Tensor, path: Path, *, classes: Classes, about: str = "") -> Path:
    """The map of `latent.views_of` as a PNG at `path` (atomically): each plane's coords coloured
    by `labels` (n,), side by side.

    Args:
        classes: the data set's title and class names (`latent.Classes.of`).
        about: the checkpoint in words (its epoch and path), for the caption.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(views.planes), figsize=(7 * len(views.planes), 7))
    colours = plt.get_cmap("tab10")
    axis_names = {"lda": ("LDA direction 1", "LDA direction 2"),
                  "pca": (f"PCA direction 1 ({100 * views.share[0]:.0f}% of the codes' variance)",
                          f"PCA direction 2 ({100 * views.share[-1 if len(views.share) < 2 else 1]:.0f}%)")}
    for ax, plane in zip(axes, views.planes):
        xy = plane.coords.numpy()
        for k, name in enumerate(classes.names):
            chosen = labels.numpy() == k
            ax.scatter(xy[chosen, 0], xy[chosen, 1], s=3, color=colours(k), label=name, alpha=0.6, linewidths=0)
        ax.set(xlabel=axis_names[plane.name][0], ylabel=axis_names[plane.name][1], title=plane.label)
        ax.legend(title="class", markerscale=4, loc="best", fontsize=9)
        ax.grid(alpha=0.2)
    fig.suptitle(f"The guide's means (z_loc) of {len(labels)} {classes.title} test images, coloured by class"
                 + (f"\n{about}" if about else ""))
    fig.tight_layout()
    return _save(fig, path, dpi=90)


def study_history(study: Any, path: Path, *, target: str) -> Path:
    """An Optuna study's trials (each one's `target` value, and the best so far) as a PNG at `path`."""
    _pyplot()
    import optuna.visualization.matplotlib as optuna_plots
    from matplotlib.ticker import MaxNLocator

    axes = optuna_plots.plot_optimization_history(study, target_name=target)
    axes.set(title=f"study {study.study_name}: each trial's {target} (higher is better)", xlabel="trial")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are whole
    handles, labels = axes.get_legend_handles_labels()
    # Inside the plot: Optuna's legend, beside it, squeezes the plot to a strip.
    axes.legend(handles, ["best so far" if label == "Best Value" else "trial" for label in labels],
                loc="lower right")
    axes.figure.set_size_inches(9, 5)
    return _save(axes.figure, path, dpi=110, tight=True)


def study_importances(study: Any, path: Path, *, params: list[str], target: str, completed: int) -> Path:
    """Which of `params` explains an Optuna study's `target` (fANOVA importances) as a PNG at `path`.

    Args:
        completed: how many trials completed, for the title.
    """
    _pyplot()
    import optuna.visualization.matplotlib as optuna_plots

    axes = optuna_plots.plot_param_importances(study, params=params, target_name=target)
    axes.set_title("", loc="left")  # Optuna's "Hyperparameter Importances"
    axes.set(title=f"study {study.study_name}: which searched setting explains the {target}\n"
             f"({completed} completed trials; fANOVA importances, summing to 1)",
             ylabel="searched setting", xlabel="importance")
    axes.get_legend().remove()
    return _save(axes.figure, path, dpi=110, tight=True)
