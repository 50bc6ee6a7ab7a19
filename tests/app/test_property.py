"""Property-based: requests generated from the OpenAPI schema (valid and invalid) never get a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app.main import create_app
from tests.helpers import FIXTURE_MODELS, make_settings

APP = create_app(make_settings(FIXTURE_MODELS, enable_noop=True))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_never_get_a_server_error(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (
        f"{case.method} {case.path} -> {response.status_code}: {response.text[:500]}"
    )


def test_generated_requests_were_at_least_500() -> None:
    """Runs after the property test in this module: counts what the app itself saw."""
    counted = {
        tuple(sorted(sample.labels.items())): sample.value
        for family in APP.state.metrics.requests.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    sent = sum(value for labels, value in counted.items() if ("route", "/openapi.json") not in labels)
    if sent == 0:
        pytest.skip("run together with test_generated_requests_never_get_a_server_error")
    assert sent >= 500
    assert not [labels for labels in counted if dict(labels)["status"].startswith("5")]
