"""The served forecaster: numpy and ONNX Runtime only (never torch).

Closes ``[N, W]`` -> scaled log returns ``[N, W-1, 1]`` -> one ONNX Runtime call for the whole batch per
step -> next scaled return ``[N]``. Horizons beyond one step roll out recursively: the predicted return is
appended to the input and the oldest dropped. Prices come back as ``last_close * exp(cumulative return)``,
so the answer scales exactly with the input's price level.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app.errors import InputInvalid, Loc, Problem, forecast_overflow, series_too_short
from app.inference.preprocessing import FloatArray, Scaler, log_returns, model_inputs, window_volatility

F64 = npt.NDArray[np.float64]
SeriesLike = Sequence[float] | FloatArray  # closes, oldest first


@dataclass(frozen=True)
class InputWarning:
    """Something about the input the model was not trained for; ``kind`` labels the metrics counter."""

    kind: str
    message: str


@dataclass(frozen=True)
class SeriesForecast:
    """One series' answer, JSON-ready lists: prices per step, ``intervals[level] = (lower, upper)``."""

    forecast: list[float]
    intervals: dict[int, tuple[list[float], list[float]]]
    last_close: float
    warnings: list[InputWarning] = field(default_factory=list)


@dataclass(frozen=True)
class BatchForecast:
    items: list[SeriesForecast]
    inference_s: float  # time spent inside ONNX Runtime, all steps


class Forecaster:
    """A verified bundle in memory. Build it with ``app.inference.bundle.load_forecaster``."""

    def __init__(
        self, session: ort.InferenceSession, scaler: Scaler, manifest: dict[str, Any], version: str
    ) -> None:
        self.session = session
        self.scaler = scaler
        self.manifest = manifest
        self.version = version
        contract = manifest["input"]
        self.window = int(contract["window"])
        self.input_name = str(contract["name"])
        self.output_name = str(contract["output_name"])
        self.provider = str(session.get_providers()[0])
        intervals = manifest["intervals"]
        self._probabilities = np.asarray(intervals["probabilities"], dtype=np.float64)
        self._quantiles = np.asarray(intervals["residual_quantiles"], dtype=np.float64)
        # quantiles per unit of the input window's volatility, or (older bundles) in log-return units
        self._per_volatility = intervals.get("units", "log_return") == "window_volatility"
        self._volatility_floor = float(intervals.get("volatility_floor", 0.0))
        levels = range(1, 100)  # every level a request may ask for, computed once
        self._level_quantiles = {level: self._interpolate(level) for level in levels}
        self._level_warnings = {level: self._level_warning(level) for level in levels}

    # --- the network ------------------------------------------------------------------------------------

    def next_returns(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """One ONNX Runtime call: scaled returns ``[N, W-1, 1]`` -> next scaled return ``[N]``."""
        (out,) = self.session.run([self.output_name], {self.input_name: inputs})
        return np.asarray(out, dtype=np.float32).reshape(len(inputs))

    def rollout(self, windows: FloatArray, horizon: int) -> F64:
        """Closes ``[N, W]`` -> cumulative predicted log returns ``[N, horizon]`` (one call per step)."""
        x = model_inputs(windows, self.scaler)  # [N, W-1, 1] float32
        cumulative = np.empty((len(x), horizon), dtype=np.float64)
        total = np.zeros(len(x), dtype=np.float64)
        for step in range(horizon):
            z = self.next_returns(x)  # [N]
            total = total + self.scaler.inverse(z)
            cumulative[:, step] = total
            if step + 1 < horizon:
                x = np.concatenate([x[:, 1:, :], z[:, np.newaxis, np.newaxis]], axis=1)  # drop oldest, append
        return cumulative

    def predict(self, windows: FloatArray, horizon: int = 1) -> F64:
        """Closes ``[N, W]`` -> forecast closes ``[N, horizon]``."""
        w = np.asarray(windows, dtype=np.float64)
        return w[:, -1:] * np.exp(self.rollout(w, horizon))

    # --- the service ------------------------------------------------------------------------------------

    def forecast(
        self,
        series: Sequence[SeriesLike],
        horizon: int = 1,
        levels: Sequence[int] = (80, 95),
        locs: Sequence[Loc] | None = None,
    ) -> BatchForecast:
        """Forecast every series together; ``locs`` name them in error messages (default ``closes``).

        Raises ``InputInvalid`` listing every series shorter than the window or whose forecast overflows.
        """
        locs = locs if locs is not None else [("body", "closes")] * len(series)
        self.check_lengths(series, locs)
        windows = np.array([s[-self.window :] for s in series], dtype=np.float64)  # [N, W]
        started = time.perf_counter()
        cumulative = self.rollout(windows, horizon)  # [N, H]
        inference_s = time.perf_counter() - started
        last = windows[:, -1:]
        with np.errstate(over="ignore", under="ignore"):
            point = last * np.exp(cumulative)
            widen = self._interval_scale(windows) * np.sqrt(
                np.arange(1, horizon + 1, dtype=np.float64)
            )  # [N, H]
            bands = {level: self._band(last, cumulative, widen, level) for level in levels}
        self._check_finite(point, bands, windows, locs)
        warnings = self._range_warnings(windows, [len(s) for s in series])
        notes = [w for w in map(self._level_note, levels) if w is not None]
        points, lasts = point.tolist(), last[:, 0].tolist()  # one conversion per array, not per series
        limits = {level: (lo.tolist(), hi.tolist()) for level, (lo, hi) in bands.items()}
        items = [
            SeriesForecast(
                forecast=points[i],
                intervals={level: (lo[i], hi[i]) for level, (lo, hi) in limits.items()},
                last_close=lasts[i],
                warnings=warnings[i] + notes,
            )
            for i in range(len(series))
        ]
        return BatchForecast(items, inference_s)

    def check_lengths(self, series: Sequence[Sized], locs: Sequence[Loc]) -> None:
        """Raise ``InputInvalid`` naming every series shorter than the model's window."""
        short = [
            series_too_short(loc, len(s), self.window)
            for s, loc in zip(series, locs, strict=True)
            if len(s) < self.window
        ]
        if short:
            raise InputInvalid(short)

    def _interval_scale(self, windows: F64) -> FloatArray:
        """``[N, 1]``: each window's log-return volatility (floored) when the quantiles are per unit of it."""
        if not self._per_volatility:
            return np.ones((len(windows), 1))
        return window_volatility(windows, self._volatility_floor)[:, np.newaxis]

    def _band(self, last: F64, cumulative: F64, widen: FloatArray, level: int) -> tuple[F64, F64]:
        q_lo, q_hi = self.residual_quantiles(level)
        return last * np.exp(cumulative + q_lo * widen), last * np.exp(cumulative + q_hi * widen)

    def residual_quantiles(self, level: int) -> tuple[float, float]:
        """One-step residual quantiles bounding the central ``level``% interval, in the bundle's units."""
        cached = self._level_quantiles.get(level)
        return cached if cached is not None else self._interpolate(level)

    def _interpolate(self, level: int) -> tuple[float, float]:
        p_lo = (1 - level / 100) / 2
        return (
            float(np.interp(p_lo, self._probabilities, self._quantiles)),
            float(np.interp(1 - p_lo, self._probabilities, self._quantiles)),
        )

    def _level_note(self, level: int) -> InputWarning | None:
        return self._level_warnings[level] if level in self._level_warnings else self._level_warning(level)

    def _level_warning(self, level: int) -> InputWarning | None:
        p_lo = (1 - level / 100) / 2
        if self._probabilities[0] <= p_lo + 1e-12 and 1 - p_lo <= self._probabilities[-1] + 1e-12:
            return None
        return InputWarning(
            "level_beyond_quantiles",
            f"level {level} needs residual quantiles {p_lo:.4g} and {1 - p_lo:.4g} but the model stores "
            f"{self._probabilities[0]:.4g}..{self._probabilities[-1]:.4g}; "
            f"the {level}% interval is too narrow",
        )

    def _range_warnings(self, windows: F64, lengths: Sequence[int]) -> list[list[InputWarning]]:
        """Returns of each window beyond the range the model saw in training, in words."""
        returns = log_returns(windows)  # [N, W-1]
        low, high = self.scaler.min_return, self.scaler.max_return
        out: list[list[InputWarning]] = [[] for _ in lengths]
        for i, j in zip(*np.nonzero((returns < low) | (returns > high)), strict=True):
            start = lengths[i] - self.window + int(j)  # index in the closes sent
            r = float(returns[i, j])
            word, limit = ("fall", low) if r < low else ("rise", high)
            out[i].append(
                InputWarning(
                    "beyond_training_range",
                    f"closes[{start}]→closes[{start + 1}] moved {_pct(r)}, beyond the largest {word} seen in "
                    f"training ({_pct(limit)}); treat this forecast with care",
                )
            )
        return out

    @staticmethod
    def _check_finite(
        point: F64, bands: dict[int, tuple[F64, F64]], windows: F64, locs: Sequence[Loc]
    ) -> None:
        tiny = np.finfo(np.float64).tiny  # below it (subnormal) bounds and forecast lose their precision
        ok = np.isfinite(point).all(axis=1) & (point >= tiny).all(axis=1)
        for lo, hi in bands.values():
            ok &= np.isfinite(hi).all(axis=1) & (lo >= tiny).all(axis=1)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            problems: list[Problem] = [forecast_overflow(locs[int(i)], float(windows[i, -1])) for i in bad]
            raise InputInvalid(problems)

    def card(self) -> dict[str, Any]:
        """What is served, for ``GET /models/current`` (keys match ``app.schemas.ModelCard``)."""
        m = self.manifest
        metrics = m.get("metrics", {})
        return {
            "version": self.version,
            "format_version": int(m["format_version"]),
            "created_at": str(m.get("created_at", "")),
            "window": self.window,
            "representation": str(m["input"].get("representation", self.scaler.representation)),
            "provider": self.provider,
            "metrics": metrics,
            "beats_naive": metrics.get("beats_naive"),
            "data": m.get("data", {}),
            "intervals": m.get("intervals", {}),
        }


def _pct(log_return: float) -> str:
    """A log return as a simple percentage change, e.g. ``-23.1%`` (``+1.2e+613%`` where it overflows)."""
    if log_return < 700:
        return f"{np.expm1(log_return) * 100:+.1f}%"
    exponent = log_return / math.log(10) + 2  # log10 of the percentage
    return f"+{10 ** (exponent % 1):.1f}e+{int(exponent)}%"
