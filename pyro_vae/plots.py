"""Every matplotlib figure of the project: the training curves, the latent map, KL per latent dimension and
tune's study plots,
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
KL_PER_DIMENSION = "kl_per_dimension.png"  # under the results folder


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


# The ELBO's two terms, each in a panel of its own (KL is tens of nats, the reconstruction ~ -60 to -200).
_RECONSTRUCTION = (
    ("reconstruction", "train"),
    ("valid_reconstruction", "validation"),
    ("test_reconstruction", "test"),
)
_KL = (
    ("kl", "train"),
    ("valid_kl", "validation"),
    ("test_kl", "test"),
)

_CLIP_FROM_EPOCHS = 20  # a shorter run shows every point: its first epochs are much of what there is


def series(records: list[EpochRecord], names: Sequence[tuple[str, str]] = _BOUNDS,
           ) -> dict[str, tuple[list[int], list[float]]]:
    """label -> (epochs, values) for every one of `names` ((field, label) pairs; default the
    bounds) that the history has at least one value of."""
    found = {}
    for name, label in names:
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
    terms = series(records, _RECONSTRUCTION), series(records, _KL)
    if any(terms):  # the two terms below the bounds (a history from before them has none)
        fig, grid = plt.subplots(2, 2, figsize=(12, 8.5), gridspec_kw={"width_ratios": [2, 1]})
        (bounds, seconds), lower = grid
    else:
        fig, (bounds, seconds) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    colours = _lines(bounds, curves)
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
    if any(terms):
        _terms(lower, terms, records)
    fig.tight_layout()
    return fig


def _lines(axes: Any, curves: dict[str, tuple[list[int], list[float]]]) -> dict[str, str]:
    """Each curve as a line (with points where there are few), labelled; returns label -> colour."""
    colours = {}
    for label, (epochs, values) in curves.items():
        (line,) = axes.plot(epochs, values, marker="o" if len(epochs) < 30 else None, markersize=3, label=label)
        colours[label] = line.get_color()
    return colours


def _terms(panels: Any, terms: tuple[dict[str, tuple[list[int], list[float]]], ...],
           records: list[EpochRecord]) -> None:
    """The reconstruction term and the KL term (left and right), each per data split; the KL weight
    beside the KL where it was not 1 throughout (--beta, --kl-warmup)."""
    from matplotlib.ticker import MaxNLocator

    titles = ("reconstruction E_q[log p(x|z)] (higher is better)", "KL(q(z|x) || p(z)) (the cost of the code)")
    for axes, curves, title in zip(panels, terms, titles):
        colours = _lines(axes, curves)
        _limit(axes, curves, colours, ())
        axes.set(xlabel="epoch", ylabel="nats per image", title=title)
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if curves:
            axes.legend(fontsize="small", loc="best")
    betas = [(r.epoch, r.beta) for r in records if r.beta is not None]
    if any(beta != 1 for _, beta in betas):
        weight = panels[1].twinx()
        weight.plot([e for e, _ in betas], [b for _, b in betas], color="gray", linestyle="--", label="KL weight")
        weight.set(ylabel="KL weight in the loss (dashed)", ylim=(0, None))


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


def kl_per_dimension(kl: torch.Tensor, active: torch.Tensor, path: Path, *, about: str = "",
                     marginal: bool = False) -> Path:
    """KL(q(z_u | x) || p(z_u)) of each latent dimension u, largest first, the active ones marked,
    as a PNG at `path` (atomically).

    Args:
        kl: (z_dim,) nats per image (`latent.kl_per_dimension`); active: (z_dim,) bool (`latent.active_units`).
        about: the images and the checkpoint in words, for the caption.
        marginal: the prior is a VampPrior, and each KL is against its marginal (they do not sum to the KL term).
    """
    plt = _pyplot()
    order = sorted(range(len(kl)), key=lambda u: -float(kl[u]))
    values, used = [float(kl[u]) for u in order], [bool(active[u]) for u in order]
    fig, axes = plt.subplots(figsize=(max(6.0, 0.22 * len(order) + 2), 4.5))
    bars = axes.bar(range(len(order)), values, color=["tab:blue" if a else "lightgray" for a in used],
                    edgecolor=["black" if a else "gray" for a in used], linewidth=0.5)
    for bar, a in zip(bars, used):
        if not a:
            bar.set_hatch("//")  # a shape as well as a colour
    inactive = [k for k, a in enumerate(used) if not a]  # their bars are often too short to see
    axes.plot(inactive, [values[k] for k in inactive], linestyle="none", marker="x", color="dimgray", markersize=5)
    axes.set_ylim(bottom=-0.03 * max(max(values, default=0.0), 1e-3))  # the crosses clear the axis
    axes.set_xticks(range(len(order)), [str(u) for u in order], fontsize=7 if len(order) > 20 else 9)
    axes.set(xlabel="latent dimension, by KL", ylabel="KL, nats per image",
             title=f"{sum(used)} of {len(order)} latent dimensions active: KL per dimension, "
                   + ("against the VampPrior's marginals" if marginal else f"total {sum(values):.1f} nats"))
    from matplotlib.patches import Patch

    axes.legend(handles=[Patch(facecolor="tab:blue", edgecolor="black", label="active: Var_x E_q[z_u|x] > 0.01"),
                         Patch(facecolor="lightgray", edgecolor="gray", hatch="//", label="inactive (x)")],
                loc="upper right")
    axes.grid(axis="y", alpha=0.3)
    if about:
        fig.suptitle(about, fontsize="small")
    fig.tight_layout()
    return _save(fig, path, dpi=100)


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
