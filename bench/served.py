"""Shared by the bench scripts: a bundle's one-step forecasts and intervals on a test part, computed by the
served code (``closecast.bundle.load_forecaster`` + ``Forecaster.forecast``, one batch), never by training.

Each test target t gets the request a user would send: the closes before it, as many as the forecaster
uses (its window, and up to 252 returns of history for the interval scale).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from closecast.bundle import load_forecaster
from closecast.forecaster import Forecaster
from closecast.intervals import EWMA_SPAN
from closecast.series import DataError, load_csv
from closecast.statistics import skill_se

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


def splits(bundle: Path) -> dict[str, dict[str, Any]]:
    """The bundle's split of each series it trained on, by source file name (one series or several)."""
    data = json.loads((bundle / "manifest.json").read_text())["data"]
    out: dict[str, dict[str, Any]] = {}
    for one in data.get("series", [data]):
        out.setdefault(one.get("source"), one["split"])  # the first series of a name, as before
    return out


def calibration_start(split: dict[str, Any]) -> int:
    """Where a split's calibration slice starts: the second half of its validation part."""
    return int(split["train"]) + int(split["validation"]) // 2


def test_start(bundle: Path, source: str, n: int) -> int:
    """Where the bundle's test part of ``source`` starts (the last 20% when it did not train on it)."""
    split = splits(bundle).get(source)
    return int(split["test_start"]) if split is not None else int(n * 0.8)


def start_of(bundle: Path, path: Path, n: int, given: float | None) -> int:
    """The bundle's test start for a file it trained on; else ``given`` (fraction or index) or 80%."""
    own = test_start(bundle, path.name, n)
    if given is None:
        return own
    return int(n * given) if given < 1 else int(given)


def add_csv_arguments(parser: argparse.ArgumentParser) -> None:
    """``--csv FILE`` (repeatable), ``--column`` and ``--test-start``: any series instead of the built-in
    cases."""
    parser.add_argument("--csv", type=Path, action="append", default=[], help="a CSV of closes (repeatable)")
    parser.add_argument("--column", default="Close", help="the column of closes in --csv (default Close)")
    parser.add_argument("--test-start", type=float, default=None, help="fraction (<1) or index for --csv")


def csv_cases(script: str, bundle: Path, args: argparse.Namespace) -> dict[str, tuple[np.ndarray, int]]:
    """``name -> (closes, test start)`` for every ``--csv`` file; a file that cannot be read ends the run
    with one line on stderr and exit code 2."""
    out = {}
    for path in args.csv:
        try:
            closes = np.asarray(load_csv(path, column=args.column).closes, dtype=np.float64)
        except (DataError, OSError) as exc:
            print(f"{script}: {path}: {exc}", file=sys.stderr)
            sys.exit(2)
        out[f"{path.name} ({args.column})"] = (closes, start_of(bundle, path, closes.size, args.test_start))
    return out


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


JUDGED_HEADER = (
    "| series | n | skill | se | nw | z | rise | corr | 80% held | 95% held |\n"
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
)


def judged_row(name: str, closes: np.ndarray, start: int, forecaster: Forecaster) -> str:
    """One row under ``JUDGED_HEADER``: ``skill`` = 1 - MAE_model / MAE_naive; ``se`` the plain standard error
    of the mean absolute-error difference over MAE_naive (what acceptance uses); ``nw`` its Newey-West
    counterpart (``closecast.statistics.skill_se``); ``z`` = skill / se; ``rise`` the share of forecasts above
    the last close; ``corr`` the correlation of ``log(forecast / last)`` with ``log(actual / last)``."""
    s = serve(forecaster, closes, start)
    a, b = np.abs(s.actual - s.forecast), np.abs(s.actual - s.last)
    skill = 1 - a.mean() / b.mean()
    se = (b - a).std() / math.sqrt(a.size) / b.mean()
    nw = skill_se(a, b)
    predicted, realised = np.log(s.forecast / s.last), np.log(s.actual / s.last)
    corr = np.corrcoef(predicted, realised)[0, 1] if predicted.std() > 0 else float("nan")
    held = " | ".join(f"{100 * coverage(s, level):.1f}%" for level in LEVELS)
    rise = 100 * np.mean(s.forecast > s.last)
    return (
        f"| {name} | {a.size} | {skill:+.4f} | {se:.4f} | {nw:.4f} | {skill / se:+.1f} | {rise:.1f}% "
        f"| {corr:+.3f} | {held} |"
    )


def load(bundle: Path) -> Forecaster:
    return load_forecaster(bundle, providers="cpu")


def coverage(s: Served, level: int) -> float:
    lower, upper = s.bands[level]
    return float(np.mean((s.actual >= lower) & (s.actual <= upper)))


BLOCK = 50  # targets per block for standard errors (keeps a volatility cluster inside one block)


def block_se(d: np.ndarray) -> float:
    """Standard error of ``mean(d)`` from the means of consecutive ``BLOCK``-target blocks (errors of
    neighbouring targets are not independent); nan with fewer than two blocks."""
    means = d[: d.size // BLOCK * BLOCK].reshape(-1, BLOCK).mean(axis=1)
    if means.size < 2:
        return float("nan")
    return float(means.std(ddof=1) / math.sqrt(means.size))


def ratio_se(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Standard error of ``mean(ours) / mean(theirs)`` from block means of the difference."""
    return block_se(ours - theirs) / float(theirs.mean())


def winkler_each(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: int) -> np.ndarray:
    """Winkler (interval) score of every interval (same shape as ``actual``): width, plus 2/alpha times how
    far a close falls outside."""
    alpha = 1 - level / 100
    below, above = np.maximum(lower - actual, 0), np.maximum(actual - upper, 0)
    return upper - lower + (2 / alpha) * (below + above)


def winkler(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: int) -> float:
    """Mean Winkler score."""
    return float(np.mean(winkler_each(actual, lower, upper, level)))
