"""The one lock every change of a file-backed registry holds: promotions (a job's and a manual one),
registering a new model, deleting versions and models, retention.

Two layers, always taken together and in this order:

- a ``threading.Lock`` for the threads of this process (the worker threads of one uvicorn worker);
- an advisory ``fcntl.flock`` on ``<registry root>/.registry.lock`` (created if missing) for the other
  processes sharing the directory: ``uvicorn --workers N``, ``python -m app`` with CLOSECAST_WORKERS, the
  training CLI's ``--promote``. Without it, a rollback in one worker could land between another worker's
  "is the model I judged against still current?" check and its pointer write, and be silently overridden.

Why ``flock`` rather than a lock file created with ``O_EXCL`` or a PID file: the kernel releases it when the
last descriptor of the holder is closed, including when the holder dies (SIGKILL, OOM killer), so a killed
worker never strands the registry and nobody has to guess whether a lock file is stale. The lock file itself
is never removed (removing it would let two processes lock two different files); it stays empty.

The lock is taken only for changes: serving never opens it, so a read-only model dir still serves. On such
a directory the lock file cannot be created and the change fails with an ``OSError`` (callers answer it as
the model dir not being writable). A holder that is alive but stuck makes the next change give up after
``WAIT_S`` with ``RegistryBusy`` (a ``TimeoutError``) instead of hanging every worker's changes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".registry.lock"
WAIT_S = 60.0  # registry changes take milliseconds; deleting a big model a few seconds
_POLL_S = 0.01

_THREAD_LOCK = threading.Lock()


class RegistryBusy(TimeoutError):
    """Another process held the registry lock for longer than the wait allows."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(
            errno.EAGAIN,
            f"the registry lock ({LOCK_FILE}) was held by another process for over {wait_s:g} s; retry in a "
            "moment, or end the process holding it",
        )


@contextmanager
def registry_lock(root: Path | None, wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold the registry lock of ``root`` (the registry root, CLOSECAST_MODEL_DIR) for the ``with`` block.

    ``root=None``: only this process's threads are serialised (a backend whose pointers live elsewhere and
    serialise themselves). Raises ``OSError`` when the lock file cannot be opened or created, and
    ``RegistryBusy`` after ``wait_s`` seconds of another process holding it; both before the block runs.
    """
    if not _THREAD_LOCK.acquire(timeout=wait_s):
        raise RegistryBusy(wait_s)
    try:
        if root is None:
            yield
            return
        fd = _locked_fd(root / LOCK_FILE, wait_s)
        try:
            yield
        finally:
            os.close(fd)  # closing the only descriptor releases the flock
    finally:
        _THREAD_LOCK.release()


def _locked_fd(path: Path, wait_s: float) -> int:
    """Open (creating it if missing) and flock ``path``; polls so that the wait can end."""
    # O_RDONLY is enough for flock, and opens an existing lock file the service cannot write.
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RegistryBusy(wait_s) from None
                time.sleep(_POLL_S)
    except BaseException:
        os.close(fd)
        raise
