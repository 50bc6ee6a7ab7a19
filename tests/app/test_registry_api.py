"""The registry API through the real app: how each version was made (card and ``/versions``) and the
promotion history, on both pointer backends (files and PostgreSQL)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.helpers import DEFAULT, FIXTURE_VERSION, copy_registry
from tests.jobs.helpers import AUTH, trainer_settings

SECOND = "20261124T000000Z-second00"


def _manifest(model_dir: Path, version: str = FIXTURE_VERSION) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((model_dir / DEFAULT / version / "manifest.json").read_text())
    return loaded


@pytest.fixture(params=["files", "postgresql"])
def app_on(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """The app over the fixture registry plus a second stored version, its pointers in files or in
    PostgreSQL (seeded from the files, as a scale-out deployment's first start)."""
    model_dir = copy_registry(tmp_path / "models")
    shutil.copytree(model_dir / DEFAULT / FIXTURE_VERSION, model_dir / DEFAULT / SECOND)
    overrides: dict[str, Any] = {}
    if request.param == "postgresql":
        from app.storage.pg import Database

        url = request.getfixturevalue("pg_url")
        db = Database(url)
        db.open()
        with db.connection() as conn:
            conn.execute("TRUNCATE pointers, promotions")
        db.close()
        overrides["database_url"] = url
    with TestClient(create_app(trainer_settings(model_dir, **overrides))) as client:
        yield client, model_dir


def test_card_and_versions_show_training_settings_and_a_data_summary_without_sources(
    app_on: tuple[TestClient, Path],
) -> None:
    client, model_dir = app_on
    manifest = _manifest(model_dir)
    config, data = manifest["config"], manifest["data"]
    card = client.get("/models/default").json()
    versions = client.get("/models/default/versions", headers=AUTH).json()["versions"]
    listed = next(v for v in versions if v["version"] == FIXTURE_VERSION)
    for made in (card, listed):
        settings = made["training"]["settings"]
        assert settings["window"] == config["data"]["window"]
        assert settings["hidden_size"] == config["model"]["hidden_size"]
        assert settings["epochs"] == config["train"]["epochs"] and settings["lr"] == config["train"]["lr"]
        assert made["training"]["epochs_run"] == manifest["training"]["epochs_run"]
        assert made["training"]["job_id"] is None and made["training"]["tuned"] is False  # trained by the CLI
        summary = made["data_summary"]
        assert summary == {
            "series": 1,
            "closes": data["rows_used"],
            "date_start": data["date_start"],
            "date_end": data["date_end"],
            "frequency": data.get("frequency"),
        }
    public = client.get("/models/default").text + client.get("/models/default/versions").text
    assert data["source"] not in public  # the file name is for the key holder only
    assert data["source"] in client.get("/models/default", headers=AUTH).text


def test_history_lists_promotions_newest_first_from_either_store(app_on: tuple[TestClient, Path]) -> None:
    client, _ = app_on
    before = client.get("/models/default/history").json()["promotions"]
    assert before and before[0]["to"] == FIXTURE_VERSION
    promoted = client.post(f"/models/default/versions/{SECOND}/promote", headers=AUTH)
    assert promoted.status_code == 200, promoted.text
    after = client.get("/models/default/history").json()
    assert after["model"] == "default" and after["promotions"][1:] == before
    last = after["promotions"][0]
    assert (last["from"], last["to"], last["by"], last["job_id"]) == (FIXTURE_VERSION, SECOND, "hand", None)
    assert "POST /models/default/versions" in last["reason"] and last["at"] >= before[0]["at"]


def test_history_of_an_unknown_model_is_404(app_on: tuple[TestClient, Path]) -> None:
    client, _ = app_on
    response = client.get("/models/nosuchmodel/history")
    assert response.status_code == 404 and "nosuchmodel" in response.text
