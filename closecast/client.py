"""A Python client for a closecast server: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

It imports httpx and the standard library only (pandas and tqdm when a call uses them), nothing of the
server, training or ONNX Runtime, so it can ship as a package of its own (``closecast[client]``).

    from closecast.client import Client

    with Client("http://127.0.0.1:8000") as cc:
        result = cc.forecast([6010, 6032.5, ...], horizon=3)
        result.forecast, result.intervals[80].lower, result.model_version
"""

from closecast._client.aio import AsyncClient
from closecast._client.errors import APIError, ClosecastError, JobFailed
from closecast._client.results import BacktestResult, ForecastResult, Interval, Job
from closecast._client.sync import Client

__all__ = [
    "APIError",
    "AsyncClient",
    "BacktestResult",
    "Client",
    "ClosecastError",
    "ForecastResult",
    "Interval",
    "Job",
    "JobFailed",
]
