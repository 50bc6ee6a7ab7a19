"""The arithmetic every bundle format shares once it has cumulative log returns and an interval width
(numpy only): how an interval widens with the step, prices from exponents, the finite check, a request's
level plan, and the one-series answer built from a price list.

``closecast/forecaster.py`` (the base) and each format's forecaster use these; nothing here knows a format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from closecast.errors import InputInvalid, Loc, Problem, forecast_overflow
from closecast.representation import FloatArray
from closecast.results import InputWarning, SeriesForecast

F64 = npt.NDArray[np.float64]
SeriesLike = Sequence[float] | FloatArray  # closes, oldest first
FeatureMap = Mapping[str, SeriesLike]  # one series' features by name, aligned with its closes
FeatureWindows = Mapping[str, FloatArray]  # each feature's windows [N, W]

TINY = float(np.finfo(np.float64).tiny)  # below it (subnormal) prices lose their precision
MAX_PLANS = 1024  # distinct `level` lists a forecaster remembers; its cache is emptied beyond
_ROOTS = np.sqrt(np.arange(1.0, 1024 + 1))  # every horizon the API allows (<= 365), computed once
_ROOT_LIST: list[float] = _ROOTS.tolist()


def step_roots(horizon: int) -> F64:
    """``sqrt(h)`` for ``h = 1..horizon``: how an interval widens with the step."""
    return _ROOTS[:horizon] if horizon <= len(_ROOTS) else np.sqrt(np.arange(1.0, horizon + 1))


def step_root_list(horizon: int) -> list[float]:
    """``step_roots`` as Python floats, for the one-series paths."""
    return _ROOT_LIST[:horizon] if horizon <= len(_ROOT_LIST) else step_roots(horizon).tolist()


@dataclass(frozen=True)
class LevelPlan:
    """What a request's ``level`` list needs from each of a bundle's quantile tables, computed once per
    distinct list: per table a ``[1+2L, 1]`` column (0 first: the forecast, then the lower and upper
    quantile of each level as asked) and the same column as Python floats."""

    columns: dict[str, F64]
    lists: dict[str, list[float]]
    rows: tuple[tuple[int, int], ...]  # (row of the lower bound in the prices array, level)
    notes: list[InputWarning]  # level_beyond_quantiles warnings


def exp_list(values: list[float]) -> list[float]:
    """numpy's ``exp`` of a few numbers (its results, which may differ from ``math.exp`` in the last bit).

    Within ±700 it can neither over- nor underflow, so numpy's error state (dearer than the exp) is left.
    """
    if min(values) > -700.0 and max(values) < 700.0:
        return list(np.exp(values).tolist())
    with np.errstate(over="ignore", under="ignore"):
        return list(np.exp(values).tolist())


def prices(last: F64, cumulative: FloatArray, widen: F64, quantiles: F64) -> F64:
    """``[N, 1+2L, H]``: the forecast, then the lower and upper bound of each level, as prices.

    ``last [N, 1, 1] * exp(cumulative [N, 1, H] + quantiles [1+2L, 1] * widen [N, 1, H])`` in one go;
    the first quantile is 0, so row 0 is ``last * exp(cumulative)``, the forecast.
    """
    with np.errstate(over="ignore", under="ignore"):
        return last * np.exp(cumulative[:, np.newaxis] + quantiles * widen)


def prices_one(
    last: float, cumulative: list[float], widen: list[float], quantiles: list[float]
) -> list[float] | None:
    """``prices`` of one series on Python floats, ``(1+2L) * H`` prices row after row (``quantiles`` with
    its leading 0), or None when one is out of range (NaN too): the batch path then names or words it."""
    exponents = [c + q * w for q in quantiles for c, w in zip(cumulative, widen, strict=True)]
    out = [last * e for e in exp_list(exponents)]
    return out if all(TINY <= p < math.inf for p in out) else None


def check_finite(prices: F64, lasts: Sequence[float], locs: Sequence[Loc]) -> None:
    """Raise ``InputInvalid`` naming every series whose forecast or bounds (``[N, 1+2L, H]``) overflow."""
    if not prices.size or (prices.min() >= TINY and prices.max() < np.inf):  # all fine (NaN fails)
        return
    # below tiny (subnormal) bounds and forecast lose their precision
    point, lower, upper = prices[:, 0], prices[:, 1::2], prices[:, 2::2]
    ok = np.isfinite(point).all(axis=1) & (point >= TINY).all(axis=1)
    ok &= np.isfinite(upper).all(axis=(1, 2)) & (lower >= TINY).all(axis=(1, 2))
    if not ok.all():
        bad = np.flatnonzero(~ok)
        problems: list[Problem] = [forecast_overflow(locs[int(i)], lasts[int(i)]) for i in bad]
        raise InputInvalid(problems)


def item_one(
    prices: list[float], horizon: int, plan: LevelPlan, last: float, warnings: list[InputWarning]
) -> SeriesForecast:
    """One series' answer from ``prices_one``'s list."""
    h = horizon
    return SeriesForecast(
        forecast=prices[:h],
        intervals={
            level: (prices[k * h : (k + 1) * h], prices[(k + 1) * h : (k + 2) * h]) for k, level in plan.rows
        },
        last_close=last,
        warnings=warnings,
    )


def pct(log_return: float) -> str:
    """A log return as a simple percentage change, e.g. ``-23.1%`` (``+1.2e+613%`` where it overflows)."""
    if log_return < 700:
        return f"{np.expm1(log_return) * 100:+.1f}%"
    exponent = log_return / math.log(10) + 2  # log10 of the percentage
    return f"+{10 ** (exponent % 1):.1f}e+{int(exponent)}%"
