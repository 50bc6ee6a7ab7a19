"""Prometheus metrics of one app instance, in its own ``CollectorRegistry``.

A registry per app (not prometheus-client's global one) lets tests build many apps in one process. With
several uvicorn workers each worker counts its own requests; a scrape reaches one of them.

The per-request helpers (``observe_request``, ``observe_forecast``) keep the labelled children they use:
``.labels(...)`` checks, converts and locks on every call, which costs more than the count itself. A cache
holds one entry per label set the metric itself holds, so it grows no further than the metric does.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from closecast.forecaster import Forecaster

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600)
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
            "Time inside ONNX Runtime per request and model (all rollout steps)",
            ["endpoint", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_series = Histogram(
            "closecast_batch_series",
            "Series per forecast request and model",
            ["endpoint", "model"],
            buckets=_SERIES_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "closecast_model_info",
            "The models loaded (value 1): name, version, ONNX Runtime provider, bundle format",
            ["model", "version", "provider", "format_version"],
            registry=r,
        )
        self.model_ready = Gauge(
            "closecast_model_ready", "1 once a verified default model serves", registry=r
        )
        self.models_loaded = Gauge(
            "closecast_models_loaded", "Models in memory (the default one and the LRU)", registry=r
        )
        self.model_loads = Counter(
            "closecast_model_loads",
            "Loads of a model on first use (cold) and evictions from the LRU, by model",
            ["model", "event"],
            registry=r,
        )
        self.input_warnings = Counter(
            "closecast_input_warnings",
            "Warnings attached to forecasts, by kind",
            ["kind"],
            registry=r,
        )
        self.model_reloads = Counter(
            "closecast_model_reloads",
            "Hot swaps of a served model, by model and outcome",
            ["model", "outcome"],
            registry=r,
        )
        self.pointer_fallbacks = Counter(
            "closecast_pointer_fallbacks",
            "Times a `current` pointer could not be followed and the last promoted version served instead",
            ["model"],
            registry=r,
        )
        self.background_failures = Counter(
            "closecast_background_failures",
            "Failures of a supervised background loop (each is restarted after a backoff), by task",
            ["task"],
            registry=r,
        )
        self.background_up = Gauge(
            "closecast_background_up",
            "1 while a supervised background loop runs, 0 while it waits to restart or has ended",
            ["task"],
            registry=r,
        )
        # Jobs of this process's runner (a `closecast worker`, or an API process with CLOSECAST_RUN_JOBS)
        self.jobs_claimed = Counter(
            "closecast_jobs_claimed", "Jobs (and tune shards) this process claimed from the queue", registry=r
        )
        self.jobs_running = Gauge("closecast_jobs_running", "Jobs this process is running now", registry=r)
        self.jobs_finished = Counter(
            "closecast_jobs_finished",
            "Jobs this process ran to an end, by status (succeeded, failed, cancelled; lost: its lease was "
            "taken over, nothing recorded)",
            ["status"],
            registry=r,
        )
        self.job_duration = Histogram(
            "closecast_job_duration_seconds",
            "From claim to the recorded end of a job this process ran, by status",
            ["status"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.lease_renewals = Counter(
            "closecast_lease_renewals",
            "Lease renewals of running jobs, by outcome (held; lost or missing: the job is stopped; "
            "unavailable: the store could not be reached, retried at the next heartbeat)",
            ["outcome"],
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._forecast_children: dict[tuple[str, str], tuple[Histogram, Histogram]] = {}
        self._info_labels: dict[str, tuple[str, str, str, str]] = {}  # the model_info child of each model
        self._warning_children: dict[str, Counter] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answer by route template, method and status, and time it."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route, method))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_forecast(
        self, endpoint: str, inference_s: float, series: int, warnings: Iterable[str], model: str = "default"
    ) -> None:
        """Time inside ONNX Runtime, series answered and warnings attached (by kind) for one model's part of
        a request (label values are bounded by CLOSECAST_MAX_MODELS)."""
        key = (endpoint, model)
        children = self._forecast_children.get(key)
        if children is None:
            children = (self.inference.labels(endpoint, model), self.batch_series.labels(endpoint, model))
            self._forecast_children[key] = children
        children[0].observe(inference_s)
        children[1].observe(series)
        for kind in warnings:
            counter = self._warning_children.get(kind)
            if counter is None:
                counter = self._warning_children[kind] = self.input_warnings.labels(kind)
            counter.inc()

    def model_swapped(self, forecaster: Forecaster, model: str = "default", default: bool = True) -> None:
        self._drop_info(model)
        labels = (model, forecaster.version, forecaster.provider, str(forecaster.manifest["format_version"]))
        self.model_info.labels(*labels).set(1)
        self._info_labels[model] = labels
        if default:
            self.model_ready.set(1)
        self.model_reloads.labels(model, "swapped").inc()

    def model_unloaded(self, model: str) -> None:
        """An LRU eviction (or a deleted model): it no longer counts as loaded."""
        self._drop_info(model)
        self.model_loads.labels(model, "evicted").inc()

    def _drop_info(self, model: str) -> None:
        labels = self._info_labels.pop(model, None)
        if labels is not None:
            self.model_info.remove(*labels)

    def model_refused(self, version: str, error: Exception, model: str = "default") -> None:
        self.model_reloads.labels(model, "refused").inc()

    def pointer_fell_back(self, reason: str, model: str = "default") -> None:
        self.pointer_fallbacks.labels(model).inc()

    def background_changed(self, task: str, up: bool) -> None:
        self.background_up.labels(task).set(1 if up else 0)

    def background_failed(self, task: str) -> None:
        self.background_failures.labels(task).inc()

    def job_ended(self, status: str, seconds: float) -> None:
        """A job this process ran has ended (``lost``: its lease was taken over)."""
        self.jobs_finished.labels(status).inc()
        self.job_duration.labels(status).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
