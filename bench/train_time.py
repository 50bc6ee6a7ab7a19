"""Where a training run's time goes, on the shipped S&P 500 file, as a user runs it.

    python bench/train_time.py [--csv data/sp500_daily.csv] [--epochs 5] [--runs 2] [--report]

Runs, alternately (A B A B, so a change in the machine's load hits both alike), ``python -c "import torch"``
and the whole CLI ``python -m training train --csv CSV --epochs N --out TMP --quiet``, and prints for each
CLI run its wall time, the fit (the epoch loop alone: ``training.fit_s``), each step the manifest records
(``training.steps_s``) and the imports before the run (the wall time no step accounts for); then the
goal's ratio: (wall - fit) / (import torch), the medians over the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--csv", type=Path, default=ROOT / "data" / "sp500_daily.csv", help="series to train on"
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (default %(default)s)")
    parser.add_argument("--runs", type=int, default=2, help="A B pairs (default %(default)s)")
    parser.add_argument("--report", action="store_true", help="draw report.png too (default: --no-report)")
    args = parser.parse_args()
    imports, beyond = [], []
    for run in range(1, args.runs + 1):
        torch_s = _wall([sys.executable, "-c", "import torch"])
        imports.append(torch_s)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bundle"
            argv = [sys.executable, "-m", "training", "train", "--csv", str(args.csv), "--epochs",
                    str(args.epochs), "--out", str(out), "--quiet"]  # fmt: skip
            wall = _wall(argv if args.report else [*argv, "--no-report"])
            t = json.loads((out / "manifest.json").read_text())["training"]
        beyond.append(wall - t["fit_s"])
        steps = ", ".join(f"{k} {v:.2f}" for k, v in t["steps_s"].items())
        before = t["total_s"] - sum(t["steps_s"].values())  # the CLI's imports and reading the CSV
        print(
            f"run {run}: import torch {torch_s:.2f} s | CLI wall {wall:.2f} s = fit {t['fit_s']:.2f} "
            f"({t['epochs_run']} epochs) + {wall - t['fit_s']:.2f} beyond: steps [{steps}], imports and "
            f"start-up {wall - t['total_s']:.2f} + before the first step {before:.2f}"
        )
    ratio = statistics.median(beyond) / statistics.median(imports)
    print(f"beyond the fit / import torch (medians of {args.runs}): {ratio:.2f}x (goal <= 2x, aim 1.5x)")


if __name__ == "__main__":
    main()
