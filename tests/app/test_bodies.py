"""Request bodies: a limit per route (413, declared or streamed), bodies JSON cannot hold (422 that says what
is wrong), big batches parsed in a child process (the same answer, a crash is a 503 and recovers)."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.helpers import FIXTURE_MODELS, detail_msgs, make_settings, wait_for
from tests.jobs.helpers import AUTH, KEY
from tests.synthetic import calm_walk

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Small limits: /forecast 64 KiB (its floor, max_closes 50), batch 40 kB, uploads 8 KiB; and every
    batch over 1 KiB parsed in the child process."""
    settings = make_settings(
        FIXTURE_MODELS,
        max_closes=50,
        max_body_bytes=40_000,
        max_upload_bytes=8192,
        big_body_bytes=1024,
        api_key=KEY,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def _batch(count: int, length: int = 30) -> dict[str, Any]:
    return {
        "series": [{"id": f"s{k}", "closes": calm_walk(length, seed=k)} for k in range(count)],
        "horizon": 3,
    }


@pytest.mark.parametrize(
    ("path", "size", "message"),
    [
        ("/forecast", 70_000, "/forecast accepts at most 65536 (from CLOSECAST_MAX_CLOSES); "
         "send at most the latest 50 closes"),
        ("/forecast/batch", 50_000, "/forecast/batch accepts at most 40000 (CLOSECAST_MAX_BODY_BYTES); "
         "send fewer or shorter series"),
        ("/train", 9000, "/train accepts at most 8192 (CLOSECAST_MAX_UPLOAD_BYTES); send a smaller file"),
        ("/models/x/promote", 70_000, "/models/x/promote accepts at most 65536; send a smaller body"),
    ],
)  # fmt: skip
def test_body_declared_over_its_limit_is_413(small: TestClient, path: str, size: int, message: str) -> None:
    response = small.post(path, content=b" " * size, headers={**JSON, **AUTH})
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert response.json() == {"detail": f"request body is {size} bytes but {message}"}


def test_streamed_body_over_its_routes_limit_is_413(small: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"series": [{"id": "a", "closes": ['
        for _ in range(7000):
            yield b"100.0, "
        yield b"100.0]}]}"

    response = small.post("/forecast/batch", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["detail"].startswith("request body is more than 40000 bytes but /forecast/batch")


def test_bodies_under_their_limits_are_served(small: TestClient) -> None:
    assert small.post("/forecast", json={"closes": calm_walk(50)}).status_code == 200
    assert small.post("/forecast/batch", json=_batch(3)).status_code == 200


def test_backtest_takes_as_many_closes_and_dates_as_the_closes_limit(client: TestClient) -> None:
    """/backtest's body holds CLOSECAST_MAX_CLOSES closes with their timestamps, past the 64 KiB default."""
    closes = calm_walk(3000)
    dates = [
        f"{2000 + k // 300:04d}-{1 + k % 300 // 25:02d}-{1 + k % 25:02d}T09:30:00+00:00" for k in range(3000)
    ]
    body = json.dumps({"closes": closes, "dates": dates, "folds": 2}).encode()
    assert len(body) > 65536
    response = client.post("/backtest", content=body, headers=JSON)
    assert response.status_code == 200, response.text


# --- bodies JSON cannot hold: 422 naming what is wrong (FastAPI answered a bare 400) ----------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"closes": [1.0, \xff 2.0]}',
         "body is not valid JSON (invalid UTF-8 at line 1 column 18 (byte 0xff)); send it encoded as UTF-8"),
        (b'{"closes": [1.0, 2.0],\n "x": "\xe9t\xe9"}',
         "body is not valid JSON (invalid UTF-8 at line 2 column 8 (byte 0xe9)); send it encoded as UTF-8"),
        (b'{"closes": ' + DEEP + b"}",
         "body is nested too deeply (recursion limit exceeded at line 1 column 212); "
         "send closes as a flat list of numbers"),
        (b'{"closes": [1.0, 1' + b"0" * 5000 + b"]}",
         "body has a number with too many digits (number out of range at line 1 column 4319); "
         "send prices as plain decimals"),
    ],
    ids=["not-utf8", "not-utf8-line-2", "nested-100k", "5000-digits"],
)  # fmt: skip
@pytest.mark.parametrize("route", ["/forecast", "/forecast/batch"])
def test_body_json_cannot_hold_is_422(client: TestClient, route: str, body: bytes, message: str) -> None:
    if route == "/forecast/batch":  # the same body one level down: the same message, another column
        body = b'{"series": [{"id": "a", ' + body[1:] + b"]}"
    response = client.post(route, content=body, headers=JSON)
    assert response.status_code == 422, response.text
    item = response.json()["detail"][0]
    assert (item["type"], item["loc"], item["input"]) == (
        "json_invalid",
        ["body"],
        {},
    )  # body not echoed
    assert [_columnless(m) for m in detail_msgs(response)] == [_columnless(message)]
    if route == "/forecast":
        assert detail_msgs(response) == [message]


def _columnless(message: str) -> str:
    return re.sub(r"column \d+", "column N", message)


def test_integer_too_large_for_a_price_is_422(client: TestClient) -> None:
    response = client.post("/forecast", content=b'{"closes": [1.0, 1' + b"0" * 400 + b"]}", headers=JSON)
    assert detail_msgs(response)[0].endswith("…; prices must be at most 1.8e308")
    assert response.json()["detail"][0]["type"] == "price_out_of_range"


def test_bodies_are_not_parsed_by_json_loads(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The body reaches the route validated from its bytes, not through FastAPI's json.loads + validate."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("json.loads was called on a forecast body")

    monkeypatch.setattr("starlette.requests.json.loads", refuse)
    assert client.post("/forecast", json={"closes": calm_walk(30)}).status_code == 200
    assert client.post("/forecast/batch", json=_batch(2)).status_code == 200


def test_openapi_still_documents_the_bodies(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, model in [("/forecast", "ForecastRequest"), ("/forecast/batch", "BatchForecastRequest")]:
        schema = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}


# --- big batches in the child process -----------------------------------------------------------------------


def test_batch_parsed_in_the_child_answers_bit_for_bit(client: TestClient, small: TestClient) -> None:
    body = json.dumps(_batch(40, 25)).encode()  # ~26 KB: inline on `client`, in the child on `small`
    inline = client.post("/forecast/batch", content=body, headers=JSON)
    child = small.post("/forecast/batch", content=body, headers=JSON)
    assert inline.status_code == 200, inline.text
    assert child.content == inline.content


def test_invalid_batch_parsed_in_the_child_is_the_same_422(client: TestClient, small: TestClient) -> None:
    batch = _batch(40, 25)
    batch["series"][7]["closes"][3] = -1.0
    batch["series"][9]["id"] = ""
    for c in (client, small):
        body = json.dumps(batch).encode()
        response = c.post("/forecast/batch", content=body, headers=JSON)
        assert detail_msgs(response) == [
            "series[7].closes[3] is -1.0; prices must be > 0",
            'series[9].id is ""; string should have at least 1 character',
        ]


def test_child_that_dies_is_503_then_replaced(small: TestClient) -> None:
    parser = small.app.state.batch_parser  # type: ignore[attr-defined]
    assert small.portal is not None
    pid = small.portal.call(parser.child_pid)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), timeout=10)
    body = json.dumps(_batch(40, 25)).encode()
    response = small.post("/forecast/batch", content=body, headers=JSON)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["detail"].startswith("the process that parses large batches stopped")
    degraded = small.get("/readyz").json()["degraded"]
    assert [d for d in degraded if d.startswith("batch_parser: its child process died 1 time(s)")]
    assert small.post("/forecast/batch", content=body, headers=JSON).status_code == 200
    assert small.portal.call(parser.child_pid) != pid
    assert small.get("/readyz").status_code == 200  # degraded, still ready: forecasts are served


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
