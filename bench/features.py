"""Test skill and interval coverage with and without OHLCV features, on the S&P 500 and MSFT files.

    python bench/features.py [--seeds 0 1] [--features high,low,open,volume]

Each file is trained with the defaults (closes only), then with the same defaults plus the features, over
the seeds given; prints one line per run and the mean per file and recipe. Runs
``training.pipeline.fit_and_score`` (the first step of ``python -m training train``, no files). No tuning to
these two files: the defaults as they are.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from closecast.config import Config
from closecast.features import FEATURES, parse_names
from closecast.series import load_csv
from training.pipeline import fit_and_score

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "data" / "sp500_daily.csv", ROOT / "data" / "msft_daily.csv"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--features", default=",".join(FEATURES))
    args = parser.parse_args()
    features = parse_names(args.features)
    print("file        features                   seed  skill     cov80   cov95   epochs  seconds")
    for path in FILES:
        series = load_csv(path, features=features)
        for names in ((), features):
            rows = []
            for seed in args.seeds:
                started = time.perf_counter()
                scored = fit_and_score(
                    series, Config.from_overrides({"features": names, "seed": seed}), quiet=True
                )
                t = scored.test_scores
                row = (t["skill"], t["coverage"]["80"], t["coverage"]["95"])
                rows.append(row)
                label = ",".join(names) or "none"
                print(
                    f"{path.stem:<11} {label:<26} {seed:>4}  {row[0]:+.4f}  {row[1]:.3f}   {row[2]:.3f}   "
                    f"{scored.fitted.epochs_run:>6}  {time.perf_counter() - started:7.1f}",
                    flush=True,
                )
            mean = np.mean(rows, axis=0)
            print(
                f"{path.stem:<11} {label:<26} mean  {mean[0]:+.4f}  {mean[1]:.3f}   {mean[2]:.3f}", flush=True
            )


if __name__ == "__main__":
    main()
