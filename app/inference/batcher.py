"""Dynamic batching: concurrent single-series forecasts of one model run as one ONNX Runtime call.

A small model's cost per request is mostly the fixed cost of a call (Python around it, ONNX Runtime's
own), not arithmetic: 16 series in one call cost little more than one. ``Batcher.forecast`` parks a request
with the others of the same model, horizon and levels (they share every array of the batch path) and
answers each from its row of one ``Forecaster.forecast`` call. That row is the one-series answer bit for
bit (``tests/app/test_batcher.py``), so batching changes speed only.

When a batch runs: at ``max_size`` requests, else after ``max_delay_us``; with a delay of 0 (the default)
as soon as the event loop has run what was already waiting, so the requests that arrived together in one
poll of the sockets join, and a lone request waits for nothing. While one batch computes, the next gathers
(the loop is busy, requests queue in the sockets): the batch size follows the load by itself.
A batch whose call fails (a series' forecast overflows) is answered series by series, so each request gets
its own answer or error, as without batching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from closecast.forecaster import BatchForecast, FeatureMap, Forecaster, SeriesLike

_Key = tuple[int, int, tuple[int, ...]]  # id of the model, horizon, levels


@dataclass
class _Pending:
    model: Forecaster
    horizon: int
    levels: Sequence[int]
    series: list[SeriesLike] = field(default_factory=list)
    futures: list[asyncio.Future[BatchForecast]] = field(default_factory=list)
    timer: asyncio.TimerHandle | asyncio.Handle | None = None


class Batcher:
    """Gathers one worker's single-series forecasts (one per event loop; made in the lifespan)."""

    def __init__(self, max_size: int, max_delay_us: int) -> None:
        self.max_size = max_size
        self.max_delay_s = max_delay_us / 1e6
        self._pending: dict[_Key, _Pending] = {}
        self.batches = 0  # calls made and requests they answered (tests, and the bench's mean batch size)
        self.requests = 0

    @property
    def enabled(self) -> bool:
        return self.max_size > 1

    async def forecast(
        self,
        model: Forecaster,
        closes: SeriesLike,
        horizon: int,
        levels: Sequence[int],
        features: FeatureMap | None = None,
    ) -> BatchForecast:
        """``model.forecast([closes], horizon, levels)``, computed with whatever joins it. The series must
        already be checked (its length and features): a bad one would fail the whole batch. Requests with
        features (and models that read them) are answered alone for now."""
        if not self.enabled or features is not None or model.features:
            return model.forecast(
                [closes], horizon, levels, None, [features] if features is not None else None
            )
        key = (id(model), horizon, tuple(levels))
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(model, horizon, levels)
            loop = asyncio.get_running_loop()
            if self.max_delay_s > 0:
                pending.timer = loop.call_later(self.max_delay_s, self._run, key, pending)
            else:
                pending.timer = loop.call_soon(self._run, key, pending)
        future: asyncio.Future[BatchForecast] = asyncio.get_running_loop().create_future()
        pending.series.append(closes)
        pending.futures.append(future)
        if len(pending.series) >= self.max_size:
            self._run(key, pending)
        return await future

    def _run(self, key: _Key, pending: _Pending) -> None:
        if self._pending.get(key) is not pending:  # already run (full before its timer)
            return
        del self._pending[key]
        if pending.timer is not None:
            pending.timer.cancel()
        self.batches += 1
        self.requests += len(pending.series)
        try:
            result = pending.model.forecast(pending.series, pending.horizon, pending.levels)
        except Exception:  # each request then gets its own answer or error
            self._answer_one_by_one(pending)
            return
        for item, future in zip(result.items, pending.futures, strict=True):
            if not future.done():  # a client that went away cancelled its request
                future.set_result(BatchForecast([item], result.inference_s))

    @staticmethod
    def _answer_one_by_one(pending: _Pending) -> None:
        for closes, future in zip(pending.series, pending.futures, strict=True):
            if future.done():
                continue
            try:
                future.set_result(pending.model.forecast([closes], pending.horizon, pending.levels))
            except Exception as exc:  # handed to the request it belongs to
                future.set_exception(exc)
