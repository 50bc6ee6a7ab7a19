"""Every committed bundle format loads into its own forecaster and answers through the real app: format 1
(``tests/fixtures/models``, kept for backward compatibility), format 2 closes-only and format 2 with OHLCV
features (``tests/fixtures/make_fixtures.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from closecast.bundle import FORECASTERS, load_forecaster
from closecast.forecaster_v1 import ForecasterV1
from closecast.forecaster_v2 import ForecasterV2
from closecast.series import load_csv
from tests.helpers import (
    FORMAT1_BUNDLE,
    FORMAT1_MODELS,
    FORMAT2_BUNDLE,
    FORMAT2_MODELS,
    OHLCV_BUNDLE,
    OHLCV_FEATURES,
    OHLCV_MODELS,
    SYNTHETIC_CSV,
    detail_msgs,
    make_settings,
)
from tests.synthetic import write_ohlcv_csv


@pytest.fixture(scope="module")
def closes() -> list[float]:
    return [float(c) for c in load_csv(SYNTHETIC_CSV).closes[-80:]]


@pytest.fixture(scope="module")
def ohlcv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    series = load_csv(
        write_ohlcv_csv(tmp_path_factory.mktemp("ohlcv") / "ohlcv.csv", n=120), features=OHLCV_FEATURES
    )
    return {"closes": series.closes.tolist(), "features": {k: v.tolist() for k, v in series.features.items()}}


def _client(models: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(models))) as client:
        yield client


@pytest.fixture(scope="module")
def format1() -> Iterator[TestClient]:
    yield from _client(FORMAT1_MODELS)


@pytest.fixture(scope="module")
def format2() -> Iterator[TestClient]:
    yield from _client(FORMAT2_MODELS)


@pytest.fixture(scope="module")
def features() -> Iterator[TestClient]:
    yield from _client(OHLCV_MODELS)


def _ordered(body: dict[str, Any]) -> bool:
    """Every band of an answer holds its forecast, and 95% holds 80%."""
    forecast = np.array(body["forecast"])
    bands = {k: (np.array(v["lower"]), np.array(v["upper"])) for k, v in body["intervals"].items()}
    inside = all(((lo < forecast) & (forecast < hi)).all() for lo, hi in bands.values())
    return inside and bool(
        (bands["95"][0] <= bands["80"][0]).all() and (bands["80"][1] <= bands["95"][1]).all()
    )


@pytest.mark.parametrize(
    ("bundle", "kind", "inputs"),
    [
        (FORMAT1_BUNDLE, ForecasterV1, ()),
        (FORMAT2_BUNDLE, ForecasterV2, ()),
        (OHLCV_BUNDLE, ForecasterV2, OHLCV_FEATURES),
    ],
)
def test_each_fixture_loads_into_its_formats_forecaster(
    bundle: Path, kind: type, inputs: tuple[str, ...]
) -> None:
    forecaster = load_forecaster(bundle, "cpu")  # verifies hashes, contract and the recorded sample
    assert type(forecaster) is kind and FORECASTERS[forecaster.format_version] is kind
    assert forecaster.features == inputs


def test_format1_still_loads_and_answers(format1: TestClient, closes: list[float]) -> None:
    card = format1.get("/models/current").json()
    assert (card["version"], card["format_version"]) == (FORMAT1_BUNDLE.name, 1)
    assert card["representation"] == "log_returns_standardized"
    response = format1.post("/forecast", json={"closes": closes, "horizon": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == FORMAT1_BUNDLE.name and len(body["forecast"]) == 5
    assert _ordered(body)
    batch = format1.post("/forecast/batch", json={"series": [{"id": "a", "closes": closes}], "horizon": 5})
    assert batch.status_code == 200, batch.text
    assert batch.json()["forecasts"][0]["forecast"] == body["forecast"]


def test_format2_closes_only_answers_and_refuses_features(
    format2: TestClient, closes: list[float], ohlcv: dict[str, Any]
) -> None:
    card = format2.get("/models/current").json()
    assert (card["version"], card["format_version"], card["inputs"]) == (FORMAT2_BUNDLE.name, 2, ["closes"])
    response = format2.post("/forecast", json={"closes": closes, "horizon": 5})
    assert response.status_code == 200, response.text
    assert _ordered(response.json())
    refused = format2.post("/forecast", json=ohlcv)
    assert refused.status_code == 422
    assert any("reads closes only" in m for m in detail_msgs(refused))


def test_format2_features_answers_with_them_and_refuses_without(
    features: TestClient, ohlcv: dict[str, Any]
) -> None:
    assert features.get("/models/current").json()["inputs"] == ["closes", *OHLCV_FEATURES]
    one = features.post("/forecast", json={**ohlcv, "horizon": 3})
    assert one.status_code == 200, one.text
    assert _ordered(one.json())
    batch = features.post("/forecast/batch", json={"series": [{"id": "a", **ohlcv}], "horizon": 3})
    assert batch.status_code == 200, batch.text
    assert batch.json()["forecasts"][0]["forecast"] == one.json()["forecast"]
    missing = features.post("/forecast", json={"closes": ohlcv["closes"]})
    assert missing.status_code == 422
    assert any("features is missing" in m for m in detail_msgs(missing))
