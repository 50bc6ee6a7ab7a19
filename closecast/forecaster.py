"""The served forecaster: numpy and ONNX Runtime only (never torch).

Closes ``[N, W]`` -> scaled log returns ``[N, W-1, 1]`` -> one ONNX Runtime call for the whole batch per
step -> next scaled return ``[N]``. Horizons beyond one step roll out recursively: the predicted return is
appended to the input and the oldest dropped. Prices come back as ``last_close * exp(cumulative return)``,
so the answer scales exactly with the input's price level."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from closecast.errors import InputInvalid, Loc, Problem, forecast_overflow, series_too_short
from closecast.features import check_batch
from closecast.representation import FloatArray, Scaler, log_returns, model_inputs
from closecast.results import BatchForecast, InputWarning, PriceRows, SeriesForecast
from closecast.scoring import naive_verdict

F64 = npt.NDArray[np.float64]
SeriesLike = Sequence[float] | FloatArray  # closes, oldest first
FeatureMap = Mapping[str, SeriesLike]  # one series' features by name, aligned with its closes
FeatureWindows = Mapping[str, FloatArray]  # each feature's windows [N, W]

_TINY = float(np.finfo(np.float64).tiny)  # below it (subnormal) prices lose their precision


def _sqrt_steps(horizon: int) -> npt.NDArray[np.float64]:
    """``sqrt(h)`` for ``h = 1..horizon``: how an interval widens with the step."""
    return np.sqrt(np.arange(1.0, horizon + 1))


_SQRT_STEPS = _sqrt_steps(1024)  # every horizon the API allows (<= 365), computed once
_SQRT_STEP_LIST: list[float] = _SQRT_STEPS.tolist()
_MAX_PLANS = 1024  # distinct `level` lists remembered; the cache is emptied beyond


@dataclass(frozen=True)
class _LevelPlan:
    """What a request's ``level`` list needs, computed once per distinct list."""

    quantiles: F64  # [1+2L, 1]: 0 (the forecast), then lower and upper quantile of each level as asked
    quantile_list: list[float]  # the same without the 0, as Python floats
    rows: tuple[tuple[int, int], ...]  # (row of the lower bound in the prices array, level)
    notes: list[InputWarning]  # level_beyond_quantiles warnings


class Forecaster:
    """A verified bundle in memory. Build it with ``closecast.bundle.load_forecaster``."""

    def __init__(
        self, session: ort.InferenceSession, scaler: Scaler, manifest: dict[str, Any], version: str
    ) -> None:
        self._setup(session, manifest, version)
        self.scaler = scaler
        intervals = manifest["intervals"]
        self._set_quantiles(intervals["probabilities"], intervals["residual_quantiles"])
        # quantiles per unit of the input window's volatility, or (older bundles) in log-return units
        self._per_volatility = intervals.get("units", "log_return") == "window_volatility"
        self._volatility_floor = float(intervals.get("volatility_floor", 0.0))
        self._plans: dict[tuple[int, ...], _LevelPlan] = {}

    def _setup(self, session: ort.InferenceSession, manifest: dict[str, Any], version: str) -> None:
        """What every bundle format has: the session, the manifest and the input contract."""
        self.session = session
        self.manifest = manifest
        self.version = version
        contract = manifest["input"]
        self.window = int(contract["window"])
        self.input_name = str(contract["name"])
        self.output_name = str(contract["output_name"])
        self.provider = str(session.get_providers()[0])
        self.features: tuple[str, ...] = tuple(contract.get("features", ()))  # the OHLCV channels

    def _set_quantiles(self, probabilities: Sequence[float], quantiles: Sequence[float]) -> None:
        """The probability grid and (default) quantile table; every level a request may ask for, once."""
        self._probabilities = np.asarray(probabilities, dtype=np.float64)
        self._quantiles = np.asarray(quantiles, dtype=np.float64)
        levels = range(1, 100)
        self._level_quantiles = {level: self._interpolate(level) for level in levels}
        self._level_warnings = {level: self._level_warning(level) for level in levels}

    # --- the network ------------------------------------------------------------------------------------

    def next_returns(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """One ONNX Runtime call: scaled returns ``[N, W-1, 1]`` -> next scaled return ``[N]``."""
        (out,) = self.session.run([self.output_name], {self.input_name: inputs})
        return np.asarray(out, dtype=np.float32).reshape(len(inputs))

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

    def predict_closes(
        self, windows: FloatArray, horizon: int = 1, features: FeatureWindows | None = None
    ) -> F64:
        """Closes (and feature windows) ``[N, W]`` -> forecast closes ``[N, horizon]``: point forecasts, no
        checks (scoring, verification, the gate); ``forecast`` is the checked answer with intervals."""
        w = np.asarray(windows, dtype=np.float64)
        return w[:, -1:] * np.exp(self.rollout(w, horizon, features))

    # --- the service ------------------------------------------------------------------------------------

    def forecast(
        self,
        series: Sequence[SeriesLike],
        horizon: int = 1,
        levels: Sequence[int] = (80, 95),
        locs: Sequence[Loc] | None = None,
        features: Sequence[FeatureMap | None] | None = None,
    ) -> BatchForecast:
        """The service's answer for every series together: checked lengths, point forecasts, intervals and
        warnings; ``locs`` name the series in error messages (default ``closes``). Format 1 reads closes
        only: ``features`` sent to it are refused.

        Raises ``InputInvalid`` listing every series shorter than the window or whose forecast overflows.
        """
        locs = locs if locs is not None else [("body", "closes")] * len(series)
        self.check_lengths(series, locs)
        self.check_features(series, features, locs)
        plan = self._plan(levels)
        if len(series) == 1:  # most requests: the same arithmetic on Python floats, bit for bit
            return self._forecast_one(series[0], horizon, plan, locs[0])
        windows = np.array([s[-self.window :] for s in series], dtype=np.float64)  # [N, W]
        returns = log_returns(windows)  # [N, W-1], once: the model's input, the band width, the warnings
        x = self.scaler.transform(returns)[..., np.newaxis].astype(np.float32)  # = model_inputs(windows)
        started = time.perf_counter()
        steps = self._steps(x, horizon)  # H x [N]
        inference_s = time.perf_counter() - started
        last = windows[:, -1:, np.newaxis]  # [N, 1, 1]
        prices = self._prices(last, self._cumulative(steps), self._widen(returns, horizon), plan.quantiles)
        lasts = last.ravel().tolist()
        self._check_finite(prices, lasts, locs)
        warnings = self._range_warnings(returns, [len(s) for s in series])
        rows = prices.tolist()  # one conversion for the whole batch
        items = [
            SeriesForecast(
                forecast=row[0],
                intervals={level: (row[k], row[k + 1]) for k, level in plan.rows},
                last_close=lasts[i],
                warnings=warnings[i] + plan.notes,
            )
            for i, row in enumerate(rows)
        ]
        return BatchForecast(items, inference_s)

    def forecast_rows(
        self,
        series: Sequence[SeriesLike],
        horizon: int,
        levels: Sequence[int],
        locs: Sequence[Loc],
        features: Sequence[FeatureMap | None] | None = None,
    ) -> PriceRows:
        """``forecast`` as one price table (what ``/forecast/batch`` writes out); same checks, same prices."""
        return PriceRows.of(self.forecast(series, horizon, levels, locs, features), levels)

    def _forecast_one(self, closes: SeriesLike, horizon: int, plan: _LevelPlan, loc: Loc) -> BatchForecast:
        """``forecast`` of one series on Python floats. numpy runs only where its result could differ from
        Python's (``log``, ``exp``, sums) and builds the model's input, so the answer is the batch path's
        bit for bit, without its ~40 numpy calls on arrays of a few numbers (dearer than the model call)."""
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
        prices = self._prices_one(last, cumulative, self._widen_one(returns, horizon), plan, loc)
        h = horizon
        item = SeriesForecast(
            forecast=prices[:h],
            intervals={
                level: (prices[k * h : (k + 1) * h], prices[(k + 1) * h : (k + 2) * h])
                for k, level in plan.rows
            },
            last_close=last,
            warnings=self._range_warnings_one(returns, len(closes)) + plan.notes,
        )
        return BatchForecast([item], inference_s)

    def check_lengths(self, series: Sequence[Sized], locs: Sequence[Loc]) -> None:
        """Raise ``InputInvalid`` naming every series shorter than the model's window."""
        short = [
            series_too_short(loc, len(s), self.window)
            for s, loc in zip(series, locs, strict=True)
            if len(s) < self.window
        ]
        if short:
            raise InputInvalid(short)

    def check_features(
        self, series: Sequence[Sized], features: Sequence[FeatureMap | None] | None, locs: Sequence[Loc]
    ) -> None:
        """Raise ``InputInvalid`` naming every feature missing, unused, of the wrong length or invalid."""
        if features is not None or self.features:
            check_batch(self.features, [len(s) for s in series], features, locs, self.version)

    def _plan(self, levels: Sequence[int]) -> _LevelPlan:
        """The quantiles and notes of these levels, computed once per distinct ``levels`` (bounded cache)."""
        key = tuple(levels)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            quantiles = [0.0] + [q for level in key for q in self.residual_quantiles(level)]
            plan = self._plans[key] = _LevelPlan(
                quantiles=np.array(quantiles, dtype=np.float64).reshape(-1, 1),
                quantile_list=quantiles[1:],
                rows=tuple((1 + 2 * k, level) for k, level in enumerate(key)),
                notes=[w for w in map(self._level_note, key) if w is not None],
            )
        return plan

    def _widen(self, returns: FloatArray, horizon: int) -> F64:
        """``[N, 1, H]``: what a residual quantile is multiplied by at step h: sqrt(h), times each window's
        log-return volatility (floored) when the quantiles are per unit of it."""
        steps = _SQRT_STEPS[:horizon] if horizon <= len(_SQRT_STEPS) else _sqrt_steps(horizon)
        if not self._per_volatility:
            return np.ones((len(returns), 1, 1)) * steps
        # = preprocessing.window_volatility(windows, floor), from the returns already computed
        volatility = np.maximum(returns.std(axis=-1), self._volatility_floor)
        return volatility[:, np.newaxis, np.newaxis] * steps

    def _widen_one(self, returns: list[float], horizon: int) -> list[float]:
        """``_widen`` of one window's returns on Python floats (the two sums by numpy, as ``ndarray.std``)."""
        roots = (
            _SQRT_STEP_LIST[:horizon] if horizon <= len(_SQRT_STEP_LIST) else _sqrt_steps(horizon).tolist()
        )
        if not self._per_volatility:
            return roots  # = 1.0 * root
        n = len(returns)
        mean = float(np.add.reduce(returns)) / n
        volatility = math.sqrt(float(np.add.reduce([(r - mean) * (r - mean) for r in returns])) / n)
        floor = self._volatility_floor
        if not (volatility >= floor or volatility != volatility):  # = np.maximum (NaN wins)
            volatility = floor
        return [volatility * root for root in roots]

    def _prices_one(
        self, last: float, cumulative: list[float], widen: list[float], plan: _LevelPlan, loc: Loc
    ) -> list[float]:
        """``_prices`` and ``_check_finite`` of one series: ``(1+2L) * H`` prices, row after row."""
        exponents = cumulative + [
            c + q * w for q in plan.quantile_list for c, w in zip(cumulative, widen, strict=True)
        ]
        prices = [last * e for e in _exp(exponents)]
        if not all(_TINY <= p < math.inf for p in prices):  # NaN fails too; the full check names the series
            self._check_finite(np.array(prices).reshape(1, -1, len(cumulative)), [last], [loc])
        return prices

    @staticmethod
    def _prices(last: F64, cumulative: FloatArray, widen: F64, quantiles: F64) -> F64:
        """``[N, 1+2L, H]``: the forecast, then the lower and upper bound of each level, as prices.

        ``last [N, 1, 1] * exp(cumulative [N, 1, H] + quantiles [1+2L, 1] * widen [N, 1, H])`` in one go;
        the first quantile is 0, so row 0 is ``last * exp(cumulative)``, the forecast.
        """
        with np.errstate(over="ignore", under="ignore"):
            return last * np.exp(cumulative[:, np.newaxis] + quantiles * widen)

    def residual_quantiles(self, level: int) -> tuple[float, float]:
        """One-step residual quantiles bounding the central ``level``% interval, in the bundle's units."""
        cached = self._level_quantiles.get(level)
        return cached if cached is not None else self._interpolate(level)

    def _interpolate(self, level: int, quantiles: F64 | None = None) -> tuple[float, float]:
        p_lo = (1 - level / 100) / 2
        table = self._quantiles if quantiles is None else quantiles
        return (
            float(np.interp(p_lo, self._probabilities, table)),
            float(np.interp(1 - p_lo, self._probabilities, table)),
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

    def _range_warnings_one(self, returns: list[float], length: int) -> list[InputWarning]:
        """``_range_warnings`` of one window's returns."""
        if min(returns) >= self.scaler.min_return and max(returns) <= self.scaler.max_return:
            return []
        return self._range_warnings(np.array([returns]), [length])[0]

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
                    f"closes[{start}]→closes[{start + 1}] moved {_pct(r)}, beyond the largest {word} seen in "
                    f"training ({_pct(limit)}); treat this forecast with care",
                )
            )
        return out

    @staticmethod
    def _check_finite(prices: F64, lasts: Sequence[float], locs: Sequence[Loc]) -> None:
        """Raise ``InputInvalid`` naming every series whose forecast or bounds (``[N, 1+2L, H]``) overflow."""
        if not prices.size or (prices.min() >= _TINY and prices.max() < np.inf):  # all fine (NaN fails)
            return
        # below tiny (subnormal) bounds and forecast lose their precision
        point, lower, upper = prices[:, 0], prices[:, 1::2], prices[:, 2::2]
        ok = np.isfinite(point).all(axis=1) & (point >= _TINY).all(axis=1)
        ok &= np.isfinite(upper).all(axis=(1, 2)) & (lower >= _TINY).all(axis=(1, 2))
        if not ok.all():
            bad = np.flatnonzero(~ok)
            problems: list[Problem] = [forecast_overflow(locs[int(i)], lasts[int(i)]) for i in bad]
            raise InputInvalid(problems)

    def card(self) -> dict[str, Any]:
        """What is served, for ``GET /models/current`` (keys match ``app.api.schemas.ModelCard``)."""
        m = self.manifest
        metrics = m.get("metrics", {})
        return {
            "version": self.version,
            "format_version": int(m["format_version"]),
            "created_at": str(m.get("created_at", "")),
            "window": self.window,
            "representation": str(m["input"].get("representation", self.scaler.representation)),
            "inputs": ["closes", *self.features],
            "provider": self.provider,
            "metrics": metrics,
            "beats_naive": metrics.get("beats_naive"),
            **naive_verdict(m),
            "data": m.get("data", {}),
            "intervals": m.get("intervals", {}),
        }


def _exp(values: list[float]) -> list[float]:
    """numpy's ``exp`` of a few numbers (its results, which may differ from ``math.exp`` in the last bit).

    Within ±700 it can neither over- nor underflow, so numpy's error state (dearer than the exp) is left.
    """
    if min(values) > -700.0 and max(values) < 700.0:
        return list(np.exp(values).tolist())
    with np.errstate(over="ignore", under="ignore"):
        return list(np.exp(values).tolist())


def _pct(log_return: float) -> str:
    """A log return as a simple percentage change, e.g. ``-23.1%`` (``+1.2e+613%`` where it overflows)."""
    if log_return < 700:
        return f"{np.expm1(log_return) * 100:+.1f}%"
    exponent = log_return / math.log(10) + 2  # log10 of the percentage
    return f"+{10 ** (exponent % 1):.1f}e+{int(exponent)}%"
