"""closecast's 80%/95% one-step intervals next to the finance standard, GARCH(1,1) with Student-t errors.

    pip install -e '.[bench]'        # the `arch` package, used by this script only
    python bench/intervals.py [--bundle models/default/<version>] [--refit 20]

On the S&P 500 and MSFT test parts (and the S&P 500 with returns x0.1 and x3), the same test closes: coverage
and mean Winkler score (width + 2/alpha x the miss; lower is better) of closecast's bands, computed by the
served code, and of a GARCH(1,1)-t from `arch` refit on an expanding window every ``--refit`` closes (its
parameters use only returns before the block it forecasts). GARCH is fitted on returns divided by their
pre-test standard deviation: the optimiser fails on raw returns of a calm series (x0.1).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from arch import arch_model
from served import LEVELS, cases, coverage, default_bundle, load, serve, test_start, winkler


def garch_bands(closes: np.ndarray, start: int, refit: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """One-step GARCH(1,1)-t bands for targets ``start..len-1`` as prices."""
    returns = np.diff(np.log(closes))  # returns[i] = log(c[i+1] / c[i]); target t's return is returns[t-1]
    unit = returns[: start - 1].std()
    model = arch_model(returns / unit, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
    targets = np.arange(start, closes.size)
    mean, sigma, nu = (np.empty(targets.size) for _ in range(3))
    for b in range(0, targets.size, refit):
        block = targets[b : b + refit]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = model.fit(last_obs=block[0] - 1, disp="off", show_warning=False)
            fc = fitted.forecast(horizon=1, start=block[0] - 2, reindex=False)
        mean[b : b + block.size] = fc.mean.values[: block.size, 0]
        sigma[b : b + block.size] = np.sqrt(fc.variance.values[: block.size, 0])
        nu[b : b + block.size] = fitted.params["nu"]
    last = closes[start - 1 : -1]
    bands = {}
    for level in LEVELS:
        q = np.array([model.distribution.ppf((1 - level / 100) / 2, [v]) for v in nu]).ravel()
        bands[level] = (last * np.exp((mean + q * sigma) * unit), last * np.exp((mean - q * sigma) * unit))
    return bands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--refit", type=int, default=20, help="refit GARCH every N test closes (default 20)")
    args = parser.parse_args()
    bundle = args.bundle or default_bundle()
    forecaster = load(bundle)
    print(f"bundle {bundle.name}; GARCH(1,1)-t refit every {args.refit} closes on an expanding window")
    print(
        "| test set | n | method | 80% held | 95% held | Winkler 80% | Winkler 95% | ratio to GARCH 80/95 |"
    )
    print("|---|--:|---|--:|--:|--:|--:|--:|")
    for name, (source, closes) in cases().items():
        start = test_start(bundle, source, closes.size)
        ours = serve(forecaster, closes, start)
        started = time.perf_counter()
        garch = garch_bands(closes, start, args.refit)
        seconds = time.perf_counter() - started
        g = {level: winkler(ours.actual, *garch[level], level) for level in LEVELS}
        c = {level: winkler(ours.actual, *ours.bands[level], level) for level in LEVELS}
        g_held = [float(np.mean((ours.actual >= lo) & (ours.actual <= hi))) for lo, hi in garch.values()]
        n = ours.actual.size
        print(
            f"| {name} | {n} | closecast | {100 * coverage(ours, 80):.1f}% | {100 * coverage(ours, 95):.1f}% "
            f"| {c[80]:.4g} | {c[95]:.4g} | {c[80] / g[80]:.3f} / {c[95] / g[95]:.3f} |"
        )
        print(
            f"| {name} | {n} | GARCH(1,1)-t ({seconds:.0f}s) | {100 * g_held[0]:.1f}% "
            f"| {100 * g_held[1]:.1f}% | {g[80]:.4g} | {g[95]:.4g} | 1 |"
        )


if __name__ == "__main__":
    main()
