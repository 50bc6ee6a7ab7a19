"""Scale-out through an object store: how long a promotion takes to reach every replica, and what a cold
replica's first load from the store costs.

    python bench/objstore.py [--jobs 3] [--starts 2]

Starts moto's S3 server and a throwaway PostgreSQL (``tests/s3.py``, ``tests/postgres.py``), two API replicas
and one worker (``python -m app.worker``), each with its own empty model dir, sharing only the database and a
bucket seeded with the fixture model. Then:

1. ``--jobs`` real (tiny) training jobs with ``promote=always``, each sent to replica A: the time from the
   promotion's commit (the bench LISTENs on the database's promotion channel, as the replicas do) until both
   replicas answer ``/forecast`` with the new version (each polled every 5 ms). Includes the download of the
   new bundle from the store, its verification and the ONNX session's start on each replica.
2. In this process, A B A B five times: the served bundle downloaded from the store, verified and loaded
   into an empty cache, vs loaded from a cache that holds it.
3. ``--starts`` times A B A B: a replica started with an EMPTY model dir (it downloads and verifies the
   served bundle from the store) vs one started over a model dir that already holds it (cache warm), from
   the process's start to ``/readyz`` answering 200. The difference is the first load from the store.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.storage.s3 import S3Store  # noqa: E402
from closecast.bundle import load_forecaster  # noqa: E402
from closecast.objectstore import StoreRegistry  # noqa: E402
from tests.helpers import FIXTURE_MODELS, SYNTHETIC_CSV, running_server, server_env, wait_for  # noqa: E402
from tests.postgres import start_cluster  # noqa: E402
from tests.s3 import start_s3  # noqa: E402

KEY = "bench-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
CLOSES = [float(row["Close"]) for row in csv.DictReader(SYNTHETIC_CSV.read_text().splitlines())]


def _served(url: str) -> str:
    response = httpx.post(url + "/forecast", json={"closes": CLOSES[-30:]}, timeout=10)
    version: str = response.json()["model_version"] if response.status_code == 200 else ""
    return version


def _promotion_to_all(db_url: str, replicas: list[str], submit_to: str) -> float:
    """Seconds from a job's promotion commit until every replica serves its version."""
    body = {"closes": CLOSES, "params": {"window": 11, "epochs": 1, "hidden_size": 8}, "promote": "always"}
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN closecast_promotions")
        response = httpx.post(submit_to + "/train", json=body, headers=AUTH, timeout=30)
        assert response.status_code == 202, response.text
        next(iter(listener.notifies(timeout=600, stop_after=1)))
        committed = time.perf_counter()
        row = listener.execute("SELECT version FROM pointers WHERE model = 'default'").fetchone()
    assert row is not None
    waiting = set(replicas)
    while waiting:
        waiting = {url for url in waiting if _served(url) != row[0]}
        if waiting:
            time.sleep(0.005)
    return time.perf_counter() - committed


def _start_to_ready(model_dir: Path, settings: dict[str, str]) -> float:
    began = time.perf_counter()
    with running_server(model_dir, run_jobs="false", **settings):
        return time.perf_counter() - began


def _load_in_process(store_url: str, tmp: Path, loads: int) -> tuple[list[float], list[float]]:
    """A B A B in this process: download + verify + load the served default bundle into an empty cache,
    vs load it from a cache that holds it (what a cold replica adds over a warm one)."""
    store = S3Store(store_url)  # one client, as a replica holds one
    bundles = StoreRegistry(store, tmp / "warm-load")
    version = bundles.read_pointer("default")[0]
    assert version is not None
    bundles.fetch("default", version)
    cold, warm = [], []
    for n in range(loads):
        began = time.perf_counter()
        empty = StoreRegistry(store, tmp / f"cold-load{n}")
        empty.fetch("default", version)
        load_forecaster(tmp / f"cold-load{n}" / "default" / version, "cpu")
        cold.append(time.perf_counter() - began)
        began = time.perf_counter()
        load_forecaster(tmp / "warm-load" / "default" / version, "cpu")
        warm.append(time.perf_counter() - began)
    return cold, warm


def _cold_vs_warm(tmp: Path, settings: dict[str, str], starts: int) -> tuple[list[float], list[float]]:
    warm_dir = tmp / "warm"
    _start_to_ready(warm_dir, settings)  # fills the cache once
    cold, warm = [], []
    for n in range(starts):
        cold.append(_start_to_ready(tmp / f"cold{n}", settings))
        warm.append(_start_to_ready(warm_dir, settings))
        shutil.rmtree(tmp / f"cold{n}", ignore_errors=True)
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=3, help="promotions timed (default 3)")
    parser.add_argument("--starts", type=int, default=2, help="cold and warm starts each (default 2)")
    args = parser.parse_args()
    s3, cluster = start_s3(), start_cluster()
    if isinstance(s3, str) or isinstance(cluster, str):
        raise SystemExit(f"bench/objstore.py: {s3 if isinstance(s3, str) else cluster}")
    os.environ.update(s3.env())
    tmp = Path(tempfile.mkdtemp(prefix="closecast-objstore-bench-"))
    db_url = cluster.create_database()
    settings = {
        "database_url": db_url,
        "model_store": f"s3://{s3.new_bucket()}/bench",
        "default_model_dir": str(FIXTURE_MODELS),
        "api_key": KEY,
        "reload_interval_s": "2",  # the default: promotions arrive by NOTIFY, not by polling
        "train_threads": "1",
    }
    worker = None
    try:
        with (
            running_server(tmp / "a", run_jobs="false", **settings) as a,
            running_server(tmp / "b", run_jobs="false", **settings) as b,
        ):
            log = (tmp / "worker.log").open("wb")
            env = server_env(model_dir=str(tmp / "w"), providers="cpu", **settings)
            worker = subprocess.Popen(
                [sys.executable, "-m", "app.worker"], cwd=ROOT, env=env, stdout=log, stderr=log
            )
            wait_for(lambda: "claiming jobs" in (tmp / "worker.log").read_text(), timeout=120, every=0.1)
            took = [_promotion_to_all(db_url, [a.url, b.url], a.url) for _ in range(args.jobs)]
            each = ", ".join(f"{t * 1000:.0f}" for t in took)
            print(
                f"promotion -> both replicas serving: n={len(took)}  median "
                f"{statistics.median(took) * 1000:.0f} ms  max {max(took) * 1000:.0f} ms  (each: {each} ms)"
            )
        worker.terminate()
        worker.wait(30)
        cold_load, warm_load = _load_in_process(settings["model_store"], tmp, 5)
        cold_ms, warm_ms = statistics.median(cold_load) * 1000, statistics.median(warm_load) * 1000
        print(
            f"first load of the served bundle: from the store (download + verify + load) median "
            f"{cold_ms:.0f} ms, from a warm cache {warm_ms:.0f} ms  (A B A B in one process, n=5 each)"
        )
        cold, warm = _cold_vs_warm(tmp, settings, args.starts)
        cold_s, warm_s = statistics.median(cold), statistics.median(warm)
        print(
            f"replica start to ready: empty dir (first load from the store) median {cold_s:.2f} s, warm "
            f"cache median {warm_s:.2f} s, difference {(cold_s - warm_s) * 1000:.0f} ms  "
            f"(A B A B, n={args.starts} each; cold {', '.join(f'{t:.2f}' for t in cold)} s)"
        )
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        s3.stop()
        cluster.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
