"""Scale-out with nothing shared but PostgreSQL and a bucket, through real processes on loopback: two API
replicas that only enqueue and one worker (``python -m app.worker``, real training), each with its own EMPTY
model dir, against a real S3-compatible server (moto's) and a throwaway PostgreSQL.

The bucket is seeded with the default model by the first process to start; a job sent to one replica is
trained by the worker, uploaded, promoted and served by the other; a replica started on an empty database
with the same bucket serves the last promoted version of every model.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.storage.s3 import S3Store
from closecast.objectstore import StoreRegistry
from tests.helpers import (
    DEFAULT,
    FIXTURE_MODELS,
    FIXTURE_VERSION,
    ROOT,
    SYNTHETIC_CSV,
    Server,
    running_server,
    server_env,
    wait_for,
)
from tests.jobs.helpers import AUTH, KEY
from tests.s3 import S3Server

CLOSES = [float(row["Close"]) for row in csv.DictReader(SYNTHETIC_CSV.read_text().splitlines())]
TINY = {"window": 11, "epochs": 1, "hidden_size": 8}  # seconds of training on one thread


@dataclass
class Fleet:
    a: Server
    b: Server
    worker: subprocess.Popen[bytes]
    dirs: list[Path]
    store_url: str
    common: dict[str, str]
    tmp: Path

    @property
    def bundles(self) -> StoreRegistry:
        return StoreRegistry(S3Store(self.store_url), self.tmp / "inspect")


def _start_worker(log: Path, model_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.worker"],
            cwd=ROOT,
            env=server_env(model_dir=str(model_dir), providers="cpu", **env),
            stdout=fh,
            stderr=fh,
        )
    wait_for(lambda: proc.poll() is None and "claiming jobs" in log.read_text(), timeout=90, every=0.1)
    return proc


@pytest.fixture(scope="module")
def fleet(
    pg_url: str, s3_server: S3Server, aws_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("s3scale")
    store_url = f"s3://{s3_server.new_bucket()}/closecast"
    common = {
        "database_url": pg_url,
        "model_store": store_url,
        "default_model_dir": str(FIXTURE_MODELS),  # what an empty bucket is seeded with
        "api_key": KEY,
        "reload_interval_s": "0.5",
        "job_heartbeat_s": "0.5",
        "job_lease_s": "5",
        "train_threads": "1",
    }
    dirs = [tmp / name for name in ("a", "b", "worker")]
    with (
        running_server(dirs[0], run_jobs="false", **common) as a,
        running_server(dirs[1], run_jobs="false", **common) as b,
    ):
        worker = _start_worker(tmp / "worker.log", dirs[2], common)
        try:
            yield Fleet(a, b, worker, dirs, store_url, common, tmp)
        finally:
            worker.terminate()
            worker.wait(30)


def _forecast(server: Server, model: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"closes": CLOSES[-30:], **({"model": model} if model else {})}
    response = httpx.post(server.url + "/forecast", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _train(server: Server, model: str, promote: str) -> str:
    body = {"closes": CLOSES, "params": TINY, "promote": promote, "model": model}
    response = httpx.post(server.url + "/train", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def _ended(server: Server, job_id: str) -> dict[str, Any]:
    def look() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(f"{server.url}/train/{job_id}", headers=AUTH, timeout=10).json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    ended: dict[str, Any] = wait_for(look, timeout=240, every=0.2)
    return ended


def _served(server: Server, model: str | None = None) -> str:
    version: str = _forecast(server, model)["model_version"]
    return version


def test_the_bucket_is_seeded_and_every_process_serves_from_its_own_empty_dir(fleet: Fleet) -> None:
    bundles = fleet.bundles
    assert bundles.versions(DEFAULT) == [FIXTURE_VERSION]
    assert bundles.read_pointer(DEFAULT)[0] == FIXTURE_VERSION
    assert _served(fleet.a) == _served(fleet.b) == FIXTURE_VERSION
    for model_dir in fleet.dirs:  # a cache: the bundle was downloaded; no pointer file, no job store here
        assert (model_dir / DEFAULT / FIXTURE_VERSION / "manifest.json").is_file()
        assert not (model_dir / DEFAULT / "current").exists() and not (model_dir / "jobs.sqlite").exists()


def test_a_job_sent_to_one_replica_is_trained_by_the_worker_and_served_by_the_other(fleet: Fleet) -> None:
    ended = _ended(fleet.b, _train(fleet.a, DEFAULT, "always"))
    assert ended["status"] == "succeeded" and ended["result"]["promoted"] is True, ended
    version = ended["result"]["version"]
    wait_for(lambda: _served(fleet.b) == version, timeout=30)
    assert _served(fleet.a) == version
    assert not (fleet.dirs[0] / ".jobs").exists() or not any((fleet.dirs[0] / ".jobs").iterdir())
    bundles = fleet.bundles
    assert version in bundles.versions(DEFAULT)
    pointed, history = bundles.read_pointer(DEFAULT)  # the pointer copy follows every promotion
    assert pointed == version and history[-1].version == version and history[-1].previous == FIXTURE_VERSION
    assert not [k for k in S3Store(fleet.store_url).keys(".jobs/")]  # the job's data went with it


def test_a_new_model_trained_through_one_replica_is_served_by_the_other(fleet: Fleet) -> None:
    ended = _ended(fleet.a, _train(fleet.b, "aapl", "auto"))
    assert ended["status"] == "succeeded" and ended["result"]["promoted"] is True, ended
    version = ended["result"]["version"]
    assert _served(fleet.a, "aapl") == version  # the replica never had the model: fetched on first use
    assert (fleet.dirs[0] / "aapl" / version / "manifest.json").is_file()
    assert fleet.bundles.read_pointer("aapl")[0] == version


def test_a_replica_on_an_empty_database_serves_the_last_promoted_version_of_every_model(
    fleet: Fleet, pg_cluster: Any
) -> None:
    expected = {DEFAULT: _served(fleet.a), "aapl": _served(fleet.a, "aapl")}
    assert expected[DEFAULT] != FIXTURE_VERSION  # the earlier tests promoted through jobs
    fresh = {**fleet.common, "database_url": pg_cluster.create_database()}
    with running_server(fleet.tmp / "cold", run_jobs="false", **fresh) as cold:
        assert _served(cold) == expected[DEFAULT]
        assert _served(cold, "aapl") == expected["aapl"]
        listed = httpx.get(cold.url + "/models", timeout=10).json()["models"]
        assert {m["model"]: m["current_version"] for m in listed} == expected


def test_a_database_with_a_pointer_keeps_it_and_rewrites_a_differing_copy(fleet: Fleet) -> None:
    served = _served(fleet.a)
    bundles = fleet.bundles
    _, history = bundles.read_pointer(DEFAULT)
    bundles.write_pointer(DEFAULT, FIXTURE_VERSION, history[:1])  # someone restored an old copy
    with running_server(fleet.tmp / "late", run_jobs="false", **fleet.common) as late:
        assert _served(late) == served
    assert "the database is kept" in late.stderr
    assert bundles.read_pointer(DEFAULT) == (served, history)
