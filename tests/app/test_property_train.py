"""``POST /train`` under schemathesis with the key (JSON and multipart): what the schema accepts, validation
accepts, except the data-dependent refusals listed once in ``test_property.DATA_DEPENDENT``.

The app only enqueues (``run_jobs=false``): a generated job is accepted (202) and waits, no training process
ever starts; the queue is as long as the settings allow, so a few hundred accepted jobs never fill it.
``bench/schemathesis.sh`` runs this with more examples against a real server.
"""

from __future__ import annotations

import atexit
import json
import re
import shutil
import tempfile
from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.test_property import DATA_DEPENDENT, EXAMPLES, KEY, _validate
from tests.helpers import ROOT, copy_registry, detail_msgs, make_settings

_REGISTRY = Path(tempfile.mkdtemp(prefix="closecast-contract-train-"))
atexit.register(shutil.rmtree, _REGISTRY, True)
APP = create_app(
    make_settings(copy_registry(_REGISTRY / "models"), api_key=KEY, run_jobs=False, job_queue_size=1000)
)
train = schemathesis.openapi.from_asgi("/openapi.json", APP).include(method="POST", path="/train")


@train.auth()
class _Key:
    def get(self, case: schemathesis.Case, context: object) -> str:
        return KEY

    def set(self, case: schemathesis.Case, data: str, context: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@train.parametrize()
@EXAMPLES
def test_generated_train_requests_keep_the_contract(case: schemathesis.Case) -> None:
    _validate(case)


def test_an_all_null_body_is_refused_by_the_schema_as_by_validation() -> None:
    """The schema's ``oneOf``: a null counts as absent, so ``{"closes": null}`` matches neither branch."""
    schema = APP.openapi()["paths"]["/train"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    closes_branch, series_branch = schema["oneOf"]
    assert closes_branch["properties"]["closes"] == {"type": "array"}
    assert series_branch["properties"]["closes"] == {"type": "null"}
    with TestClient(APP) as client:
        auth = {"Authorization": f"Bearer {KEY}"}
        response = client.post("/train", json={"closes": None, "series": None}, headers=auth)
        assert response.status_code == 422
        assert "neither closes nor series" in detail_msgs(response)[0]


def test_each_data_dependent_refusal_is_one_the_service_really_makes() -> None:
    """Every kind listed as data-dependent is a ``type`` the service's code writes (no stale entries)."""
    sources = [*(ROOT / "app").rglob("*.py"), *(ROOT / "closecast").rglob("*.py")]
    text = "\n".join(p.read_text() for p in sources)
    assert not [kind for kind in sorted(DATA_DEPENDENT) if f'"{kind}"' not in text]


def test_every_bound_is_stated_in_json_schema_terms() -> None:
    """No pydantic ``ge``/``le`` left in the schema (JSON Schema ignores them: tune.trials 0 was valid)."""
    text = json.dumps(APP.openapi())
    assert not re.findall(r'"(?:ge|le|gt|lt)": -?[0-9]', text)
    tune = APP.openapi()["components"]["schemas"]["TuneRequest"]["properties"]["trials"]
    assert (tune["minimum"], tune["maximum"]) == (1, 10_000)
