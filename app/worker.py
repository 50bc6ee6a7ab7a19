"""``closecast worker`` (or ``python -m app.worker``): a training worker without an HTTP server.

It claims queued jobs from the shared job store (PostgreSQL in scale-out mode), runs the same training
subprocess as an API process would, renews its lease while the job runs, and writes progress and results to
the store. It loads the current model only to judge candidates against it (the promotion gate) and follows
promotions like a replica; it never serves. Several workers share one queue: each job runs once, one job per
model at a time. SIGTERM or SIGINT ends it: a running job is killed and failed ("interrupted: ... shut
down"), never left running.

It serves ``/healthz`` and Prometheus ``/metrics`` on ``CLOSECAST_WORKER_PORT`` (``app/worker_http.py``; 0:
none) and connects to PostgreSQL as ``closecast-worker@<host>``.
"""

from __future__ import annotations

import logging
import signal
import sys

import anyio
import anyio.to_thread

from app.background import Background, Supervised
from app.config import Settings, get_settings
from app.inference.models import LoadedModels
from app.jobs.runner import JobRunner
from app.metrics import Metrics
from app.storage.backends import build_backends
from app.worker_http import Probe, WorkerHTTP, probe

log = logging.getLogger("app.worker")


async def _until_signalled(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("worker: %s received; stopping", signal.Signals(signum).name)
            scope.cancel()
            return


def _serve_http(settings: Settings, metrics: Metrics, look: Probe) -> WorkerHTTP | None:
    """``/healthz`` and ``/metrics`` on ``CLOSECAST_WORKER_PORT`` (None when 0); a port that cannot be bound
    ends the worker with one line and exit code 2 (two workers on one host need two ports)."""
    if not settings.worker_port:
        return None
    try:
        http = WorkerHTTP(settings.host, settings.worker_port, metrics, look)
    except OSError as exc:
        print(
            f"closecast worker: CLOSECAST_WORKER_PORT {settings.worker_port} on {settings.host}: "
            f"{exc.strerror or exc}; set another port, or 0 for no health and metrics endpoint",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    http.start()
    return http


async def run_worker(settings: Settings) -> None:
    """Open the backends, load the current model (for the gate), then run jobs until signalled."""
    metrics = Metrics()  # models, background loops, jobs: the worker's /metrics
    models = LoadedModels(settings, metrics)  # the gate compares with a model's current version
    holder = models.default
    backends = build_backends(settings, models, role="worker")
    if backends.kind == "embedded":
        log.warning("CLOSECAST_DATABASE_URL is unset: this worker shares only the local jobs.sqlite")
    runner = JobRunner(settings.model_copy(update={"run_jobs": True}), models, backends.store)
    jobs = Supervised("jobs", runner.serve, waits_for_start=True, health=runner.health)
    loops = Background(
        [Supervised("pointer", backends.watcher, max_backoff_s=settings.reload_interval_s), jobs],
        on_change=lambda task: metrics.background_changed(task.name, task.up),
        on_failure=lambda task: metrics.background_failed(task.name),
    )
    http = _serve_http(
        settings, metrics, probe(runner, jobs, loops)
    )  # before the database: a slow start is 503
    try:
        await anyio.to_thread.run_sync(backends.open)
        holder.swap(await anyio.to_thread.run_sync(holder.load_current))
        async with anyio.create_task_group() as group:
            group.start_soon(_until_signalled, group.cancel_scope)
            await loops.start(group)
            log.info("worker %s: claiming jobs of model %s", runner.token, holder.model)
    finally:
        backends.close()
        if http is not None:
            http.close()


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    anyio.run(run_worker, settings)


if __name__ == "__main__":
    main()
