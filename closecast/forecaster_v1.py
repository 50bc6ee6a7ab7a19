"""The forecaster of format-1 bundles, still served (numpy + ONNX Runtime).

Closes ``[N, W]`` -> log returns standardised with the training series' statistics ``[N, W-1, 1]`` -> one
ONNX Runtime call for the whole batch per step -> next scaled return ``[N]``. Horizons beyond one step roll
out recursively: the predicted return is appended to the input and the oldest dropped. Prices come back as
``last_close * exp(cumulative return)``, so the answer scales exactly with the input's price level.
Intervals multiply the bundle's one residual quantile table by ``sqrt(h)``, and (``units:
window_volatility``) by the window's return volatility, floored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from closecast.errors import Loc
from closecast.features import FeatureScaler
from closecast.forecast_math import (
    F64,
    FeatureMap,
    FeatureWindows,
    LevelPlan,
    SeriesLike,
    check_finite,
    item_one,
    pct,
    prices,
    prices_one,
    step_root_list,
    step_roots,
)
from closecast.forecaster import Forecaster
from closecast.interval_checks import check_table
from closecast.representation import (
    REPRESENTATION,
    FloatArray,
    Scaler,
    WindowScaler,
    log_returns,
    model_inputs,
)
from closecast.results import BatchForecast, InputWarning, PriceRows

TABLE = "residual"  # format 1's one quantile table


class ForecasterV1(Forecaster):
    """A verified format-1 bundle in memory. Build it with ``closecast.bundle.load_forecaster``."""

    format_version = 1
    representation = REPRESENTATION
    scaler_type = Scaler
    check_intervals = staticmethod(check_table)

    def __init__(self, session: ort.InferenceSession, scaler: Scaler, manifest: dict[str, Any], version: str):
        intervals = manifest["intervals"]
        super().__init__(session, manifest, version, {TABLE: intervals["residual_quantiles"]}, TABLE)
        self.scaler = scaler
        # quantiles per unit of the input window's volatility, or (older bundles) in log-return units
        self._per_volatility = intervals.get("units", "log_return") == "window_volatility"
        self._volatility_floor = float(intervals.get("volatility_floor", 0.0))

    @classmethod
    def load(
        cls,
        session: ort.InferenceSession,
        scaler: Scaler | WindowScaler,
        manifest: dict[str, Any],
        version: str,
        feature_scaler: FeatureScaler | None,
    ) -> ForecasterV1:
        """The loader's uniform entry (``closecast.bundle.FORECASTERS``); format 1 reads no features."""
        if feature_scaler is not None:
            raise TypeError(
                f"format 1 reads no features; got a feature scaler for {list(feature_scaler.names)}"
            )
        if not isinstance(scaler, Scaler):
            raise TypeError(f"format 1 takes a Scaler, not {type(scaler).__name__}")
        return cls(session, scaler, manifest, version)

    # --- the network ------------------------------------------------------------------------------------

    def rollout(self, windows: FloatArray, horizon: int, features: FeatureWindows | None = None) -> F64:
        """Closes ``[N, W]`` -> cumulative log returns ``[N, horizon]`` (format 1 reads no features)."""
        return self._cumulative(self._steps(model_inputs(windows, self.scaler), horizon))

    def _steps(self, x: npt.NDArray[np.float32], horizon: int) -> list[npt.NDArray[np.float32]]:
        """Model input ``[N, W-1, 1]`` -> the next scaled return ``[N]`` of each of ``horizon`` steps."""
        z = self.next_returns(x)
        steps = [z]
        for _ in range(1, horizon):
            x = np.concatenate([x[:, 1:, :], z[:, np.newaxis, np.newaxis]], axis=1)  # drop oldest, append
            z = self.next_returns(x)
            steps.append(z)
        return steps

    def _cumulative(self, steps: list[npt.NDArray[np.float32]]) -> F64:
        """Scaled returns per step ``H x [N]`` -> cumulative log returns ``[N, H]``, summed step by step."""
        return np.add.accumulate(np.asarray(self.scaler.inverse(np.stack(steps, axis=1)), np.float64), axis=1)

    # --- the batch path ---------------------------------------------------------------------------------

    def _rows(
        self,
        series: Sequence[SeriesLike],
        horizon: int,
        plan: LevelPlan,
        locs: Sequence[Loc],
        features: Sequence[FeatureMap | None] | None,
    ) -> PriceRows:
        """Every array ``[N, ...]``, one ONNX Runtime call per step, one ``tolist``."""
        windows = np.array([s[-self.window :] for s in series], dtype=np.float64)  # [N, W]
        returns = log_returns(windows)  # [N, W-1], once: the model's input, the band width, the warnings
        x = self.scaler.transform(returns)[..., np.newaxis].astype(np.float32)  # = model_inputs(windows)
        started = time.perf_counter()
        steps = self._steps(x, horizon)  # H x [N]
        inference_s = time.perf_counter() - started
        last = windows[:, -1:, np.newaxis]  # [N, 1, 1]
        table = prices(last, self._cumulative(steps), self._widen(returns, horizon), plan.columns[TABLE])
        lasts = last.ravel().tolist()
        check_finite(table, lasts, locs)
        warnings = [w + plan.notes for w in self._range_warnings(returns, [len(s) for s in series])]
        return PriceRows(table.tolist(), lasts, warnings, plan.rows, inference_s, table)

    def _widen(self, returns: FloatArray, horizon: int) -> F64:
        """``[N, 1, H]``: what a residual quantile is multiplied by at step h: sqrt(h), times each window's
        log-return volatility (floored) when the quantiles are per unit of it."""
        steps = step_roots(horizon)
        if not self._per_volatility:
            return np.ones((len(returns), 1, 1)) * steps
        # = preprocessing.window_volatility(windows, floor), from the returns already computed
        volatility = np.maximum(returns.std(axis=-1), self._volatility_floor)
        return volatility[:, np.newaxis, np.newaxis] * steps

    def _range_warnings(self, returns: FloatArray, lengths: Sequence[int]) -> list[list[InputWarning]]:
        """Returns ``[N, W-1]`` of each window beyond the range the model saw in training, in words."""
        low, high = self.scaler.min_return, self.scaler.max_return
        out: list[list[InputWarning]] = [[] for _ in lengths]
        if returns.min() >= low and returns.max() <= high:  # the common case: two reductions, no search
            return out
        for i, j in zip(*np.nonzero((returns < low) | (returns > high)), strict=True):
            start = lengths[i] - self.window + int(j)  # index in the closes sent
            r = float(returns[i, j])
            word, limit = ("fall", low) if r < low else ("rise", high)
            out[i].append(
                InputWarning(
                    "beyond_training_range",
                    f"closes[{start}]→closes[{start + 1}] moved {pct(r)}, beyond the largest {word} seen in "
                    f"training ({pct(limit)}); treat this forecast with care",
                )
            )
        return out

    # --- one series on Python floats --------------------------------------------------------------------

    def _forecast_one(self, closes: SeriesLike, horizon: int, plan: LevelPlan) -> BatchForecast | None:
        """``_rows`` of one series on Python floats: numpy runs only for ``log``, ``exp`` and the sums and
        builds the model's input, so the answer is the batch path's bit for bit."""
        log_closes = np.log(closes[-self.window :], dtype=np.float64).tolist()
        returns = [b - a for a, b in pairwise(log_closes)]  # = log_returns
        mean, std = self.scaler.mean, self.scaler.std
        scaled = [(r - mean) / std for r in returns]  # = scaler.transform
        started = time.perf_counter()
        steps = self._steps(np.array(scaled, dtype=np.float32).reshape(1, -1, 1), horizon)
        inference_s = time.perf_counter() - started
        total, cumulative = 0.0, []
        for z in steps:  # = _cumulative(steps): scaler.inverse, summed step by step
            total = total + (float(z[0]) * std + mean)
            cumulative.append(total)
        last = float(closes[-1])
        one = prices_one(last, cumulative, self._widen_one(returns, horizon), plan.lists[TABLE])
        if one is None:
            return None
        warnings = self._range_warnings_one(returns, len(closes)) + plan.notes
        return BatchForecast([item_one(one, horizon, plan, last, warnings)], inference_s)

    def _widen_one(self, returns: list[float], horizon: int) -> list[float]:
        """``_widen`` of one window's returns on Python floats (the two sums by numpy, as ``ndarray.std``)."""
        roots = step_root_list(horizon)
        if not self._per_volatility:
            return roots  # = 1.0 * root
        n = len(returns)
        mean = float(np.add.reduce(returns)) / n
        volatility = math.sqrt(float(np.add.reduce([(r - mean) * (r - mean) for r in returns])) / n)
        floor = self._volatility_floor
        if not (volatility >= floor or volatility != volatility):  # = np.maximum (NaN wins)
            volatility = floor
        return [volatility * root for root in roots]

    def _range_warnings_one(self, returns: list[float], length: int) -> list[InputWarning]:
        """``_range_warnings`` of one window's returns."""
        if min(returns) >= self.scaler.min_return and max(returns) <= self.scaler.max_return:
            return []
        return self._range_warnings(np.array([returns]), [length])[0]
