"""Real containers of the built images, for tests/deploy/test_containers.py.

Containers run with ``--network host`` (the Docker engines this runs on have no bridge network) and ``--init``
(as the docs say), each on its own ``CLOSECAST_PORT`` and its own named volume. Everything is labelled, so a
test's containers and volumes go away with it, even after a failure.

Settings (environment):
- ``CLOSECAST_DOCKER``: the docker client (default ``/usr/bin/docker`` when present, else ``docker`` on PATH);
- ``CLOSECAST_IMAGE_SERVE`` / ``CLOSECAST_IMAGE_CPU``: the images under test (default ``closecast:serve``
  and ``closecast:cpu``, the tags the docs build);
- ``CLOSECAST_REQUIRE_DOCKER=1``: a missing engine or image fails the tests instead of skipping them (CI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
LABEL = "closecast.test=containers"
IMAGES = {
    "serve": os.environ.get("CLOSECAST_IMAGE_SERVE", "closecast:serve"),
    "cpu": os.environ.get("CLOSECAST_IMAGE_CPU", "closecast:cpu"),
}
REQUIRED = os.environ.get("CLOSECAST_REQUIRE_DOCKER") == "1"
READY_WITHIN_S = 180.0  # a cold start on a loaded 2-core machine; a healthy one is ready in seconds
STOP_GRACE_S = 20


def docker_client() -> str | None:
    chosen = os.environ.get("CLOSECAST_DOCKER")
    if chosen:
        return chosen
    return "/usr/bin/docker" if Path("/usr/bin/docker").is_file() else shutil.which("docker")


def unavailable(message: str) -> None:
    """Skip (a machine without Docker), or fail where the images must be tested."""
    if REQUIRED:
        pytest.fail(f"{message} (CLOSECAST_REQUIRE_DOCKER=1)")
    pytest.skip(message)


class Docker:
    """The docker client, with the few calls the tests make."""

    def __init__(self, client: str) -> None:
        self.client = client

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.client, *args], capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {result.returncode}: {result.stderr.strip()}")
        return result

    def inspect(self, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.run("inspect", name).stdout)
        return found[0]

    def image_present(self, image: str) -> bool:
        return self.run("image", "inspect", image, check=False).returncode == 0


def require_docker() -> Docker:
    client = docker_client()
    if client is None:
        unavailable("no docker client")
    docker = Docker(str(client))
    info = docker.run("info", "--format", "{{.ServerVersion}}", check=False, timeout=30)
    if info.returncode != 0:
        unavailable(f"no Docker engine answers: {info.stderr.strip()[:200]}")
    return docker


@dataclass
class Container:
    """One running container of an image, on the host network at ``port``, with ``volume`` on /models."""

    docker: Docker
    name: str
    image: str
    volume: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()  # in place of the image's CMD (e.g. `closecast worker`)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**self.env, "CLOSECAST_PORT": str(self.port)}
        self.docker.run(
            "run", "-d", "--init", "--network", "host", "--name", self.name, "--label", LABEL,
            "-v", f"{self.volume}:/models", *[a for k, v in env.items() for a in ("-e", f"{k}={v}")],
            "--health-interval", "1s", "--health-start-period", "120s", "--stop-timeout", str(STOP_GRACE_S),
            self.image, *self.command,
        )  # fmt: skip

    def state(self) -> dict[str, Any]:
        value: dict[str, Any] = self.docker.inspect(self.name)["State"]
        return value

    def logs(self) -> str:
        result = self.docker.run("logs", self.name, check=False)
        return result.stdout + result.stderr

    def wait_ready(self) -> dict[str, Any]:
        """/readyz's body once it answers 200; fails (with the log) if the container exits or is too slow."""
        deadline = time.monotonic() + READY_WITHIN_S
        while True:
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=5)
                if response.status_code == 200:
                    body: dict[str, Any] = response.json()
                    return body
            except httpx.HTTPError:
                pass
            state = self.state()
            if not state["Running"]:
                pytest.fail(f"{self.name} exited ({state['ExitCode']}):\n{self.logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not ready within {READY_WITHIN_S} s:\n{self.logs()}")
            time.sleep(0.5)

    def wait_health(self, status: str = "healthy") -> None:
        """Until Docker's own HEALTHCHECK bookkeeping says ``status``."""
        deadline = time.monotonic() + READY_WITHIN_S
        while (health := self.state().get("Health") or {}).get("Status") != status:
            if time.monotonic() > deadline:
                log = json.dumps(health.get("Log", [])[-3:], indent=1)
                pytest.fail(f"{self.name} not {status} within {READY_WITHIN_S} s; last checks:\n{log}")
            time.sleep(0.5)

    def exec(self, *argv: str) -> str:
        return self.docker.run("exec", self.name, *argv).stdout

    def stop(self) -> dict[str, Any]:
        """``docker stop`` (SIGTERM, then SIGKILL after the grace period); the state it left."""
        self.docker.run("stop", "-t", str(STOP_GRACE_S), self.name, timeout=STOP_GRACE_S + 60)
        return self.state()

    def restart(self) -> None:
        self.docker.run("restart", "-t", str(STOP_GRACE_S), self.name, timeout=STOP_GRACE_S + 60)

    def remove(self) -> None:
        self.docker.run("rm", "-f", self.name, check=False)


class Site:
    """The containers and volumes one test makes; all removed when it ends."""

    def __init__(self, docker: Docker) -> None:
        self.docker = docker
        self.tag = uuid.uuid4().hex[:8]
        self.containers: list[Container] = []
        self.volumes: list[str] = []

    def volume(self) -> str:
        name = f"closecast-test-{self.tag}-{len(self.volumes)}"
        self.docker.run("volume", "create", "--label", LABEL, name)
        self.volumes.append(name)
        return name

    def start(
        self, image: str, volume: str, port: int, command: tuple[str, ...] = (), **env: str
    ) -> Container:
        name = f"closecast-test-{self.tag}-c{len(self.containers)}"
        container = Container(self.docker, name, image, volume, port, env, command)
        self.containers.append(container)
        container.start()
        return container

    def close(self) -> None:
        for container in self.containers:
            container.remove()
        for volume in self.volumes:
            self.docker.run("volume", "rm", "-f", volume, check=False)


@contextmanager
def site(docker: Docker) -> Iterator[Site]:
    made = Site(docker)
    try:
        yield made
    finally:
        made.close()


def readme_forecast_body() -> dict[str, Any]:
    """The JSON body of the first complete ``/forecast`` curl example in the user docs (README.md, docs/)."""
    pattern = re.compile(r"curl [^\n]*localhost:8000/forecast [^\n]*\\\n\s*-d '(\{.*?\})'", re.DOTALL)
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]:
        if not doc.is_file():
            continue
        for match in pattern.finditer(doc.read_text(encoding="utf-8")):
            try:
                body: dict[str, Any] = json.loads(match.group(1))
            except json.JSONDecodeError:
                continue  # an example with "..." in it
            if "closes" in body:
                return body
    raise AssertionError("no complete `curl ... localhost:8000/forecast -d '{...}'` example in the docs")
