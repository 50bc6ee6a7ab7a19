"""Property-based contract test: requests generated from the OpenAPI schema (valid and invalid), every
schemathesis check (no 5xx, status codes, content types, response bodies and headers as declared, valid
data accepted, invalid data refused, auth enforced, 405s with a full ``Allow``), on every operation.

The app runs on a throwaway copy of the fixture registry with a key set, and is exercised twice: without a
key (every operation, the keyed ones answer 401) and with the key (every operation but ``POST /train``,
which would start training processes; promotion only ever changes the copy).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.main import create_app
from tests.helpers import copy_registry, make_settings

KEY = "contract-test-key-0123456789"
_REGISTRY = Path(tempfile.mkdtemp(prefix="closecast-contract-"))
atexit.register(shutil.rmtree, _REGISTRY, True)  # before schemathesis's own: runs after the app stopped
APP = create_app(make_settings(copy_registry(_REGISTRY / "models"), api_key=KEY, enable_noop=True))
# Starts the app's lifespan (once, for the whole run): the schema fetched states the loaded model's window.
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schemathesis.serializer.alias("application/gzip", "application/octet-stream")  # a bundle upload's .tar.gz
keyed = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(method="POST", path="/train")
# CI-sized and reproducible by default (~30 s; the same cases every run, derived from each test's name, so a
# red run is red again on any machine). `CONTRACT_RANDOM=1 CONTRACT_EXAMPLES=500` explores new cases
# (bench/schemathesis.sh); a failure prints a curl command that reproduces it.
EXAMPLES = settings(
    max_examples=int(os.environ.get("CONTRACT_EXAMPLES", "25")),
    derandomize=os.environ.get("CONTRACT_RANDOM", "0") != "1",
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@keyed.auth()
class _Key:
    """The key on every keyed call, except where schemathesis removes it on purpose (it expects a 401)."""

    def get(self, case: schemathesis.Case, context: object) -> str:
        return KEY

    def set(self, case: schemathesis.Case, data: str, context: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


# 422s that valid JSON can earn, because what they refuse depends on several values together, which no JSON
# schema can state: a forecast that does not fit a float64 (prices of 5e-324), a backtest whose closes are
# too few for the folds and horizon asked, dates that are strings but not ISO dates or not ascending;
# features the served model does not read (or reads and were not sent), features of another length than
# the closes, and a high/low/open of exactly 0 (the schema's bound, >= 0, is the one volume shares); bytes
# that are not one bundle's .tar.gz (an upload's body is any binary to the schema).
DATA_DEPENDENT = {
    "forecast_not_finite",
    "series_too_short_for_backtest",
    "dates_invalid",
    "dates_not_ascending",
    "features_not_used",
    "feature_not_used",
    "features_missing",
    "feature_missing",
    "feature_length",
    "feature_invalid",
    # POST /train: a CSV's content (any bytes, as far as a multipart schema can say), closes too few for the
    # window and split asked, train_frac + val_frac over 0.98, series ids that repeat, a tune job with
    # several series (id_column) or more workers than trials
    "data_invalid",
    "series_too_short",
    "param_invalid",
    "series_duplicate",
    "tune_invalid",
    # POST /models/{model}/versions: an archive that is not a bundle
    "bundle_archive_invalid",
}


def _data_dependent(response: schemathesis.Response) -> bool:
    if response.status_code != 422:
        return False
    return {item.get("type") for item in response.json().get("detail", [])} <= DATA_DEPENDENT


@schemathesis.check
def valid_data_accepted(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """schemathesis's ``positive_data_acceptance``, except for the data-dependent 422s above."""
    if not _data_dependent(response):
        positive_data_acceptance(ctx, response, case)


def _validate(case: schemathesis.Case) -> None:
    case.call_and_validate(
        excluded_checks=[positive_data_acceptance], additional_checks=[valid_data_accepted]
    )


@schema.parametrize()
@EXAMPLES
def test_generated_requests_without_the_key_keep_the_contract(case: schemathesis.Case) -> None:
    _validate(case)


@keyed.parametrize()
@EXAMPLES
def test_generated_requests_with_the_key_keep_the_contract(case: schemathesis.Case) -> None:
    _validate(case)


def test_generated_requests_were_at_least_500() -> None:
    """Runs after the property tests in this module: counts what the app itself saw."""
    counted = {
        tuple(sorted(sample.labels.items())): sample.value
        for family in APP.state.metrics.requests.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    sent = sum(value for labels, value in counted.items() if ("route", "/openapi.json") not in labels)
    if sent == 0:
        pytest.skip("run together with the property tests above")
    assert sent >= 500
    assert not [labels for labels in counted if dict(labels)["status"].startswith("5")]
