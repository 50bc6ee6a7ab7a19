"""Helpers every test package shares, defined once: the fixture registry's paths, settings for a test app,
private copies of the registry, and real server processes on loopback."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from closecast import registry

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEFAULT = "default"
SYNTHETIC_CSV = FIXTURES / "synthetic.csv"  # the closes the closes-only fixture models were trained on


def _bundle_of(models: Path) -> Path:
    """The bundle ``current`` names in the committed registry ``models`` (model ``default``)."""
    return models / DEFAULT / (registry.read_current(models / DEFAULT) or "missing")


# The committed registries, each a model `default` with one version and its `current`
# (format 2 made by tests/fixtures/make_fixtures.py):
FORMAT2_MODELS = FIXTURES / "format2"  # format 2, closes only: what the service tests serve
FORMAT2_BUNDLE = _bundle_of(FORMAT2_MODELS)
OHLCV_MODELS = FIXTURES / "format2_ohlcv"  # format 2 reading high, low, open and volume
OHLCV_BUNDLE = _bundle_of(OHLCV_MODELS)
OHLCV_FEATURES = ("high", "low", "open", "volume")
FORMAT1_MODELS = FIXTURES / "models"  # format 1: bundles made before format 2 must keep loading
FORMAT1_BUNDLE = _bundle_of(FORMAT1_MODELS)
FORMAT1_VERSION = FORMAT1_BUNDLE.name

FIXTURE_MODELS = FORMAT2_MODELS  # the registry most tests serve
FIXTURE_BUNDLE = FORMAT2_BUNDLE
FIXTURE_VERSION = FIXTURE_BUNDLE.name


REQUIRE_POSTGRES = os.environ.get("CLOSECAST_REQUIRE_POSTGRES") == "1"  # read once: tests clear CLOSECAST_*


def require_extra(module: str, extra: str) -> Any:
    """``module`` from the optional dependency set ``extra``, or a skip of the calling test module saying how
    to install it. The PostgreSQL tests fail instead under ``CLOSECAST_REQUIRE_POSTGRES=1`` (CI), so CI
    cannot go green without them."""
    if extra == "pg" and REQUIRE_POSTGRES:
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} is not installed: pip install -e '.[{extra}]'")


def start_cluster_or_skip() -> Any:
    """A PostgreSQL server of the caller's own on a loopback port (``tests/postgres.py``; the caller destroys
    it), or a skip saying why: a failure under ``CLOSECAST_REQUIRE_POSTGRES=1`` (CI)."""
    try:
        from tests.postgres import start_cluster
    except ImportError as exc:  # psycopg missing: the `pg` extra is not installed
        problem = f"psycopg is not installed ({exc}); pip install -e '.[pg]'"
    else:
        cluster = start_cluster()
        if not isinstance(cluster, str):
            return cluster
        problem = cluster
    if REQUIRE_POSTGRES:
        pytest.fail(f"CLOSECAST_REQUIRE_POSTGRES=1 but {problem}")
    pytest.skip(problem)


def make_settings(model_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test app: CPU only, a quick pointer watcher, the no-op endpoint on, one train thread."""
    values: dict[str, Any] = {
        "model_dir": model_dir,
        "providers": "cpu",
        "reload_interval_s": 0.05,
        "enable_noop": True,
        "train_threads": 1,
        **overrides,
    }
    return Settings(**values)


def copy_registry(target: Path, source: Path | None = None) -> Path:
    """A private copy of the fixture registry (or ``source``) at ``target``, for tests that change it."""
    shutil.copytree(FIXTURE_MODELS if source is None else source, target)
    return target


def default_dir(root: Path) -> Path:
    """The default model's directory in the registry ``root``."""
    return root / DEFAULT


def detail_msgs(response: Any) -> list[str]:
    """The messages of a 422 answer's ``detail`` list."""
    return [d["msg"] for d in response.json()["detail"]]


# --- real server processes ---------------------------------------------------------------------------------

ROOT = FIXTURES.parents[1]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(**values: str) -> dict[str, str]:
    """This environment minus the developer's ``CLOSECAST_*``, plus ``values`` as ``CLOSECAST_<NAME>``.

    A worker's health port is off unless given (``worker_port``): tests run several workers on one host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSECAST_")}
    return {**env, **{f"CLOSECAST_{k.upper()}": v for k, v in {"worker_port": "0", **values}.items()}}


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, every: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        time.sleep(every)
    return value


def wait_job_ended(
    job_url: str, headers: dict[str, str], timeout: float, every: float = 1.0, request_timeout: float = 30
) -> dict[str, Any]:
    """Poll a job (``GET /train/{id}``) through a real server until it succeeded, failed or was cancelled;
    its last state."""

    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(job_url, headers=headers, timeout=request_timeout).json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job: dict[str, Any] = wait_for(ended, timeout, every=every)
    return job


@dataclass
class Server:
    """A running ``python -m app``: its process and base URL; ``stderr`` is filled once it has stopped."""

    proc: subprocess.Popen[str]
    url: str
    stderr: str = ""


@contextmanager
def running_server(model_dir: Path, ready_path: str = "/readyz", **settings: str) -> Iterator[Server]:
    """``python -m app`` on a free loopback port over ``model_dir`` (CPU), yielded once ``ready_path`` is 200;
    terminated (SIGTERM, then SIGKILL) on exit, its stderr kept in ``Server.stderr``."""
    port = free_port()
    env = server_env(model_dir=str(model_dir), port=str(port), **{"providers": "cpu", **settings})
    # stderr goes to a file, not a pipe: a pipe nobody reads fills (64 KiB) and blocks the server's logging
    errors = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=errors,
        text=True,
    )
    server = Server(proc, f"http://127.0.0.1:{port}")

    def logged() -> str:
        errors.seek(0)
        return errors.read()

    def ready() -> bool:
        assert proc.poll() is None, f"the server exited with {proc.returncode}: {logged()}"
        try:
            return httpx.get(server.url + ready_path, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, timeout=60, every=0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        server.stderr = logged()
        errors.close()
