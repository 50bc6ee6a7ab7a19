"""The raw ASGI path of /forecast and /forecast/batch answers the same bytes as FastAPI's own path, and
batched /forecast answers are the unbatched ones bit for bit, on the committed format-2 fixture."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.fastpath import ForecastFastPath
from app.inference.batcher import Batcher
from app.main import create_app
from closecast.bundle import load_forecaster
from closecast.errors import InputInvalid
from closecast.forecaster import Forecaster
from closecast.registry import read_current
from tests.helpers import FORMAT2_MODELS, make_settings
from tests.synthetic import make_closes

MODELS = FORMAT2_MODELS  # a committed format-2 registry: answers do not move when the default is retrained


def _without_fast_path(app: FastAPI) -> FastAPI:
    """The same app with every request through FastAPI (the stack is built on the first request)."""
    app.user_middleware = [m for m in app.user_middleware if m.cls is not ForecastFastPath]
    return app


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    # a 5 ms gathering window: the concurrent requests share calls even when a loaded machine runs the
    # client threads one at a time (answers do not depend on it)
    fast = create_app(make_settings(MODELS, batch_max_delay_us=5000))
    plain = _without_fast_path(create_app(make_settings(MODELS, batch_max_size=1)))
    with TestClient(fast) as a, TestClient(plain) as b:
        yield a, b


def _bodies() -> list[tuple[str, dict[str, Any]]]:
    one = [make_closes(n, level=10.0 ** (n % 5 - 2), seed=n).tolist() for n in (21, 64, 300)]
    bodies: list[tuple[str, dict[str, Any]]] = [("/forecast", {"closes": c}) for c in one]
    bodies += [("/forecast", {"closes": one[2], "horizon": 7, "level": [50, 99]})]
    bodies += [("/forecast", {"closes": [5.0] * 30})]  # flat: warnings
    bodies += [("/forecast/batch", {"series": [{"id": str(i), "closes": c} for i, c in enumerate(one)]})]
    bad = [{"closes": [1.0, 2.0]}, {"closes": one[0], "horizon": 0}, {"closes": [1.0] * 20000}, {}]
    bodies += [("/forecast", b) for b in bad]
    bodies += [("/forecast/batch", {"series": [{"id": "x", "closes": [-1.0] * 30}]})]
    bodies += [("/forecast", {"closes": one[0], "features": {"volume": [1.0] * 21}})]  # not read: refused
    return bodies


@pytest.mark.parametrize("path_body", _bodies(), ids=lambda pb: pb[0])
def test_fast_path_answers_the_bytes_fastapi_answers(
    clients: tuple[TestClient, TestClient], path_body: tuple[str, dict[str, Any]]
) -> None:
    path, body = path_body
    fast, plain = (c.post(path, json=body) for c in clients)
    assert (fast.status_code, fast.content) == (plain.status_code, plain.content)
    assert fast.headers == plain.headers


def test_fast_path_leaves_other_content_types_to_fastapi(clients: tuple[TestClient, TestClient]) -> None:
    fast, plain = (c.post("/forecast", content=b'{"closes": [1, 2]}', headers={"content-type": "text/plain"})
                   for c in clients)  # fmt: skip
    assert (fast.status_code, fast.content) == (plain.status_code, plain.content)


def test_fast_path_requests_are_counted_under_their_route(clients: tuple[TestClient, TestClient]) -> None:
    fast, _ = clients
    fast.post("/forecast", json={"closes": make_closes(40).tolist()})
    metrics = fast.get("/metrics").text
    assert 'closecast_http_requests_total{method="POST",route="/forecast",status="200"}' in metrics
    assert 'closecast_batch_series_count{endpoint="forecast",model="default"}' in metrics


def test_concurrent_forecasts_are_batched_and_equal_unbatched_bit_for_bit(
    clients: tuple[TestClient, TestClient],
) -> None:
    fast, plain = clients
    bodies = [{"closes": make_closes(21 + 9 * k, seed=k).tolist(), "horizon": 1 + k % 3} for k in range(48)]
    batcher: Batcher = fast.app.state.batcher  # type: ignore[attr-defined]
    before = batcher.batches, batcher.requests
    with ThreadPoolExecutor(16) as pool:
        batched = list(pool.map(lambda b: fast.post("/forecast", json=b), bodies))
    assert [r.content for r in batched] == [plain.post("/forecast", json=b).content for b in bodies]
    batches, requests = batcher.batches - before[0], batcher.requests - before[1]
    assert requests == len(bodies) and batches < requests  # some requests shared a call


@pytest.fixture(scope="module")
def model() -> Forecaster:
    return load_forecaster(MODELS / "default" / str(read_current(MODELS / "default")), providers="cpu")


def test_batcher_answers_each_request_as_alone_bit_for_bit(model: Forecaster) -> None:
    series = [make_closes(21 + 13 * k, level=10.0 ** (k % 4), seed=k) for k in range(20)]
    series[3] = np.full(25, 2.0)  # flat: its own warnings inside a batch

    async def gather() -> list[Any]:
        batcher = Batcher(max_size=8, max_delay_us=2000)
        answers = await asyncio.gather(*(batcher.forecast(model, s, 2, [80, 95]) for s in series))
        assert batcher.batches == 3  # 8 + 8 full, then 4 after the delay
        return answers

    answers = asyncio.run(gather())
    for s, answer in zip(series, answers, strict=True):
        assert answer.items == model.forecast([s], 2, [80, 95]).items


def test_batcher_gives_a_failing_series_its_own_error(model: Forecaster) -> None:
    """A forecast that overflows fails the batch call; each request then gets its own answer or error."""
    good, bad = make_closes(40), make_closes(40, level=1e307, volatility=0.3, seed=1)

    async def gather() -> list[Any]:
        batcher = Batcher(max_size=8, max_delay_us=0)
        return await asyncio.gather(
            *(batcher.forecast(model, s, 30, [99]) for s in (good, bad, good)), return_exceptions=True
        )

    first, failed, last = asyncio.run(gather())
    assert isinstance(failed, InputInvalid) and "forecast" in str(failed)
    assert first.items == last.items == model.forecast([good], 30, [99]).items
