"""Format 2's per-step interval tables in serving (numpy only): which table sizes step h, as arrays for the
batch path and as Python floats for the one-series path.

A bundle made with per-step tables (``intervals.tables.<name>.steps``, ``training/steps.py``) holds, per
interval table, quantiles for step 1 (its ``residual_quantiles``) and steps 2..``TABLE_STEPS``, all in units
of the interval scale times sqrt(h); steps beyond use the last one. The forecaster hands every step's table to
the base's level plans under its own name (``step_name``), so a request's levels are interpolated once per
distinct ``level`` list for every step, as for step 1. A bundle without them has one table per name and is
served exactly as before (one ``[1+2L, 1]`` column broadcast over the steps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from closecast.forecast_math import F64, TINY, exp_list
from closecast.intervals import step_index, step_quantiles


def step_name(table: str, step: int) -> str:
    """The level-plan name of ``table``'s quantiles at ``step`` (step 1 keeps the table's own name)."""
    return table if step == 1 else f"{table}@{step}"


def expand(
    tables: Mapping[str, dict[str, Any]], names: Sequence[str]
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Every step's quantiles under ``step_name``, and how many steps each table has (1: none extra)."""
    quantiles: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for name in names:
        per_step = step_quantiles(tables[name])
        counts[name] = len(per_step)
        for step, q in enumerate(per_step, start=1):
            quantiles[step_name(name, step)] = q.tolist()
    return quantiles, counts


def columns(plan_columns: Mapping[str, F64], table: str, steps: int, horizon: int) -> F64:
    """``[1+2L, 1]`` (one table, or horizon 1) or ``[1+2L, horizon]``: the plan's column of each step."""
    if steps == 1 or horizon == 1:
        return plan_columns[table]
    stacked = np.concatenate([plan_columns[step_name(table, s)] for s in range(1, steps + 1)], axis=1)
    return stacked[:, step_index(horizon, steps)]


def prices_steps(
    last: float, cumulative: list[float], widen: list[float], lists: Sequence[list[float]]
) -> list[float] | None:
    """``forecast_math.prices_one`` with step h's quantiles from ``lists[min(h, len-1)]`` (each with its
    leading 0): the same exponents as the batch path, ``c + q * w``, row after row."""
    last_step = len(lists) - 1
    exponents = [
        c + lists[min(h, last_step)][row] * w
        for row in range(len(lists[0]))
        for h, (c, w) in enumerate(zip(cumulative, widen, strict=True))
    ]
    out = [last * e for e in exp_list(exponents)]
    return out if all(TINY <= p < math.inf for p in out) else None
