"""Job claim latency on PostgreSQL: how long ``PostgresJobStore.claim`` takes with K workers racing.

    python bench/claim_latency.py [--url postgresql://...] [--jobs 400] [--workers 1,4,8]

Without ``--url`` it starts a throwaway cluster (``tests/postgres.py``: initdb + pg_ctl on loopback, fsync
off). For each K, ``--jobs`` queued jobs (one model each, so K workers can hold K jobs at once) are claimed
and finished by K threads, each with its own pool, as K worker processes would; every ``claim`` call is
timed, hits (a job claimed) and misses (another worker had it) apart. Prints p50/p99 per K.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.storage.job_store import Owner  # noqa: E402
from app.storage.pg import Database  # noqa: E402
from app.storage.pg_jobs import PostgresJobStore  # noqa: E402

SPEC = {"csv": "x.csv", "column": "Close", "date_column": None, "rows": 300, "params": {}}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def run(url: str, jobs: int, workers: int) -> str:
    setup = Database(url, pool_size=2)
    setup.open()
    with setup.connection() as conn:
        conn.execute("TRUNCATE jobs")
    store = PostgresJobStore(setup)
    for n in range(jobs):
        store.enqueue(f"j{n}", "bench", "never", SPEC, {}, limit=jobs + 1, model=f"m{n}")
    hits: list[float] = []
    misses: list[float] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        db = Database(url, pool_size=1)
        db.open()
        mine = PostgresJobStore(db)
        owner = Owner(k, "bench", None, f"t{k}")
        for n in range(jobs):
            began = time.perf_counter()
            job = mine.claim(owner, model=f"m{n}")
            took = time.perf_counter() - began
            with lock:
                (hits if job else misses).append(took)
            if job is not None:
                mine.finish(job.id, "succeeded")
        db.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(workers)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    setup.close()
    assert len(hits) == jobs, f"{len(hits)} claims for {jobs} jobs"
    return (
        f"K={workers:<2} {jobs} jobs claimed once each in {wall:5.2f} s ({jobs / wall:6.0f}/s); claim p50 "
        f"{_pct(hits, 0.5):.2f} ms p99 {_pct(hits, 0.99):.2f} ms; misses {len(misses)} "
        f"(p50 {_pct(misses, 0.5):.2f} ms, mean {statistics.fmean(misses) * 1000 if misses else 0:.2f} ms)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=None, help="a database to use (its jobs table is emptied)")
    p.add_argument("--jobs", type=int, default=400)
    p.add_argument("--workers", default="1,4,8")
    args = p.parse_args()
    cluster = None
    url = args.url
    if url is None:
        from tests.postgres import start_cluster

        started = start_cluster()
        if isinstance(started, str):
            sys.exit(started)
        cluster, url = started, started.create_database("bench")
    try:
        for k in (int(x) for x in args.workers.split(",")):
            print(run(url, args.jobs, k), flush=True)
    finally:
        if cluster is not None:
            cluster.destroy()


if __name__ == "__main__":
    main()
