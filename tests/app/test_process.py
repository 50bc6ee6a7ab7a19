"""The real process: `python -m app` under uvicorn, and what it must never import."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from tests.helpers import FIXTURE_MODELS, free_port, server_env
from tests.synthetic import calm_walk

ROOT = Path(__file__).resolve().parents[2]


def _cpu_env(**values: str) -> dict[str, str]:
    return server_env(**{"providers": "cpu", **values})


def test_serving_never_imports_torch() -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from fastapi.testclient import TestClient
        from app.main import app
        series = {calm_walk()!r}
        with TestClient(app) as client:
            assert client.post("/forecast", json={{"closes": series}}).status_code == 200
            batch = {{"series": [{{"id": "a", "closes": series}}]}}
            assert client.post("/forecast/batch", json=batch).status_code == 200
        print("torch" in sys.modules, any(m.startswith("torch.") for m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        cwd=ROOT,
        env=_cpu_env(model_dir=str(FIXTURE_MODELS)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_python_m_app_serves_until_stopped() -> None:
    port = free_port()
    env = _cpu_env(model_dir=str(FIXTURE_MODELS), port=str(port), log_level="warning")
    server = subprocess.Popen(
        [sys.executable, "-m", "app"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready within 60 s"
            time.sleep(0.1)
        response = httpx.post(f"http://127.0.0.1:{port}/forecast", json={"closes": calm_walk()}, timeout=5)
        assert response.status_code == 200
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert server.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean shutdown


def test_python_m_app_exits_non_zero_without_a_model(tmp_path: Path) -> None:
    env = _cpu_env(model_dir=str(tmp_path), port=str(free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "no servable version of model 'default' in the registry" in done.stderr
    assert str(tmp_path) not in done.stderr  # no filesystem paths in what the service says
