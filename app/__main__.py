"""``python -m app`` (or the ``closecast`` script): serve with uvicorn, uvloop and httptools."""

from __future__ import annotations

import uvicorn

from app.config import get_settings


def main() -> None:
    """Run the server with host, port, workers and log level from the ``CLOSECAST_*`` settings."""
    settings = get_settings()
    uvicorn.run(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,  # per-request lines cost more than the forecast; /metrics counts requests
    )


if __name__ == "__main__":
    main()
