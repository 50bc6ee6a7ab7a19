"""Format 2's scores and prediction intervals: metrics per series and pooled, split-conformal quantile tables
from the calibration slices, and their coverage on the test slices, per series and pooled.

Each one-step forecast is scored with the interval scale serving would use for it (``closecast/intervals``):
the EWMA of the history before the target when there are ``EWMA_MIN_RETURNS`` returns of it, else the input
window's RMS; a zero scale falls back to the RMS of all earlier returns, then to the scaler's
``flat_scale``, as in serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from closecast.intervals import (
    EWMA_LAMBDA,
    EWMA_MIN_RETURNS,
    EWMA_SPAN,
    MIN_CALIBRATION,
    PROBABILITIES,
    TAILS,
    calibrate,
)
from closecast.scoring import beats_naive, coverage_interval, score_against_naive, score_pooled
from training.fallback import steps_per_bar, synthetic_residuals, synthetic_table
from training.parts import Pooled
from training.scored import F64, PredictFn, Scored, score_slice
from training.steps import step_coverage, step_tables

LEVELS = (80, 95)
COVERAGE_TOLERANCE = 0.05  # a warning when test coverage is further than this from the level
TABLES = ("ewma", "window")


@dataclass(frozen=True)
class Evaluation:
    """What the manifest and ``report.png`` need: metrics, the intervals section, test bands per series."""

    metrics: dict[str, Any]
    intervals: dict[str, Any]
    tests: dict[str, Scored]
    bands: dict[str, dict[int, tuple[F64, F64]]]  # series -> level -> (lower, upper) test prices
    warnings: list[str]


def evaluate(pooled: Pooled, predict: PredictFn, frequency: str | None = None, seed: int = 0) -> Evaluation:
    """Score every series, calibrate both tables on the pooled calibration residuals (per step up to
    ``closecast.intervals.TABLE_STEPS``), check the test. A table with too few calibration residuals is made
    from the model's residuals on synthetic series at ``frequency`` (``training/fallback.py``; seeded by
    ``seed``)."""
    scored = {
        s.name: {
            k: score_slice(pooled, s, k, predict) for k in ("train", "calibration", "early_stop", "test")
        }
        for s in pooled.series
    }
    tables: dict[str, dict[str, Any]] = {}
    synthetic: dict[str, F64] | None = None
    calibration = [v["calibration"] for v in scored.values()]
    for table in TABLES:
        cal = np.concatenate([s.residuals(table) for s in calibration])
        train = np.concatenate([v["train"].residuals(table) for v in scored.values()])
        quantiles, method, n = calibrate(cal, train)
        if method != "conformal":
            synthetic = synthetic or synthetic_residuals(pooled, predict, frequency, seed)
            if synthetic is not None:
                quantiles, method, n = synthetic_table(synthetic[table])
        tables[table] = {"quantiles": quantiles, "method": method, "n": n}
        if method == "conformal":
            tables[table]["steps"] = step_tables(pooled, predict, calibration, table)
        else:
            tables[table]["steps_per_bar"] = steps_per_bar(frequency)
    tests = {name: v["test"] for name, v in scored.items()}
    coverages = {name: _coverage(t, tables) for name, t in tests.items()}
    everything = _coverage_pooled(list(tests.values()), tables)
    warnings = _coverage_warnings(everything) + _method_warnings(tables)
    metrics = _metrics(scored, coverages, everything)
    metrics["test"]["coverage_interval"] = _coverage_intervals(list(tests.values()), tables)
    if pooled.features is None:  # a features model's rollout holds its features: not replayed here
        metrics["test"]["coverage_by_step"] = step_coverage(
            pooled, predict, list(tests.values()), tables, LEVELS
        )
    for name, t in tests.items():
        metrics["series"][name]["test"]["coverage_interval"] = _coverage_intervals([t], tables)
    return Evaluation(
        metrics=metrics,
        intervals=_section(tables, pooled.scaler.flat_scale, everything, coverages, warnings),
        tests=tests,
        bands={name: _bands(t, tables) for name, t in tests.items()},
        warnings=warnings,
    )


def _served_quantiles(t: Scored, tables: dict[str, Any], level: int) -> tuple[F64, F64]:
    p_lo = (1 - level / 100) / 2
    bounds = {k: np.interp([p_lo, 1 - p_lo], PROBABILITIES, v["quantiles"]) for k, v in tables.items()}
    lo = np.where(t.use_ewma, bounds["ewma"][0], bounds["window"][0])
    hi = np.where(t.use_ewma, bounds["ewma"][1], bounds["window"][1])
    return lo, hi


def _inside(t: Scored, tables: dict[str, Any], level: int) -> npt.NDArray[np.bool_]:
    lo, hi = _served_quantiles(t, tables, level)
    e = (t.windows.next_return - t.predicted) / t.served
    return (e >= lo) & (e <= hi)


def _coverage(t: Scored, tables: dict[str, Any]) -> dict[str, float]:
    return {str(level): float(np.mean(_inside(t, tables, level))) for level in LEVELS}


def _coverage_pooled(tests: list[Scored], tables: dict[str, Any]) -> dict[str, float]:
    return {
        str(level): float(np.mean(np.concatenate([_inside(t, tables, level) for t in tests])))
        for level in LEVELS
    }


def _coverage_intervals(tests: list[Scored], tables: dict[str, Any]) -> dict[str, list[float]]:
    """Wilson 95% interval of each level's coverage (independent hits assumed)."""
    return {
        str(level): coverage_interval(np.concatenate([_inside(t, tables, level) for t in tests]))
        for level in LEVELS
    }


def _bands(t: Scored, tables: dict[str, Any]) -> dict[int, tuple[F64, F64]]:
    out = {}
    for level in LEVELS:
        lo, hi = _served_quantiles(t, tables, level)
        base = t.windows.last * np.exp(t.predicted)
        out[level] = (base * np.exp(lo * t.served), base * np.exp(hi * t.served))
    return out


def _coverage_warnings(pooled: dict[str, float]) -> list[str]:
    return [
        f"the {level}% intervals held on {100 * share:.1f}% of the test closes, more than "
        f"{100 * COVERAGE_TOLERANCE:.0f} points from {level}%; treat them with care"
        for level, share in ((int(k), v) for k, v in pooled.items())
        if abs(share - level / 100) > COVERAGE_TOLERANCE
    ]


def _method_warnings(tables: dict[str, Any]) -> list[str]:
    return [
        f"the {name} interval table was made from {t['method']} ({t['n']} residuals; fewer than "
        f"{MIN_CALIBRATION} calibration residuals)"
        for name, t in tables.items()
        if t["method"] != "conformal"
    ]


def _metrics(
    scored: dict[str, dict[str, Scored]], coverages: dict[str, dict[str, float]], pooled: dict[str, float]
) -> dict[str, Any]:
    """Test and validation (early stopping + calibration) scores per series and pooled."""
    per_series = {}
    for name, v in scored.items():
        per_series[name] = {
            "test": {**_score(v["test"]), "coverage": coverages[name]},
            "validation": score_against_naive(*_join(v["early_stop"], v["calibration"])),
        }
    tests = [_triple(v["test"]) for v in scored.values()]
    validations = [_join(v["early_stop"], v["calibration"]) for v in scored.values()]
    single = len(scored) == 1
    first = next(iter(scored.values()))["test"]
    scores = {**_score(first), "units": "price"} if single else score_pooled(tests)
    test = {**scores, "coverage": pooled}
    return {
        "test": test,
        "validation": {**score_against_naive(*validations[0]), "units": "price"}
        if single
        else score_pooled(validations),
        "beats_naive": beats_naive(test),  # the Diebold-Mariano test at 5%, not the sign of the skill
        "series": per_series,
    }


def _triple(t: Scored) -> tuple[F64, F64, F64]:
    return t.windows.actual, t.forecast, t.windows.last


def _score(t: Scored) -> dict[str, Any]:
    return score_against_naive(*_triple(t))


def _join(a: Scored, b: Scored) -> tuple[F64, F64, F64]:
    return (
        np.concatenate([a.windows.actual, b.windows.actual]),
        np.concatenate([a.forecast, b.forecast]),
        np.concatenate([a.windows.last, b.windows.last]),
    )


def _table(scale: dict[str, Any], t: dict[str, Any]) -> dict[str, Any]:
    """One table's manifest entry; ``steps`` only when per-step tables were made, ``steps_per_bar`` only on a
    synthetic fallback (daily steps summed into one synthetic bar)."""
    out = {
        **scale,
        "method": t["method"],
        "tails": TAILS,
        "fallback": t["method"] != "conformal",
        "n": t["n"],
        "residual_quantiles": t["quantiles"].tolist(),
    }
    if t.get("steps"):
        out["steps"] = [{**s, "residual_quantiles": s["residual_quantiles"].tolist()} for s in t["steps"]]
    if "steps_per_bar" in t:
        out["steps_per_bar"] = t["steps_per_bar"]
    return out


def _section(
    tables: dict[str, Any],
    flat_scale: float,
    pooled: dict[str, float],
    per_series: dict[str, dict[str, float]],
    warnings: list[str],
) -> dict[str, Any]:
    scales: dict[str, dict[str, Any]] = {
        "ewma": {"scale": "ewma", "lambda": EWMA_LAMBDA, "span": EWMA_SPAN, "min_returns": EWMA_MIN_RETURNS},
        "window": {"scale": "window_rms"},
    }
    return {
        "method": "split_conformal",
        "source": "calibration",
        "units": "interval_scale",
        # "sqrt_per_step": tables with "steps" hold their own quantiles for steps 2..5 in units of v*sqrt(h)
        "horizon_scaling": "sqrt_per_step" if any(t.get("steps") for t in tables.values()) else "sqrt",
        "probabilities": PROBABILITIES,
        "tables": {name: _table(scales[name], t) for name, t in tables.items()},
        "flat_scale": flat_scale,
        "test_coverage": pooled,
        "test_coverage_by_series": per_series,
        "warnings": warnings,
    }
