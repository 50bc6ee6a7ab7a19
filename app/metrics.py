"""Prometheus metrics of one app instance, in its own ``CollectorRegistry``.

A registry per app (not prometheus-client's global one) lets tests build many apps in one process. With
several uvicorn workers each worker counts its own requests; a scrape reaches one of them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from app.inference.forecaster import Forecaster

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SERIES_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)


class Metrics:
    """Every metric the service exports; ``render()`` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "closecast_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "closecast_http_request_duration_seconds",
            "Time from request to the last byte of the answer",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "closecast_inference_seconds",
            "Time inside ONNX Runtime per request (all rollout steps)",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_series = Histogram(
            "closecast_batch_series",
            "Series per forecast request",
            ["endpoint"],
            buckets=_SERIES_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "closecast_model_info",
            "The model served (value 1): version, ONNX Runtime provider, bundle format",
            ["version", "provider", "format_version"],
            registry=r,
        )
        self.model_ready = Gauge("closecast_model_ready", "1 once a verified model serves", registry=r)
        self.input_warnings = Counter(
            "closecast_input_warnings",
            "Warnings attached to forecasts, by kind",
            ["kind"],
            registry=r,
        )
        self.model_reloads = Counter(
            "closecast_model_reloads",
            "Hot swaps of the served model, by outcome",
            ["outcome"],
            registry=r,
        )

    def model_swapped(self, forecaster: Forecaster) -> None:
        self.model_info.clear()
        self.model_info.labels(
            forecaster.version, forecaster.provider, str(forecaster.manifest["format_version"])
        ).set(1)
        self.model_ready.set(1)
        self.model_reloads.labels("swapped").inc()

    def model_refused(self, version: str, error: Exception) -> None:
        self.model_reloads.labels("refused").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
