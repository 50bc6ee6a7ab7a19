"""A throwaway S3-compatible server for the tests: moto's server mode (``python -m moto.server``) on a free
loopback port, in its own process, speaking the real S3 HTTP API to boto3.

``tests/storage/conftest.py`` starts one per test module (``s3_server``) and gives each test a fresh bucket
(``s3_env``: the ``AWS_*`` settings a closecast process reads). Where moto is missing the tests are skipped,
unless ``CLOSECAST_REQUIRE_S3=1`` (CI) turns the skip into a failure.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import uuid
from dataclasses import dataclass

import httpx

from tests.helpers import free_port, wait_for

REQUIRE_ENV = "CLOSECAST_REQUIRE_S3"


@dataclass
class S3Server:
    """One moto server process; ``env`` points boto3 at it, ``new_bucket`` makes an empty bucket."""

    process: subprocess.Popen[bytes]
    url: str

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def new_bucket(self) -> str:
        """A fresh bucket's name (created through the S3 API: ``PUT /<bucket>``)."""
        name = f"closecast-{uuid.uuid4().hex[:12]}"
        response = httpx.put(f"{self.url}/{name}", timeout=10)
        response.raise_for_status()
        return name

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start_s3() -> S3Server | str:
    """A running server, or why there is none (to skip with)."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("werkzeug") is None:
        return "moto[server] is not installed; pip install -e '.[dev]'"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = S3Server(process, f"http://127.0.0.1:{port}")

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"moto.server exited with {process.returncode}")
        try:
            return httpx.get(server.url + "/moto-api/", timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=60, every=0.1)
    except (RuntimeError, TimeoutError) as exc:
        server.stop()
        return f"could not start moto.server: {exc}"
    return server
