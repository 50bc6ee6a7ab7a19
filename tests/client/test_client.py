"""``closecast.client`` against a real server process (``python -m app`` over a copy of the fixtures)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from closecast.client import APIError, AsyncClient, Client, ForecastResult, JobFailed
from tests.helpers import SYNTHETIC_CSV, Server, copy_registry, running_server
from tests.jobs.helpers import AUTH, KEY, TINY
from tests.synthetic import make_closes

CLOSES = [float(c) for c in make_closes(120, level=50.0, seed=4)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model_dir = copy_registry(tmp_path_factory.mktemp("client") / "models")
    with running_server(model_dir, api_key=KEY, train_threads="1") as running:
        yield running


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.url, api_key=KEY) as cc:
        yield cc


def test_forecast_equals_what_the_api_answers(server: Server, client: Client) -> None:
    body = {"closes": CLOSES, "horizon": 3, "level": [80, 95]}
    expected = httpx.post(f"{server.url}/forecast", json=body).json()
    got = client.forecast(CLOSES, horizon=3, levels=[80, 95])
    assert isinstance(got, ForecastResult)
    assert got.raw == expected
    assert got.forecast == expected["forecast"] and len(got.forecast) == 3
    assert got.intervals[80].lower == expected["intervals"]["80"]["lower"]
    assert got.intervals[95].upper == expected["intervals"]["95"]["upper"]
    assert got.model_version == expected["model_version"] and got.last_close == CLOSES[-1]


def test_forecast_batch_answers_in_order_as_the_api_does(server: Server, client: Client) -> None:
    series = {"a": CLOSES, "b": [c * 3 for c in CLOSES]}
    expected = httpx.post(
        f"{server.url}/forecast/batch",
        json={"series": [{"id": k, "closes": v} for k, v in series.items()], "horizon": 2, "level": [80, 95]},
    ).json()["forecasts"]
    got = client.forecast_batch(series, horizon=2)
    assert [r.id for r in got] == ["a", "b"]
    assert [r.raw for r in got] == expected


def test_an_error_carries_the_api_body(client: Client) -> None:
    with pytest.raises(APIError) as caught:
        client.forecast(CLOSES[:3])
    assert caught.value.status_code == 422
    assert any("closes" in item["loc"] for item in caught.value.detail)
    assert "closes has 3 values" in str(caught.value)


def test_unknown_model_is_a_404_with_the_api_words(client: Client) -> None:
    with pytest.raises(APIError) as caught:
        client.forecast(CLOSES, model="no-such-model")
    assert caught.value.status_code == 404
    assert "no-such-model" in caught.value.detail


def test_models_backtest_and_card(client: Client) -> None:
    names = [m["model"] for m in client.models()]
    assert "default" in names
    card = client.model("default")
    assert card["version"] == client.forecast(CLOSES).model_version
    result = client.backtest(CLOSES, folds=2)
    assert len(result.folds) == 2 and result.model == "default"
    assert result.overall["n"] == sum(fold["n"] for fold in result.folds)


def test_async_client_says_the_same(server: Server, client: Client) -> None:
    async def forecast() -> ForecastResult:
        async with AsyncClient(server.url) as cc:
            return await cc.forecast(CLOSES, horizon=2)

    assert asyncio.run(forecast()) == client.forecast(CLOSES, horizon=2)


def test_train_from_a_list_waits_and_the_new_model_serves(client: Client) -> None:
    job = client.train(CLOSES * 3, model="fromlist", params=TINY)
    done = client.wait(job, poll_s=0.2, timeout_s=180, progress=False)
    assert done.status == "succeeded" and done.promoted and done.model == "fromlist"
    served = client.forecast(CLOSES, model="fromlist")
    assert served.model == "fromlist" and served.model_version == done.version
    moved = client.promote(done.version, model="fromlist")
    assert moved["model"] == "fromlist"


def test_train_from_a_csv_file_and_from_a_long_dataframe(client: Client, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    from_csv = client.train(SYNTHETIC_CSV, model="fromcsv", params=TINY)
    frame = pd.read_csv(SYNTHETIC_CSV).rename(columns={"Date": "ds", "Close": "y"})
    long = pd.concat([frame.assign(unique_id="x"), frame.assign(unique_id="y", y=frame["y"] * 2)])
    from_frame = client.train(long, model="fromframe", params=TINY)
    for job, name in ((from_csv, "fromcsv"), (from_frame, "fromframe")):
        done = client.wait(job, poll_s=0.2, timeout_s=240, progress=False)
        assert done.status == "succeeded", done.error
        assert done.model == name
    assert client.job(from_frame).raw["series"] == 2


def test_bad_training_data_is_refused_with_the_cli_message(client: Client) -> None:
    with pytest.raises(APIError) as caught:
        client.train(CLOSES * 3, model="toolong", params={**TINY, "window": 500})
    assert caught.value.status_code == 422
    assert "window 500" in str(caught.value)


def test_waiting_on_a_cancelled_job_raises_with_its_state(client: Client) -> None:
    job = client.train(CLOSES * 3, model="cancelled", params={**TINY, "epochs": 500})
    client.cancel(job)
    with pytest.raises(JobFailed) as caught:
        client.wait(job, poll_s=0.2, timeout_s=60, progress=False)
    assert caught.value.job.status == "cancelled"
    assert caught.value.job.job_id == job.job_id


class _Flaky(BaseHTTPRequestHandler):
    """Answers the first request 429 (or 503) with a ``Retry-After``, then what the real server answered."""

    answers: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    seen = 0

    def do_GET(self) -> None:
        status, headers, body = self.answers[min(type(self).seen, len(self.answers) - 1)]
        type(self).seen += 1
        self.send_response(status)
        for key, value in {**headers, "content-type": "application/json"}.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("first", "retried"),
    [((429, {"retry-after": "0.2"}), True), ((503, {"retry-after": "0"}), True), ((503, {}), False)],
)
def test_retries_honour_retry_after(server: Server, first: tuple[int, dict[str, str]], retried: bool) -> None:
    models = httpx.get(f"{server.url}/models").content
    _Flaky.answers = [(*first, b'{"detail": "busy"}'), (200, {}, models)]
    _Flaky.seen = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with Client(f"http://127.0.0.1:{httpd.server_port}") as cc:
            if retried:
                assert [m["model"] for m in cc.models()] == [
                    m["model"] for m in httpx.get(f"{server.url}/models").json()["models"]
                ]
                assert _Flaky.seen == 2
            else:
                with pytest.raises(APIError) as caught:
                    cc.models()
                assert caught.value.status_code == 503 and caught.value.detail == "busy"
                assert _Flaky.seen == 1
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_client_imports_only_httpx_and_the_standard_library() -> None:
    heavy = ("numpy", "onnxruntime", "app", "training", "torch", "pandas", "tqdm", "fastapi", "pydantic")
    code = (
        f"import sys, closecast.client\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert AUTH["Authorization"].endswith(KEY)
