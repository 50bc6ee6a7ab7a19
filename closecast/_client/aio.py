"""``AsyncClient``: the asyncio twin of ``Client`` (same calls, awaited). What each call sends is in
``calls.py``; errors and retries are the blocking client's."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from closecast._client import calls
from closecast._client.progress import JobWait
from closecast._client.results import BacktestResult, ForecastResult, Job
from closecast._client.sync import _job_id, auth_headers, error_of


class AsyncClient:
    """A closecast server at ``url``, from asyncio code: ``async with AsyncClient(url) as cc: ...``."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=url, headers=auth_headers(api_key), timeout=timeout, transport=transport
        )
        self.retries = retries
        self.max_retry_wait = max_retry_wait

    async def _send(self, call: calls.Call) -> Any:
        for attempt in range(self.retries + 1):
            response = await self._http.request(call.method, call.path, **call.send_kwargs())
            if response.is_success:
                return call.parse(response.json())
            wait = calls.retry_wait(
                response.status_code, response.headers.get("retry-after"), attempt, self.max_retry_wait
            )
            if wait is None or attempt == self.retries:
                raise error_of(response)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    async def forecast(
        self,
        closes: Any,
        horizon: int = 1,
        levels: Sequence[int] = calls.DEFAULT_LEVELS,
        model: str | None = None,
        features: Mapping[str, Any] | None = None,
        dates: Sequence[Any] | None = None,
    ) -> ForecastResult:
        result: ForecastResult = await self._send(
            calls.forecast(closes, horizon, levels, model, features, dates)
        )
        return result

    async def forecast_batch(
        self,
        series: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        horizon: int = 1,
        levels: Sequence[int] = calls.DEFAULT_LEVELS,
        model: str | None = None,
    ) -> list[ForecastResult]:
        results: list[ForecastResult] = await self._send(calls.forecast_batch(series, horizon, levels, model))
        return results

    async def backtest(
        self,
        closes: Any,
        model: str = "default",
        dates: Sequence[Any] | None = None,
        folds: int = 5,
        horizon: int = 1,
    ) -> BacktestResult:
        result: BacktestResult = await self._send(calls.backtest(closes, model, dates, folds, horizon))
        return result

    async def train(self, data: Any, *, model: str, **options: Any) -> Job:
        job: Job = await self._send(calls.train(data, model=model, **options))
        return job

    async def job(self, job_id: str | Job) -> Job:
        found: Job = await self._send(calls.job(_job_id(job_id)))
        return found

    async def cancel(self, job_id: str | Job) -> Job:
        cancelled: Job = await self._send(calls.cancel(_job_id(job_id)))
        return cancelled

    async def wait(
        self,
        job: str | Job,
        *,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        progress: bool = True,
        raise_on_failure: bool = True,
    ) -> Job:
        waiting = JobWait(timeout_s, progress, raise_on_failure)
        try:
            while not waiting.seen(state := await self.job(job)):
                await asyncio.sleep(poll_s)
        finally:
            waiting.close()
        return waiting.result(state)

    async def models(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._send(calls.models())
        return found

    async def model(self, model: str = "default") -> dict[str, Any]:
        card: dict[str, Any] = await self._send(calls.model_card(model))
        return card

    async def promote(self, version: str, model: str = "default") -> dict[str, Any]:
        moved: dict[str, Any] = await self._send(calls.promote(version, model))
        return moved

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
