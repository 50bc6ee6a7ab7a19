"""Shared by the bench scripts: a bundle's one-step forecasts and intervals on a test part, computed by the
served code (``closecast.bundle.load_forecaster`` + ``Forecaster.forecast``, one batch), never by training.

Each test target t gets the request a user would send: the closes before it, as many as the forecaster
uses (its window, and up to 252 returns of history for the interval scale).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from closecast.bundle import load_forecaster
from closecast.forecaster import Forecaster
from closecast.intervals import EWMA_SPAN
from closecast.series import load_csv

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (80, 95)


@dataclass(frozen=True)
class Served:
    actual: np.ndarray  # [N] the closes forecast
    last: np.ndarray  # [N] the naive forecast
    forecast: np.ndarray  # [N]
    bands: dict[int, tuple[np.ndarray, np.ndarray]]  # level -> (lower, upper)


def default_bundle() -> Path:
    """The registry's current version of the model named ``default`` (``models/default/<version>``)."""
    model = ROOT / "models" / "default"
    return model / (model / "current").read_text().strip()


def scale_returns(closes: np.ndarray, k: float) -> np.ndarray:
    """The same series with every log return multiplied by ``k`` (first close kept)."""
    r = np.diff(np.log(closes))
    return closes[0] * np.exp(np.concatenate([[0.0], np.cumsum(k * r)]))


def test_start(bundle: Path, source: str, n: int) -> int:
    """Where the bundle's test part of ``source`` starts (the last 20% when it did not train on it)."""
    data = json.loads((bundle / "manifest.json").read_text())["data"]
    for one in data.get("series", [data]):
        if one.get("source") == source:
            return int(one["split"]["test_start"])
    return int(n * 0.8)


def serve(forecaster: Forecaster, closes: np.ndarray, start: int) -> Served:
    """One-step forecasts and 80/95% bands for every target in ``[start, len(closes))``."""
    keep = EWMA_SPAN + 1
    requests = [closes[max(0, t - keep) : t] for t in range(start, closes.size)]
    items = forecaster.forecast(requests, 1, LEVELS).items
    bands = {
        level: (
            np.array([i.intervals[level][0][0] for i in items]),
            np.array([i.intervals[level][1][0] for i in items]),
        )
        for level in LEVELS
    }
    forecast = np.array([i.forecast[0] for i in items])
    return Served(closes[start:], closes[start - 1 : -1], forecast, bands)


def cases() -> dict[str, tuple[str, np.ndarray]]:
    """The bench's test series: name -> (source file, closes)."""
    sp = load_csv(ROOT / "data" / "sp500_daily.csv").closes
    msft = load_csv(ROOT / "data" / "msft_daily.csv").closes
    return {
        "S&P 500": ("sp500_daily.csv", sp),
        "MSFT": ("msft_daily.csv", msft),
        "S&P 500 returns x0.1": ("sp500_daily.csv", scale_returns(sp, 0.1)),
        "S&P 500 returns x3": ("sp500_daily.csv", scale_returns(sp, 3.0)),
    }


def load(bundle: Path) -> Forecaster:
    return load_forecaster(bundle, providers="cpu")


def coverage(s: Served, level: int) -> float:
    lower, upper = s.bands[level]
    return float(np.mean((s.actual >= lower) & (s.actual <= upper)))


def winkler(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: int) -> float:
    """Mean Winkler (interval) score: width, plus 2/alpha times how far a close falls outside."""
    alpha = 1 - level / 100
    below, above = np.maximum(lower - actual, 0), np.maximum(actual - upper, 0)
    return float(np.mean(upper - lower + (2 / alpha) * (below + above)))
