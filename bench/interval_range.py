"""Would an interval scale from the day's range beat GARCH? A measurement, not (yet) a served feature.

    python bench/interval_range.py [--bundle models/default/<version>]

On the S&P 500 and MSFT (whose files carry Open, High, Low), the default model's served one-step forecasts
are kept and only the interval scale is swapped: the served EWMA of squared close-to-close returns, or the
same EWMA (lambda 0.94, 252 days, only days before the target) of a range-based daily variance:

- Yang-Zhang (2000): overnight (close -> open) variance + k * open-to-close variance + (1 - k) *
  Rogers-Satchell, k = 0.34 / (1.34 + (n + 1) / (n - 1)) with n = 1 / (1 - lambda) days. Chosen first: the
  only one of the three that counts the overnight gap, which a close-to-close forecast error contains
  (Garman-Klass and Rogers-Satchell see the trading session only), and it is drift-independent.
- Garman-Klass (1980) and Rogers-Satchell (1991), for comparison, and the mean of the close and Garman-Klass
  variances (added after the first run: a range estimator alone misses the close-to-close gap).

Each scale gets its own symmetric split-conformal table from the calibration residuals of both series pooled
(targets from 2011-12-27 to the test start, as the default's calibration slice), and is scored on the test
parts. Printed: coverage and the Winkler ratio to the served bands with a standard error (50-target block
means); multiply by the served bands' ratio to GARCH(1,1)-t from ``bench/intervals.py`` (same targets) for
the ratio to GARCH.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
from served import LEVELS, ROOT, default_bundle, load, ratio_se, serve, test_start, winkler_each

from closecast.intervals import EWMA_LAMBDA, EWMA_SPAN, PROBABILITIES, symmetric_conformal_quantiles

CAL_START = "2011-12-27"  # the default model's calibration slice starts here (docs/training.md)


def read_ohlc(path: Path) -> dict[str, np.ndarray]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    out = {k: np.array([float(r[k]) for r in rows]) for k in ("Open", "High", "Low", "Close")}
    out["Date"] = np.array([r["Date"] for r in rows])
    return out


def daily_variances(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-day variance estimates (index t: day t), log units; day 0's overnight term is 0."""
    o, h, low, c = (np.log(d[k]) for k in ("Open", "High", "Low", "Close"))
    rs = (h - c) * (h - o) + (low - c) * (low - o)
    gk = 0.5 * (h - low) ** 2 - (2 * math.log(2) - 1) * (c - o) ** 2
    overnight = np.concatenate([[0.0], o[1:] - c[:-1]]) ** 2
    n = 1 / (1 - EWMA_LAMBDA)
    k = 0.34 / (1.34 + (n + 1) / (n - 1))
    yz = overnight + k * (c - o) ** 2 + (1 - k) * rs
    close = np.concatenate([[0.0], np.diff(c)]) ** 2
    return {
        "served (close EWMA)": close,
        "Yang-Zhang": yz,
        "Garman-Klass": gk,
        "Rogers-Satchell": rs,
        "mean of close and Garman-Klass": 0.5 * (close + gk),
    }


def ewma_before(v: np.ndarray) -> np.ndarray:
    """Scale for target t: sqrt of the EWMA of v[1..t-1] (up to EWMA_SPAN days), as the served scale."""
    w = EWMA_LAMBDA ** np.arange(EWMA_SPAN)
    num = np.convolve(v[1:], w)[: v.size - 1]
    den = np.cumsum(w)[np.minimum(np.arange(v.size - 1), EWMA_SPAN - 1)]
    return np.concatenate([[np.nan, np.nan], np.sqrt(num / den)[:-1]])  # index t: days 1..t-1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    bundle = parser.parse_args().bundle or default_bundle()
    forecaster = load(bundle)
    parts = {}
    for source in ("sp500_daily.csv", "msft_daily.csv"):
        d = read_ohlc(ROOT / "data" / source)
        closes = d["Close"]
        cal = int(np.searchsorted(d["Date"], CAL_START))
        test = test_start(bundle, source, closes.size)
        s = serve(forecaster, closes, cal)  # targets cal..n-1
        e = np.log(s.actual / s.forecast)  # actual minus predicted log return
        targets = np.arange(cal, closes.size)
        scales = {name: ewma_before(v)[targets] for name, v in daily_variances(d).items()}
        parts[source] = (s, e, targets < test, scales)
    names = list(next(iter(parts.values()))[3])
    tables = {}
    for name in names:
        residuals = np.concatenate([e[c] / sc[name][c] for s, e, c, sc in parts.values()])
        tables[name] = symmetric_conformal_quantiles(residuals[np.isfinite(residuals)])
    print(f"bundle {bundle.name}; calibration from {CAL_START}, test parts as the bundle's")
    print("| test part | scale | 80% / 95% held | Winkler vs served 80% (s.e.) | 95% (s.e.) |")
    print("|---|---|--:|--:|--:|")
    for source, (s, _, c, sc) in parts.items():
        t = ~c
        actual, forecast = s.actual[t], s.forecast[t]
        served = {lv: winkler_each(actual, s.bands[lv][0][t], s.bands[lv][1][t], lv) for lv in LEVELS}
        for name in names:
            cells, held = [], []
            for level in LEVELS:
                q = float(np.interp(0.5 + level / 200, PROBABILITIES, tables[name]))
                lo, hi = forecast * np.exp(-q * sc[name][t]), forecast * np.exp(q * sc[name][t])
                w = winkler_each(actual, lo, hi, level)
                se = ratio_se(w, served[level])
                cells.append(f"{w.mean() / served[level].mean():.3f} ({se:.3f})")
                held.append(f"{100 * np.mean((actual >= lo) & (actual <= hi)):.1f}%")
            print(f"| {source} | {name} | {' / '.join(held)} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
