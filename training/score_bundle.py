"""``python -m training evaluate``: score a finished bundle's one-step forecasts per series, as served.

The bundle (format 1 or 2) is loaded and verified by the service's own loader and run through ONNX
Runtime, so the figures describe what users get, not what PyTorch got. Which closes are scored matters as
much: scoring a model on the closes it trained on flatters it. So by default a series the model was
trained on (same ``closes_sha256``) is scored on its test part only, and any other series on its closes
after the model's data (``data.date_end``); only when neither applies is the whole file scored, with a
warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from closecast.bundle import load_forecaster
from closecast.errors import BundleInvalid
from closecast.forecaster import Forecaster
from closecast.intervals import EWMA_SPAN
from closecast.scoring import beats_naive, score_against_naive
from closecast.series import DataError, Series, load_many

LEVELS = (80, 95)


@dataclass
class Choice:
    """Which targets of a series are scored, and why."""

    start: int  # index of the first scored close
    part: str  # "test", "after_training_data" or "all"
    warnings: list[str] = field(default_factory=list)


def trained_series(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's record of each training series (``data.series``, or ``data`` itself for one)."""
    data = manifest.get("data", {})
    if isinstance(data.get("series"), list):
        return list(data["series"])
    return [{**data, "name": Path(str(data.get("source", ""))).stem}]


def _columns(
    manifest: dict[str, Any], column: str | None, date_column: str | None, id_column: str | None
) -> tuple[str, str, str | None]:
    """Flags first, then what the model was trained on (``config.data``), then the defaults."""
    trained = {**manifest.get("data", {}), **manifest.get("config", {}).get("data", {})}
    return (
        column or trained.get("column") or "Close",
        date_column or trained.get("date_column") or "Date",
        id_column or trained.get("id_column"),
    )


def _after(s: Series, date_end: str | None, window: int) -> int | None:
    """Index of the first close after ``date_end`` that has a full window before it, if any."""
    if not date_end or not s.datetimes:
        return None
    end = datetime.fromisoformat(date_end)
    try:
        start = next((i for i, t in enumerate(s.datetimes) if t > end), None)
    except TypeError:  # one side has a time zone, the other not: they cannot be ordered
        return None
    return max(start, window) if start is not None and max(start, window) < s.closes.size else None


def choose(s: Series, manifest: dict[str, Any], part: str, window: int) -> Choice:
    """The scored part of ``s``: see the module docstring; ``part`` is "auto", "test" or "all"."""
    if part == "all":
        return Choice(window, "all")
    records = trained_series(manifest)
    same = next((r for r in records if r.get("closes_sha256") == s.sha256()), None)
    if same is not None:
        return Choice(max(window, int(same["split"]["test_start"])), "test")
    named = next((r for r in records if r.get("source") == s.source and r.get("name") == s.name), None)
    changed = f"{s.name}: {s.source} differs from the file the model was trained on (other closes_sha256)"
    if part == "test":
        if named is None:
            raise DataError(
                f"{s.name}: --part test needs a series the model was trained on, and {s.source} is not one "
                "(its closes differ); use --part auto or --part all"
            )
        return Choice(max(window, int(named["split"]["test_start"])), "test", [changed])
    date_end = (named or manifest.get("data", {})).get("date_end")
    start = _after(s, date_end, window)
    if start is not None:
        return Choice(start, "after_training_data")
    if named is not None and int(named["split"]["test_start"]) < s.closes.size:
        return Choice(max(window, int(named["split"]["test_start"])), "test", [changed])
    return Choice(
        window,
        "all",
        [
            f"{s.name}: no closes after the model's data (date_end {date_end}); scoring the whole file, "
            "which may overlap the training data"
        ],
    )


def _score(forecaster: Forecaster, s: Series, choice: Choice) -> dict[str, Any]:
    # Each target gets the request a user would send: its window, and for format 2 up to a year of history
    # for the interval scale (EWMA). The service's own batch path: the very intervals users are sent.
    keep = max(forecaster.window, EWMA_SPAN + 1)
    targets = range(choice.start, s.closes.size)
    requests = [s.closes[max(0, t - keep) : t] for t in targets]
    features = (
        [{name: s.features[name][max(0, t - keep) : t] for name in forecaster.features} for t in targets]
        if forecaster.features
        else None
    )
    actual = s.closes[choice.start :]
    items = forecaster.forecast(requests, 1, LEVELS, None, features).items
    predicted = np.array([item.forecast[0] for item in items])
    scores = score_against_naive(actual, predicted, s.closes[choice.start - 1 : -1])
    coverage = {}
    for level in LEVELS:
        lower = np.array([item.intervals[level][0][0] for item in items])
        upper = np.array([item.intervals[level][1][0] for item in items])
        coverage[str(level)] = float(np.mean((actual >= lower) & (actual <= upper)))
    return {
        "name": s.name,
        "csv": s.source,
        "part": choice.part,
        "columns": {"close": s.column, "date": s.date_column, "features": list(forecaster.features)},
        "date_start": s.dates[choice.start] if s.dates else None,
        "date_end": s.dates[-1] if s.dates else None,
        **scores,
        "beats_naive": beats_naive(scores),
        "interval_coverage": coverage,
        "warnings": choice.warnings,
    }


def score_bundle(
    bundle: Path,
    csvs: Sequence[Path] | Path,
    column: str | None = None,
    date_column: str | None = None,
    id_column: str | None = None,
    part: str = "auto",
) -> dict[str, Any]:
    """Score each series in ``csvs``; one series gives one flat result, several a list plus pooled figures."""
    try:
        forecaster = load_forecaster(bundle, providers="cpu")
    except BundleInvalid as exc:
        raise ValueError(str(exc)) from exc
    manifest = forecaster.manifest
    col, date_col, id_col = _columns(manifest, column, date_column, id_column)
    paths = [csvs] if isinstance(csvs, Path) else list(csvs)
    series = load_many(
        paths, col, date_col, id_col, require_date_column=bool(date_column), features=forecaster.features
    )
    window = forecaster.window
    results = []
    for s in series:
        if s.closes.size <= window:
            raise DataError(
                f"{s.name}: only {s.closes.size} usable closes; "
                f"this bundle needs more than {window} (its window)"
            )
        results.append(_score(forecaster, s, choose(s, manifest, part, window)))
    if len(results) == 1:
        return {"bundle": bundle.name, **results[0]}
    return {"bundle": bundle.name, "series": results, "pooled": _pooled(results)}


def _pooled(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Across series: coverage weighted by the points scored; skill as the mean of the series' skills
    (MAEs in different price units do not add up)."""
    n = sum(r["n"] for r in results)
    return {
        "n": n,
        "mean_skill": float(np.mean([r["skill"] for r in results])),
        "interval_coverage": {
            str(level): sum(r["interval_coverage"][str(level)] * r["n"] for r in results) / n
            for level in LEVELS
        },
    }
