"""The built images, run as real containers: ready, healthy, non-root, seeding and keeping their volume,
training in the cpu image (503 in serve), stopping on SIGTERM.

Skipped where no Docker engine or image is at hand, unless ``CLOSECAST_REQUIRE_DOCKER=1`` (CI builds the
images first; see tests/deploy/containers.py for the settings). Build them as docs/docker-images.md says.
"""

from __future__ import annotations

import signal
from typing import Any

import httpx
import pytest

from closecast import registry
from tests.deploy.containers import (
    IMAGES,
    ROOT,
    Container,
    Docker,
    readme_forecast_body,
    require_docker,
    site,
    unavailable,
)
from tests.helpers import free_port, wait_job_ended
from tests.synthetic import random_walk

KEY = "container-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
UID = 10001
TRAINED = "smoke"  # a named model: its first successful job becomes its current version
TINY = {"window": 11, "hidden_size": 8, "epochs": 3}
GRACEFUL = (0, 128 + signal.SIGTERM)  # docker-init passes on the server's end; 137 would be the SIGKILL
DEFAULT_VERSION = registry.read_current(ROOT / "models" / "default")


def _docker_with(image: str) -> Docker:
    docker = require_docker()
    if not docker.image_present(image):
        unavailable(f"image {image} is not built (docs/docker-images.md says how)")
    return docker


def _forecast(container: Container, **extra: Any) -> dict[str, Any]:
    response = httpx.post(f"{container.url}/forecast", json={**readme_forecast_body(), **extra}, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _uids(container: Container) -> set[int]:
    """The owners of every process in the container (the exec'd reader included)."""
    script = "import os; print(*{os.stat(f'/proc/{p}').st_uid for p in os.listdir('/proc') if p.isdigit()})"
    return {int(u) for u in container.exec("python", "-c", script).split()}


def _assert_stops_gracefully(container: Container) -> None:
    state = container.stop()
    assert not state["Running"]
    assert state["ExitCode"] in GRACEFUL, f"exit {state['ExitCode']} (killed after the grace period?)"
    assert "Application shutdown complete" in container.logs()


def test_serve_image_on_two_ports_of_one_host_network() -> None:
    """Two serve containers side by side: each ready and healthy on its CLOSECAST_PORT, as uid 10001, its
    volume seeded with the default model, answering the docs' forecast, 503 on /train; SIGTERM stops them."""
    docker = _docker_with(IMAGES["serve"])
    with site(docker) as here:
        ports = [free_port(), free_port()]
        while ports[1] == ports[0]:
            ports[1] = free_port()
        image = IMAGES["serve"]
        containers = [here.start(image, here.volume(), port, CLOSECAST_API_KEY=KEY) for port in ports]
        for container in containers:
            ready = container.wait_ready()
            assert ready["model_version"] == DEFAULT_VERSION
            container.wait_health("healthy")
            assert _uids(container) == {UID}
            assert container.exec("cat", "/models/default/current").strip() == DEFAULT_VERSION
            body = _forecast(container)
            assert body["model"] == "default" and body["model_version"] == DEFAULT_VERSION
            assert len(body["forecast"]) == readme_forecast_body()["horizon"]
            refused = {"closes": [1.0] * 50}
            train = httpx.post(f"{container.url}/train", json=refused, headers=AUTH, timeout=30)
            assert train.status_code == 503, train.text
            assert "cannot train" in train.text and "torch" in train.text
        for container in containers:
            _assert_stops_gracefully(container)


def _train(container: Container) -> dict[str, Any]:
    closes = [float(c) for c in random_walk(160, seed=7)]
    payload = {"model": TRAINED, "closes": closes, "params": TINY, "promote": "auto"}
    response = httpx.post(f"{container.url}/train", json=payload, headers=AUTH, timeout=60)
    assert response.status_code == 202, response.text
    job_url = f"{container.url}/train/{response.json()['job_id']}"

    job = wait_job_ended(job_url, AUTH, 600)
    assert job["status"] == "succeeded", f"{job}\n{container.logs()}"
    return job


def test_cpu_image_trains_and_keeps_the_promoted_model_across_restart_and_replacement() -> None:
    """/train in the cpu image promotes a new named model; `docker restart`, then a new container on the same
    volume, still serve it (and the seeded default, not overwritten)."""
    docker = _docker_with(IMAGES["cpu"])
    with site(docker) as here:
        volume, port = here.volume(), free_port()
        first = here.start(IMAGES["cpu"], volume, port, CLOSECAST_API_KEY=KEY)
        first.wait_ready()
        first.wait_health("healthy")
        assert _uids(first) == {UID}
        job = _train(first)
        assert job["result"]["promoted"] is True and job["result"]["model"] == TRAINED
        version = job["result"]["version"]
        assert _forecast(first, model=TRAINED)["model_version"] == version

        first.restart()
        first.wait_ready()
        assert _forecast(first, model=TRAINED)["model_version"] == version
        _assert_stops_gracefully(first)
        first.remove()

        second = here.start(IMAGES["cpu"], volume, port, CLOSECAST_API_KEY=KEY)
        assert second.wait_ready()["model_version"] == DEFAULT_VERSION
        assert _forecast(second, model=TRAINED)["model_version"] == version
        jobs = httpx.get(f"{second.url}/train", headers=AUTH, timeout=30)
        assert jobs.status_code == 200 and job["job_id"] in jobs.text  # the job history stayed too
        _assert_stops_gracefully(second)


@pytest.mark.parametrize("target", sorted(IMAGES))
def test_image_runs_the_project_server_command_as_its_user(target: str) -> None:
    """The image's start command and user, as Docker reports them (what `docker run` starts)."""
    docker = _docker_with(IMAGES[target])
    config = docker.inspect(IMAGES[target])["Config"]
    assert config["Cmd"] == ["closecast"] and not config.get("Entrypoint")
    assert config["User"].split(":")[0] == str(UID)
    assert config["Env"] and "CLOSECAST_PORT=8000" in config["Env"]
    assert "/models" in (config.get("Volumes") or {})
