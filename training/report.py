"""``report.png``: the loss curves, then per series (the first few) the test forecasts with their 80% and 95%
bands against the actual closes on a time axis, so a reader sees where the intervals failed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Panel:
    """One series' test part: ``x`` dates (or target indices), closes, forecasts and bands per level."""

    name: str
    x: Sequence[Any]
    actual: np.ndarray
    forecast: np.ndarray
    bands: dict[int, tuple[np.ndarray, np.ndarray]]  # level -> (lower, upper)
    metrics: dict[str, Any]  # skill, coverage


def write_report(path: Path, history: dict[str, list[float]], best_epoch: int, panels: list[Panel]) -> None:
    """Draw and save the figure. matplotlib is imported here, not with the module: it costs a run about as
    much as an epoch, and only a run that draws a report needs it."""
    plt = pyplot()
    fig, axes = plt.subplots(1 + len(panels), 1, figsize=(12, 3.2 * (1 + len(panels))), dpi=80, squeeze=False)
    _losses(axes[0, 0], history, best_epoch)
    for ax, panel in zip(axes[1:, 0], panels, strict=True):
        _panel(ax, panel)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only backend (never a window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def whole_number_axis(ax: Any) -> None:
    """Epochs and trials are counted: integer ticks, and no "+1" offset above the axis."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")


def _losses(ax: Any, history: dict[str, list[float]], best_epoch: int) -> None:
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], label="train")
    ax.plot(epochs, history["val_loss"], label="early stopping")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
    ax.set(title="loss (scaled returns)", xlabel="epoch")
    whole_number_axis(ax)
    ax.legend()


def _panel(ax: Any, p: Panel) -> None:
    for level, alpha in ((95, 0.15), (80, 0.3)):
        lower, upper = p.bands[level]
        share = p.metrics.get("coverage", {}).get(str(level), float("nan"))
        ax.fill_between(
            p.x,
            lower,
            upper,
            color="tab:orange",
            alpha=alpha,
            linewidth=0,
            label=f"{level}% ({share:.1%} held)",
        )
    ax.plot(p.x, p.actual, color="black", linewidth=0.8, label="actual close")
    ax.plot(p.x, p.forecast, color="tab:orange", linewidth=0.6, label="one-step forecast")
    outside = (p.actual < p.bands[95][0]) | (p.actual > p.bands[95][1])
    ax.scatter(
        np.asarray(p.x, dtype=object)[outside], p.actual[outside], s=6, color="red", label="outside 95%"
    )
    ax.set(title=f"{p.name}: test part, skill vs naive {p.metrics['skill']:+.4f}")
    ax.legend(fontsize="small", loc="upper left")
