"""Errors of the stores, whichever backend holds them: the rest of the service catches these, never a
driver's own (``sqlite3.Error``, ``psycopg.Error``), so it need not know which backend is configured.

``app/api/errors.py`` maps them to HTTP answers (503 and 429); ``app/jobs/errors.py`` turns ``StoreFull``
into 507 with the rest of the model dir's storage errors.
"""

from __future__ import annotations

import errno
from typing import ClassVar

from closecast.errors import ClosecastError


class StoreUnavailable(ClosecastError):
    """A store cannot be used now, and why (``kind``: locked, read-only, missing, damaged, unreachable,
    failed).

    Answered 503 at once: the lock wait is short (CLOSECAST_JOB_STORE_TIMEOUT_S), and the message names the
    store (``jobs.sqlite``, ``PostgreSQL``), never its path or URL.
    """

    WHAT_TO_DO: ClassVar[dict[str, str]] = {
        "locked": "is locked by another process; retry in a moment, or end the process holding the lock",
        "read-only": "is read-only; make CLOSECAST_MODEL_DIR and the store writable by the service",
        "missing": "is missing or was deleted; it is created again on the next try",
        "damaged": "is damaged; move it aside (the service creates a new, empty one)",
        "unreachable": "cannot be reached; serving goes on; jobs and promotions work again once it is back",
        "failed": "cannot be used",
    }

    def __init__(self, kind: str, store: str, detail: str) -> None:
        self.kind = kind
        super().__init__(f"the job store {store} {self.WHAT_TO_DO[kind]} ({detail})")


class StoreFull(OSError):
    """The disk (or the quota) under an embedded store is full: an ``OSError`` with ``ENOSPC``, so callers
    treat it as they treat any other full disk in the model dir (507)."""

    def __init__(self, store: str, detail: str) -> None:
        super().__init__(errno.ENOSPC, detail)
        self.store = store


class QueueFull(ClosecastError):
    """As many jobs wait as CLOSECAST_JOB_QUEUE_SIZE allows (the store checks it atomically on enqueue)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} retrain jobs are already queued (CLOSECAST_JOB_QUEUE_SIZE); retry once one has started"
        )
