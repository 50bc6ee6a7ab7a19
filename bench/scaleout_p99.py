"""Forecast latency on an API replica while a worker trains: the scale-out setup on one machine.

    python bench/scaleout_p99.py [--requests 400] [--epochs 20]

Starts a throwaway PostgreSQL (``tests/postgres.py``), one API replica (``CLOSECAST_RUN_JOBS=false``) and one
worker (``python -m app.worker``) over a copy of the fixture registry, then times sequential ``/forecast``
calls on the replica: first with nothing training, then while the worker trains a real job on the S&P 500
file. On one machine the worker competes for the same cores (niced, as the embedded runner's jobs are);
on separate machines the second line would match the first.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latency import percentiles  # noqa: E402

from tests.helpers import copy_registry, running_server, server_env, wait_for  # noqa: E402
from tests.postgres import start_cluster  # noqa: E402

KEY = "bench-key-0123456789abcdef"


def _closes(path: Path) -> list[float]:
    return [float(row["Close"]) for row in csv.DictReader(path.read_text().splitlines())]


def _times(
    client: httpx.Client, url: str, body: dict[str, object], n: int, until: Callable[[], bool] | None = None
) -> list[float]:
    took = []
    for _ in range(n):
        began = time.perf_counter()
        response = client.post(url + "/forecast", json=body)
        took.append(time.perf_counter() - began)
        assert response.status_code == 200, response.text
        if until is not None and until():
            break
    return took


def _line(name: str, took: list[float]) -> str:
    p50, p99 = percentiles(took)
    return f"{name:<28} n={len(took):4d}  p50 {p50 * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=400, help="forecasts per phase (default 400)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the training job (default 20)")
    args = parser.parse_args()
    requests, epochs = args.requests, args.epochs
    cluster = start_cluster()
    if isinstance(cluster, str):
        sys.exit(cluster)
    tmp = Path(tempfile.mkdtemp(prefix="closecast-bench-"))
    model_dir = copy_registry(tmp / "models")
    common = {"database_url": cluster.create_database("bench"), "api_key": KEY, "providers": "cpu"}
    worker = None
    try:
        with running_server(model_dir, run_jobs="false", **common) as api:
            env = server_env(model_dir=str(model_dir), **common)
            worker = subprocess.Popen(
                [sys.executable, "-m", "app.worker"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
            )
            sp500 = _closes(ROOT / "data" / "sp500_daily.csv")
            body = {"closes": sp500[-60:]}
            auth = {"Authorization": f"Bearer {KEY}"}
            with httpx.Client(timeout=30) as client:
                _times(client, api.url, body, 50)  # warm up
                print(_line("replica, nothing training", _times(client, api.url, body, requests)), flush=True)
                job = {"closes": sp500, "params": {"epochs": epochs, "patience": epochs}, "promote": "never"}
                job_id = client.post(api.url + "/train", json=job, headers=auth).json()["job_id"]

                def status() -> str:
                    return str(client.get(f"{api.url}/train/{job_id}", headers=auth).json()["status"])

                wait_for(lambda: status() == "running", timeout=120)
                time.sleep(8)  # past `import torch`: the fit loop is running
                busy = _times(client, api.url, body, requests, until=lambda: status() != "running")
                print(_line("replica, worker training", busy), flush=True)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        cluster.destroy()


if __name__ == "__main__":
    main()
