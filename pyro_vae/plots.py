"""Training curves from `results/metrics/history.csv`, drawn with matplotlib (Agg, no display)."""

from __future__ import annotations

import io
from pathlib import Path

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


def series(records: list[EpochRecord]) -> dict[str, tuple[list[int], list[float]]]:
    """label -> (epochs, values) for every bound the history has at least one value of."""
    found = {}
    for name, label in _BOUNDS:
        points = [(r.epoch, getattr(r, name)) for r in records if getattr(r, name) is not None]
        if points:
            found[label] = ([e for e, _ in points], [v for _, v in points])
    return found


def plot_history(records: list[EpochRecord], path: Path) -> Path:
    """Draw the bounds (left) and seconds per epoch (right) to a PNG at `path`, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = series(records)
    fig, (bounds, seconds) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    for label, (epochs, values) in curves.items():
        single = len(epochs) == 1
        bounds.plot(epochs, values, marker="o" if single or len(epochs) < 30 else None, markersize=3, label=label)
    # The first epochs sit a hundred nats below the rest; keep the scale on where the curves settle.
    start = max(1, len(records) // 20)
    settled = [v for epochs, values in curves.values() for e, v in zip(epochs, values) if e > start]
    if settled:
        top = max(v for _, values in curves.values() for v in values)
        bounds.set_ylim(min(settled) - 0.05 * (top - min(settled) + 1), top + 0.05 * (top - min(settled) + 1))
    bounds.set(xlabel="epoch", ylabel="nats per image", title="bounds (higher is better)")
    bounds.grid(alpha=0.3)
    bounds.legend()
    seconds.plot([r.epoch for r in records], [r.seconds for r in records], color="gray")
    seconds.set(xlabel="epoch", ylabel="seconds", title="training time per epoch", ylim=(0, None))
    seconds.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    with atomic_write(Path(path)) as handle:
        handle.write(buffer.getvalue())
    return Path(path)
