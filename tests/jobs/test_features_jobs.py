"""POST /train with OHLCV features: the JSON body's `features` object and `params.features`, a CSV's columns
in the multipart form, and the refusals (422) of features that are missing, unused or invalid."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from closecast.series import load_csv
from tests.helpers import DEFAULT, copy_registry, detail_msgs
from tests.jobs.helpers import AUTH, TINY, build_app, trainer_settings, wait_status
from tests.synthetic import write_ohlcv_csv


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_registry(tmp_path_factory.mktemp("features-jobs") / "models")


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(build_app(trainer_settings(model_dir))) as c:
        yield c


@pytest.fixture(scope="module")
def ohlcv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ohlcv_csv(tmp_path_factory.mktemp("ohlcv") / "ohlcv.csv", 200)


def _body(ohlcv: Path, **params: Any) -> dict[str, Any]:
    s = load_csv(ohlcv, features=("high", "low", "volume"))
    features = {k: v.tolist() for k, v in s.features.items()}
    return {
        "closes": s.closes.tolist(),
        "features": features,
        "params": {**TINY, **params},
        "promote": "never",
    }


def _input(model_dir: Path, final: dict[str, Any]) -> dict[str, Any]:
    version = final["result"]["version"]
    manifest = (model_dir / DEFAULT / version / "manifest.json").read_text()
    contract: dict[str, Any] = json.loads(manifest)["input"]
    return contract


def test_json_features_train_a_features_model(client: TestClient, model_dir: Path, ohlcv: Path) -> None:
    response = client.post("/train", json=_body(ohlcv, features=["high", "volume"]) | {"features": {
        k: v for k, v in _body(ohlcv)["features"].items() if k != "low"}}, headers=AUTH)  # fmt: skip
    assert response.status_code == 202, response.text
    final = wait_status(client, response.json()["job_id"], "succeeded", "failed")
    assert final["status"] == "succeeded", final
    assert _input(model_dir, final)["features"] == ["high", "volume"]


def test_csv_columns_train_a_features_model(client: TestClient, model_dir: Path, ohlcv: Path) -> None:
    form = {**{k: str(v) for k, v in TINY.items()}, "features": "low,open", "promote": "never"}
    files = {"file": ("ohlcv.csv", ohlcv.read_bytes(), "text/csv")}
    response = client.post("/train", data=form, files=files, headers=AUTH)
    assert response.status_code == 202, response.text
    final = wait_status(client, response.json()["job_id"], "succeeded", "failed")
    assert final["status"] == "succeeded", final
    assert _input(model_dir, final)["shape"] == ["batch", 10, 3]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"params": {**TINY, "features": ["high", "low", "volume", "open"]}}, "no open values"),
        ({"params": TINY}, "features.high is sent but params.features is []"),
        ({"params": {**TINY, "features": ["close"]}}, 'params.features[0] is "close"; input should be'),
    ],
)
def test_bad_train_features_are_refused(
    client: TestClient, ohlcv: Path, change: dict[str, Any], words: str
) -> None:
    response = client.post("/train", json={**_body(ohlcv), **change}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert any(words in m for m in detail_msgs(response)), detail_msgs(response)


def test_bad_train_feature_value_is_refused(client: TestClient, ohlcv: Path) -> None:
    body = _body(ohlcv, features=["volume"])
    body["features"] = {"volume": [-5.0, *body["features"]["volume"][1:]]}
    response = client.post("/train", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert "features.volume[0] is '-5.0'; a volume must be finite and >= 0" in detail_msgs(response)


def test_promote_auto_judges_a_features_model_with_its_features(client: TestClient, ohlcv: Path) -> None:
    """The gate reads the features back with the closes: the candidate's gate MAE is its own test MAE (the
    same test closes, the same inputs), not a refusal to compare."""
    form = {**{k: str(v) for k, v in TINY.items()}, "features": "high,low", "promote": "auto"}
    files = {"file": ("ohlcv.csv", ohlcv.read_bytes(), "text/csv")}
    response = client.post("/train", data=form, files=files, headers=AUTH)
    assert response.status_code == 202, response.text
    final = wait_status(client, response.json()["job_id"], "succeeded", "failed")
    assert final["status"] == "succeeded", final
    result = final["result"]
    assert "could not compare" not in result["reason"], result["reason"]
    gate, test = result["metrics"]["gate"], result["metrics"]["test"]
    assert gate["n"] == test["n"] and gate["candidate_mae"] == pytest.approx(
        test["model"]["mae"], rel=1e-9
    ), result
