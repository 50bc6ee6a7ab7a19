"""The forecast routes write their JSON by hand (the fast path skips FastAPI's response serialisation), so
these tests hold that JSON to the response models the OpenAPI docs promise: every answer validates, and
dumping the validated model gives back the same JSON, keys in the same order (nothing extra, nothing lost).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.api.schemas import BatchForecastResponse, ForecastResponse
from tests.synthetic import calm_walk


def _assert_matches(model: type[BaseModel], response: Any) -> None:
    assert response.status_code == 200, response.text
    validated = model.model_validate_json(response.content)
    dumped = validated.model_dump(mode="json")
    assert dumped == response.json()
    assert list(dumped) == list(response.json())  # the same key order FastAPI would write


@pytest.mark.parametrize("body", [{}, {"horizon": 5}, {"horizon": 3, "level": [50, 99]}])
def test_forecast_json_is_a_forecast_response(client: TestClient, window: int, body: dict[str, Any]) -> None:
    response = client.post("/forecast", json={"closes": calm_walk(window + 5), **body})
    _assert_matches(ForecastResponse, response)


def test_forecast_json_with_warnings_is_a_forecast_response(client: TestClient, window: int) -> None:
    flat = [5.0] * window  # identical closes: the answer carries a flat_window warning
    response = client.post("/forecast", json={"closes": flat, "level": [99]})
    assert response.json()["warnings"]
    _assert_matches(ForecastResponse, response)


def test_noop_forecast_json_is_a_forecast_response(client: TestClient, window: int) -> None:
    response = client.post("/noop/forecast", json={"closes": calm_walk(window), "horizon": 2})
    _assert_matches(ForecastResponse, response)


@pytest.mark.parametrize("count", [1, 3])
def test_batch_json_is_a_batch_forecast_response(client: TestClient, window: int, count: int) -> None:
    series = [{"id": f"s{k}", "closes": calm_walk(window + k, seed=k)} for k in range(count)]
    response = client.post("/forecast/batch", json={"series": series, "horizon": 2})
    _assert_matches(BatchForecastResponse, response)
