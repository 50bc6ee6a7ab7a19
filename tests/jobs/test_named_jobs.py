"""Two named models created by real retrain jobs (tiny: window 11, hidden 8, 3 epochs) and served beside the
default one; a later job on one model changes that model only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from closecast import registry
from tests.helpers import DEFAULT, FIXTURE_VERSION, copy_registry
from tests.jobs.helpers import AUTH, TINY, build_app, submit, trainer_settings, wait_status
from tests.synthetic import calm_walk, random_walk


@dataclass
class Trained:
    client: TestClient
    root: Path
    jobs: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    root = copy_registry(tmp_path_factory.mktemp("named") / "models")
    with TestClient(build_app(trainer_settings(root))) as client:
        ids = {
            "aapl": submit(client, random_walk(300, seed=2), model="aapl", source="aapl-daily"),
            "msft": submit(client, random_walk(300, seed=3), model="msft", name="msft-daily"),  # old alias
        }
        jobs = {m: wait_status(client, i, "succeeded", "failed", timeout=180) for m, i in ids.items()}
        yield Trained(client, root, jobs)


def _forecast(client: TestClient, model: str | None = None) -> tuple[str, str]:
    body: dict[str, Any] = {"closes": calm_walk()} | ({"model": model} if model else {})
    answer = client.post("/forecast", json=body).json()
    return answer["model"], answer["model_version"]


def test_a_new_models_first_version_becomes_current_and_is_compared_with_the_default(
    trained: Trained,
) -> None:
    for model, job in trained.jobs.items():
        assert job["status"] == "succeeded", job
        assert job["model"] == model and job["source"] == f"{model}-daily"
        result = job["result"]
        assert result["model"] == model and result["promoted"] is True
        assert result["reason"].startswith(f"first version of model '{model}': made current (no incumbent); ")
        assert f"vs the default model ({FIXTURE_VERSION})" in result["reason"]
        gate = result["metrics"]["gate"]
        assert gate["against"] == "default" and gate["current_version"] == FIXTURE_VERSION
        assert gate["naive_mae"] > 0 and gate["n"] > 0
        assert registry.read_current(trained.root / model) == result["version"]


def test_named_models_serve_side_by_side_with_the_default(trained: Trained) -> None:
    versions = {m: j["result"]["version"] for m, j in trained.jobs.items()}
    assert _forecast(trained.client) == ("default", FIXTURE_VERSION)
    assert _forecast(trained.client, "aapl") == ("aapl", versions["aapl"])
    assert _forecast(trained.client, "msft") == ("msft", versions["msft"])
    models = {m["model"]: m for m in trained.client.get("/models", headers=AUTH).json()["models"]}
    assert models["aapl"]["source"] == "aapl-daily.csv" and models["msft"]["source"] == "msft-daily.csv"
    assert registry.read_current(trained.root / DEFAULT) == FIXTURE_VERSION


def test_a_second_job_on_one_model_is_judged_against_it_and_leaves_the_others(trained: Trained) -> None:
    first = trained.jobs["aapl"]["result"]["version"]
    job_id = submit(trained.client, random_walk(300, seed=4), model="aapl", promote="always")
    job = wait_status(trained.client, job_id, "succeeded", "failed", timeout=180)
    assert job["status"] == "succeeded", job
    assert job["result"]["metrics"]["gate"]["against"] == "current"
    assert job["result"]["metrics"]["gate"]["current_version"] == first
    assert _forecast(trained.client, "aapl") == ("aapl", job["result"]["version"])
    assert _forecast(trained.client, "msft") == ("msft", trained.jobs["msft"]["result"]["version"])
    assert _forecast(trained.client) == ("default", FIXTURE_VERSION)


def test_a_new_name_beyond_max_models_is_409_with_the_reason(trained: Trained) -> None:
    with TestClient(build_app(trainer_settings(trained.root, max_models=3))) as client:
        payload = {"closes": random_walk(300).tolist(), "params": TINY, "model": "tsla"}
        response = client.post("/train", json=payload, headers=AUTH)
        assert response.status_code == 409
        assert response.json()["detail"] == (
            "model 'tsla' would be a new name but the registry already holds 3 models "
            "(CLOSECAST_MAX_MODELS); delete one with DELETE /models/{name} or raise the limit"
        )
        payload["model"] = "aapl"  # an existing name is fine
        assert client.post("/train", json={**payload, "promote": "never"}, headers=AUTH).status_code == 202


def test_train_refuses_a_model_name_that_is_no_slug(trained: Trained) -> None:
    for form in (False, True):
        if form:
            response = trained.client.post(
                "/train", files={"file": ("x.csv", b"Close\n1\n")}, data={"model": "Bad Name"}, headers=AUTH
            )
        else:
            payload = {"closes": [1.0, 2.0], "model": "current"}
            response = trained.client.post("/train", json=payload, headers=AUTH)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "model"]
