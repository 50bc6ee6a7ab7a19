"""Scale-out on PostgreSQL with real processes on loopback: two API replicas that only enqueue
(``CLOSECAST_RUN_JOBS=false``) and two workers (``python -m app.worker``), one database, one shared models
directory (the shared volume).

The workers run a stand-in trainer (as ``tests/jobs/test_failures.py`` does in process): it logs its start to
a shared file, sleeps briefly (or two minutes for a job asking 60+ epochs: a job to kill a worker under) and
writes a copy of the fixture bundle. The queue, leases, promotion and recovery are what is under test;
real training through a job is covered in ``tests/jobs``.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import (
    FIXTURE_MODELS,
    FIXTURE_VERSION,
    ROOT,
    SYNTHETIC_CSV,
    Server,
    copy_registry,
    running_server,
    server_env,
    wait_for,
)
from tests.jobs.helpers import AUTH, KEY

RELOAD_S = 0.5
CLOSES = [float(row["Close"]) for row in csv.DictReader(SYNTHETIC_CSV.read_text().splitlines())]

FAKE_TRAINER = """
import os, shutil, sys, time
args = dict(a.removeprefix("--").split("=", 1) for a in sys.argv[2:] if a.startswith("--") and "=" in a)
out, runlog, parent = args["out"], sys.argv[1], int(args["parent-pid"])
with open(runlog, "a") as fh:
    fh.write(out.split("/")[-2] + "\\n")
with open(args["progress-file"], "a") as fh:
    fh.write('{"epoch": 1, "epochs": 1, "train_loss": 0.1, "val_loss": 0.1}\\n')
deadline = time.monotonic() + (120 if int(args.get("epochs", "1")) >= 60 else 0.2)
while time.monotonic() < deadline:  # like the real CLI's --parent-pid: end soon after the worker died
    if os.getppid() != parent:
        sys.exit(125)
    time.sleep(0.05)
shutil.copytree(sys.argv[2], out)
"""

LAUNCH_WORKER = "import sys; sys.executable = sys.argv.pop(1); from app.worker import main; main()"


@dataclass
class Fleet:
    a: Server
    b: Server
    workers: list[subprocess.Popen[bytes]]
    model_dir: Path
    runlog: Path
    cluster: Any


def _wrapper(tmp: Path, runlog: Path) -> str:
    (tmp / "fake_trainer.py").write_text(FAKE_TRAINER)
    script = tmp / "python"
    bundle = FIXTURE_MODELS / FIXTURE_VERSION
    script.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{tmp / "fake_trainer.py"}" "{runlog}" "{bundle}" "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


def _start_worker(tmp: Path, n: int, python: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = tmp / f"worker{n}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH_WORKER, python], cwd=ROOT, env=env, stdout=fh, stderr=fh
        )
    wait_for(lambda: "claiming jobs" in log.read_text(), timeout=60, every=0.1)
    return proc


@pytest.fixture(scope="module")
def fleet(pg_cluster: Any, pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("scaleout")
    model_dir = copy_registry(tmp / "models")
    runlog = tmp / "runs.log"
    runlog.touch()
    common = {
        "database_url": pg_url,
        "api_key": KEY,
        "reload_interval_s": str(RELOAD_S),
        "job_queue_size": "50",
        "job_heartbeat_s": "0.5",
        "job_lease_s": "3",
        "job_store_timeout_s": "1",
    }
    env = server_env(model_dir=str(model_dir), providers="cpu", **common)
    python = _wrapper(tmp, runlog)
    with (
        running_server(model_dir, run_jobs="false", **common) as a,
        running_server(model_dir, run_jobs="false", **common) as b,
    ):
        workers = [_start_worker(tmp, n, python, env) for n in (1, 2)]
        try:
            yield Fleet(a, b, workers, model_dir, runlog, pg_cluster)
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(30)


def _submit(server: Server, epochs: int = 1) -> str:
    body = {"closes": CLOSES, "params": {"window": 11, "epochs": epochs}, "promote": "never"}
    response = httpx.post(server.url + "/train", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def _job(server: Server, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/train/{job_id}", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _ended(server: Server, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """The job once it has ended, as ``server`` reports it (a 503 while it reconnects is asked again)."""

    def look() -> dict[str, Any] | None:
        response = httpx.get(f"{server.url}/train/{job_id}", headers=AUTH, timeout=10)
        if response.status_code == 503:
            return None
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    ended: dict[str, Any] = wait_for(look, timeout=timeout, every=0.1)
    return ended


def _forecast(server: Server) -> httpx.Response:
    return httpx.post(server.url + "/forecast", json={"closes": CLOSES[-30:]}, timeout=10)


def test_ten_jobs_sent_to_one_replica_each_run_exactly_once(fleet: Fleet) -> None:
    before = set(os.listdir(fleet.model_dir)) | {".jobs"}
    ids = [_submit(fleet.a) for _ in range(10)]
    ended = [_ended(fleet.b, job_id) for job_id in ids]  # status read from the other replica
    assert [j["status"] for j in ended] == ["succeeded"] * 10, [j.get("error") for j in ended]
    runs = fleet.runlog.read_text().split()
    assert sorted(runs) == sorted(ids)  # every job's trainer started once, none twice
    versions = {j["result"]["version"] for j in ended}
    assert len(versions) == 10 and versions == set(os.listdir(fleet.model_dir)) - before
    listed = httpx.get(fleet.b.url + "/train?limit=20", headers=AUTH, timeout=10).json()
    assert {j["job_id"] for j in listed["jobs"]} >= set(ids)


def test_a_promotion_through_one_replica_is_served_by_the_other(fleet: Fleet) -> None:
    target = _ended(fleet.a, _submit(fleet.a))["result"]["version"]
    promoted = httpx.post(f"{fleet.a.url}/models/{target}/promote", headers=AUTH, timeout=30)
    assert promoted.status_code == 200, promoted.text
    sent = time.monotonic()
    wait_for(lambda: _forecast(fleet.b).json()["model_version"] == target, timeout=10, every=0.05)
    assert time.monotonic() - sent < RELOAD_S + 2.0  # notified at once; polling would take RELOAD_S
    assert httpx.get(fleet.b.url + "/models", timeout=10).json()["current"] == target


def _children(pid: int) -> list[int]:
    """Child processes of ``pid``, started by any of its threads (Linux ``/proc``)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def test_a_worker_killed_mid_job_fails_its_job_and_the_other_goes_on(fleet: Fleet) -> None:
    long_job = _submit(fleet.a, epochs=60)
    wait_for(lambda: _job(fleet.a, long_job)["status"] == "running", timeout=30)
    wait_for(lambda: long_job in fleet.runlog.read_text(), timeout=30)  # the trainer itself has started
    holder = wait_for(lambda: next((w for w in fleet.workers if _children(w.pid)), None), timeout=30)
    (trainer,) = _children(holder.pid)
    os.kill(holder.pid, signal.SIGKILL)
    ended = _ended(fleet.b, long_job, timeout=30)  # the lease of a dead process is recovered at once
    assert ended["status"] == "failed" and "worker process" in ended["error"], ended
    wait_for(lambda: not Path(f"/proc/{trainer}").exists() or _zombie(trainer), timeout=15)
    assert _ended(fleet.b, _submit(fleet.a), timeout=60)["status"] == "succeeded"  # the other worker goes on
    assert fleet.runlog.read_text().split().count(long_job) == 1  # never started again


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_replicas_keep_serving_while_postgres_restarts_and_reconnect(fleet: Fleet) -> None:
    fleet.cluster.stop("fast")
    try:
        for server in (fleet.a, fleet.b):
            assert _forecast(server).status_code == 200  # the served model is in memory
        refused = httpx.post(
            fleet.a.url + "/train", json={"closes": CLOSES, "promote": "never"}, headers=AUTH, timeout=30
        )
        assert refused.status_code == 503 and "cannot be reached" in refused.json()["detail"], refused.text
        ready = wait_for(
            lambda: (r := httpx.get(fleet.b.url + "/readyz", timeout=5).json())["degraded"] and r
        )
        assert ready["status"] == "ready"
    finally:
        fleet.cluster.start()
    job_id = wait_for(lambda: _try_submit(fleet.a), timeout=60, every=0.5)
    assert _ended(fleet.b, job_id, timeout=60)["status"] == "succeeded"
    wait_for(lambda: httpx.get(fleet.a.url + "/readyz", timeout=5).json()["degraded"] == [], timeout=60)


def _try_submit(server: Server) -> str | None:
    body = {"closes": CLOSES, "params": {"window": 11, "epochs": 1}, "promote": "never"}
    response = httpx.post(server.url + "/train", json=body, headers=AUTH, timeout=30)
    return response.json()["job_id"] if response.status_code == 202 else None
