"""Named models on the raw ASGI path and in the batcher: a model in memory is answered there with the bytes
FastAPI's route answers; a cold, unknown or misspelt one goes on to the route (which loads it, or answers
its 404/422), and concurrent requests of a named model share calls, bit for bit the unbatched answers.

The registry: the shipped default model as `default` and again as `spy` (format 2, window 21), the format-1
fixture as `fixture` (window 11) and again as `cold` (only ever asked for by the cold-model test).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from app.api.fastpath import ForecastFastPath
from app.inference.batcher import Batcher
from app.main import create_app
from closecast import registry
from tests.app.test_fast_path import _without_fast_path
from tests.helpers import FORMAT1_BUNDLE, FORMAT1_VERSION, ROOT, make_settings
from tests.synthetic import make_closes

MODELS = ROOT / "models"  # the shipped registry: `spy` needs a window (21) longer than the fixtures' (11)


def _registry(root: Path) -> Path:
    shipped = str(registry.read_current(MODELS / "default"))
    for name, bundle, version in (
        ("default", MODELS / "default" / shipped, shipped),
        ("spy", MODELS / "default" / shipped, shipped),
        ("fixture", FORMAT1_BUNDLE, FORMAT1_VERSION),
        ("cold", FORMAT1_BUNDLE, FORMAT1_VERSION),
    ):
        shutil.copytree(bundle, root / name / version)
        registry.set_current(root / name, version, "test")
    return root


class HandedOn:
    """Counts the requests the raw path hands on to FastAPI (wraps the app behind it, nothing else)."""

    def __init__(self, client: TestClient) -> None:
        client.get("/healthz")  # the middleware stack is built on the first request
        layer: Any = client.app.middleware_stack  # type: ignore[attr-defined]
        while not isinstance(layer, ForecastFastPath):
            layer = layer.app
        self.inner, layer.app, self.count = layer.app, self, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.count += 1
        await self.inner(scope, receive, send)


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, TestClient, HandedOn]]:
    root = _registry(tmp_path_factory.mktemp("named") / "models")
    fast = create_app(make_settings(root, batch_max_delay_us=5000))  # as in test_fast_path.py
    plain = _without_fast_path(create_app(make_settings(root, batch_max_size=1)))
    with TestClient(fast) as a, TestClient(plain) as b:
        handed_on = HandedOn(a)
        for model in ("spy", "fixture"):  # in memory from here on, in both apps
            body = {"closes": make_closes(30).tolist(), "model": model}
            assert a.post("/forecast", json=body).is_success and b.post("/forecast", json=body).is_success
        yield a, b, handed_on


def _bodies() -> list[tuple[str, dict[str, Any]]]:
    closes = [make_closes(n, level=10.0 ** (n % 5 - 2), seed=n).tolist() for n in (11, 21, 64, 300)]
    bodies: list[tuple[str, dict[str, Any]]] = []
    for model in ("spy", "fixture"):
        bodies += [("/forecast", {"closes": c, "model": model}) for c in closes[1:]]
        bodies += [("/forecast", {"closes": closes[3], "model": model, "horizon": 5, "level": [50, 99]})]
        bodies += [("/forecast", {"closes": [5.0] * 30, "model": model})]  # flat: warnings
    bodies += [("/forecast", {"closes": closes[0], "model": "fixture"})]  # fixture's window: 11 closes
    mixed = [{"id": str(i), "closes": c, "model": m} for i, c in enumerate(closes[1:]) for m in ("spy", None)]
    bodies += [("/forecast/batch", {"series": mixed, "model": "fixture"})]  # None: the body's model
    bodies += [("/forecast/batch", {"series": [{"id": "a", "closes": closes[1]}], "model": "spy"})]
    return bodies


@pytest.mark.parametrize("path_body", _bodies(), ids=lambda pb: pb[0])
def test_named_models_in_memory_are_answered_on_the_raw_path_as_fastapi_answers(
    clients: tuple[TestClient, TestClient, HandedOn], path_body: tuple[str, dict[str, Any]]
) -> None:
    fast, plain, handed_on = clients
    path, body = path_body
    before = handed_on.count
    a, b = fast.post(path, json=body), plain.post(path, json=body)
    assert (a.status_code, a.content, a.headers) == (b.status_code, b.content, b.headers)
    assert a.status_code == 200 and handed_on.count == before  # answered by the raw path


ERRORS: list[tuple[str, dict[str, Any]]] = [
    ("/forecast", {"closes": [1.0] * 15, "model": "spy"}),  # shorter than spy's window (21)
    ("/forecast", {"closes": [1.0] * 30, "model": "nosuch"}),  # 404 listing the known ones
    ("/forecast", {"closes": [1.0] * 30, "model": "Not A Slug"}),  # 422 with the rule
    ("/forecast/batch", {"series": [{"id": "a", "closes": [1.0] * 15}], "model": "spy"}),
    ("/forecast/batch", {"series": [{"id": "a", "closes": [1.0] * 30, "model": "nosuch"}]}),
]


@pytest.mark.parametrize("path_body", ERRORS, ids=lambda pb: str(pb[1].get("model")))
def test_named_model_errors_are_fastapis_own(
    clients: tuple[TestClient, TestClient, HandedOn], path_body: tuple[str, dict[str, Any]]
) -> None:
    fast, plain, handed_on = clients
    path, body = path_body
    before = handed_on.count
    a, b = fast.post(path, json=body), plain.post(path, json=body)
    assert (a.status_code, a.content, a.headers) == (b.status_code, b.content, b.headers)
    assert a.status_code in (404, 422) and handed_on.count == before + 1


def test_a_cold_model_is_loaded_by_the_route_then_answered_on_the_raw_path(
    clients: tuple[TestClient, TestClient, HandedOn],
) -> None:
    fast, plain, handed_on = clients
    body = {"closes": make_closes(40, seed=7).tolist(), "model": "cold"}
    before = handed_on.count
    first, second = fast.post("/forecast", json=body), fast.post("/forecast", json=body)
    assert first.content == second.content == plain.post("/forecast", json=body).content
    assert first.json()["model"] == "cold" and handed_on.count == before + 1  # only the first went on


def test_concurrent_named_model_forecasts_are_batched_and_equal_unbatched_bit_for_bit(
    clients: tuple[TestClient, TestClient, HandedOn],
) -> None:
    fast, plain, _ = clients
    bodies = [
        {"closes": make_closes(21 + 7 * k, seed=k).tolist(), "model": ("spy", "fixture")[k % 2]}
        for k in range(48)
    ]
    batcher: Batcher = fast.app.state.batcher  # type: ignore[attr-defined]
    before = batcher.batches, batcher.requests
    with ThreadPoolExecutor(16) as pool:
        batched = list(pool.map(lambda b: fast.post("/forecast", json=b), bodies))
    assert [r.content for r in batched] == [plain.post("/forecast", json=b).content for b in bodies]
    assert {r.json()["model"] for r in batched} == {"spy", "fixture"}
    batches, requests = batcher.batches - before[0], batcher.requests - before[1]
    assert requests == len(bodies) and batches < requests  # some requests shared a call


def test_each_series_of_a_mixed_batch_is_answered_as_alone_by_its_model(
    clients: tuple[TestClient, TestClient, HandedOn],
) -> None:
    fast, _, _ = clients
    models = ("spy", "fixture")
    series = [
        {"id": str(k), "closes": make_closes(21 + 17 * k, seed=k).tolist(), "model": models[k % 2]}
        for k in range(12)
    ]
    answers = fast.post("/forecast/batch", json={"series": series, "horizon": 3}).json()["forecasts"]
    for sent, answer in zip(series, answers, strict=True):
        alone = fast.post("/forecast", json={"closes": sent["closes"], "model": sent["model"], "horizon": 3})
        assert {k: answer[k] for k in alone.json()} == alone.json()  # bit for bit (JSON's shortest floats)
