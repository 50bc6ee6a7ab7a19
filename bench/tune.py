"""What a search finds on the S&P 500 next to the defaults: test skill, interval coverage, search time.

    python bench/tune.py [--csv FILE] [--trials 20] [--timeout S] [--folds 3] [--epochs N]

Runs ``training.tune.tune`` (the ``python -m training tune`` search, study in a temporary SQLite file) and
``fit_and_score`` with the defaults on the same file, and prints one line for each. The test part is the
same for both and was never seen by the search.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from closecast.config import Config
from closecast.series import load_csv
from training.pipeline import fit_and_score
from training.tune import Search, default_storage, tune

ROOT = Path(__file__).resolve().parents[1]


def _line(name: str, test: dict[str, Any], coverage: dict[str, float], seconds: float) -> str:
    return (
        f"{name:<10} test MAE {test['model']['mae']:8.4f} (naive {test['naive']['mae']:8.4f})  "
        f"skill {test['skill']:+.4f}  coverage 80% {coverage['80']:.1%} 95% {coverage['95']:.1%}  "
        f"{seconds:7.1f}s"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", type=Path, default=ROOT / "data" / "sp500_daily.csv")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after S seconds")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None, help="fix the epoch budget (default: the config's)")
    args = p.parse_args()
    series = load_csv(args.csv)
    base = {"epochs": args.epochs} if args.epochs else {}

    started = time.perf_counter()
    default = fit_and_score(series, Config.from_overrides(base), quiet=True)
    print(_line("defaults", default.test_scores, default.test_coverage, time.perf_counter() - started))

    with tempfile.TemporaryDirectory() as tmp:
        search = Search(
            base=base,
            trials=args.trials,
            timeout=args.timeout,
            trial_timeout=None,
            folds=args.folds,
            storage=default_storage(Path(tmp), "bench"),
            study="bench",
        )
        started = time.perf_counter()
        m = tune(series, search, Path(tmp) / "bundle")
        t = m["tuning"]
        print(
            _line(
                "tuned", m["metrics"]["test"], m["intervals"]["test_coverage"], time.perf_counter() - started
            )
        )
        print(
            f"search: {t['n_trials']} trials ({t['n_pruned']} pruned) in {t['search_seconds']:.0f}s, "
            f"{args.folds} folds, best objective {t['best_value']:.4f} (MAE / naive MAE), "
            f"params {t['best_params']}"
        )


if __name__ == "__main__":
    main()
