"""A bad `current` pointer never strands a worker: it serves the last promoted version that verifies."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from closecast import registry
from tests.helpers import DEFAULT, FIXTURE_BUNDLE, FIXTURE_VERSION, make_settings, running_server
from tests.synthetic import calm_walk

UNPROMOTED = "20991231T000000Z-0unchosen"
BAD_POINTERS = [b"", b"hello", b"\xff\xfe binary", b"../models", b"20991231T000000Z-notthere\n"]


def _served(client: TestClient) -> str:
    version: str = client.post("/forecast", json={"closes": calm_walk()}).json()["model_version"]
    return version


def _fallbacks(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('closecast_pointer_fallbacks_total{model="default"} '):
            return float(line.split()[1])
    raise AssertionError("no closecast_pointer_fallbacks_total in /metrics")


@pytest.fixture
def registry_with_unpromoted(model_dir: Path) -> Path:
    """The fixture registry plus a newer version that was registered but never promoted."""
    shutil.copytree(FIXTURE_BUNDLE, model_dir / DEFAULT / UNPROMOTED)
    return model_dir


@pytest.mark.parametrize("content", BAD_POINTERS, ids=["empty", "text", "binary", "traversal", "absent"])
def test_start_with_a_bad_pointer_serves_the_last_promoted_version(
    registry_with_unpromoted: Path, content: bytes
) -> None:
    (registry_with_unpromoted / DEFAULT / "current").write_bytes(content)
    with TestClient(create_app(make_settings(registry_with_unpromoted))) as c:
        assert c.get("/readyz").status_code == 200
        assert _served(c) == FIXTURE_VERSION
        assert _fallbacks(c) == 1.0
        listing = c.get("/models")
        assert listing.status_code == 200, listing.text
        promoted = c.post(
            f"/models/{FIXTURE_VERSION}/promote", headers={"Authorization": "Bearer " + "k" * 16}
        )
        assert promoted.status_code in (200, 403), promoted.text  # never a false 404 or a 500


def test_start_with_a_pointer_to_a_damaged_bundle_serves_the_previous_promotion(model_dir: Path) -> None:
    damaged = model_dir / DEFAULT / UNPROMOTED
    shutil.copytree(FIXTURE_BUNDLE, damaged)
    registry.set_current(model_dir / DEFAULT, UNPROMOTED)
    (damaged / "scaler.json").write_text("{}")
    with TestClient(create_app(make_settings(model_dir))) as c:
        assert _served(c) == FIXTURE_VERSION
        assert _fallbacks(c) == 1.0


def test_promote_repairs_a_binary_pointer(registry_with_unpromoted: Path) -> None:
    (registry_with_unpromoted / DEFAULT / "current").write_bytes(b"\xff\xfe")
    key = "a-test-key-of-enough-length"
    settings = make_settings(registry_with_unpromoted, api_key=key)
    with TestClient(create_app(settings)) as c:
        answer = c.post(f"/models/{UNPROMOTED}/promote", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200, answer.text
        assert registry.read_pointer(registry_with_unpromoted / DEFAULT).version == UNPROMOTED


def test_no_promoted_version_refuses_to_start_and_says_why(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE_BUNDLE, tmp_path / DEFAULT / UNPROMOTED)
    expected = "the `current` pointer is missing and no promoted version verifies"
    with pytest.raises(Exception, match=expected), TestClient(create_app(make_settings(tmp_path))):
        pass


def test_running_server_ignores_a_deleted_pointer(registry_with_unpromoted: Path) -> None:
    """A real `python -m app`: deleting `current` keeps the promoted model, never the newest directory."""
    with running_server(registry_with_unpromoted, reload_interval_s="0.1") as server:
        (registry_with_unpromoted / DEFAULT / "current").unlink()
        time.sleep(1.0)  # ten reload intervals
        answer = httpx.post(f"{server.url}/forecast", json={"closes": calm_walk()}, timeout=5).json()
        assert answer["model_version"] == FIXTURE_VERSION
        metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
        assert 'closecast_pointer_fallbacks_total{model="default"} 1.0' in metrics
    stderr = server.stderr
    assert "the `current` pointer is missing; serving" in stderr
    assert str(registry_with_unpromoted) not in stderr
