"""OHLCV features: trained on a synthetic OHLCV CSV, exported with the features as ONNX input channels,
served through the real app (/forecast, /forecast/batch, /backtest), every bad-features request a 422 naming
the field, and free of the price level and of volatility like the closes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from closecast.bundle import load_forecaster
from closecast.series import load_csv
from tests.helpers import DEFAULT, FIXTURE_MODELS, detail_msgs, make_settings
from tests.synthetic import write_ohlcv_csv
from training.__main__ import main

FEATURES = ("high", "low", "volume")
TINY = ["--window", "11", "--hidden-size", "8", "--epochs", "3", "--seed", "7", "--quiet"]


@pytest.fixture(scope="module")
def ohlcv_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ohlcv_csv(tmp_path_factory.mktemp("ohlcv") / "ohlcv.csv")


@pytest.fixture(scope="module")
def registry(ohlcv_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry whose current model reads high, low and volume (trained by the CLI)."""
    models = tmp_path_factory.mktemp("models")
    argv = ["train", "--csv", str(ohlcv_csv), "--features", ",".join(FEATURES), "--registry", str(models)]
    assert main([*argv, "--promote", *TINY]) == 0
    return models


@pytest.fixture(scope="module")
def client(registry: Path) -> Any:
    with TestClient(create_app(make_settings(registry))) as c:
        yield c


@pytest.fixture(scope="module")
def data(ohlcv_csv: Path) -> dict[str, Any]:
    s = load_csv(ohlcv_csv, features=FEATURES)
    return {"closes": s.closes.tolist(), "features": {k: v.tolist() for k, v in s.features.items()}}


def _bundle(registry: Path) -> Path:
    return registry / DEFAULT / (registry / DEFAULT / "current").read_text().strip()


def test_manifest_lists_the_features_and_onnx_carries_them_as_channels(registry: Path) -> None:
    bundle = _bundle(registry)
    contract = json.loads((bundle / "manifest.json").read_text())["input"]
    assert contract["features"] == list(FEATURES)
    assert contract["shape"] == ["batch", 10, 4]
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [10, 4]


def test_model_card_shows_the_inputs(client: TestClient) -> None:
    assert client.get("/models/current").json()["inputs"] == ["closes", *FEATURES]


def test_forecast_with_features_serves_and_batch_agrees(client: TestClient, data: dict[str, Any]) -> None:
    one = client.post("/forecast", json={**data, "horizon": 3})
    assert one.status_code == 200, one.text
    batch = client.post("/forecast/batch", json={"series": [{"id": "a", **data}], "horizon": 3})
    assert batch.status_code == 200, batch.text
    assert batch.json()["forecasts"][0]["forecast"] == one.json()["forecast"]


def test_backtest_with_features_scores(client: TestClient, data: dict[str, Any]) -> None:
    response = client.post("/backtest", json={**data, "folds": 2, "horizon": 2})
    assert response.status_code == 200, response.text
    assert response.json()["overall"]["n"] > 0


def _bad(data: dict[str, Any], name: str, index: int, value: float) -> dict[str, Any]:
    values = list(data["features"][name])
    values[index] = value
    return {**data, "features": {**data["features"], name: values}}


BAD_FEATURES = [
    (lambda d: {"closes": d["closes"]}, "features is missing"),
    (
        lambda d: {**d, "features": {k: v for k, v in d["features"].items() if k != "low"}},
        "features.low is missing",
    ),
    (lambda d: {**d, "features": {**d["features"], "open": d["closes"]}}, "features.open is not read"),
    (lambda d: {**d, "features": {**d["features"], "high": d["features"]["high"][:-1]}}, "features.high has"),
    (lambda d: _bad(d, "high", 4, -2.0), "features.high[4] is -2.0; a high price must be finite and > 0"),
    (lambda d: _bad(d, "low", 3, 0.0), "features.low[3] is 0.0; a low price must be finite and > 0"),
    (lambda d: _bad(d, "volume", 2, -1.0), "features.volume[2] is -1.0; a volume must be finite and >= 0"),
]


@pytest.mark.parametrize(("make", "words"), BAD_FEATURES)
def test_bad_features_are_refused_naming_the_field(
    client: TestClient, data: dict[str, Any], make: Any, words: str
) -> None:
    body = make(data)
    for path, payload in (
        ("/forecast", body),
        ("/backtest", {**body, "folds": 2}),
        ("/forecast/batch", {"series": [{"id": "a", **body}]}),
    ):
        response = client.post(path, json=payload)
        assert response.status_code == 422, (path, response.text)
        assert any(words in m for m in detail_msgs(response)), (path, detail_msgs(response))


def test_non_finite_feature_is_refused(client: TestClient, data: dict[str, Any]) -> None:
    text = json.dumps(_bad(data, "high", 1, float("inf")))  # JSON's Infinity, which pydantic reads as a float
    response = client.post("/forecast", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "features.high[1] is Infinity; a high price must be finite and > 0" in detail_msgs(response)


def test_closes_only_model_refuses_features(data: dict[str, Any]) -> None:
    with TestClient(create_app(make_settings(FIXTURE_MODELS))) as c:
        response = c.post("/forecast", json=data)
        assert response.status_code == 422
        assert "reads closes only; drop features" in detail_msgs(response)[0]
        assert c.post("/forecast", json={"closes": data["closes"]}).status_code == 200


def test_features_model_is_free_of_level_and_volatility(registry: Path, tmp_path: Path) -> None:
    """Prices x k change nothing but the scale of the answer; returns x k with ranges x k change nothing
    relative to the window's volatility (the same model input)."""
    model = load_forecaster(_bundle(registry), providers="cpu")
    base = load_csv(write_ohlcv_csv(tmp_path / "a.csv", 80), features=FEATURES)
    scaled = load_csv(write_ohlcv_csv(tmp_path / "b.csv", 80, level=100.0 * 37), features=FEATURES)
    wild = load_csv(write_ohlcv_csv(tmp_path / "c.csv", 80, scale=3.0), features=FEATURES)

    def cumulative(s: Any) -> np.ndarray:
        w = model.window
        return model.rollout(s.closes[None, -w:], 3, {k: v[None, -w:] for k, v in s.features.items()})[0]

    np.testing.assert_allclose(cumulative(scaled), cumulative(base), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cumulative(wild), 3.0 * cumulative(base), rtol=1e-6, atol=1e-12)


def test_inference_protocol_takes_one_input_per_feature_and_agrees_with_batch(
    client: TestClient, data: dict[str, Any]
) -> None:
    """``/v2/models/default/infer`` with closes, high, low and volume as ``[N, T]`` tensors (FP64, binary)
    answers what /forecast/batch answers for the same series; a missing feature is a 400."""
    rows = [slice(0, 60), slice(40, 100), slice(90, 150)]  # three series of 60 closes each
    inputs = {"closes": np.array([data["closes"][r] for r in rows])}
    inputs |= {name: np.array([data["features"][name][r] for r in rows]) for name in FEATURES}
    tensors = [
        {
            "name": name,
            "shape": list(values.shape),
            "datatype": "FP64",
            "parameters": {"binary_data_size": values.nbytes},
        }
        for name, values in inputs.items()
    ]
    header = json.dumps({"inputs": tensors, "parameters": {"horizon": 2}}).encode()
    body = header + b"".join(values.tobytes() for values in inputs.values())
    response = client.post(
        "/v2/models/default/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    forecast = next(o for o in response.json()["outputs"] if o["name"] == "forecast")
    series = [
        {"id": str(i), "closes": data["closes"][r], "features": {n: data["features"][n][r] for n in FEATURES}}
        for i, r in enumerate(rows)
    ]
    batch = client.post("/forecast/batch", json={"series": series, "horizon": 2})
    assert batch.status_code == 200, batch.text
    assert forecast["data"] == [x for f in batch.json()["forecasts"] for x in f["forecast"]]
    missing = {
        "inputs": [{"name": "closes", "shape": [1, 60], "datatype": "FP64", "data": data["closes"][:60]}]
    }
    refused = client.post("/v2/models/default/infer", json=missing)
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("inputs are closes but model 'default'")
    assert "reads closes, high, low, volume" in refused.json()["error"]
