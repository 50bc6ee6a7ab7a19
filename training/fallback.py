"""Fallback interval tables calibrated on the trained model's own residuals on synthetic series of the same
frequency, for runs whose calibration slices hold fewer than ``MIN_CALIBRATION`` residuals.

Why: such runs (short weekly and monthly series) used the training residuals (in-sample) or a Student-t(4)
with standard deviation 1.15, a shape nobody checked against what the model does at that frequency; pooled
over weekly and monthly series those bands held 88.8% at 80% and 97.2% at 95%. Synthetic series give as many
out-of-sample residuals as wanted, through the same network and the same interval scale as serving.

How: ``SERIES`` zero-drift GARCH(1,1) series with Student-t(6) shocks (``training/synthetic.py``'s scales and
persistences), each bar the log return summed over ``steps_per_bar(frequency)`` daily steps (5 for weekly, 21
for monthly, ...): aggregation thins the tails and the volatility clusters the way real weekly and monthly
returns are thinner than daily ones. The model forecasts every bar after ``WARMUP`` (``score_slice``, as for
the calibration residuals), and the table is the symmetric split-conformal quantiles of those residuals
(method ``synthetic_conformal``; the bundle still says ``fallback: true`` and serving warns). A model that
reads OHLCV features cannot be run on synthetic closes: it keeps the old chain (training residuals, then
t(4)).
"""

from __future__ import annotations

import numpy as np

from closecast.intervals import symmetric_conformal_quantiles
from closecast.series import Split
from training.parts import Pooled, SeriesSlices, make_windows
from training.scored import PredictFn, score_slice
from training.synthetic import PERSISTENCE, SCALES, garch_closes

SERIES = 4  # synthetic series per run (each scale once, persistences cycling)
BARS = 1300  # bars per series
WARMUP = 300  # bars before the first residual: a full EWMA history behind every one
STEPS_PER_BAR = {"1w": 5, "1mo": 21, "1q": 63, "1y": 252}  # daily steps summed into one bar
METHOD = "synthetic_conformal"


def steps_per_bar(frequency: str | None) -> int:
    """Daily steps per bar: 1 for daily, intraday, unknown or mixed frequencies (daily dynamics)."""
    if frequency is None:
        return 1
    if frequency in STEPS_PER_BAR:
        return STEPS_PER_BAR[frequency]
    if frequency.endswith("d") and frequency[:-1].isdigit():  # "2d", "7d": a count of days
        return max(1, int(frequency[:-1]))
    return 1


def synthetic_bars(frequency: str | None, seed: int) -> list[np.ndarray]:
    """``SERIES`` synthetic closes of ``BARS + 1`` bars each at this frequency (seeded)."""
    k = steps_per_bar(frequency)
    out = []
    for i in range(SERIES):
        alpha, beta = PERSISTENCE[i % len(PERSISTENCE)]
        daily = garch_closes(BARS * k, SCALES[i % len(SCALES)], alpha, beta, seed=10_000 + 100 * seed + i)
        out.append(daily[::k])
    return out


def synthetic_residuals(
    pooled: Pooled, predict: PredictFn, frequency: str | None, seed: int
) -> dict[str, np.ndarray] | None:
    """Each table's residuals on the synthetic series, or None for a model that reads features."""
    if pooled.features is not None:
        return None
    window = pooled.series[0].slices["calibration"].window
    residuals: dict[str, list[np.ndarray]] = {"ewma": [], "window": []}
    for i, closes in enumerate(synthetic_bars(frequency, seed)):
        n = closes.size
        part = make_windows(closes, WARMUP, n, window)
        slices = SeriesSlices(
            f"fallback{i}", closes, Split(n=n, train_end=WARMUP, val_end=n), {"calibration": part}
        )
        scored = score_slice(pooled, slices, "calibration", predict)
        for table in residuals:
            residuals[table].append(scored.residuals(table))
    return {table: np.concatenate(parts) for table, parts in residuals.items()}


def synthetic_table(residuals: np.ndarray) -> tuple[np.ndarray, str, int]:
    """The fallback table of these residuals, its method and size."""
    r = residuals[np.isfinite(residuals)]
    return symmetric_conformal_quantiles(r), METHOD, int(r.size)
