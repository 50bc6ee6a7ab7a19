"""Wall time of one tune job with ``"workers": 1`` and with ``"workers": 2`` on the scale-out setup.

    python bench/tune_workers.py [--trials 8] [--epochs 5] [--closes 600] [--folds 2] [--rounds 1]

Starts a throwaway PostgreSQL (``tests/postgres.py``), one API replica (``CLOSECAST_RUN_JOBS=false``) and two
workers (``python -m app.worker``) over a copy of the fixture registry, then submits the same tune job
(synthetic closes, window 11, hidden size 16) with each worker count in turn, ``--rounds`` times, and prints
each job's wall time from submission to its end and the study's trials. Every
process shares this machine's cores: two shards speed a search up only as far as there are idle cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import copy_registry, running_server, server_env, wait_for  # noqa: E402
from tests.postgres import start_cluster  # noqa: E402
from tests.synthetic import make_closes  # noqa: E402

KEY = "bench-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _job(url: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    response = httpx.post(url + "/train", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]

    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(f"{url}/train/{job_id}", headers=AUTH, timeout=10).json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(ended, timeout=3600, every=0.2)
    return time.perf_counter() - began, job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--closes", type=int, default=600)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    cluster = start_cluster()
    if isinstance(cluster, str):
        sys.exit(cluster)
    tmp = Path(tempfile.mkdtemp(prefix="closecast-tune-bench-"))
    url = cluster.create_database("bench")
    model_dir = copy_registry(tmp / "models")
    common = {"database_url": url, "api_key": KEY, "tune_timeout_s": "3600"}
    env = server_env(model_dir=str(model_dir), providers="cpu", **common)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with running_server(model_dir, run_jobs="false", **common) as api:
            for n in (1, 2):
                log = tmp / f"worker{n}.log"
                with log.open("wb") as fh:
                    workers.append(subprocess.Popen([sys.executable, "-m", "app.worker"], env=env, stdout=fh,
                                                    stderr=fh, cwd=ROOT))  # fmt: skip
                wait_for(lambda log=log: "claiming jobs" in log.read_text(), timeout=60)
            params = {"window": 11, "hidden_size": 16, "epochs": args.epochs}
            for _ in range(args.rounds):
                for k in (1, 2):
                    tune = {"trials": args.trials, "folds": args.folds, "workers": k}
                    body = {"closes": make_closes(args.closes).tolist(), "params": params, "tune": tune,
                            "promote": "never"}  # fmt: skip
                    seconds, job = _job(api.url, body)
                    progress = job["progress"] or {}
                    print(f"workers {k}: {seconds:6.1f} s, {job['status']}, trials done "
                          f"{progress.get('trials_done')} (pruned {progress.get('trials_pruned')}), "
                          f"best {progress.get('best_value')}", flush=True)  # fmt: skip
    finally:
        for proc in workers:
            proc.terminate()
            proc.wait(30)
        cluster.destroy()


if __name__ == "__main__":
    main()
