"""Errors of the retraining and registry endpoints (``app/api/errors.py`` maps them to HTTP statuses)."""

from __future__ import annotations

import errno
from pathlib import Path

from closecast.errors import ClosecastError

ENABLE_HINT = (
    "set CLOSECAST_API_KEY (16+ characters, e.g. `openssl rand -hex 16`) and send it as "
    "`Authorization: Bearer <key>`"
)


class TrainingDisabled(ClosecastError):
    """No key is configured: training and promotion are off."""

    def __init__(self) -> None:
        super().__init__(
            f"training and promotion are disabled because no API key is configured; {ENABLE_HINT}"
        )


class AuthFailed(ClosecastError):
    """The bearer key is missing or wrong."""

    def __init__(self) -> None:
        super().__init__(
            "the bearer key is missing or wrong; send `Authorization: Bearer <key>` with the key "
            "configured in CLOSECAST_API_KEY"
        )


class JobNotFound(ClosecastError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}; GET /train lists the recent jobs")


class JobFinished(ClosecastError):
    """A cancel for a job that already ended."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} already {status}; only queued or running jobs can be cancelled")


class VersionNotFound(ClosecastError):
    def __init__(self, version: str, model: str = "default") -> None:
        super().__init__(
            f"version {version!r} is not a version of model {model!r}; "
            f"GET /models/{model}/versions lists them"
        )


class CurrentIsNot(ClosecastError):
    """A promotion sent ``If-Match`` naming a version that is not current (answered 412 with ``current``)."""

    def __init__(self, model: str, sent: str, current: str | None) -> None:
        self.current = current
        super().__init__(
            f"If-Match is {sent!r} but the current version of model {model!r} is {current!r}; nothing "
            f"changed: GET /models/{model}/versions names the current one; send it in If-Match to promote "
            "over it"
        )


class JobsUnavailable(ClosecastError):
    """The job store could not be opened (e.g. a read-only model dir); serving goes on without training."""


def os_reason(exc: Exception) -> str:
    """An error without the file it names: answers and logs never show absolute paths."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


class StorageFailed(ClosecastError):
    """The job's data, the job store or the ``current`` pointer could not be written into the model dir."""

    def __init__(
        self,
        model_dir: Path,
        exc: Exception,
        what_to_do: str = "make it writable by the service",
        action: str = "store the job",
    ):
        where = "the model dir (CLOSECAST_MODEL_DIR)"  # never its absolute path: this is an HTTP answer
        super().__init__(f"cannot {action} in {where}: {os_reason(exc)}; {what_to_do}")


class StorageFull(StorageFailed):
    """The disk or the quota is full (answered 507 Insufficient Storage)."""


def storage_failed(model_dir: Path, exc: Exception, action: str = "store the job") -> StorageFailed:
    """503, or 507 when the disk (or the quota) is full; ``action`` is what could not be done there."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):  # a store's too (StoreFull)
        return StorageFull(model_dir, exc, "free some space", action)
    if isinstance(exc, TimeoutError):  # the registry lock (closecast/registry_lock.py): its text says what
        return StorageFailed(model_dir, exc, "nothing changed", action)
    return StorageFailed(model_dir, exc, action=action)
