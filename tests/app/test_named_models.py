"""Named models through the real app and ONNX Runtime: several models side by side, each loaded on first
use, promoted, rolled back, deleted and evicted on its own; every new 4xx with its message.

The registry holds `default` (the fixture) and two more models, `aapl` and `msft`, whose versions are copies
of the fixture bundle under other version names: what is tested here is the routing by name, not the skill.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from closecast import registry
from tests.helpers import (
    DEFAULT,
    FIXTURE_BUNDLE,
    FIXTURE_VERSION,
    copy_registry,
    detail_msgs,
    make_settings,
    running_server,
    wait_for,
)
from tests.synthetic import calm_walk

KEY = "named-models-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
A1, A2 = "20991201T000000Z-aapl0001", "20991202T000000Z-aapl0002"
M1 = "20991201T000000Z-msft0001"
UNPROMOTED = "20991203T000000Z-aapl0003"


def add_model(root: Path, model: str, *versions: str, promote: tuple[str, ...] = ()) -> Path:
    """``root/<model>/<version>`` copies of the fixture bundle, ``promote`` made current in that order."""
    for version in versions:
        shutil.copytree(FIXTURE_BUNDLE, root / model / version)
    for version in promote:
        registry.set_current(root / model, version, "test")
    return root / model


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = copy_registry(tmp_path / "models")
    add_model(root, "aapl", A1, A2, UNPROMOTED, promote=(A1, A2))
    add_model(root, "msft", M1, promote=(M1,))
    return root


@pytest.fixture
def client(root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(root, api_key=KEY))) as c:
        yield c


def forecast(client: TestClient, model: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"closes": calm_walk()}
    if model is not None:
        body["model"] = model
    response = client.post("/forecast", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def metric(client: TestClient, prefix: str) -> float:
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


# --- serving side by side ----------------------------------------------------------------------------------


def test_forecast_answers_with_the_model_asked_and_the_default_without_one(client: TestClient) -> None:
    assert (forecast(client)["model"], forecast(client)["model_version"]) == ("default", FIXTURE_VERSION)
    assert (forecast(client, "aapl")["model"], forecast(client, "aapl")["model_version"]) == ("aapl", A2)
    assert forecast(client, "msft")["model_version"] == M1
    assert forecast(client, "default")["model_version"] == FIXTURE_VERSION


def test_batch_routes_each_series_to_its_model_with_one_call_per_model(client: TestClient) -> None:
    series = [
        {"id": "a1", "closes": calm_walk()},
        {"id": "m1", "closes": calm_walk(), "model": "msft"},
        {"id": "a2", "closes": calm_walk()},
        {"id": "d1", "closes": calm_walk(), "model": "default"},
    ]
    response = client.post("/forecast/batch", json={"model": "aapl", "series": series})
    assert response.status_code == 200, response.text
    items = response.json()["forecasts"]
    assert [(i["id"], i["model"], i["model_version"]) for i in items] == [
        ("a1", "aapl", A2),
        ("m1", "msft", M1),
        ("a2", "aapl", A2),
        ("d1", "default", FIXTURE_VERSION),
    ]
    # one Forecaster.forecast per model (one ONNX Runtime call per step): one observation each, series summed
    batches = 'closecast_batch_series_count{endpoint="forecast_batch",model='
    sums = 'closecast_batch_series_sum{endpoint="forecast_batch",model='
    assert [metric(client, f'{batches}"{m}"}}') for m in ("aapl", "msft", "default")] == [1, 1, 1]
    assert [metric(client, f'{sums}"{m}"}}') for m in ("aapl", "msft", "default")] == [2, 1, 1]


def test_batch_reports_short_series_of_every_model_in_the_order_sent(client: TestClient) -> None:
    series = [
        {"id": "ok", "closes": calm_walk()},
        {"id": "short-m", "closes": [1.0, 2.0], "model": "msft"},
        {"id": "short-a", "closes": [1.0, 2.0, 3.0], "model": "aapl"},
    ]
    response = client.post("/forecast/batch", json={"series": series})
    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["detail"]] == [
        ["body", "series", 1, "closes"],
        ["body", "series", 2, "closes"],
    ]


def test_unknown_model_is_404_naming_it_and_listing_known_ones(client: TestClient) -> None:
    response = client.post("/forecast", json={"closes": calm_walk(), "model": "tsla"})
    assert response.status_code == 404
    assert response.json()["detail"] == (
        "model 'tsla' is not in the registry; known models: 'aapl', 'default', 'msft' (GET /models lists "
        'them); train it first with POST /train and `"model": "tsla"`'
    )
    batch = client.post(
        "/forecast/batch", json={"series": [{"id": "x", "closes": calm_walk(), "model": "t"}]}
    )
    assert batch.status_code == 404 and batch.json()["detail"].startswith("model 't' is not in the registry")
    for path in ("/models/tsla", "/models/tsla/versions"):
        assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    ("name", "why"),
    [
        (
            "AAPL",
            "a model name is 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter",
        ),
        ("../etc", "a model name is 1 to 64 lowercase letters"),
        ("current", "'current' is reserved"),
        ("jobs.sqlite", "'jobs.sqlite' is reserved"),
    ],
)
def test_a_model_name_that_is_no_slug_is_422_with_the_rule(client: TestClient, name: str, why: str) -> None:
    response = client.post("/forecast", json={"closes": calm_walk(), "model": name})
    assert response.status_code == 422
    assert detail_msgs(response)[0].startswith(f'model is "{name}"; {why}')


def test_a_model_path_that_is_no_slug_is_422(client: TestClient) -> None:
    response = client.get("/models/AAPL/versions")
    assert response.status_code == 422
    assert detail_msgs(response) == [
        "path.model is \"AAPL\"; a model name is 1 to 64 lowercase letters, digits, '.', '_' or '-', "
        "starting with a letter or digit"
    ]


# --- listing -----------------------------------------------------------------------------------------------


def test_models_lists_every_model_with_its_current_version(client: TestClient) -> None:
    forecast(client, "msft")
    models = {m["model"]: m for m in client.get("/models", headers=AUTH).json()["models"]}
    assert list(models) == ["aapl", "default", "msft"]
    assert models["default"]["default"] is True and models["aapl"]["default"] is False
    assert [models[m]["current_version"] for m in models] == [A2, FIXTURE_VERSION, M1]
    assert [models[m]["loaded"] for m in models] == [False, True, True]  # aapl not used yet
    assert models["aapl"]["versions"] == 3 and models["aapl"]["window"] == models["default"]["window"]
    assert models["aapl"]["skill"] is not None and models["aapl"]["source"] == "synthetic.csv"


def test_model_card_and_versions_of_a_named_model(client: TestClient) -> None:
    card = client.get("/models/aapl").json()
    assert (card["model"], card["version"]) == ("aapl", A2)
    assert client.get("/models/current").json()["model"] == "default"
    assert client.get("/models/aapl").json()["data"].get("source") is None  # not for callers without the key
    versions = client.get("/models/aapl/versions", headers=AUTH).json()
    assert versions["model"] == "aapl" and versions["current"] == A2 and versions["served"] == A2
    assert [v["version"] for v in versions["versions"]] == [UNPROMOTED, A2, A1]


# --- promotion, rollback, deletion -------------------------------------------------------------------------


def test_rollback_of_one_model_leaves_the_others_untouched(client: TestClient, root: Path) -> None:
    assert forecast(client, "aapl")["model_version"] == A2
    response = client.post(f"/models/aapl/versions/{A1}/promote", headers=AUTH)
    assert response.json() == {"model": "aapl", "version": A1, "previous": A2}
    assert forecast(client, "aapl")["model_version"] == A1  # this worker swapped at once
    assert forecast(client, "msft")["model_version"] == M1
    assert forecast(client)["model_version"] == FIXTURE_VERSION
    assert registry.read_current(root / DEFAULT) == FIXTURE_VERSION
    assert registry.read_current(root / "msft") == M1
    assert [p.version for p in registry.promotion_history(root / "aapl")] == [A1, A2, A1]


def test_promoting_a_cold_model_is_served_on_its_next_request(client: TestClient) -> None:
    response = client.post(f"/models/msft/versions/{M1}/promote", headers=AUTH)
    assert response.status_code == 200, response.text
    assert forecast(client, "msft")["model_version"] == M1


def test_the_old_promote_path_is_the_default_models(client: TestClient, root: Path) -> None:
    response = client.post(f"/models/{FIXTURE_VERSION}/promote", headers=AUTH)
    assert response.json() == {"model": "default", "version": FIXTURE_VERSION, "previous": FIXTURE_VERSION}
    missing = client.post(f"/models/{A1}/promote", headers=AUTH)  # an aapl version is not the default's
    assert missing.status_code == 404
    assert missing.json()["detail"] == (
        f"version '{A1}' is not a version of model 'default'; GET /models/default/versions lists them"
    )


def test_registry_changes_need_the_key(client: TestClient) -> None:
    assert client.post(f"/models/aapl/versions/{A1}/promote").status_code == 401
    assert client.delete(f"/models/aapl/versions/{UNPROMOTED}").status_code == 401
    assert client.delete("/models/aapl").status_code == 401


def test_deleting_the_current_or_a_promoted_version_is_409(client: TestClient) -> None:
    current = client.delete(f"/models/aapl/versions/{A2}", headers=AUTH)
    assert current.status_code == 409
    assert current.json()["detail"] == (
        f"version '{A2}' is the current version of model 'aapl'; promote another version first "
        "(POST /models/aapl/versions/{version}/promote), then delete this one"
    )
    promoted = client.delete(f"/models/aapl/versions/{A1}", headers=AUTH)
    assert promoted.status_code == 409
    assert promoted.json()["detail"].startswith(f"version '{A1}' of model 'aapl' is in its promotion history")


def test_deleting_a_never_promoted_version_removes_it(client: TestClient, root: Path) -> None:
    response = client.delete(f"/models/aapl/versions/{UNPROMOTED}", headers=AUTH)
    assert response.json() == {"model": "aapl", "version": UNPROMOTED}
    assert registry.list_versions(root / "aapl") == [A1, A2]
    assert client.delete(f"/models/aapl/versions/{UNPROMOTED}", headers=AUTH).status_code == 404


def test_the_default_model_cannot_be_deleted(client: TestClient) -> None:
    response = client.delete("/models/default", headers=AUTH)
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "model 'default' is the default model (CLOSECAST_DEFAULT_MODEL), which requests without a `model` "
        "use; it cannot be deleted"
    )


def test_deleting_a_model_removes_it_and_its_requests_become_404(client: TestClient, root: Path) -> None:
    forecast(client, "msft")
    assert client.delete("/models/msft", headers=AUTH).json() == {"model": "msft", "version": None}
    assert not (root / "msft").exists()
    assert client.post("/forecast", json={"closes": calm_walk(), "model": "msft"}).status_code == 404
    assert [m["model"] for m in client.get("/models").json()["models"]] == ["aapl", "default"]


# --- memory: the LRU ---------------------------------------------------------------------------------------


def test_least_recently_used_model_is_evicted_and_reloaded_on_use(root: Path) -> None:
    with TestClient(create_app(make_settings(root, max_loaded_models=2))) as c:
        forecast(c, "aapl")
        forecast(c, "msft")  # the default stays; aapl (least recently used) leaves
        loaded = {m["model"]: m["loaded"] for m in c.get("/models").json()["models"]}
        assert loaded == {"aapl": False, "default": True, "msft": True}
        assert metric(c, 'closecast_model_loads_total{event="evicted",model="aapl"}') == 1
        assert forecast(c, "aapl")["model_version"] == A2  # loaded again, verified again
        assert metric(c, 'closecast_model_loads_total{event="loaded",model="aapl"}') == 2
        assert metric(c, "closecast_models_loaded ") == 2
        assert forecast(c)["model_version"] == FIXTURE_VERSION  # the default is never evicted


# --- swaps under load --------------------------------------------------------------------------------------


def test_no_request_fails_while_a_model_is_promoted_back_and_forth(client: TestClient) -> None:
    stop = threading.Event()
    answers: list[tuple[int, str, str]] = []

    def traffic(model: str) -> None:
        while not stop.is_set():
            response = client.post("/forecast", json={"closes": calm_walk(), "model": model})
            body = response.json()
            answers.append((response.status_code, body.get("model", ""), body.get("model_version", "")))

    threads = [threading.Thread(target=traffic, args=(m,)) for m in ("aapl", "aapl", "default", "msft")]
    for t in threads:
        t.start()
    try:
        for k in range(10):
            version = (A1, A2)[k % 2]
            assert client.post(f"/models/aapl/versions/{version}/promote", headers=AUTH).status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert answers and all(status == 200 for status, _, _ in answers)
    by_model = {(model, version) for _, model, version in answers}
    assert {v for m, v in by_model if m == "aapl"} == {A1, A2}
    assert {v for m, v in by_model if m != "aapl"} == {FIXTURE_VERSION, M1}


def test_a_real_server_follows_pointer_moves_of_a_named_model_without_a_failed_request(root: Path) -> None:
    """`python -m app`: another worker (here, the test) moves aapl's pointer; this one follows within the
    reload interval, while traffic to aapl and the default never sees an error."""
    with running_server(root, reload_interval_s="0.05") as server:
        stop = threading.Event()
        answers: list[tuple[int, str]] = []

        def traffic(model: str) -> None:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                while not stop.is_set():
                    r = http.post("/forecast", json={"closes": calm_walk(), "model": model})
                    answers.append((r.status_code, r.json().get("model_version", r.text)))

        threads = [threading.Thread(target=traffic, args=(m,)) for m in ("aapl", "default")]
        for t in threads:
            t.start()
        try:  # both threads answered once before the pointer moves (a loaded machine starts them late)
            wait_for(
                lambda: {FIXTURE_VERSION, A2} <= {a[1] for a in answers}, timeout=30
            )  # aapl starts on A2
            for version in (A1, A2, A1):
                registry.set_current(root / "aapl", version, "another worker")
                wait_for(lambda v=version: v in [a[1] for a in answers[-4:]], timeout=30)  # type: ignore[misc]
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert answers and all(status == 200 for status, _ in answers), answers[:5]
    assert {v for _, v in answers} == {A1, A2, FIXTURE_VERSION}
