"""The manifest's ``intervals`` section checked before a forecaster is built from it, one check per bundle
format (each format's forecaster names its own as ``check_intervals``); failures are ``BundleInvalid``
naming the bundle and what is wrong."""

from __future__ import annotations

from typing import Any

import numpy as np

from closecast.errors import BundleInvalid
from closecast.intervals import EWMA_LAMBDA, EWMA_MIN_RETURNS, EWMA_SPAN, TABLES


def check_tables(intervals: dict[str, Any], name: str) -> None:
    """Format 2: both quantile tables usable, and the interval scale the one this code computes."""
    try:
        tables = {table: intervals["tables"][table] for table in TABLES}
        ewma = tables["ewma"]
        recorded = (float(ewma["lambda"]), int(ewma["span"]), int(ewma["min_returns"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleInvalid(f"{name}: manifest intervals.tables are unusable: {exc!r}") from exc
    if recorded != (EWMA_LAMBDA, EWMA_SPAN, EWMA_MIN_RETURNS):
        raise BundleInvalid(
            f"{name}: the bundle's EWMA interval scale is (lambda, span, min_returns) = {recorded} but this "
            f"service computes {(EWMA_LAMBDA, EWMA_SPAN, EWMA_MIN_RETURNS)}; serve it with its own release"
        )
    for table, section in tables.items():
        quantiles = section.get("residual_quantiles")
        check_quantiles(intervals.get("probabilities"), quantiles, f"{name}: {table}")
        steps = section.get("steps") or []  # per-step tables for steps 2.. (absent in older bundles)
        if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
            raise BundleInvalid(
                f"{name}: intervals.tables.{table}.steps is {steps!r}; expected a list of tables"
            )
        for h, step in enumerate(steps, start=2):
            if step.get("step") != h:  # tables are served by position: a gap or a swap serves the wrong one
                raise BundleInvalid(
                    f"{name}: intervals.tables.{table}.steps[{h - 2}].step is {step.get('step')!r}; "
                    f"expected {h}"
                )
            where = f"{name}: {table} step {h}"
            check_quantiles(intervals.get("probabilities"), step.get("residual_quantiles"), where)


def check_table(intervals: dict[str, Any], name: str) -> None:
    """Format 1: interval units and floor readable, and the quantiles usable."""
    check_quantiles(intervals.get("probabilities"), intervals.get("residual_quantiles"), name)
    units, floor = intervals.get("units", "log_return"), intervals.get("volatility_floor", 0.0)
    if units not in ("log_return", "window_volatility"):
        raise BundleInvalid(
            f"{name}: intervals.units is {units!r}; this service reads 'log_return' and 'window_volatility'"
        )
    if not isinstance(floor, int | float) or not np.isfinite(floor) or floor < 0:
        raise BundleInvalid(f"{name}: intervals.volatility_floor is {floor!r}; expected a finite number >= 0")


def check_quantiles(probabilities_in: Any, quantiles_in: Any, name: str) -> None:
    """Interval quantiles the forecaster can interpolate: same length, increasing, finite, inside (0, 1)."""
    try:
        probabilities = np.asarray(probabilities_in, dtype=np.float64)
        quantiles = np.asarray(quantiles_in, dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleInvalid(f"{name}: manifest intervals are unusable: {exc!r}") from exc
    if probabilities.ndim != 1 or probabilities.shape != quantiles.shape or len(probabilities) < 2:
        raise BundleInvalid(
            f"{name}: intervals.probabilities and residual_quantiles must be lists of one "
            f"length >= 2; got shapes {list(probabilities.shape)} and {list(quantiles.shape)}"
        )
    ordered = np.all(np.diff(probabilities) > 0) and np.all(np.diff(quantiles) >= 0)
    inside = np.isfinite(quantiles).all() and probabilities[0] > 0 and probabilities[-1] < 1
    if not (ordered and inside):
        raise BundleInvalid(
            f"{name}: intervals must have increasing probabilities inside (0, 1) and finite, "
            f"non-decreasing residual_quantiles; got {probabilities.tolist()} and "
            f"{quantiles.tolist()}"
        )
