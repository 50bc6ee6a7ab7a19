"""The inference protocol's infer on the raw ASGI path answers the bytes FastAPI's route answers (binary and
JSON tensors, errors too), on the default (format-2) model; and the protocol is as open as /forecast."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.fastpath import ForecastFastPath
from app.main import create_app
from tests.helpers import FIXTURE_MODELS, FORMAT2_MODELS, make_settings
from tests.synthetic import make_closes

MODELS = FORMAT2_MODELS  # a committed format-2 registry: answers do not move when the default is retrained
INFER = "/v2/models/default/infer"


def _without_fast_path(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not ForecastFastPath]
    return app


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    fast = create_app(make_settings(MODELS))
    plain = _without_fast_path(create_app(make_settings(MODELS)))
    with TestClient(fast) as a, TestClient(plain) as b:
        yield a, b


def _binary(closes: np.ndarray, **extra: Any) -> tuple[bytes, dict[str, str]]:
    tensor = {"name": "closes", "shape": list(closes.shape), "datatype": "FP64"}
    header = json.dumps(
        {"inputs": [{**tensor, "parameters": {"binary_data_size": closes.nbytes}}], **extra}
    ).encode()
    return header + closes.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def _json(closes: np.ndarray, datatype: str = "FP64", **extra: Any) -> tuple[bytes, dict[str, str]]:
    tensor = {
        "name": "closes",
        "shape": list(closes.shape),
        "datatype": datatype,
        "data": closes.ravel().tolist(),
    }
    return json.dumps({"inputs": [tensor], **extra}).encode(), {}


def _requests() -> list[tuple[bytes, dict[str, str]]]:
    batch = np.array([make_closes(300, level=10.0 ** (k % 5 - 2), seed=k)[-40:] for k in range(8)])
    flat = np.full((2, 30), 5.0)  # warnings
    return [
        _binary(batch),
        _binary(batch, parameters={"binary_data_output": True, "horizon": 4, "levels": [50, 99]}),
        _binary(batch[:1], outputs=[{"name": "upper_95", "parameters": {"binary_data": True}}]),
        _json(batch),
        _json(batch.astype(np.float32), "FP32", id="r1"),
        _json(flat),
        _json(batch[:, :5]),  # shorter than the window
        _json(-batch),  # not > 0
        _json(batch, parameters={"horizon": 999}),
        _binary(batch)[0][:-3] + b"}}}",  # type: ignore[list-item]
        (b"not json", {}),
    ]


@pytest.mark.parametrize(
    "request_", _requests(), ids=lambda r: str(len(r[0])) if isinstance(r, tuple) else ""
)
def test_fast_path_answers_the_bytes_the_route_answers(
    clients: tuple[TestClient, TestClient], request_: Any
) -> None:
    body, headers = request_ if isinstance(request_, tuple) else (request_, {})
    fast, plain = (c.post(INFER, content=body, headers=headers) for c in clients)
    assert (fast.status_code, fast.content) == (plain.status_code, plain.content)
    assert fast.headers == plain.headers


def test_fast_path_infers_are_counted_under_their_route(clients: tuple[TestClient, TestClient]) -> None:
    fast, _ = clients
    body, headers = _binary(np.array([make_closes(40, seed=1)]))
    assert fast.post(INFER, content=body, headers=headers).status_code == 200
    metrics = fast.get("/metrics").text
    assert (
        'closecast_http_requests_total{method="POST",route="/v2/models/{model}/infer",status="200"}'
        in metrics
    )
    assert 'closecast_batch_series_count{endpoint="oip_infer",model="default"}' in metrics


def test_protocol_is_as_open_as_forecast_when_reads_are_protected() -> None:
    settings = make_settings(FIXTURE_MODELS, api_key="k" * 32, protect_reads=True)
    with TestClient(create_app(settings)) as client:
        assert client.get("/models").status_code == 401  # reads are protected
        window = client.get("/v2/models/default").json()["parameters"]["window"]
        body, _ = _json(np.array([make_closes(window, seed=2)]))
        assert client.post(INFER, content=body).status_code == 200
        assert (
            client.post("/forecast", json={"closes": make_closes(window, seed=2).tolist()}).status_code == 200
        )
