"""Offline test of a principled change to the interval scale: does mean reversion (GARCH's, which the EWMA
lacks) close the gap to a GARCH(1,1)-t, on series the choice was not made on?

    pip install -e '.[bench]'        # arch, for the GARCH reference
    python bench/interval_scale.py [--bundle models/default/<version>] [--refit 50]

Why the candidates are principled: a GARCH(1,1) one-step variance unrolls to
``s2 = (1 - w) * LR2 + w * EWMA_beta(r2)`` with ``w = alpha / (1 - beta)``, ``LR2 = omega / (1-alpha-beta)``
(Bollerslev 1986, J. Econometrics 31), i.e. the RiskMetrics EWMA (J.P. Morgan/Reuters 1996, lambda 0.94) plus
mean reversion to a long-run variance. Estimating ``LR2`` by the sample mean of squared returns is variance
targeting (Engle & Mezrich 1996, "GARCH for groups", Risk 9). Candidates, each fitted ONCE on the pooled
calibration residuals of the bundle's real series (never on a test part), then frozen:

- ``mix``: ``v2 = w * ewma2 + (1 - w) * longrun2``, longrun2 = mean squared return of the request's returns
  (up to 252), ``w`` on a grid 0..1.
- ``lambda``: the EWMA's decay on a grid (GARCH's beta is usually 0.88-0.93, RiskMetrics' 0.94).
- ``mix+lambda``: both (a variance-targeted GARCH(1,1) with one pair of parameters for every series).
- ``abs``: the same EWMA (0.94) of *absolute* returns, nothing fitted: absolute returns are more
  persistent and less moved by one outlier than squares (Taylor 1986; Ding, Granger & Engle 1993,
  J. Empirical Finance 1).

Criterion (declared before looking at any test part): the calibration slices' mean Winkler score at 80% and
95%, each series in units of its own calibration RMS return, summed over both levels, relative to the
current scale; quantiles are split-conformal on the same pooled calibration residuals, as in training. Then
every candidate is scored on the test parts and on held-out synthetic series unlike training/synthetic.py's
(GARCH-t with other alpha/beta/nu, an hourly-like series with intraday seasonality, a two-regime Markov
switch, a two-component volatility) with the bundle's model forecasting them. Printed: coverage, Winkler
ratio to GARCH(1,1)-t refit every ``--refit`` closes, and the paired change vs the current scale with its
standard error (from means of 50-close blocks, so volatility clustering does not shrink it).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from intervals import garch_one_step
from served import block_se, calibration_start, cases, default_bundle, load, splits, winkler_each

from closecast.forecaster import Forecaster
from closecast.intervals import EWMA_MIN_RETURNS, EWMA_SPAN, PROBABILITIES, conformal_quantiles

LEVELS = (80, 95)
W_GRID = [round(w, 2) for w in np.arange(0.0, 1.0001, 0.05)]
LAMBDA_GRID = [0.88, 0.90, 0.92, 0.94, 0.96, 0.97, 0.98]
ABS = -1.0  # the "lambda" that marks the absolute-return EWMA candidate


@dataclass(frozen=True)
class Prepared:
    """One series' targets ``[start, stop)``: actual next return, predicted, EWMA2 per lambda, longrun2."""

    closes: np.ndarray
    targets: np.ndarray
    actual: np.ndarray  # [N] next log return
    predicted: np.ndarray  # [N]
    ewma2: dict[float, np.ndarray]  # lambda -> [N] EWMA of squared returns before each target
    longrun2: np.ndarray  # [N] mean squared return of up to EWMA_SPAN returns before each target
    flat: np.ndarray  # [N] flat input window (forecast = last close, left out of calibration)
    ewma_abs: np.ndarray  # [N] EWMA (0.94) of absolute returns before each target

    def scale(self, w: float, lam: float) -> np.ndarray:
        if lam == ABS:  # the EWMA (0.94) of absolute returns: no mixing
            return self.ewma_abs
        return np.sqrt(w * self.ewma2[lam] + (1 - w) * self.longrun2)


def ewma2_along(r2: np.ndarray, lam: float) -> np.ndarray:
    """closecast.intervals.ewma_along squared, for any lambda: entry j uses returns j-SPAN+1..j."""
    weights = lam ** np.arange(EWMA_SPAN)
    num = np.convolve(r2, weights)[: r2.size]
    return num / np.cumsum(weights)[np.minimum(np.arange(r2.size), EWMA_SPAN - 1)]


def prepare(forecaster: Forecaster, closes: np.ndarray, start: int, stop: int) -> Prepared:
    window = forecaster.window
    targets = np.arange(max(start, window, EWMA_MIN_RETURNS + 1), stop)
    windows = np.stack([closes[t - window : t] for t in targets])
    predicted = forecaster.rollout(windows, 1)[:, 0]
    returns = np.diff(np.log(closes))
    r2 = returns**2
    last = targets - 2  # index of the last return before the target
    csum = np.concatenate([[0.0], np.cumsum(r2)])
    lo = np.maximum(0, last + 1 - EWMA_SPAN)
    longrun2 = (csum[last + 1] - csum[lo]) / (last + 1 - lo)
    flat = np.array([not np.any(returns[t - window : t - 1]) for t in targets])
    ewma2 = {lam: ewma2_along(r2, lam)[last] for lam in LAMBDA_GRID}
    ewma_abs = ewma2_along(np.abs(returns), 0.94)[last]
    return Prepared(closes, targets, returns[targets - 1], predicted, ewma2, longrun2, flat, ewma_abs)


def residuals(p: Prepared, w: float, lam: float) -> np.ndarray:
    v = p.scale(w, lam)
    keep = ~p.flat & (v > 0)
    return ((p.actual - p.predicted) / np.where(keep, v, 1.0))[keep]


def table(cal: list[Prepared], w: float, lam: float) -> np.ndarray:
    return conformal_quantiles(np.concatenate([residuals(p, w, lam) for p in cal]))


def bounds(quantiles: np.ndarray, level: int) -> tuple[float, float]:
    p_lo = (1 - level / 100) / 2
    lo, hi = np.interp([p_lo, 1 - p_lo], PROBABILITIES, quantiles)
    return float(lo), float(hi)


def bands(p: Prepared, quantiles: np.ndarray, w: float, lam: float, level: int) -> tuple[np.ndarray, ...]:
    lo, hi = bounds(quantiles, level)
    v = p.scale(w, lam)
    last = p.closes[p.targets - 1]
    base = last * np.exp(p.predicted)
    return base * np.exp(lo * v), base * np.exp(hi * v)


def calibration_loss(cal: list[Prepared], w: float, lam: float) -> float:
    """Mean Winkler on the calibration slices, each series in units of its RMS return, summed over levels."""
    q = table(cal, w, lam)
    total = 0.0
    for level in LEVELS:
        per = []
        for p in cal:
            lower, upper = bands(p, q, w, lam, level)
            actual = p.closes[p.targets]
            unit = math.sqrt(float(np.mean(p.actual**2))) * float(np.mean(actual))
            per.append(np.mean(winkler_each(actual, lower, upper, level)) / unit)
        total += float(np.mean(per))
    return total


def fit(cal: list[Prepared]) -> dict[str, tuple[float, float]]:
    base = calibration_loss(cal, 1.0, 0.94)
    grid = {(w, lam): calibration_loss(cal, w, lam) for w in W_GRID for lam in LAMBDA_GRID}
    print(f"calibration loss (sum of 80%+95% Winkler / RMS), current {base:.4f}:")
    for lam in LAMBDA_GRID:
        row = " ".join(f"{grid[(w, lam)] / base:.3f}" for w in W_GRID[::2])
        print(f"  lambda {lam:.2f}, w = {W_GRID[::2][0]}..1 step 0.1: {row}")
    mix = min(W_GRID, key=lambda w: grid[(w, 0.94)])
    lam = min(LAMBDA_GRID, key=lambda x: grid[(1.0, x)])
    both = min(grid, key=lambda k: grid[k])
    qlike = {w: qlike_loss(cal, w, 0.94) for w in W_GRID}
    print("QLIKE at lambda 0.94, w = 0..1 step 0.1: " + " ".join(f"{qlike[w]:.4f}" for w in W_GRID[::2]))
    print(
        f"QLIKE picks w = {min(W_GRID, key=lambda w: qlike[w])} at lambda 0.94 (the Winkler criterion: {mix})"
    )
    return {
        "current": (1.0, 0.94),
        "mix": (mix, 0.94),
        "lambda": (1.0, lam),
        "mix+lambda": both,
        "abs": (1.0, ABS),
    }


def qlike_loss(cal: list[Prepared], w: float, lam: float) -> float:
    """Patton's (2011, J. Econometrics 160) QLIKE of the variance forecast ``c * v2`` with the best constant
    ``c`` (the quantiles absorb it): ``mean log v2 + log mean (e / v)2`` over the pooled calibration targets,
    each series' returns in units of its own RMS so that no series weighs more for being wilder."""
    logs, e2 = [], []
    for p in cal:
        unit2 = float(np.mean(p.actual**2))
        v2 = p.scale(w, lam) ** 2 / unit2
        keep = ~p.flat & (v2 > 0)
        logs.append(np.log(v2[keep]))
        e2.append((p.actual - p.predicted)[keep] ** 2 / unit2 / v2[keep])
    return float(np.mean(np.concatenate(logs)) + np.log(np.mean(np.concatenate(e2))))


# --- held-out series: none of them shaped the choice ------------------------------------------------------


def garch_t_series(n: int, sigma: float, alpha: float, beta: float, nu: float, seed: int) -> np.ndarray:
    """Log returns of a zero-mean GARCH(1,1) with unit-variance t(nu) shocks, unconditional std ``sigma``."""
    rng = np.random.default_rng(seed)
    shocks = rng.standard_t(nu, n) / math.sqrt(nu / (nu - 2))
    omega, var, out = sigma**2 * (1 - alpha - beta), sigma**2, np.empty(n)
    for i in range(n):
        out[i] = math.sqrt(var) * shocks[i]
        var = omega + alpha * out[i] ** 2 + beta * var
    return out


def hourly_like(n: int, seed: int) -> np.ndarray:
    """7 'hours' a day: a U-shaped intraday volatility pattern (open and close 2x the midday) and an
    overnight gap at each day's first hour, on a persistent GARCH-t(5) core of std 0.1% per hour."""
    core = garch_t_series(n, 0.001, 0.04, 0.94, 5.0, seed)
    pattern = np.array([2.2, 1.2, 0.8, 0.7, 0.8, 1.0, 1.6])
    return core * pattern[np.arange(n) % pattern.size] / math.sqrt(np.mean(pattern**2))


def regime_switch(n: int, seed: int) -> np.ndarray:
    """A two-state Markov switch between daily std 0.6% and 2.5% (mean stay ~300 steps), t(5) shocks,
    no clustering inside a regime (Hamilton & Susmel 1994 style)."""
    rng = np.random.default_rng(seed)
    state, sigmas, out = 0, (0.006, 0.025), np.empty(n)
    shocks = rng.standard_t(5.0, n) / math.sqrt(5.0 / 3.0)
    switch = rng.random(n) < 1 / 300
    for i in range(n):
        state = 1 - state if switch[i] else state
        out[i] = sigmas[state] * shocks[i]
    return out


def two_component(n: int, seed: int) -> np.ndarray:
    """Engle & Lee (1999) style: a fast GARCH around a slowly wandering long-run variance (log AR(1),
    phi 0.998), so a year's mean is itself a moving target."""
    rng = np.random.default_rng(seed)
    slow = np.empty(n)
    level = 0.0
    for i in range(n):
        level = 0.998 * level + 0.04 * rng.standard_normal()
        slow[i] = level
    fast = garch_t_series(n, 1.0, 0.10, 0.85, 6.0, seed + 1)
    return 0.012 * np.exp(slow - slow.std() ** 2) * fast


def held_out() -> dict[str, np.ndarray]:
    """Name -> log returns (4000 steps each)."""
    n, out = 4000, {}
    for seed in (11, 12):
        out[f"GARCH-t a.18 b.78 nu4 2% s{seed}"] = garch_t_series(n, 0.02, 0.18, 0.78, 4.0, seed)
        out[f"GARCH-t a.04 b.955 nu12 0.5% s{seed}"] = garch_t_series(n, 0.005, 0.04, 0.955, 12.0, seed)
        out[f"GARCH-t a.10 b.70 nu3.5 1.5% s{seed}"] = garch_t_series(n, 0.015, 0.10, 0.70, 3.5, seed)
        out[f"hourly-like s{seed}"] = hourly_like(n, seed)
        out[f"regime switch s{seed}"] = regime_switch(n, seed)
        out[f"two-component s{seed}"] = two_component(n, seed)
    return out


def closes_of(returns: np.ndarray) -> np.ndarray:
    return 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))


# --- scoring --------------------------------------------------------------------------------------------


def report(
    name: str,
    p: Prepared,
    fitted: dict[str, tuple[float, float]],
    tables: dict[str, np.ndarray],
    garch: dict[int, tuple[np.ndarray, np.ndarray]],
) -> None:
    """One table row: coverage and Winkler ratio to GARCH per candidate, then each one's paired change vs
    the current scale (block standard errors)."""
    actual = p.closes[p.targets]
    g = {level: winkler_each(actual, *garch[level], level) for level in LEVELS}
    cells = []
    points = {}
    for cand, (w, lam) in fitted.items():
        held, ratio = [], []
        for level in LEVELS:
            lower, upper = bands(p, tables[cand], w, lam, level)
            held.append(100 * float(np.mean((actual >= lower) & (actual <= upper))))
            pts = winkler_each(actual, lower, upper, level)
            points[(cand, level)] = pts
            ratio.append(float(np.mean(pts) / np.mean(g[level])))
        cells.append(f"{held[0]:.1f}/{held[1]:.1f}% {ratio[0]:.3f}/{ratio[1]:.3f}")
    changes = []
    for cand in list(fitted)[1:]:
        per = []
        for level in LEVELS:
            d = (points[(cand, level)] - points[("current", level)]) / np.mean(points[("current", level)])
            per.append(f"{100 * d.mean():+.2f}±{100 * block_se(d):.2f}")
        changes.append("/".join(per))
    g_held = [100 * float(np.mean((actual >= lo) & (actual <= hi))) for lo, hi in garch.values()]
    print(
        f"| {name} | {p.targets.size} | {g_held[0]:.1f}/{g_held[1]:.1f}% | "
        + " | ".join(cells + changes)
        + " |"
    )


def real_parts(
    forecaster: Forecaster, bundle: Path
) -> tuple[list[Prepared], dict[str, tuple[np.ndarray, int]]]:
    """The calibration slices of the bundle's real series, and the bench's test cases with their starts."""
    split_of = splits(bundle)
    cal, tests = [], {}
    for name, (source, closes) in cases().items():
        split = split_of[source]
        val_end = int(split["test_start"])
        cal_start = calibration_start(split)
        if name in ("S&P 500", "MSFT"):
            cal.append(prepare(forecaster, closes, cal_start, val_end))
        tests[name] = (closes, val_end)
    return cal, tests


def parse_args(description: str) -> argparse.Namespace:
    """The flags of this bench and of ``interval_quantiles.py``, which scores on the same parts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--refit", type=int, default=50, help="refit GARCH every N closes (default 50)")
    parser.add_argument("--start", type=int, default=1500, help="held-out series: first target scored")
    return parser.parse_args()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    bundle = args.bundle or default_bundle()
    forecaster = load(bundle)
    cal, tests = real_parts(forecaster, bundle)
    fitted = fit(cal)
    tables = {cand: table(cal, w, lam) for cand, (w, lam) in fitted.items()}
    print(f"bundle {bundle.name}; fitted on {sum(p.targets.size for p in cal)} calibration targets:")
    print("  " + ", ".join(f"{c}: w={w}, lambda={lam}" for c, (w, lam) in fitted.items()))
    names = list(fitted)
    print(
        "\ncells: 80/95% held, Winkler ratio to GARCH(1,1)-t 80/95; last columns: Winkler change vs current"
        " 80/95 in % ± s.e. (negative = better)\n"
    )
    print(
        "| series | n | GARCH held | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"Δ {c}" for c in names[1:])
        + " |"
    )
    print("|---|--:|--:|" + "--:|" * (2 * len(names) - 1))
    for name, (closes, start) in tests.items():
        p = prepare(forecaster, closes, start, closes.size)
        report(name, p, fitted, tables, garch_one_step(closes, p.targets, args.refit))
    for name, returns in held_out().items():
        closes = closes_of(returns)
        p = prepare(forecaster, closes, args.start, closes.size)
        report(name, p, fitted, tables, garch_one_step(closes, p.targets, args.refit))


if __name__ == "__main__":
    main()
