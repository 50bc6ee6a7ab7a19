"""``report.png``: the loss curves and the test forecast against the actual closes, for a human to look at."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt
import numpy as np


def write_report(
    path: Path,
    history: dict[str, list[float]],
    best_epoch: int,
    actual: np.ndarray,
    forecast: np.ndarray,
    skill: float,
) -> None:
    fig, (ax_loss, ax_fc) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=80)
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    ax_loss.plot(epochs, history["train_loss"], label="train")
    ax_loss.plot(epochs, history["val_loss"], label="validation")
    if best_epoch:
        ax_loss.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
    ax_loss.set(title="loss (scaled log returns)", xlabel="epoch")
    ax_loss.legend()
    ax_fc.plot(actual, label="actual close", linewidth=1)
    ax_fc.plot(forecast, label="one-step forecast", linewidth=1, alpha=0.8)
    ax_fc.set(title=f"test part: skill vs naive {skill:+.4f}", xlabel="test day")
    ax_fc.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
