"""The contract where the schema alone does not hold it: strict /train types, control characters in CSV
headers, what OpenAPI states, 405s, unknown query parameters, and no paths or keys in any answer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from closecast import registry
from tests.helpers import DEFAULT, FIXTURE_VERSION, detail_msgs, make_settings
from tests.jobs.helpers import AUTH, TINY, build_app, trainer_settings
from tests.synthetic import calm_walk


@pytest.fixture
def trainer(model_dir: Path) -> TestClient:
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        yield client


# --- /train refuses what /forecast refuses --------------------------------------------------------------


@pytest.mark.parametrize(("bad", "shown"), [(True, "true"), ("100.5", '"100.5"')])
def test_train_json_refuses_a_price_that_is_not_a_number(
    trainer: TestClient, bad: object, shown: str
) -> None:
    closes: list[object] = [float(c) for c in calm_walk(80)]
    closes[3] = bad
    response = trainer.post("/train", json={"closes": closes, "params": TINY}, headers=AUTH)
    assert response.status_code == 422
    assert detail_msgs(response) == [f"closes[3] is {shown}; prices must be numbers"]


def test_train_json_refuses_a_string_param(trainer: TestClient) -> None:
    closes = [float(c) for c in calm_walk(80)]
    response = trainer.post("/train", json={"closes": closes, "params": {"window": "11"}}, headers=AUTH)
    assert response.status_code == 422
    assert detail_msgs(response) == ['params.window is "11"; input should be a valid integer']


def test_train_upload_refuses_a_control_character_in_a_header(trainer: TestClient) -> None:
    csv = "Close,No\x00te\n" + "\n".join(f"{c},x" for c in calm_walk(80))  # only the header is bad
    files = {"file": ("prices.csv", csv.encode(), "text/csv")}
    response = trainer.post("/train", files=files, data={"epochs": "3"}, headers=AUTH)
    assert response.status_code == 422
    assert detail_msgs(response) == [
        "prices.csv line 1: column 2 is 'No\\x00te', which holds the control character '\\x00'; "
        "column names must be printable text, fix the header"
    ]
    assert trainer.get("/train", headers=AUTH).json() == {"jobs": []}


def test_train_upload_refuses_a_control_character_in_the_column_named(trainer: TestClient) -> None:
    files = {"file": ("prices.csv", b"Close\n1\n", "text/csv")}
    response = trainer.post("/train", files=files, data={"column": "Cl\x01ose"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "column"]


def test_cli_refuses_a_control_character_in_a_header_with_one_line(tmp_path: Path) -> None:
    csv = tmp_path / "prices.csv"
    csv.write_text("Close,A\x07B\n" + "\n".join(f"{c},1" for c in calm_walk(80)))
    done = subprocess.run(
        [sys.executable, "-m", "training", "train", "--csv", str(csv), "--out", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "prices.csv line 1: column 2 is 'A\\x07B', which holds the control character '\\x07'; "
            "column names must be printable text, fix the header"
        )
    )


# --- what OpenAPI states ---------------------------------------------------------------------------------


def test_openapi_states_the_served_window_and_the_limits(client: TestClient, window: int) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    closes = schemas["ForecastRequest"]["properties"]["closes"]
    assert closes["minItems"] == window and closes["maxItems"] == 10_000
    assert (
        f"at least {window}, the window of the model served now ({FIXTURE_VERSION}" in closes["description"]
    )
    assert schemas["SeriesIn"]["properties"]["closes"]["minItems"] == window
    assert schemas["ForecastRequest"]["properties"]["horizon"]["maximum"] == 30


def test_openapi_version_names_match_the_server(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/models/{version}/promote"]["post"]
    schema = operation["parameters"][0]["schema"]
    assert schema["maxLength"] == 128 and schema["pattern"] == registry.VERSION_PATTERN
    assert operation["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorDetail"
    }


def test_a_405_lists_every_method_of_the_path(trainer: TestClient) -> None:
    response = trainer.put("/train/abc", headers=AUTH)
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, HEAD"
    assert trainer.patch("/train", headers=AUTH).headers["allow"] == "GET, HEAD, POST"


def test_an_unknown_query_parameter_is_422(trainer: TestClient) -> None:
    response = trainer.get("/train?limt=5", headers=AUTH)
    assert response.status_code == 422
    assert detail_msgs(response) == ["query parameter 'limt' is not known; this endpoint takes: limit"]
    assert trainer.get("/train?limit=5", headers=AUTH).status_code == 200


# --- no leaks ---------------------------------------------------------------------------------------------


def test_no_answer_names_a_path(model_dir: Path, tmp_path: Path) -> None:
    """An unreadable manifest (open and keyed /models), a damaged bundle (409), an unusable job dir (503)."""
    broken = model_dir / DEFAULT / "20990101T000000Z-broken00"
    broken.mkdir()
    (broken / "manifest.json").write_text("{")
    damaged = model_dir / DEFAULT / "20990101T000000Z-damaged0"
    shutil.copytree(model_dir / DEFAULT / FIXTURE_VERSION, damaged)
    (damaged / "model.onnx").write_bytes(b"not onnx")
    (model_dir / ".jobs").write_text("not a directory")
    answers = []
    with TestClient(create_app(make_settings(model_dir))) as open_app:  # no key: /models shows all
        answers.append(open_app.get("/models/default/versions"))
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        answers.append(client.get("/models/default/versions", headers=AUTH))
        answers.append(client.post(f"/models/{damaged.name}/promote", headers=AUTH))
        closes = [float(c) for c in calm_walk(80)]
        answers.append(client.post("/train", json={"closes": closes, "params": TINY}, headers=AUTH))
    assert [a.status_code for a in answers] == [200, 200, 409, 503]
    assert "not readable JSON" in answers[0].text
    for answer in answers:
        assert str(tmp_path) not in answer.text, answer.text


def _start(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *command], capture_output=True, text=True, timeout=60, env={**env, "PATH": ""}
    )


@pytest.mark.parametrize("command", [("-m", "app"), ("-m", "uvicorn", "app.main:app", "--port", "0")])
def test_a_short_key_is_refused_without_being_printed(command: tuple[str, ...]) -> None:
    secret = "short-Secret-42"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSECAST_")}
    done = _start({**env, "CLOSECAST_API_KEY": secret}, *command)
    assert done.returncode != 0
    assert "CLOSECAST_API_KEY must be at least 16 characters" in done.stderr
    assert secret not in done.stdout + done.stderr


def test_protect_reads_without_a_key_refuses_to_start(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="CLOSECAST_PROTECT_READS=true needs CLOSECAST_API_KEY"):
        make_settings(model_dir, protect_reads=True)


# --- who reads what ---------------------------------------------------------------------------------------


def test_protect_reads_puts_reads_behind_the_key(model_dir: Path) -> None:
    with TestClient(build_app(trainer_settings(model_dir, protect_reads=True))) as client:
        for path in ("/models", "/models/current", "/train", "/metrics", "/docs", "/redoc", "/openapi.json"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
            assert client.get(path, headers=AUTH).status_code == 200, path
        for path in ("/healthz", "/readyz"):
            assert client.get(path).status_code == 200
        assert client.post("/forecast", json={"closes": [float(c) for c in calm_walk(30)]}).status_code == 200
        assert client.get("/openapi.json", headers=AUTH).json()["paths"]["/models"]["get"]["security"]


def test_without_the_key_models_shows_only_promoted_versions_and_no_source(model_dir: Path) -> None:
    hidden = model_dir / DEFAULT / "20990101T000000Z-neverpr0"
    shutil.copytree(model_dir / DEFAULT / FIXTURE_VERSION, hidden)
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        public = client.get("/models/default/versions").json()
        assert [v["version"] for v in public["versions"]] == [FIXTURE_VERSION]
        assert "source" not in public["versions"][0]["data"]
        assert "source" not in client.get("/models/current").json()["data"]
        keyed = client.get("/models/default/versions", headers=AUTH).json()
        assert [v["version"] for v in keyed["versions"]] == [hidden.name, FIXTURE_VERSION]
        assert "source" in keyed["versions"][1]["data"]
        assert "source" in client.get("/models/current", headers=AUTH).json()["data"]
    assert json.loads((model_dir / DEFAULT / FIXTURE_VERSION / "manifest.json").read_text())["data"]["source"]
