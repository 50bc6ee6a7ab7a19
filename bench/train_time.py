"""Time the default model's training on the shipped S&P 500 file, end to end, as a user runs it.

    python bench/train_time.py [--csv data/sp500_daily.csv] [--runs 1]

Prints wall time for the whole CLI (imports, training, ONNX + TorchScript export, parity, bundle) and the
fit alone, read back from the manifest. The budget: 2 minutes on a 2-core VM.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=ROOT / "data" / "sp500_daily.csv")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bundle"
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "training",
                    "train",
                    "--csv",
                    str(args.csv),
                    "--out",
                    str(out),
                    "--quiet",
                ],
                check=True,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            wall = time.perf_counter() - started
            m = json.loads((out / "manifest.json").read_text())
        t = m["training"]
        test = m["metrics"]["test"]
        print(
            f"run {run}: total {wall:.1f} s (fit {t['seconds']:.1f} s, {t['epochs_run']} epochs, best "
            f"{t['best_epoch']}); test MAE {test['model']['mae']:.3f} vs naive {test['naive']['mae']:.3f}, "
            f"skill {test['skill']:+.4f}"
        )


if __name__ == "__main__":
    main()
