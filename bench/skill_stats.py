"""The default model's skill with its Newey–West standard error and the one-sided Diebold–Mariano p-value
against naive, on the S&P 500 and MSFT test parts and pooled (errors relative to the last close), through
the served code; the worked example of ``docs/statistics.md``.

    python bench/skill_stats.py [--bundle models/default/<version>]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from served import ROOT, default_bundle, load, serve, test_start

from closecast.scoring import coverage_interval, score_against_naive, score_pooled
from closecast.series import load_csv
from closecast.statistics import long_run_variance

SERIES = {"S&P 500": "sp500_daily.csv", "MSFT": "msft_daily.csv"}


def _line(name: str, s: dict, recorded: float | None) -> str:
    check = f" (manifest: {recorded:+.5f})" if recorded is not None else ""
    return (
        f"| {name} | {s['n']} | {s['skill']:+.5f}{check} | {s['skill_se']:.5f} | "
        f"{s['skill'] / s['skill_se']:+.2f} | {s['dm_stat']:+.3f} | {s['dm_pvalue']:.3f} | {s['dm_lag']} | "
        f"{s['verdict']} |"
    )


def _held(inside: np.ndarray) -> str:
    low, high = coverage_interval(inside)
    share = f"{100 * inside.mean():.1f}% (Wilson 95%: {100 * low:.1f}-{100 * high:.1f}%)"
    return f"|   95% interval held | | {share} | | | | | | |"


def _by_date(parts: list[tuple[np.ndarray, ...]], dates: list[list[str]]) -> float:
    """The pooled skill's s.e. with each date's contributions of every series summed before Newey-West: what
    the plain pooled figure leaves out when the series move together on the same days."""
    a = np.concatenate([np.abs(f - y) / p for y, f, p in parts])
    b = np.concatenate([np.abs(p - y) / p for y, f, p in parts])
    z = -(a - a.mean() / b.mean() * b) / b.mean()
    keys, index = np.unique(np.concatenate(dates), return_inverse=True)
    summed = np.bincount(index, weights=z, minlength=keys.size)
    return float(np.sqrt(keys.size * long_run_variance(summed)) / z.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    bundle = parser.parse_args().bundle or default_bundle()
    forecaster = load(bundle)
    metrics = json.loads((bundle / "manifest.json").read_text())["metrics"]
    print(f"bundle {bundle.name}; one step ahead on each test part, through Forecaster.forecast")
    print("| test set | n | skill | NW s.e. | skill/s.e. | DM (HLN) | DM p (beats naive) | lag | verdict |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|---|")
    parts, held, dates = [], [], []
    for name, source in SERIES.items():
        series = load_csv(ROOT / "data" / source)
        closes = series.closes
        start = test_start(bundle, source, closes.size)
        s = serve(forecaster, closes, start)
        scores = score_against_naive(s.actual, s.forecast, s.last)
        recorded = metrics.get("series", {}).get(Path(source).stem, {}).get("test", {}).get("skill")
        print(_line(name, scores, recorded))
        parts.append((s.actual, s.forecast, s.last))
        dates.append(list(series.dates or [])[start:])
        lower, upper = s.bands[95]
        held.append((s.actual >= lower) & (s.actual <= upper))
        print(_held(held[-1]))
    pooled = score_pooled(parts)
    print(_line("pooled (relative errors)", pooled, metrics.get("test", {}).get("skill")))
    print(_held(np.concatenate(held)))
    print(
        f"pooled s.e. with same-day contributions summed first (the series move together): "
        f"{_by_date(parts, dates):.5f} vs {pooled['skill_se']:.5f} as recorded"
    )


if __name__ == "__main__":
    main()
