"""Scale-out as containers of the built images, sharing nothing but PostgreSQL and a bucket: two replicas of
the serve image and one worker of the cpu image (``closecast worker``, which trains), each with its own empty
``/models`` volume (a cache), against a throwaway PostgreSQL (``tests/postgres.py``) and moto's S3 server
(``tests/s3.py``), both host processes reached over the host network.

The bucket is seeded with the image's default model; a job sent to one replica is trained by the worker and
served by the other; a replica started on an empty database with the same bucket serves the last promoted
version. Skipped like tests/deploy/test_containers.py where Docker or an image is missing (a failure with
``CLOSECAST_REQUIRE_DOCKER=1``, as are a missing PostgreSQL or moto there).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.storage.s3 import S3Store
from closecast import registry
from closecast.objectstore import StoreRegistry
from tests.deploy.containers import IMAGES, ROOT, Container, Docker, require_docker, site, unavailable
from tests.helpers import free_port, wait_for, wait_job_ended
from tests.postgres import Cluster, start_cluster
from tests.s3 import S3Server, start_s3
from tests.synthetic import random_walk

KEY = "container-scaleout-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
TINY = {"window": 11, "hidden_size": 8, "epochs": 1}  # seconds of training on one thread
DEFAULT = "default"
DEFAULT_VERSION = registry.read_current(ROOT / "models" / DEFAULT)
WORKER = ("closecast", "worker")


@pytest.fixture(scope="module")
def docker() -> Docker:
    found = require_docker()
    for image in IMAGES.values():
        if not found.image_present(image):
            unavailable(f"image {image} is not built (docs/docker-images.md says how)")
    return found


@pytest.fixture(scope="module")
def cluster(docker: Docker) -> Iterator[Cluster]:
    """PostgreSQL on a loopback port of the host, which ``--network host`` containers reach."""
    started = start_cluster()
    if isinstance(started, str):
        unavailable(started)
        return
    yield started
    started.destroy()


@pytest.fixture(scope="module")
def s3(docker: Docker) -> Iterator[S3Server]:
    started = start_s3()
    if isinstance(started, str):
        unavailable(started)
        return
    yield started
    started.stop()


@pytest.fixture(scope="module")
def shape(
    docker: Docker, cluster: Cluster, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The replicas ``a`` and ``b``, the ``worker``, the settings they share (``env``), the ``site``."""
    env = {
        "CLOSECAST_DATABASE_URL": cluster.create_database("containers"),
        "CLOSECAST_MODEL_STORE": f"s3://{s3.new_bucket()}/closecast",
        "CLOSECAST_API_KEY": KEY,
        "CLOSECAST_RELOAD_INTERVAL_S": "0.5",
        "CLOSECAST_JOB_HEARTBEAT_S": "0.5",
        "CLOSECAST_JOB_LEASE_S": "5",
        "CLOSECAST_TRAIN_THREADS": "1",
        **s3.env(),
    }
    with site(docker) as here, pytest.MonkeyPatch.context() as patch:
        for name, value in s3.env().items():  # this process inspects the bucket too
            patch.setenv(name, value)
        replica = {**env, "CLOSECAST_RUN_JOBS": "false"}
        a = here.start(IMAGES["serve"], here.volume(), free_port(), **replica)
        a.wait_ready()  # the first to start seeds the bucket; the others find it seeded
        b = here.start(IMAGES["serve"], here.volume(), _other_port(a), **replica)
        worker = here.start(IMAGES["cpu"], here.volume(), free_port(), WORKER, **env)
        b.wait_ready()
        wait_for(lambda: _running(worker) and "claiming jobs" in worker.logs(), timeout=180, every=0.5)
        yield {"a": a, "b": b, "worker": worker, "env": replica, "site": here, "cluster": cluster}


def _other_port(*taken: Container) -> int:
    port = free_port()
    while port in {c.port for c in taken}:
        port = free_port()
    return port


def _running(container: Container) -> bool:
    state = container.state()
    if not state["Running"]:
        pytest.fail(f"{container.name} exited ({state['ExitCode']}):\n{container.logs()}")
    return True


def _served(container: Container, model: str | None = None) -> str:
    body: dict[str, Any] = {"closes": [float(c) for c in random_walk(40, seed=3)]}
    if model is not None:
        body["model"] = model
    response = httpx.post(f"{container.url}/forecast", json=body, timeout=30)
    assert response.status_code == 200, f"{response.text}\n{container.logs()}"
    version: str = response.json()["model_version"]
    return version


def _bundles(env: dict[str, str], tmp: Path) -> StoreRegistry:
    return StoreRegistry(S3Store(env["CLOSECAST_MODEL_STORE"]), tmp)


def test_the_bucket_is_seeded_with_the_image_default_and_each_cache_starts_empty(
    shape: dict[str, Any], tmp_path: Path
) -> None:
    bundles = _bundles(shape["env"], tmp_path)
    assert bundles.versions(DEFAULT) == [DEFAULT_VERSION]
    assert bundles.read_pointer(DEFAULT)[0] == DEFAULT_VERSION
    for name in ("a", "b"):
        container: Container = shape[name]
        assert _served(container) == DEFAULT_VERSION
        # the volume is a cache: the bundle came from the bucket; the pointer lives in the database
        cached = container.exec("ls", "-A", f"/models/{DEFAULT}").split()
        assert cached == [DEFAULT_VERSION], cached


def test_a_job_sent_to_one_replica_is_trained_by_the_worker_container_and_served_by_the_other(
    shape: dict[str, Any], tmp_path: Path
) -> None:
    a, b, worker = shape["a"], shape["b"], shape["worker"]
    closes = [float(c) for c in random_walk(160, seed=7)]
    body = {"model": DEFAULT, "closes": closes, "params": TINY, "promote": "always"}
    sent = httpx.post(f"{a.url}/train", json=body, headers=AUTH, timeout=60)
    assert sent.status_code == 202, sent.text
    job_url = f"{b.url}/train/{sent.json()['job_id']}"  # the other replica sees the job's progress

    job = wait_job_ended(job_url, AUTH, 600)
    assert job["status"] == "succeeded" and job["result"]["promoted"] is True, f"{job}\n{worker.logs()}"
    version = job["result"]["version"]
    wait_for(lambda: _served(b) == version, timeout=60, every=0.5)
    assert _served(a) == version
    assert version in worker.exec("ls", "-A", f"/models/{DEFAULT}").split()  # trained in the worker
    bundles = _bundles(shape["env"], tmp_path)
    assert bundles.versions(DEFAULT) == sorted([DEFAULT_VERSION, version])
    assert bundles.read_pointer(DEFAULT)[0] == version
    shape["promoted"] = version


def test_a_replica_container_on_an_empty_database_serves_the_last_promoted_version(
    shape: dict[str, Any],
) -> None:
    promoted = shape.get("promoted")
    if promoted is None:
        pytest.fail("the training test did not promote a version (run the module whole)")
    fresh = {**shape["env"], "CLOSECAST_DATABASE_URL": shape["cluster"].create_database("cold")}
    here = shape["site"]
    cold = here.start(IMAGES["serve"], here.volume(), _other_port(shape["a"], shape["b"]), **fresh)
    cold.wait_ready()
    assert _served(cold) == promoted
    listed = httpx.get(f"{cold.url}/models", timeout=30).json()["models"]
    assert {m["model"]: m["current_version"] for m in listed} == {DEFAULT: promoted}
