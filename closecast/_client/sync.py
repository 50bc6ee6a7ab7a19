"""``Client``: the blocking client (httpx). What each call sends is in ``calls.py``."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from closecast._client import calls
from closecast._client.errors import APIError
from closecast._client.progress import JobWait
from closecast._client.results import BacktestResult, ForecastResult, Job


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def error_of(response: httpx.Response) -> APIError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return APIError(response.status_code, body, response.request.method, str(response.request.url))


class Client:
    """A closecast server at ``url``; ``api_key`` for training, promotion and protected reads.

    429 and 503-with-``Retry-After`` answers are retried up to ``retries`` times, waiting what the server
    asks (at most ``max_retry_wait`` seconds each); any other error status raises ``APIError``.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=url, headers=auth_headers(api_key), timeout=timeout, transport=transport
        )
        self.retries = retries
        self.max_retry_wait = max_retry_wait

    def _send(self, call: calls.Call) -> Any:
        for attempt in range(self.retries + 1):
            response = self._http.request(call.method, call.path, **call.send_kwargs())
            if response.is_success:
                return call.parse(response.json())
            wait = calls.retry_wait(
                response.status_code, response.headers.get("retry-after"), attempt, self.max_retry_wait
            )
            if wait is None or attempt == self.retries:
                raise error_of(response)
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def forecast(
        self,
        closes: Any,
        horizon: int = 1,
        levels: Sequence[int] = calls.DEFAULT_LEVELS,
        model: str | None = None,
        features: Mapping[str, Any] | None = None,
        dates: Sequence[Any] | None = None,
    ) -> ForecastResult:
        """The next ``horizon`` closes of one series, with intervals at ``levels`` (percent)."""
        result: ForecastResult = self._send(calls.forecast(closes, horizon, levels, model, features, dates))
        return result

    def forecast_batch(
        self,
        series: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        horizon: int = 1,
        levels: Sequence[int] = calls.DEFAULT_LEVELS,
        model: str | None = None,
    ) -> list[ForecastResult]:
        """Several series in one request, answered in the order sent (``.id`` on each result)."""
        results: list[ForecastResult] = self._send(calls.forecast_batch(series, horizon, levels, model))
        return results

    def backtest(
        self,
        closes: Any,
        model: str = "default",
        dates: Sequence[Any] | None = None,
        folds: int = 5,
        horizon: int = 1,
    ) -> BacktestResult:
        """The served model scored walk-forward on your series, beside the naive forecast."""
        result: BacktestResult = self._send(calls.backtest(closes, model, dates, folds, horizon))
        return result

    def train(self, data: Any, *, model: str, **options: Any) -> Job:
        """Submit a training job for the named ``model`` (see ``calls.train`` for what ``data`` may be)."""
        job: Job = self._send(calls.train(data, model=model, **options))
        return job

    def job(self, job_id: str | Job) -> Job:
        found: Job = self._send(calls.job(_job_id(job_id)))
        return found

    def cancel(self, job_id: str | Job) -> Job:
        cancelled: Job = self._send(calls.cancel(_job_id(job_id)))
        return cancelled

    def wait(
        self,
        job: str | Job,
        *,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        progress: bool = True,
        raise_on_failure: bool = True,
    ) -> Job:
        """Poll until the job has finished; a progress bar while it runs (tqdm, when installed)."""
        waiting = JobWait(timeout_s, progress, raise_on_failure)
        try:
            while not waiting.seen(state := self.job(job)):
                time.sleep(poll_s)
        finally:
            waiting.close()
        return waiting.result(state)

    def models(self) -> list[dict[str, Any]]:
        """Every model the server has, with its current version and how it compares with naive."""
        found: list[dict[str, Any]] = self._send(calls.models())
        return found

    def model(self, model: str = "default") -> dict[str, Any]:
        """A model's card."""
        card: dict[str, Any] = self._send(calls.model_card(model))
        return card

    def promote(self, version: str, model: str = "default") -> dict[str, Any]:
        """Make ``version`` the current version of ``model`` (needs the key)."""
        moved: dict[str, Any] = self._send(calls.promote(version, model))
        return moved

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _job_id(job: str | Job) -> str:
    return job.job_id if isinstance(job, Job) else job
