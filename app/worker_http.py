"""The worker's own small HTTP server: ``/healthz`` and Prometheus ``/metrics`` on ``CLOSECAST_WORKER_PORT``.

A worker serves no API, so this is the standard library's threading HTTP server on a daemon thread, not
uvicorn and FastAPI (the worker imports neither). It reads state the worker's loop keeps (never the job store
itself): a probe costs no database connection, and a stuck event loop cannot hide behind a live thread.

``/healthz`` is 200 only while the job loop is up, has ticked recently (``JobRunner.alive_at``: every idle
look at the queue, every lease renewal) and last reached its job store; otherwise 503 with the reasons.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from app.background import Background, Supervised
from app.jobs.runner import JobRunner
from app.metrics import Metrics

log = logging.getLogger(__name__)


def stall_after_s(runner: JobRunner) -> float:
    """How long the job loop may go without a tick before it counts as stuck: three heartbeats (or idle
    looks), plus the longest a store call may wait (its statement timeout is five store timeouts)."""
    settings = runner.settings
    return 3 * max(settings.job_heartbeat_s, 1.0) + 5 * settings.job_store_timeout_s


def worker_problems(runner: JobRunner, jobs: Supervised) -> list[str]:
    """Why this worker is not healthy now (empty: healthy): its job loop is down or stuck, or its job store
    cannot be reached. Other loops' troubles (the pointer watcher's) are shown, not judged: ``/healthz``'s
    ``degraded``."""
    problems: list[str] = []
    if runner.unavailable is not None:
        problems.append(f"jobs: {runner.unavailable}")
    elif not jobs.up:
        problems.append(jobs.problem() or "jobs: the job loop is not running")
    else:
        silent = time.monotonic() - runner.alive_at
        if silent > stall_after_s(runner):
            problems.append(f"jobs: the job loop has not ticked for {silent:.0f} s")
        if runner.problem is not None:
            problems.append(f"store: {runner.problem}")
    return problems


Probe = Callable[[], tuple[list[str], list[str]]]  # (problems that make it unhealthy, other degraded loops)


def probe(runner: JobRunner, jobs: Supervised, background: Background) -> Probe:
    """What ``/healthz`` asks each time: this worker's problems, and the other loops' (shown only)."""

    def look() -> tuple[list[str], list[str]]:
        return worker_problems(runner, jobs), [p for p in background.degraded() if not p.startswith("jobs:")]

    return look


def _handler(metrics: Metrics, problems: Probe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                found, degraded = problems()
                body = {"status": "unhealthy" if found else "ok", "problems": found, "degraded": degraded}
                self._answer(503 if found else 200, json.dumps(body).encode(), "application/json")
            else:
                detail = f"Not Found: {path!r}; this port serves /healthz and /metrics only"
                self._answer(404, json.dumps({"detail": detail}).encode(), "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # a probe every few seconds: no line each

    return Handler


class WorkerHTTP:
    """``/healthz`` and ``/metrics`` on ``host:port`` in a daemon thread; ``close`` stops it."""

    def __init__(self, host: str, port: int, metrics: Metrics, problems: Probe) -> None:
        self.server = ThreadingHTTPServer((host, port), _handler(metrics, problems))  # OSError: port taken
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="worker-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()
        log.info("worker: /healthz and /metrics on port %d", self.port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
