"""Liveness, readiness, the model card, metrics and the OpenAPI docs."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from tests.helpers import FIXTURE_BUNDLE, FIXTURE_MODELS, make_settings
from tests.synthetic import calm_walk


def _samples(client: TestClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_healthz_is_200_without_a_model() -> None:
    client = TestClient(create_app(make_settings(FIXTURE_MODELS)))  # lifespan not run: nothing loaded
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model": None, "model_version": None}


def test_readyz_is_503_before_the_model_is_loaded() -> None:
    client = TestClient(create_app(make_settings(FIXTURE_MODELS)))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"detail": "no verified model is loaded yet; retry once /readyz answers 200"}


def test_readyz_is_200_once_the_model_is_loaded(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "model": "default",
        "model_version": FIXTURE_BUNDLE.name,
        "degraded": [],
    }


def test_models_current_describes_the_served_bundle(client: TestClient) -> None:
    manifest = json.loads((FIXTURE_BUNDLE / "manifest.json").read_text())
    card = client.get("/models/current").json()
    assert card["version"] == FIXTURE_BUNDLE.name
    assert card["format_version"] == 2
    assert card["created_at"] == manifest["created_at"]
    assert card["window"] == manifest["input"]["window"]
    assert card["representation"] == "log_returns_window_rms"
    assert card["provider"] == "CPUExecutionProvider"
    assert card["metrics"]["test"]["skill"] == manifest["metrics"]["test"]["skill"]
    assert card["metrics"]["test"]["naive"]["mae"] == manifest["metrics"]["test"]["naive"]["mae"]
    assert card["beats_naive"] == manifest["metrics"]["beats_naive"]
    assert (card["data"]["date_start"], card["data"]["date_end"]) == (
        manifest["data"]["date_start"],
        manifest["data"]["date_end"],
    )


def test_models_current_is_503_before_the_model_is_loaded() -> None:
    assert TestClient(create_app(make_settings(FIXTURE_MODELS))).get("/models/current").status_code == 503


def test_metrics_count_requests_by_route_template_and_status() -> None:
    with TestClient(create_app(make_settings(FIXTURE_MODELS))) as c:
        c.post("/forecast", json={"closes": calm_walk()})
        c.post("/forecast", json={"closes": [1.0, -1.0]})
        c.get("/no/such/path/42")
        requests = _samples(c, "closecast_http_requests_total")
    assert requests[(("method", "POST"), ("route", "/forecast"), ("status", "200"))] == 1
    assert requests[(("method", "POST"), ("route", "/forecast"), ("status", "422"))] == 1
    assert requests[(("method", "GET"), ("route", "<unmatched>"), ("status", "404"))] == 1


def test_metrics_time_requests_and_inference() -> None:
    with TestClient(create_app(make_settings(FIXTURE_MODELS))) as c:
        c.post("/forecast", json={"closes": calm_walk()})
        latency = _samples(c, "closecast_http_request_duration_seconds_count")
        inference = _samples(c, "closecast_inference_seconds_count")
    assert latency[(("method", "POST"), ("route", "/forecast"))] == 1
    assert inference[(("endpoint", "forecast"), ("model", "default"))] == 1


def test_metrics_record_batch_sizes() -> None:
    with TestClient(create_app(make_settings(FIXTURE_MODELS))) as c:
        c.post("/forecast/batch", json={"series": [{"id": str(k), "closes": calm_walk()} for k in range(5)]})
        total = _samples(c, "closecast_batch_series_sum")
    assert total[(("endpoint", "forecast_batch"), ("model", "default"))] == 5


def test_metrics_report_the_model_version_and_provider(client: TestClient) -> None:
    info = _samples(client, "closecast_model_info")
    assert info == {
        (
            ("format_version", "2"),
            ("model", "default"),
            ("provider", "CPUExecutionProvider"),
            ("version", FIXTURE_BUNDLE.name),
        ): 1.0
    }
    assert _samples(client, "closecast_model_ready") == {(): 1.0}


def test_metrics_are_separate_per_app() -> None:
    with (
        TestClient(create_app(make_settings(FIXTURE_MODELS))) as a,
        TestClient(create_app(make_settings(FIXTURE_MODELS))) as b,
    ):
        a.get("/healthz")
        a.get("/healthz")
        b.get("/healthz")
        key = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
        assert _samples(a, "closecast_http_requests_total")[key] == 2
        assert _samples(b, "closecast_http_requests_total")[key] == 1


def test_openapi_documents_bounds_and_examples(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    request = schemas["ForecastRequest"]
    assert request["examples"][0]["horizon"] == 5
    assert request["properties"]["closes"]["items"]["exclusiveMinimum"] == 0
    assert request["properties"]["horizon"]["minimum"] == 1
    assert request["properties"]["level"]["items"]["maximum"] == 99
    assert schemas["BatchForecastRequest"]["examples"][0]["series"][0]["id"] == "SPX"
    for name in ("ForecastRequest", "BatchForecastRequest", "SeriesIn"):
        for field, spec in schemas[name]["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"


def test_docs_page_is_served(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()
