"""The served forecaster of format-2 bundles: free of the price level *and* of volatility (numpy + ORT).

Closes -> the last ``EWMA_SPAN`` log returns of each series ``[N, EWMA_SPAN]`` (one vectorised pass over
all closes) -> the window's returns divided by the window's RMS and standardised ``[N, W-1, 1]`` -> one
ONNX Runtime call per step for the whole batch -> next return in log-return units. Horizons roll out
recursively: the predicted return joins the window, whose scale is recomputed. Intervals multiply the
bundle's conformal quantiles by an interval scale (``closecast/intervals.py``): the EWMA of the history sent
when there is enough of it, else the window's RMS.

One series (most requests) takes ``_forecast_one``: the same arithmetic on Python floats, numpy only where
its result could differ from Python's (``log``, ``exp``, sums), so ``forecast([s])`` equals
``forecast([s, ...]).items[0]`` bit for bit (each row's arithmetic does not depend on the others) without
the batch path's ~60 numpy calls on arrays of a few numbers, which cost more than the model call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from closecast.errors import Loc
from closecast.extremes import EXTREME_UNITS, MARGIN, extreme_warnings, max_ratio_one
from closecast.features import FeatureScaler, held, raw_channels
from closecast.forecast_math import (
    F64,
    FeatureMap,
    FeatureWindows,
    LevelPlan,
    SeriesLike,
    check_finite,
    item_one,
    prices,
    prices_one,
    step_root_list,
    step_roots,
)
from closecast.forecaster import Forecaster
from closecast.interval_checks import check_tables
from closecast.interval_steps import columns, expand, prices_steps, step_name
from closecast.intervals import (
    EWMA_MIN_RETURNS,
    EWMA_SPAN,
    TABLES,
    all_returns_rms,
    ewma_scale,
    ewma_scale_one,
    fallback_note,
    history_matrix,
    is_flat,
)
from closecast.representation import (
    FLAT_EPS,
    REPRESENTATION_V2,
    FloatArray,
    Scaler,
    WindowScaler,
    log_returns,
)
from closecast.results import BatchForecast, InputWarning, PriceRows


class ForecasterV2(Forecaster):
    """A verified format-2 bundle in memory. Build it with ``closecast.bundle.load_forecaster``."""

    format_version = 2
    representation = REPRESENTATION_V2
    scaler_type = WindowScaler
    check_intervals = staticmethod(check_tables)

    def __init__(
        self,
        session: ort.InferenceSession,
        scaler: WindowScaler,
        manifest: dict[str, Any],
        version: str,
        feature_scaler: FeatureScaler | None = None,
    ) -> None:
        tables = manifest["intervals"]["tables"]
        quantiles, self._steps = expand(tables, TABLES)  # every step's table, under its own plan name
        super().__init__(session, manifest, version, quantiles, "window")
        notes = {name: fallback_note(name, tables[name]) for name in TABLES}
        self._fallback = {n: InputWarning("fallback_intervals", w) for n, w in notes.items() if w is not None}
        self.scaler = scaler
        self.feature_scaler = feature_scaler  # set exactly when ``self.features`` is not empty

    @classmethod
    def load(
        cls,
        session: ort.InferenceSession,
        scaler: Scaler | WindowScaler,
        manifest: dict[str, Any],
        version: str,
        feature_scaler: FeatureScaler | None,
    ) -> ForecasterV2:
        """The loader's uniform entry (``closecast.bundle.FORECASTERS``)."""
        if not isinstance(scaler, WindowScaler):
            raise TypeError(f"format 2 takes a WindowScaler, not {type(scaler).__name__}")
        return cls(session, scaler, manifest, version, feature_scaler)

    # --- the network ------------------------------------------------------------------------------------

    def _step(self, returns: F64, raw: F64 | None) -> tuple[F64, F64, npt.NDArray[np.bool_]]:
        """Window returns ``[N, W-1]`` (and raw feature channels ``[N, W-1, F]``) -> next log return ``[N]``
        (exactly 0 for a flat window), the window scales ``[N]`` (1 where flat) and the flat mask ``[N]``."""
        u, scale, flat = self.scaler.transform(returns)
        x = u[..., np.newaxis]
        if self.feature_scaler is not None and raw is not None:
            x = np.concatenate([x, self.feature_scaler.transform(raw, scale)], axis=-1)  # [N, W-1, 1+F]
        z = self.next_returns(x.astype(np.float32))
        return np.where(flat, 0.0, self.scaler.inverse(z, scale)), np.asarray(scale, np.float64), flat

    def _roll(self, returns: F64, raw: F64 | None, horizon: int) -> tuple[F64, F64, npt.NDArray[np.bool_]]:
        """``[N, W-1]`` -> cumulative predicted log returns ``[N, horizon]``, the first window's scales and
        flat mask; each step's return joins the window and the oldest leaves. Features are held at their
        last value (``closecast/features.py``)."""
        nxt, scale, flat = self._step(returns, raw)
        steps = [nxt]
        for _ in range(1, horizon):
            returns = np.concatenate([returns[:, 1:], nxt[:, np.newaxis]], axis=1)
            if raw is not None:
                raw = np.concatenate([raw[:, 1:], held(raw, self.features)[:, np.newaxis]], axis=1)
            nxt, _, _ = self._step(returns, raw)
            steps.append(nxt)
        cumulative = steps[0][:, np.newaxis] if horizon == 1 else np.add.accumulate(np.stack(steps, 1), 1)
        return cumulative, scale, flat

    def _raw(self, windows: FloatArray, features: FeatureWindows | None) -> F64 | None:
        """Raw feature channels ``[N, W-1, F]`` of closes ``[N, W]`` and feature windows, or None."""
        if not self.features:
            return None
        missing = [name for name in self.features if features is None or name not in features]
        if features is None or missing:
            raise ValueError(
                f"model {self.version} reads features {list(self.features)}; missing {missing}: pass each"
            )
        return raw_channels(windows, features, self.features)

    def rollout(self, windows: FloatArray, horizon: int, features: FeatureWindows | None = None) -> F64:
        """Closes ``[N, W]`` (and feature windows ``[N, W]``) -> cumulative predicted log returns
        ``[N, horizon]``."""
        w = np.asarray(windows, dtype=np.float64)
        return self._roll(np.asarray(log_returns(w), dtype=np.float64), self._raw(w, features), horizon)[0]

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
        returns, history, counts = self._returns(series)  # [N, W-1], [N, EWMA_SPAN] or None, [N]
        raw = self._request_raw(series, features)
        started = time.perf_counter()
        cumulative, window_scale, flat = self._roll(returns, raw, horizon)  # [N, H], [N], [N]
        inference_s = time.perf_counter() - started
        use_ewma = counts >= EWMA_MIN_RETURNS
        window_scale = np.where(flat, 0.0, window_scale)  # a flat window's true RMS (0), not the 1 used
        if history is not None and use_ewma.any():
            scale = np.where(use_ewma, ewma_scale(history, counts), window_scale)
        else:
            scale = window_scale
        warnings: list[list[InputWarning]] = [[] for _ in series]
        if flat.any() or is_flat(scale).any():  # rare: identical closes
            scale = self._flat_fallback(series, flat, scale, warnings)
        extreme = extreme_warnings(returns, history, counts, [len(s) for s in series])
        warnings = [w + e for w, e in zip(warnings, extreme, strict=True)]
        if self._fallback:
            for i, ewma_row in enumerate(use_ewma.tolist()):
                note = self._fallback.get("ewma" if ewma_row else "window")
                if note is not None:
                    warnings[i].append(note)
        ewma = columns(plan.columns, "ewma", self._steps["ewma"], horizon)
        window = columns(plan.columns, "window", self._steps["window"], horizon)
        quantiles = np.where(use_ewma[:, np.newaxis, np.newaxis], ewma, window)  # [N, 1+2L, 1 or H]
        steps = step_roots(horizon)
        lasts = [float(s[-1]) for s in series]
        last = np.array(lasts, dtype=np.float64)[:, np.newaxis, np.newaxis]
        widen = scale[:, np.newaxis, np.newaxis] * steps  # [N, 1, H]
        table = prices(last, cumulative, widen, quantiles)  # [N, 1+2L, H]
        check_finite(table, lasts, locs)
        if plan.notes:
            warnings = [w + plan.notes for w in warnings]
        return PriceRows(table.tolist(), lasts, warnings, plan.rows, inference_s, table)

    def _returns(self, series: Sequence[SeriesLike]) -> tuple[F64, F64 | None, npt.NDArray[np.int64]]:
        """The input windows' log returns ``[N, W-1]``, the EWMA history ``[N, EWMA_SPAN]`` (None when no
        series sends enough returns for it: then the last ``W`` closes of each are all that is read) and
        how many returns each sent (at most ``EWMA_SPAN``). The same values either way (elementwise)."""
        counts = np.fromiter(map(len, series), dtype=np.int64, count=len(series)) - 1
        if counts.max() >= EWMA_MIN_RETURNS:
            history, counts = history_matrix(series)
            return np.ascontiguousarray(history[:, -(self.window - 1) :]), history, counts
        closes = np.array([s[-self.window :] for s in series], dtype=np.float64)  # [N, W]
        return np.diff(np.log(closes), axis=-1), None, counts

    def _request_raw(
        self, series: Sequence[SeriesLike], features: Sequence[FeatureMap | None] | None
    ) -> F64 | None:
        """The raw feature channels ``[N, W-1, F]`` of the last window of each (checked) series."""
        if not self.features or features is None:
            return None
        w = self.window
        closes = np.array([s[-w:] for s in series], dtype=np.float64)
        columns = {
            n: np.array([f[n][-w:] for f in features if f is not None], np.float64) for n in self.features
        }
        return raw_channels(closes, columns, self.features)

    def _flat_fallback(
        self,
        series: Sequence[SeriesLike],
        flat: npt.NDArray[np.bool_],
        scale: F64,
        warnings: list[list[InputWarning]],
    ) -> F64:
        """Flat windows forecast the last close; a zero interval scale becomes the RMS of all the returns
        sent, else the bundle's ``flat_scale``. Each case is said in a warning."""
        scale = scale.copy()
        for i in np.flatnonzero(flat | is_flat(scale)).tolist():
            words = []
            if flat[i]:
                words.append(f"the last {self.window} closes are all equal; the forecast is the last close")
            if is_flat(scale[i]):
                rms = all_returns_rms(series[i])
                source = "the returns sent" if rms > 0 else "the model's typical move"
                scale[i] = rms if rms > 0 else self.scaler.flat_scale
                words.append(f"the intervals are sized by {source} ({scale[i]:.3g} per step)")
            warnings[i].append(InputWarning("flat_window", "; ".join(words)))
        return scale

    # --- one series on Python floats ----------------------------------------------------------------

    def _forecast_one(self, closes: SeriesLike, horizon: int, plan: LevelPlan) -> BatchForecast | None:
        """``_rows`` of one series on Python floats, bit for bit, or None for what the batch path words
        (flat windows, zero scales, prices out of range): rare, so they are left to one place."""
        tail = np.asarray(closes[-(EWMA_SPAN + 1) :], dtype=np.float64)
        returns = np.diff(np.log(tail))  # = history_matrix's row
        window = returns[-(self.window - 1) :]
        started = time.perf_counter()
        cumulative, window_scale = self._roll_one(window.tolist(), horizon)
        inference_s = time.perf_counter() - started
        if window_scale is None:
            return None
        table = "ewma" if returns.size >= EWMA_MIN_RETURNS else "window"
        scale = ewma_scale_one(returns) if table == "ewma" else window_scale
        if not scale > FLAT_EPS or self._extreme_one(returns, window):
            return None
        widen = [scale * root for root in step_root_list(horizon)]
        last = float(tail[-1])
        steps = min(self._steps[table], horizon)
        if steps == 1:
            one = prices_one(last, cumulative, widen, plan.lists[table])
        else:
            one = prices_steps(
                last, cumulative, widen, [plan.lists[step_name(table, s)] for s in range(1, steps + 1)]
            )
        if one is None:  # NaN too: the batch path names it
            return None
        note = self._fallback.get(table)
        warnings = list(plan.notes) if note is None else [note, *plan.notes]
        return BatchForecast([item_one(one, horizon, plan, last, warnings)], inference_s)

    @staticmethod
    def _extreme_one(returns: F64, window: F64) -> bool:
        """Whether one series' last moves may be extreme (``closecast/extremes.py``): the batch path then
        decides and words it (``max_ratio_one`` rounds a little differently, hence the margin)."""
        return max_ratio_one(returns, window) > EXTREME_UNITS * (1 - MARGIN)

    def _roll_one(self, returns: list[float], horizon: int) -> tuple[list[float], float | None]:
        """``_roll`` of one window on Python floats: cumulative log returns ``[horizon]`` and the first
        window's RMS, or None for a flat first window. The sums of squares stay numpy's (pairwise)."""
        n, mean, std = len(returns), self.scaler.mean, self.scaler.std
        cumulative: list[float] = []
        total, first = 0.0, None
        for step in range(horizon):
            rms = math.sqrt(float(np.add.reduce([r * r for r in returns])) / n)  # = window_rms
            if step == 0:
                if not rms > FLAT_EPS:
                    return cumulative, None
                first = rms
            flat = not rms > FLAT_EPS
            s = 1.0 if flat else rms
            x = np.array([(r / s - mean) / std for r in returns], dtype=np.float32).reshape(1, n, 1)
            z = float(self.next_returns(x)[0])
            nxt = 0.0 if flat else (z * std + mean) * s
            total = nxt if step == 0 else total + nxt
            cumulative.append(total)
            returns = [*returns[1:], nxt]
        return cumulative, first
