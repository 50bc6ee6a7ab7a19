"""Fallback interval tables on real weekly and monthly closes: the synthetic-residual table against the old
chain (training residuals pooled in, else a Student-t(4)), on the same model and the same test closes.

    python bench/fallback_tables.py

Monthly: every 21st close of the S&P 500 and MSFT daily files (about 240 and 380 closes), trained together;
weekly: every 5th close, the last 500 of each file, trained one at a time. Each run has fewer than 50
calibration residuals, so training makes a fallback table. Default configuration, seed 0, no synthetic
training series. Printed: the pooled test coverage of the 80% and 95% bands with each table.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

import numpy as np
from served import ROOT

from closecast.config import Config
from closecast.intervals import PROBABILITIES, calibrate
from closecast.series import Series, load_csv
from training.pipeline import fit_and_score
from training.scored import Scored, score_slice
from training.train import predict_scaled


def subsample(source: str, every: int, keep: int | None, folder: Path) -> Series:
    with (ROOT / "data" / source).open() as fh:
        rows = [(r["Date"], r["Close"]) for r in csv.DictReader(fh)][::every]
    rows = rows[-keep:] if keep else rows
    path = folder / f"{Path(source).stem}_every{every}.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Date", "Close"])
        w.writerows(rows)
    return load_csv(path)


def held(tests: list[Scored], tables: dict[str, np.ndarray], level: int) -> float:
    p = (1 - level / 100) / 2
    hits = []
    for t in tests:
        bounds = {k: np.interp([p, 1 - p], PROBABILITIES, q) for k, q in tables.items()}
        lo = np.where(t.use_ewma, bounds["ewma"][0], bounds["window"][0])
        hi = np.where(t.use_ewma, bounds["ewma"][1], bounds["window"][1])
        e = (t.windows.next_return - t.predicted) / t.served
        hits.append((e >= lo) & (e <= hi))
    return float(np.mean(np.concatenate(hits)))


def run(name: str, series: list[Series]) -> None:
    scored = fit_and_score(series, Config.from_overrides({"seed": 0}), quiet=True)
    predict = lambda x: predict_scaled(scored.fitted.model, x)  # noqa: E731
    tables = scored.evaluation.intervals["tables"]
    new = {k: np.asarray(v["residual_quantiles"]) for k, v in tables.items()}
    old, methods = {}, []
    for table in new:
        cal = [
            score_slice(scored.pooled, s, "calibration", predict).residuals(table)
            for s in scored.pooled.series
        ]
        train = [
            score_slice(scored.pooled, s, "train", predict).residuals(table) for s in scored.pooled.series
        ]
        old[table], method, n = calibrate(np.concatenate(cal), np.concatenate(train))
        methods.append(f"{table}: {tables[table]['method']} vs {method} ({n})")
    tests = list(scored.evaluation.tests.values())
    n = sum(t.windows.n for t in tests)
    cells = [f"{100 * held(tests, q, lv):.1f}%" for q in (new, old) for lv in (80, 95)]
    print(f"| {name} | {n} | {cells[0]} / {cells[1]} | {cells[2]} / {cells[3]} | {'; '.join(methods)} |")


def main() -> None:
    if len(sys.argv) > 1:
        print(f"bench/fallback_tables.py takes no arguments; got {sys.argv[1:]}", file=sys.stderr)
        sys.exit(2)
    print("| series | test closes | synthetic table 80% / 95% held | old chain 80% / 95% held | tables |")
    print("|---|--:|--:|--:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        monthly = [subsample(s, 21, None, folder) for s in ("sp500_daily.csv", "msft_daily.csv")]
        run("S&P 500 + MSFT monthly", monthly)
        for source in ("sp500_daily.csv", "msft_daily.csv"):
            run(f"{source.split('_')[0]} weekly (last 500)", [subsample(source, 5, 500, folder)])


if __name__ == "__main__":
    main()
