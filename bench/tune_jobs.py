"""Wall time of one search run three ways on this machine: one trial at a time, ``--jobs N`` trials in
threads of one process, and N processes sharing one SQLite study (``--stage search`` shards).

    python bench/tune_jobs.py [--trials 4] [--jobs 2] [--closes 600] [--epochs 3] [--rounds 1]

Each way runs the same search (synthetic closes, window 11, hidden size 16, 2 folds, searched learning
rate and loss) in a fresh study, A B C A B C for ``--rounds``; the processes' time includes each one's
imports, as a real run's would.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.synthetic import make_closes, write_csv  # noqa: E402


def _tune(csv: Path, tmp: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "training", "tune", "--csv", str(csv), "--window", "11", "--hidden-size",
            "16", "--num-layers", "1", "--bidirectional=false", "--batch-size", "64", "--epochs", str(epochs),
            "--folds", "2", "--quiet", "--storage", f"sqlite:///{tmp / 'study.sqlite3'}", *extra]  # fmt: skip


def _wall(commands: list[list[str]]) -> float:
    started = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.DEVNULL) for c in commands]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit(f"a run failed: {commands}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="trials per search (default %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="threads or processes (default %(default)s)")
    parser.add_argument("--closes", type=int, default=600, help="synthetic closes (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=1, help="A B C rounds (default %(default)s)")
    args = parser.parse_args()
    for _ in range(args.rounds):
        for way in ("one at a time", f"{args.jobs} threads", f"{args.jobs} processes"):
            with tempfile.TemporaryDirectory() as name:
                tmp = Path(name)
                csv = write_csv(tmp / "p.csv", make_closes(args.closes, seed=3))
                search = ["--stage", "search", "--out", str(tmp / "unused"), "--jobs", "1"]
                if way.endswith("processes"):
                    budget = ["--budget", str(args.trials)]
                    runs = [
                        _tune(csv, tmp, args.epochs, *search, *budget, "--shard", str(k))
                        for k in range(args.jobs)
                    ]
                else:
                    jobs = "1" if way == "one at a time" else str(args.jobs)
                    runs = [
                        _tune(csv, tmp, args.epochs, *search, "--trials", str(args.trials), "--jobs", jobs)
                    ]
                print(f"{way:<14} {args.trials} trials: {_wall(runs):6.1f} s", flush=True)


if __name__ == "__main__":
    main()
