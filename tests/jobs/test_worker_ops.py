"""``closecast worker`` as an operator sees it, through real processes: ``/healthz`` and Prometheus
``/metrics`` on ``CLOSECAST_WORKER_PORT`` (with PostgreSQL and with the embedded store), health that
follows the database, a taken port refused in one line, the compose healthcheck, and each process's own
``application_name`` in ``pg_stat_activity``. Real training (tiny: 300 closes, 2 epochs)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import (
    ROOT,
    copy_registry,
    free_port,
    require_extra,
    running_server,
    server_env,
    start_cluster_or_skip,
    wait_for,
    wait_job_ended,
)
from tests.jobs.helpers import AUTH, KEY
from tests.synthetic import make_closes

psycopg = require_extra("psycopg", "pg")
require_extra("torch", "train")

TINY = {"window": 11, "hidden_size": 8, "epochs": 2}
FAST = {"job_heartbeat_s": "0.2", "job_lease_s": "2", "job_store_timeout_s": "1"}


@contextmanager
def worker(tmp: Path, **settings: str) -> Iterator[str]:
    """A ``closecast worker`` process on a free health port; its base URL once it claims jobs."""
    port = free_port()
    log = tmp / f"worker-{port}.log"
    env = server_env(providers="cpu", worker_port=str(port), **settings)
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "worker"], cwd=ROOT, env=env, stdout=fh, stderr=fh
        )
    try:
        wait_for(lambda: proc.poll() is None and "claiming jobs" in log.read_text(), timeout=90, every=0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` by name and labels."""
    response = httpx.get(url + "/metrics", timeout=5)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def health(url: str) -> httpx.Response:
    return httpx.get(url + "/healthz", timeout=5)


def test_a_worker_on_postgres_answers_health_counts_its_jobs_and_names_itself(
    pg_url: str, tmp_path: Path
) -> None:
    model_dir = copy_registry(tmp_path / "models")
    common = {"database_url": pg_url, "api_key": KEY, **FAST}
    with (
        running_server(model_dir, run_jobs="false", **common) as api,
        worker(tmp_path, model_dir=str(model_dir), **common) as url,
    ):
        assert health(url).json() == {"status": "ok", "problems": [], "degraded": []}
        before = metrics(url)
        assert (
            before[("closecast_jobs_claimed_total", ())] == 0 and before[("closecast_jobs_running", ())] == 0
        )
        body = {"closes": make_closes(300).tolist(), "params": TINY, "promote": "never"}
        job_id = httpx.post(api.url + "/train", json=body, headers=AUTH, timeout=30).json()["job_id"]

        job = wait_job_ended(f"{api.url}/train/{job_id}", AUTH, 300, every=0.2, request_timeout=10)
        assert job["status"] == "succeeded"
        after = metrics(url)
        with psycopg.connect(pg_url) as conn:
            names = {
                row[0] for row in conn.execute("SELECT application_name FROM pg_stat_activity").fetchall()
            }
    host = socket.gethostname()
    assert after[("closecast_jobs_claimed_total", ())] == 1
    assert after[("closecast_jobs_running", ())] == 0
    assert after[("closecast_jobs_finished_total", (("status", "succeeded"),))] == 1
    assert after[("closecast_job_duration_seconds_count", (("status", "succeeded"),))] == 1
    assert after[("closecast_job_duration_seconds_sum", (("status", "succeeded"),))] > 0
    assert after[("closecast_lease_renewals_total", (("outcome", "held"),))] >= 1
    assert after[("closecast_background_up", (("task", "jobs"),))] == 1
    assert {f"closecast-api@{host}", f"closecast-worker@{host}"} <= names, names


def test_a_workers_health_is_503_while_its_database_is_down_and_200_once_back(tmp_path: Path) -> None:
    cluster = start_cluster_or_skip()  # a cluster of its own: this test stops it
    try:
        model_dir = copy_registry(tmp_path / "models")
        with worker(tmp_path, model_dir=str(model_dir), database_url=cluster.url(), **FAST) as url:
            assert health(url).status_code == 200
            cluster.stop()
            down = wait_for(lambda: (r := health(url)).status_code == 503 and r, timeout=30, every=0.2)
            assert down.json()["status"] == "unhealthy"
            assert any(p.startswith("store: ") and "PostgreSQL" in p for p in down.json()["problems"]), (
                down.text
            )
            cluster.start()
            wait_for(lambda: health(url).status_code == 200, timeout=30, every=0.2)
    finally:
        cluster.destroy()


def test_a_worker_on_the_embedded_store_serves_health_and_metrics(tmp_path: Path) -> None:
    model_dir = copy_registry(tmp_path / "models")
    with worker(tmp_path, model_dir=str(model_dir)) as url:
        assert health(url).json()["status"] == "ok"
        assert metrics(url)[("closecast_jobs_claimed_total", ())] == 0
        missing = httpx.get(url + "/nothing?x=1", timeout=5)
        assert missing.status_code == 404
        assert "'/nothing'" in missing.json()["detail"]


def test_a_taken_worker_port_ends_the_worker_in_one_line_with_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = server_env(model_dir=str(copy_registry(tmp_path / "models")), worker_port=str(port))
        done = subprocess.run(
            [sys.executable, "-m", "app", "worker"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"closecast worker: CLOSECAST_WORKER_PORT {port} on 127.0.0.1: Address already in use; set another "
        "port, or 0 for no health and metrics endpoint"
    )


def test_the_worker_imports_no_web_framework() -> None:
    code = "import sys, app.worker; print(sorted({'fastapi', 'starlette', 'uvicorn'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_the_compose_workers_healthcheck_passes_on_a_healthy_worker_and_fails_without_one(
    tmp_path: Path,
) -> None:
    yaml = require_extra("yaml", "dev")
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    check = compose["services"]["worker"]["healthcheck"]
    assert check["test"][:2] == ["CMD", "python"] and not check.get("disable")
    command = [sys.executable, *check["test"][2:]]  # the image's python: this one here
    model_dir = copy_registry(tmp_path / "models")
    with worker(tmp_path, model_dir=str(model_dir)) as url:
        port = url.rsplit(":", 1)[1]
        env = server_env(worker_port=port)
        assert subprocess.run(command, env=env, capture_output=True, timeout=15).returncode == 0
    assert subprocess.run(command, env=env, capture_output=True, timeout=15).returncode != 0
