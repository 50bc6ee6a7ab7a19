"""The price representations shared by training and serving (numpy only), one per bundle format.

Format 1 (``log_returns_standardized``): prices are not stationary: a network fed raw or min-max-scaled
prices sees test and live levels it never saw in training and fails badly there. closecast therefore
feeds the LSTM **log returns** ``log(c[t] / c[t-1])``, which do not depend on the price level,
standardised by a ``Scaler`` whose statistics come from the training part only. A window of ``window``
closes becomes ``window - 1`` scaled returns; the model predicts the next scaled return, and the forecast
is ``last_close * exp(return)``.

Format 2 (``log_returns_window_rms``): format 1 is free of the price level but not of volatility (a calm
series read through the S&P 500's scaler looks like "a calm S&P month"). Each window's log returns are divided
by that window's own RMS return ``s_w = sqrt(mean(r**2))`` (instance normalisation: multiplying every return
by k multiplies ``s_w`` by k and leaves ``z = r / s_w`` unchanged), then standardised by a ``WindowScaler``
fitted on the training windows' ``z``. The network predicts the next return in the same units, mapped back
with the window's scale. A *flat* window (``s_w <= FLAT_EPS``: every return zero) has no scale: its forecast
is the last close exactly; such windows are left out of training and calibration.

Training imports this module too, so the two sides cannot drift apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

REPRESENTATION = "log_returns_standardized"  # format 1
REPRESENTATION_V2 = "log_returns_window_rms"  # format 2
FLAT_EPS = 1e-10  # a window RMS return at or below this is flat (float noise of identical closes)

FloatArray = npt.NDArray[np.floating[Any]]


def log_returns(closes: FloatArray) -> FloatArray:
    """Log returns along the last axis: ``[..., T] -> [..., T-1]`` (closes must be > 0)."""
    return np.diff(np.log(np.asarray(closes, dtype=np.float64)), axis=-1)


@dataclass(frozen=True)
class Scaler:
    """Standardisation of log returns with an exact inverse, stored as plain numbers in ``scaler.json``.

    ``min_return``/``max_return`` record the range of moves seen in training, so serving can warn when an
    input moves further than anything the model learned from.
    """

    mean: float
    std: float
    min_return: float
    max_return: float
    n: int
    kind: str = "standard"
    representation: str = REPRESENTATION

    def transform(self, returns: FloatArray) -> FloatArray:
        """Log returns -> model units."""
        return (np.asarray(returns, dtype=np.float64) - self.mean) / self.std

    def inverse(self, scaled: FloatArray) -> FloatArray:
        """Model units -> log returns (exact inverse of ``transform``)."""
        return np.asarray(scaled, dtype=np.float64) * self.std + self.mean

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        """Rebuild from ``scaler.json``; refuses what it cannot use rather than guessing."""
        if data.get("kind") != "standard" or data.get("representation") != REPRESENTATION:
            raise ValueError(
                f"scaler kind {data.get('kind')!r} with representation {data.get('representation')!r} "
                f"is not supported; expected 'standard' over {REPRESENTATION!r}"
            )
        std = float(data["std"])
        if not np.isfinite(std) or std <= 0:
            raise ValueError(f"scaler std is {std}; it must be finite and > 0")
        return cls(
            mean=float(data["mean"]),
            std=std,
            min_return=float(data["min_return"]),
            max_return=float(data["max_return"]),
            n=int(data["n"]),
        )


def fit_scaler(returns: FloatArray) -> Scaler:
    """Fit on the training part's returns only (fitting on more leaks the future into the past)."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        raise ValueError(f"need at least 2 returns to fit a scaler, got {r.size}")
    std = float(r.std())
    if std <= 0 or not np.isfinite(std):
        raise ValueError(
            f"the training returns have standard deviation {std}; a constant series cannot be scaled"
        )
    return Scaler(
        mean=float(r.mean()), std=std, min_return=float(r.min()), max_return=float(r.max()), n=int(r.size)
    )


def sliding_windows(values: FloatArray, length: int) -> FloatArray:
    """Windows of ``length`` consecutive values along the last axis (a view): ``[T] -> [T-length+1, L]``."""
    return np.lib.stride_tricks.sliding_window_view(values, length, axis=-1)


def window_volatility(closes: FloatArray, floor: float = 0.0) -> FloatArray:
    """Standard deviation of each window's log returns, at least ``floor``: ``[N, W] -> [N]``.

    Prediction intervals are residual quantiles *per unit of this volatility*, so a calm input gets a narrow
    band and a turbulent one a wide band (fixed quantiles from one calm validation year covered 74% at 80%).
    """
    return np.maximum(log_returns(closes).std(axis=-1), floor)


def model_inputs(closes: FloatArray, scaler: Scaler) -> npt.NDArray[np.float32]:
    """Closes ``[B, window]`` -> model input ``[B, window-1, 1]`` float32 in scaled units."""
    scaled = scaler.transform(log_returns(closes))
    return scaled[..., np.newaxis].astype(np.float32)


def window_rms(returns: FloatArray) -> FloatArray:
    """Each window's RMS log return ``[..., W-1] -> [...]`` (no mean subtracted, so a steady trend is not
    flat and ``|z| <= sqrt(W-1)`` always)."""
    r = np.asarray(returns, dtype=np.float64)
    return np.sqrt(np.add.reduce(r * r, axis=-1) / r.shape[-1])  # = mean, without np.mean's overhead


@dataclass(frozen=True)
class WindowScaler:
    """Format 2's fitted statistics (``scaler.json``): ``u = (r / s_w - mean) / std``, with an exact inverse.

    ``flat_scale`` is the median RMS return of the training windows (log-return units): the interval scale
    of last resort for a request whose every return is zero.
    """

    mean: float
    std: float
    n: int
    flat_scale: float
    kind: str = "window_rms"
    representation: str = REPRESENTATION_V2

    def scales(self, returns: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """``[N, W-1]`` returns -> each window's scale ``[N]`` (1 where flat, so nothing divides by 0) and
        the flat mask ``[N]``."""
        s = window_rms(returns)
        flat = s <= FLAT_EPS
        return np.where(flat, 1.0, s), flat

    def transform(self, returns: FloatArray) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
        """Returns ``[N, W-1]`` -> model units ``[N, W-1]``, the window scales ``[N]`` and the flat mask."""
        s, flat = self.scales(returns)
        return (np.asarray(returns, dtype=np.float64) / s[:, np.newaxis] - self.mean) / self.std, s, flat

    def inverse(self, scaled: FloatArray, scale: FloatArray) -> FloatArray:
        """Model units ``[N]`` -> log returns ``[N]`` with each window's scale (exact inverse)."""
        return (np.asarray(scaled, dtype=np.float64) * self.std + self.mean) * scale

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowScaler:
        """Rebuild from ``scaler.json``; refuses what it cannot use rather than guessing."""
        if data.get("kind") != "window_rms" or data.get("representation") != REPRESENTATION_V2:
            raise ValueError(
                f"scaler kind {data.get('kind')!r} with representation {data.get('representation')!r} "
                f"is not supported by format 2; expected 'window_rms' over {REPRESENTATION_V2!r}"
            )
        std, flat_scale = float(data["std"]), float(data["flat_scale"])
        for name, value in (("std", std), ("flat_scale", flat_scale)):
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"scaler {name} is {value}; it must be finite and > 0")
        return cls(mean=float(data["mean"]), std=std, n=int(data["n"]), flat_scale=flat_scale)


def fit_window_scaler(returns: FloatArray) -> WindowScaler:
    """Fit on the training windows' returns ``[N, W-1]`` (flat windows are left out)."""
    r = np.asarray(returns, dtype=np.float64)
    s = window_rms(r)
    keep = s > FLAT_EPS
    if keep.sum() < 2:
        raise ValueError(f"need at least 2 training windows that move, got {int(keep.sum())}")
    z = r[keep] / s[keep, np.newaxis]
    std = float(z.std())
    if not np.isfinite(std) or std <= 0:
        raise ValueError(f"the training windows' normalised returns have standard deviation {std}")
    return WindowScaler(
        mean=float(z.mean()), std=std, n=int(keep.sum()), flat_scale=float(np.median(s[keep]))
    )


def closes_sha256(closes: FloatArray) -> str:
    """Hash of closes as little-endian float64 bytes: the bundle's ``data.closes_sha256``, and the check that
    a candidate is judged on the very closes it was trained on."""
    return hashlib.sha256(np.asarray(closes, dtype="<f8").tobytes()).hexdigest()
