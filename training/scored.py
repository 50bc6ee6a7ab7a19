"""One slice of one series forecast one step ahead, with the interval scale serving would use for each
target: what calibration, the synthetic fallback tables and the test scores are all made from.

The scale: the EWMA of the history before the target when there are ``EWMA_MIN_RETURNS`` returns of it, else
the input window's RMS; a zero scale falls back to the RMS of all earlier returns, then to the scaler's
``flat_scale``, as in serving (``closecast/intervals.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from closecast.intervals import EWMA_MIN_RETURNS, EWMA_SPAN, ewma_along, is_flat
from training.parts import Pooled, SeriesSlices, Windows

F64 = npt.NDArray[np.float64]
PredictFn = Callable[[npt.NDArray[np.float32]], F64]  # model input [B, W-1, C] -> scaled next return [B]


@dataclass(frozen=True)
class Scored:
    """One slice of one series, forecast: the next log return, and each target's served interval scale."""

    windows: Windows
    predicted: F64  # [N] predicted next log return (0 for a flat window)
    scales: dict[str, F64]  # "ewma", "window": [N] scale per target (0 where unusable)
    served: F64  # [N] the scale serving uses (with the zero fallbacks)
    use_ewma: npt.NDArray[np.bool_]  # [N] serving would use the EWMA table

    @property
    def forecast(self) -> F64:
        return self.windows.last * np.exp(self.predicted)

    def residuals(self, table: str) -> F64:
        """Residuals in ``table``'s scale units, only where that table applies and the window moves."""
        keep = ~self.windows.flat & ~is_flat(self.scales[table])
        if table == "ewma":
            keep &= self.use_ewma
        return ((self.windows.next_return - self.predicted) / np.where(keep, self.scales[table], 1.0))[keep]


def score_slice(pooled: Pooled, s: SeriesSlices, name: str, predict: PredictFn) -> Scored:
    """Forecast every window of a slice, ``EVAL_BATCH`` windows per call of ``predict``."""
    w = s.slices[name]
    every = pooled.window_set(w, keep_flat=True)  # flat windows too (scale 1): they are forecast as "no move"
    z = [predict(x) for x in every.input_batches(pooled.scaler)]
    predicted = np.where(
        w.flat, 0.0, pooled.scaler.inverse(np.concatenate(z) if z else np.empty(0), every.scale)
    )
    all_returns = np.diff(np.log(s.closes))
    last = w.target - 2  # index of the input window's last return in all_returns
    ewma = ewma_along(all_returns)[last]
    use_ewma = np.minimum(w.target - 1, EWMA_SPAN) >= EWMA_MIN_RETURNS
    served = np.where(use_ewma, ewma, w.rms)
    zero = is_flat(served)
    if zero.any():
        history_rms = np.sqrt(np.cumsum(all_returns**2)[last] / (last + 1))
        fallback = np.where(is_flat(history_rms), pooled.scaler.flat_scale, history_rms)
        served = np.where(zero, fallback, served)
    return Scored(w, predicted, {"ewma": ewma, "window": w.rms}, served, use_ewma)
