"""closecast's 80%/95% intervals next to the finance standard, GARCH(1,1) with Student-t errors, per step.

    pip install -e '.[bench]'        # the `arch` package, used by this script only
    python bench/intervals.py [--bundle models/default/<version>] [--refit 20] [--steps 5]
    python bench/intervals.py --csv data/msft_daily.csv [--column Close] [--test-start 0.8]

Without ``--csv``: the S&P 500 and MSFT test parts (and the S&P 500 with returns x0.1 and x3). With
``--csv FILE`` (repeatable): that file's ``--column``, tested from the bundle's own test start when the bundle
trained on a file of that name, else from ``--test-start`` (a fraction of the closes, default 0.8, or an
index). Every origin in the test part gets the request a user would send (the closes before it, up to 252
returns of history) and ``--steps`` forecasts, computed by the served code in one batch; every step h is
scored on the same origins (those whose h-th next close exists for every h).

Printed per series: coverage and mean Winkler score (width + 2/alpha x the miss; lower is better) of
closecast's bands and of a GARCH(1,1)-t from ``arch`` refit on an expanding window every ``--refit`` origins
(its parameters use only returns up to the block it forecasts), per level and per step, and the ratio of the
two Winkler scores with a standard error (from 50-origin block means of the per-origin difference, divided by
GARCH's mean). GARCH's h-step band: the sum of its h conditional means, +- a standardised t(nu) quantile
times the square root of the sum of its h conditional variances (the h-step sum of t shocks is not exactly
t; close enough at h <= 5). GARCH is fitted on returns divided by their pre-test standard deviation: the
optimiser fails on raw returns of a calm series (x0.1).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from arch import arch_model
from served import (
    BLOCK,
    LEVELS,
    add_csv_arguments,
    cases,
    csv_cases,
    default_bundle,
    load,
    ratio_se,
    test_start,
    winkler_each,
)

from closecast.forecaster import Forecaster
from closecast.intervals import EWMA_SPAN


@dataclass(frozen=True)
class Bands:
    """Bands for origins ``[N]`` and steps ``[H]``: level -> (lower, upper), each ``[N, H]``."""

    bands: dict[int, tuple[np.ndarray, np.ndarray]]


def targets(closes: np.ndarray, origins: np.ndarray, steps: int) -> np.ndarray:
    """``[N, H]``: the close h steps after each origin (the index of the last close sent)."""
    return closes[origins[:, np.newaxis] + np.arange(1, steps + 1)]


def closecast_bands(forecaster: Forecaster, closes: np.ndarray, origins: np.ndarray, steps: int) -> Bands:
    """The served bands: one request per origin with the closes up to it (252 returns of history)."""
    keep = EWMA_SPAN + 1
    requests = [closes[max(0, o + 1 - keep) : o + 1] for o in origins]
    items = forecaster.forecast(requests, steps, LEVELS).items
    return Bands(
        {
            level: (
                np.array([i.intervals[level][0] for i in items]),
                np.array([i.intervals[level][1] for i in items]),
            )
            for level in LEVELS
        }
    )


def garch_bands(closes: np.ndarray, origins: np.ndarray, refit: int, steps: int) -> Bands:
    """GARCH(1,1)-t bands for ``steps`` closes after each origin, refit every ``refit`` origins."""
    returns = np.diff(np.log(closes))  # returns[i] = log(c[i+1] / c[i]); origin o's next return is returns[o]
    unit = returns[: origins[0]].std()
    model = arch_model(returns / unit, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
    n = origins.size
    mean, variance, nu = np.empty((n, steps)), np.empty((n, steps)), np.empty(n)
    for b in range(0, n, refit):
        block = origins[b : b + refit]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = model.fit(last_obs=int(block[0]), disp="off", show_warning=False)  # returns < origin
            fc = fitted.forecast(horizon=steps, start=int(block[0]) - 1, reindex=False)
        mean[b : b + block.size] = fc.mean.values[: block.size]
        variance[b : b + block.size] = fc.variance.values[: block.size]
        nu[b : b + block.size] = fitted.params["nu"]
    centre = np.cumsum(mean, axis=1) * unit
    spread = np.sqrt(np.cumsum(variance, axis=1)) * unit
    last = closes[origins][:, np.newaxis]
    bands = {}
    for level in LEVELS:
        q = np.array([model.distribution.ppf((1 - level / 100) / 2, [v]) for v in nu]).reshape(-1, 1)
        bands[level] = (last * np.exp(centre + q * spread), last * np.exp(centre - q * spread))
    return Bands(bands)


def garch_one_step(
    closes: np.ndarray, targets: np.ndarray, refit: int
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """One-step GARCH(1,1)-t bands for ``targets`` (indices of the closes forecast): level -> (lower, upper),
    each ``[N]`` (the form the one-step studies score)."""
    bands = garch_bands(closes, np.asarray(targets) - 1, refit, 1).bands
    return {level: (lower[:, 0], upper[:, 0]) for level, (lower, upper) in bands.items()}


def held(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    return float(np.mean((actual >= lower) & (actual <= upper)))


def compare(
    name: str, forecaster: Forecaster, closes: np.ndarray, start: int, args: argparse.Namespace
) -> None:
    """Print one series' rows: per step, both levels, closecast then GARCH."""
    steps = args.steps
    origins = np.arange(max(start - 1, 1), closes.size - steps)
    actual = targets(closes, origins, steps)
    ours = closecast_bands(forecaster, closes, origins, steps)
    started = time.perf_counter()
    garch = garch_bands(closes, origins, args.refit, steps)
    seconds = time.perf_counter() - started
    print(
        f"\n{name}: {origins.size} origins from close {origins[0] + 1} of {closes.size}; "
        f"GARCH fits {seconds:.0f}s"
    )
    print(
        "| step | closecast 80% / 95% held | GARCH-t 80% / 95% held | Winkler ratio 80% (s.e.) | 95% (s.e.) |"
    )
    print("|--:|--:|--:|--:|--:|")
    for h in range(steps):
        a = actual[:, h]
        cells = {}
        for level in LEVELS:
            o = winkler_each(a, ours.bands[level][0][:, h], ours.bands[level][1][:, h], level)
            g = winkler_each(a, garch.bands[level][0][:, h], garch.bands[level][1][:, h], level)
            cells[level] = f"{o.mean() / g.mean():.3f} ({ratio_se(o, g):.3f})"
        c_held = " / ".join(
            f"{100 * held(a, ours.bands[lv][0][:, h], ours.bands[lv][1][:, h]):.1f}%" for lv in LEVELS
        )
        g_held = " / ".join(
            f"{100 * held(a, garch.bands[lv][0][:, h], garch.bands[lv][1][:, h]):.1f}%" for lv in LEVELS
        )
        print(f"| {h + 1} | {c_held} | {g_held} | {cells[80]} | {cells[95]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    add_csv_arguments(parser)
    parser.add_argument("--refit", type=int, default=20, help="refit GARCH every N origins (default 20)")
    parser.add_argument("--steps", type=int, default=5, help="forecast steps scored (default 5)")
    args = parser.parse_args()
    if args.steps < 1 or args.refit < 1:
        print(
            f"bench/intervals.py: --steps {args.steps} and --refit {args.refit} must be at least 1",
            file=sys.stderr,
        )
        sys.exit(2)
    bundle = args.bundle or default_bundle()
    forecaster = load(bundle)
    if args.csv:
        series = csv_cases("bench/intervals.py", bundle, args)
    else:
        series = {
            name: (closes, test_start(bundle, source, closes.size))
            for name, (source, closes) in cases().items()
        }
    print(f"bundle {bundle.name}; GARCH(1,1)-t refit every {args.refit} origins on an expanding window")
    for name, (closes, start) in series.items():
        if closes.size - start <= args.steps + BLOCK:
            print(f"bench/intervals.py: {name}: too few test closes ({closes.size - start})", file=sys.stderr)
            sys.exit(2)
        compare(name, forecaster, closes, start, args)


if __name__ == "__main__":
    main()
