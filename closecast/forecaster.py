"""What every served forecaster does, whatever its bundle format (numpy and ONNX Runtime only, never torch).

``Forecaster`` is the abstract base the service is typed against: the ONNX Runtime session, the manifest,
version and card, the checked public ``forecast`` and ``forecast_rows``, ``predict_closes``, the length and
feature checks, and the level plans over the bundle's quantile tables. Each bundle format is a sibling
subclass holding its own arithmetic (``closecast/forecaster_v1.py``, ``closecast/forecaster_v2.py``);
``closecast/bundle.py`` picks one from its ``FORECASTERS`` table by the manifest's ``format_version``.

Every format answers one series (most requests) on a path of its own, on Python floats with numpy only
where its result could differ from Python's (``log``, ``exp``, sums): the batch path's ~40-60 numpy calls
on arrays of a few numbers cost more than the model call. That path gives the batch path's answer bit for
bit, or None for the rare cases (flat windows, prices out of range) the batch path words.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence, Sized
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from closecast.errors import InputInvalid, Loc, series_too_short
from closecast.features import FeatureScaler, check_batch
from closecast.forecast_math import (
    F64,
    MAX_PLANS,
    FeatureMap,
    FeatureWindows,
    LevelPlan,
    SeriesLike,
)
from closecast.representation import FloatArray, Scaler, WindowScaler
from closecast.results import BatchForecast, InputWarning, PriceRows
from closecast.scoring import naive_verdict

__all__ = ["F64", "BatchForecast", "FeatureMap", "FeatureWindows", "Forecaster", "SeriesLike"]


class Forecaster(ABC):
    """A verified bundle in memory. Build it with ``closecast.bundle.load_forecaster``."""

    format_version: ClassVar[int]  # the manifest's ``format_version`` this class serves
    representation: ClassVar[str]  # the scaler's representation, for cards of manifests that omit it
    scaler_type: ClassVar[type[Scaler] | type[WindowScaler]]  # what ``scaler.json`` holds

    @staticmethod
    @abstractmethod
    def check_intervals(intervals: dict[str, Any], name: str) -> None:
        """Raise ``BundleInvalid`` unless the manifest's ``intervals`` are what this format serves from."""

    @classmethod
    @abstractmethod
    def load(
        cls,
        session: ort.InferenceSession,
        scaler: Scaler | WindowScaler,
        manifest: dict[str, Any],
        version: str,
        feature_scaler: FeatureScaler | None,
    ) -> Forecaster:
        """The loader's one entry for every format (``closecast.bundle.FORECASTERS``)."""

    def __init__(
        self,
        session: ort.InferenceSession,
        manifest: dict[str, Any],
        version: str,
        tables: Mapping[str, Sequence[float]],
        default_table: str,
    ) -> None:
        """``tables``: the bundle's residual quantile tables by name, on ``intervals.probabilities``;
        ``residual_quantiles`` reads ``default_table``."""
        self.session = session
        self.manifest = manifest
        self.version = version
        contract = manifest["input"]
        self.window = int(contract["window"])
        self.input_name = str(contract["name"])
        self.output_name = str(contract["output_name"])
        self.provider = str(session.get_providers()[0])
        self.features: tuple[str, ...] = tuple(contract.get("features", ()))  # the OHLCV channels
        self._probabilities = np.asarray(manifest["intervals"]["probabilities"], dtype=np.float64)
        self._tables = {name: np.asarray(table, dtype=np.float64) for name, table in tables.items()}
        self._quantiles = self._tables[default_table]
        levels = range(1, 100)  # every level a request may ask for, once
        self._level_quantiles = {level: self._interpolate(level) for level in levels}
        self._level_warnings = {level: self._level_warning(level) for level in levels}
        self._plans: dict[tuple[int, ...], LevelPlan] = {}

    # --- what each format implements --------------------------------------------------------------------

    @abstractmethod
    def rollout(self, windows: FloatArray, horizon: int, features: FeatureWindows | None = None) -> F64:
        """Closes (and feature windows) ``[N, W]`` -> cumulative predicted log returns ``[N, horizon]``."""

    @abstractmethod
    def _rows(
        self,
        series: Sequence[SeriesLike],
        horizon: int,
        plan: LevelPlan,
        locs: Sequence[Loc],
        features: Sequence[FeatureMap | None] | None,
    ) -> PriceRows:
        """The batch path on checked input: every array ``[N, ...]``, one ONNX Runtime call per step."""

    @abstractmethod
    def _forecast_one(self, closes: SeriesLike, horizon: int, plan: LevelPlan) -> BatchForecast | None:
        """One closes-only series on Python floats, bit for bit the batch path's, or None to leave it
        there."""

    # --- the network ------------------------------------------------------------------------------------

    def next_returns(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """One ONNX Runtime call: model inputs ``[N, W-1, C]`` -> next scaled return ``[N]``."""
        (out,) = self.session.run([self.output_name], {self.input_name: inputs})
        return np.asarray(out, dtype=np.float32).reshape(len(inputs))

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
        """Forecast every series together; ``locs`` name them in error messages (default ``closes``);
        ``features[i]`` are series i's features, aligned with its closes, for a model that reads them.

        Raises ``InputInvalid`` listing every series shorter than the window or whose forecast overflows,
        and every feature missing, unused or invalid.
        """
        locs = locs if locs is not None else [("body", "closes")] * len(series)
        self.check_lengths(series, locs)
        self.check_features(series, features, locs)
        plan = self._plan(levels)
        single = len(series) == 1 and not self.features  # the one-series path reads closes only
        if single and (one := self._forecast_one(series[0], horizon, plan)) is not None:
            return one
        return self._rows(series, horizon, plan, locs, features).batch()

    def forecast_rows(
        self,
        series: Sequence[SeriesLike],
        horizon: int,
        levels: Sequence[int],
        locs: Sequence[Loc],
        features: Sequence[FeatureMap | None] | None = None,
    ) -> PriceRows:
        """``forecast`` as one price table, computed for the whole batch at once (no object per series)."""
        self.check_lengths(series, locs)
        self.check_features(series, features, locs)
        return self._rows(series, horizon, self._plan(levels), locs, features)

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

    # --- levels and quantile tables ---------------------------------------------------------------------

    def _plan(self, levels: Sequence[int]) -> LevelPlan:
        """Every table's quantiles for these levels, computed once per distinct ``levels`` (bounded cache)."""
        key = tuple(levels)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            lists = {
                name: [0.0] + [q for level in key for q in self._interpolate(level, table)]
                for name, table in self._tables.items()
            }
            plan = self._plans[key] = LevelPlan(
                columns={name: np.array(q, dtype=np.float64).reshape(-1, 1) for name, q in lists.items()},
                lists=lists,
                rows=tuple((1 + 2 * k, level) for k, level in enumerate(key)),
                notes=[w for w in map(self._level_note, key) if w is not None],
            )
        return plan

    def residual_quantiles(self, level: int) -> tuple[float, float]:
        """One-step residual quantiles bounding the central ``level``% interval, in the bundle's units
        (format 2: of its ``window`` table)."""
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

    # --- what is served ---------------------------------------------------------------------------------

    def card(self) -> dict[str, Any]:
        """What is served, for ``GET /models/current`` (keys match ``app.api.schemas.ModelCard``)."""
        m = self.manifest
        metrics = m.get("metrics", {})
        return {
            "version": self.version,
            "format_version": int(m["format_version"]),
            "created_at": str(m.get("created_at", "")),
            "window": self.window,
            "representation": str(m["input"].get("representation", self.representation)),
            "inputs": ["closes", *self.features],
            "provider": self.provider,
            "metrics": metrics,
            "beats_naive": metrics.get("beats_naive"),
            **naive_verdict(m),
            "data": m.get("data", {}),
            "intervals": m.get("intervals", {}),
        }
