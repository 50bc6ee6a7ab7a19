"""What the client raises: the server's answer kept whole, so a caller can read the API's own words."""

from __future__ import annotations

from typing import Any


class ClosecastError(Exception):
    """Base of every error the client raises."""


class APIError(ClosecastError):
    """The server answered with an error status; ``detail`` is the API's error body (``{"detail": ...}``)."""

    def __init__(self, status_code: int, body: Any, method: str, url: str) -> None:
        self.status_code = status_code
        self.body = body
        self.detail = body.get("detail", body) if isinstance(body, dict) else body
        self.method = method
        self.url = url
        super().__init__(f"{method} {url} answered {status_code}: {_words(self.detail)}")


class JobFailed(ClosecastError):
    """A training job ended ``failed`` or ``cancelled``; ``job`` is its last state."""

    def __init__(self, job: Any) -> None:
        self.job = job
        super().__init__(f"job {job.job_id} {job.status}: {job.error}")


def _words(detail: Any) -> str:
    """A 422's list of problems as one line of their messages; any other detail as it is."""
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg', item)}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    return str(detail)
