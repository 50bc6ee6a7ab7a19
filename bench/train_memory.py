"""Peak resident memory of ``python -m training train`` as the series grows (the flat-memory budget).

    python bench/train_memory.py [--sizes 10000 100000 1000000] [--window 64] [--epochs 1]

For each size, writes a seeded random-walk CSV of that many closes (minute timestamps) to a temporary
directory, trains on it in a child process and prints the child's peak RSS (``ru_maxrss`` from ``wait4``),
its wall time and the training windows. Windows are index arrays built per batch
(``training/windowset.py``), so the peak should grow with the series (8 bytes a close, several arrays), not
with series x window. The budget: at most 1.5 GB for a million closes with ``--window 64``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_walk(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` closes of a geometric random walk from 100, one a minute from 2000-01-01."""
    rng = np.random.default_rng(seed)
    closes = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(rng.normal(0.0, 0.001, n - 1))]))
    stamps = np.datetime64("2000-01-01T00:00") + np.arange(n).astype("timedelta64[m]")
    with path.open("w", encoding="utf-8") as fh:
        fh.write("Date,Close\n")
        for start in range(0, n, 100_000):  # the writer itself stays small too
            rows = zip(
                stamps[start : start + 100_000].astype(str), closes[start : start + 100_000], strict=True
            )
            fh.writelines(f"{d},{c:.6f}\n" for d, c in rows)
    return path


def measure(csv: Path, out: Path, window: int, epochs: int) -> dict[str, float]:
    """Train in a child process; its own peak RSS (wait4 gives that child's rusage alone)."""
    cmd = [sys.executable, "-m", "training", "train", "--csv", str(csv), "--out", str(out), "--quiet"]
    cmd += ["--window", str(window), "--epochs", str(epochs)]
    started = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"training failed with exit code {child.returncode}: {' '.join(cmd)}")
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "peak_mb": usage.ru_maxrss / 1024,  # kilobytes on Linux
        "seconds": seconds,
        "train_windows": manifest["training"]["windows"]["train"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    print(f"window {args.window}, epochs {args.epochs}")
    head = f"{'closes':>10} {'train windows':>14} {'window x rows (MB f64)':>23}"
    print(f"{head} {'peak RSS MB':>12} {'wall s':>8}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            csv = write_walk(Path(tmp) / "walk.csv", n)
            got = measure(csv, Path(tmp) / "bundle", args.window, args.epochs)
        copy_mb = n * (args.window - 1) * 8 / 2**20  # one materialised float64 copy of every window
        row = f"{n:>10} {got['train_windows']:>14} {copy_mb:>23.0f} {got['peak_mb']:>12.0f}"
        print(f"{row} {got['seconds']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
