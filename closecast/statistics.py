"""The error bars behind every "better" (numpy and ``math`` only: no scipy in the core).

Daily forecast errors are autocorrelated and heavy-tailed, so a plain standard error of a mean flatters a
model. Every figure here uses the Newey–West (Bartlett kernel) long-run variance with lag ``⌊n^(1/3)⌋``:

- ``skill = 1 - MAE_model / MAE_naive`` gets its standard error by the delta method for the ratio: the
  Newey–West variance of the mean of ``z_t = -(a_t - r·b_t) / MAE_naive`` (``a``, ``b``: absolute errors of
  model and naive, ``r = MAE_model / MAE_naive``), a difference of absolute errors.
- the Diebold–Mariano test compares two forecasts on absolute-error loss, ``d_t = a_t - b_t``, with the same
  variance and the Harvey–Leybourne–Newbold small-sample correction (statistic times ``sqrt((n-1)/n)`` for
  one-step forecasts, Student t with ``n - 1`` degrees of freedom), one-sided: "is the model better?".
- interval coverage gets a Wilson 95% interval for a binomial share (it assumes independent hits, so with
  volatility clustering it is, if anything, too narrow).

A 2-D error array ``[origins, horizon]`` (backtest paths) is first averaged per origin, so the series the
variance is computed on is in time order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
ALPHA = 0.05  # the level of "beats the naive forecast"
WILSON_Z = 1.959963984540054  # the normal 97.5% quantile: a 95% interval
_BETA_ITERATIONS, _BETA_EPS = 300, 3e-16


def newey_west_lag(n: int) -> int:
    """``⌊n^(1/3)⌋``, the lag of every Newey–West variance here (0 for fewer than 1 value)."""
    return math.floor(n ** (1 / 3) + 1e-9) if n > 0 else 0


def long_run_variance(x: F64, lag: int | None = None) -> float:
    """Newey–West (Bartlett) long-run variance of ``x``: ``γ0 + 2 Σ_k (1 - k/(L+1)) γk``, ``γk`` with 1/n.

    Divided by ``n`` it is the variance of ``x``'s mean; never negative (the Bartlett kernel guarantees it).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    if n == 0:
        return float("nan")
    lag = newey_west_lag(n) if lag is None else lag
    c = x - x.mean()
    total = float(c @ c) / n
    for k in range(1, min(lag, n - 1) + 1):
        total += 2.0 * (1.0 - k / (lag + 1)) * float(c[k:] @ c[:-k]) / n
    return max(total, 0.0)


def _per_origin(x: F64) -> F64:
    a = np.asarray(x, dtype=np.float64)
    return a.mean(axis=1) if a.ndim == 2 else a.ravel()


def skill_se(abs_model: F64, abs_naive: F64) -> float:
    """Newey–West standard error of ``1 - mean(abs_model) / mean(abs_naive)`` (delta method)."""
    a, b = _per_origin(abs_model), _per_origin(abs_naive)
    mae_naive = float(b.mean()) if b.size else 0.0
    if a.size < 2 or mae_naive <= 0:
        return float("nan")
    ratio = float(a.mean()) / mae_naive
    z = -(a - ratio * b) / mae_naive
    return math.sqrt(long_run_variance(z) / z.size)


@dataclass(frozen=True)
class DMTest:
    """One-sided Diebold–Mariano test of "the first forecast has smaller absolute errors than the second".

    ``pvalue`` is small when the first is better; ``pvalue_worse`` when it is worse. ``statistic`` is the
    HLN-corrected one (negative: the first is better)."""

    statistic: float
    pvalue: float
    pvalue_worse: float
    mean_difference: float  # mean of |e_first| - |e_second|
    n: int
    lag: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "dm_stat": self.statistic,
            "dm_pvalue": self.pvalue,
            "dm_pvalue_worse": self.pvalue_worse,
            "dm_lag": self.lag,
        }


def diebold_mariano(abs_first: F64, abs_second: F64) -> DMTest:
    """The test on ``d_t = |e_first| - |e_second|`` (already absolute errors; see the module docstring).

    Equal losses everywhere (the same forecasts) give statistic 0 and p-values 0.5: no evidence either way.
    """
    d = _per_origin(abs_first) - _per_origin(abs_second)
    n = d.size
    lag = newey_west_lag(n)
    if n < 2:
        return DMTest(
            float("nan"), float("nan"), float("nan"), float(d.mean()) if n else float("nan"), n, lag
        )
    mean = float(d.mean())
    variance = long_run_variance(d, lag) / n
    if variance <= 0.0:  # a constant difference: certain when it is not zero
        stat = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        stat = mean / math.sqrt(variance) * math.sqrt((n - 1) / n)  # HLN for one-step forecasts
    better = student_t_cdf(stat, n - 1)
    return DMTest(stat, better, 1.0 - better if math.isfinite(better) else better, mean, n, lag)


def normal_cdf(x: float) -> float:
    """Standard normal CDF via ``math.erfc`` (accurate in the tails, unlike ``1 - erf``)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def student_t_cdf(t: float, df: float) -> float:
    """Student t CDF: the regularised incomplete beta ``I_{df/(df+t²)}(df/2, 1/2)``; normal above 1e7 df."""
    if math.isnan(t) or df <= 0:
        return float("nan")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    if df > 1e7:
        return normal_cdf(t)
    tail = 0.5 * regularized_beta(df / (df + t * t), df / 2.0, 0.5)
    return 1.0 - tail if t > 0 else tail


def regularized_beta(x: float, a: float, b: float) -> float:
    """``I_x(a, b)`` by its continued fraction (modified Lentz), using the symmetry for convergence."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, _BETA_ITERATIONS + 1):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < _BETA_EPS:
            break
    return h


def wilson_interval(hits: int, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a binomial share ``hits / n`` (95% by default); (nan, nan) for n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    p = hits / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def verdict(pvalue: float, pvalue_worse: float, alpha: float = ALPHA) -> str:
    """What a one-sided test against naive lets one say, in the words the card and the CLI use."""
    if pvalue < alpha:
        return "beats naive"
    if pvalue_worse < alpha:
        return "worse than naive"
    return "not distinguishable from naive"
