"""The error answers every route declares in OpenAPI, so the schema says what the server really returns.

``app/api/errors.py`` writes them: ``{"detail": "message"}`` for every status but 422, and FastAPI's item
list ``{"detail": [{"loc", "msg", "type", "input"}]}`` for 422. A route lists its statuses with ``errors``:
``@router.get(..., responses=errors(401, 404, words={404: "no such job"}))``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.jobs.errors import AuthFailed, CurrentIsNot, JobFinished, TrainingDisabled
from app.storage.errors import QueueFull

# What each status means on any route; a route may word its own (``words=``).
MEANING: dict[int, str] = {
    401: "the bearer key is missing or wrong",
    403: "no CLOSECAST_API_KEY is configured: training and promotion are off",
    404: "not found",
    408: "the body did not arrive in time; send it faster or smaller",
    409: "conflict with the current state; nothing changed",
    412: "`If-Match` names a version that is not current; `current` is the one that is; nothing changed",
    413: "body larger than the route accepts (CLOSECAST_MAX_BODY_BYTES) or too many series",
    415: "the body is not of the media type the route takes (the detail says which)",
    422: "invalid input; each `detail[].msg` names the field and quotes the value",
    429: "too many requests queued; retry after `Retry-After` seconds",
    503: "not available yet or now (`Retry-After` says when to retry); the detail says why",
    507: "no space left in the model dir",
}


# One real answer per status, shown in /docs beside the schema (the messages the service writes).
EXAMPLES: dict[int, Any] = {
    401: {"detail": AuthFailed().message},
    403: {"detail": TrainingDisabled().message},
    404: {"detail": "no model 'aapl'; known models: default (GET /models lists them)"},
    408: {"detail": "the request body did not arrive within 30 s (CLOSECAST_BODY_TIMEOUT_S); send it faster"},
    409: {"detail": JobFinished("20261207T101500Z-1a2b3c4d", "succeeded").message},
    412: {
        "detail": CurrentIsNot("default", "20261201T000000Z-0a1b2c3d", "20261207T101500Z-1a2b3c4d").message,
        "current": "20261207T101500Z-1a2b3c4d",
    },
    413: {
        "detail": "the body is over 8388608 bytes (CLOSECAST_MAX_BODY_BYTES); send fewer or shorter series"
    },
    415: {"detail": "Content-Type is 'application/json'; send the .tar.gz as application/gzip"},
    422: {
        "detail": [
            {
                "loc": ["body", "closes", 3],
                "msg": "closes[3] is -1.5; prices must be finite and > 0",
                "type": "price_not_positive",
                "input": -1.5,
            }
        ]
    },
    429: {"detail": QueueFull(4).message},
    503: {"detail": "no verified model is loaded yet; retry in a few seconds"},
    507: {"detail": "no space left in the model dir; delete old versions (CLOSECAST_KEEP_VERSIONS), retry"},
}


class ErrorDetail(BaseModel):
    """Every error answer but 422: one message that says what went wrong and what to do."""

    detail: str = Field(description="what went wrong and what to do")


class PreconditionFailed(ErrorDetail):
    """A 412: the promotion's ``If-Match`` named another version than the current one."""

    current: str | None = Field(description="the current version (null: the model has none); also the ETag")


class ProblemItem(BaseModel):
    loc: list[str | int] = Field(description='where: ["body", "closes", 3]')
    msg: str = Field(description="`PATH is VALUE; WHAT TO DO`")
    type: str = Field(description="a stable machine-readable kind, e.g. `price_not_positive`")
    input: Any = Field(default=None, description="the value refused (non-finite numbers as strings)")


class ValidationProblems(BaseModel):
    """A 422: every problem found, each naming its field."""

    detail: list[ProblemItem]


_BODIES: dict[int, type[BaseModel]] = {422: ValidationProblems, 412: PreconditionFailed}


def errors(*statuses: int, words: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for ``statuses``, each with its body schema and description."""
    words = words or {}
    return {
        status: {
            "model": _BODIES.get(status, ErrorDetail),
            "description": words.get(status, MEANING[status]),
            "content": {"application/json": {"example": EXAMPLES[status]}},
        }
        for status in statuses
    }
