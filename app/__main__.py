"""``python -m app`` (or the ``closecast`` script): serve with uvicorn, uvloop and httptools;
``closecast worker`` runs a training worker instead (``app/worker.py``)."""

from __future__ import annotations

import sys

import uvicorn

from app.config import get_settings


def main() -> None:
    """Run the server with host, port, workers and log level from the ``CLOSECAST_*`` settings."""
    if sys.argv[1:2] == ["worker"]:
        from app.worker import main as worker_main

        worker_main()
        return
    if sys.argv[1:]:
        raise SystemExit(f"usage: closecast [worker]; got {' '.join(sys.argv[1:])!r}")
    settings = get_settings()
    uvicorn.run(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        ws="none",  # no websocket routes: not importing a websocket library saves ~6% of the start
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,  # per-request lines cost more than the forecast; /metrics counts requests
    )


if __name__ == "__main__":
    main()
