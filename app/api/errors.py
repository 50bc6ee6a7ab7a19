"""The one place that turns errors into HTTP answers, and pydantic's 422 items into closecast's messages.

Validation problems, whether pydantic finds them or the forecaster does (the window is only known once a
model is loaded), leave as FastAPI's 422 shape ``{"detail": [{"loc", "msg", "type", "input"}]}`` with a
``msg`` of the form ``PATH is VALUE; WHAT TO DO``. Every other domain error gets the status of the first
class in ``STATUS`` it is an instance of, and ``{"detail": message}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.api.bodies import ParserCrashed
from app.jobs.errors import (
    AuthFailed,
    JobFinished,
    JobNotFound,
    JobsUnavailable,
    QueueFull,
    StorageFailed,
    StorageFull,
    TrainingDisabled,
    VersionNotFound,
)
from closecast.errors import (
    BundleInvalid,
    ClosecastError,
    InputInvalid,
    Loc,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
    Problem,
    ProviderUnavailable,
    RegistryConflict,
    TooManyModels,
    format_loc,
    render_value,
)

# Most specific first: a subclass listed after its base would never be reached.
STATUS: tuple[tuple[type[ClosecastError], int], ...] = (
    (InputInvalid, 422),
    (AuthFailed, 401),
    (TrainingDisabled, 403),
    (JobNotFound, 404),
    (VersionNotFound, 404),
    (ModelNotFound, 404),
    (BundleInvalid, 409),
    (RegistryConflict, 409),
    (TooManyModels, 409),
    (JobFinished, 409),
    (PayloadTooLarge, 413),
    (QueueFull, 429),
    (StorageFull, 507),
    (StorageFailed, 503),
    (JobsUnavailable, 503),
    (ModelNotReady, 503),
    (ParserCrashed, 503),
    (ProviderUnavailable, 503),
)
RETRY_AFTER = {503: "5", 429: "30"}


def status_of(exc: ClosecastError) -> int:
    """The HTTP status for a domain error (500 for one this table does not know)."""
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


def _json_message(loc: Loc, error: str) -> str:
    """A body that is not JSON, in words. ``loc`` ends in a character offset where ``json.loads`` found the
    problem (``/train``); pydantic-core's parser (the forecast routes) puts line and column in ``error``."""
    if isinstance(loc[-1], int):
        return f"body is not valid JSON ({error} at character {loc[-1]}); send a JSON object"
    if "recursion limit" in error:
        return f"body is nested too deeply ({error}); send closes as a flat list of numbers"
    if "number out of range" in error:
        return f"body has a number with too many digits ({error}); send prices as plain decimals"
    if "UTF-8" in error:
        return f"body is not valid JSON ({error}); send it encoded as UTF-8"
    return f"body is not valid JSON ({error}); send a JSON object"


def _message(kind: str, loc: Loc, value: Any, reason: str, ctx: dict[str, Any]) -> str:
    path = format_loc(loc)
    if kind == "json_invalid":
        return _json_message(loc, str(ctx.get("error", "")))
    if kind == "missing":
        return f"{path} is required" if path != "body" else "body is required; send a JSON object"
    if kind == "extra_forbidden":
        return f"{path} is not a known field; remove it (see /docs for the schema)"
    if path == "body" and isinstance(value, bytes):
        return "body was not read as JSON; send it with Content-Type: application/json"
    if path == "body":
        return f"body is {render_value(value)}; send a JSON object (see /docs for the schema)"
    return f"{path} is {render_value(value)}; {reason[:1].lower()}{reason[1:]}"


# A close fails pydantic-core's own constraints (fast: no Python call per value); say it in price terms.
_PRICE_ERRORS = {
    "greater_than": ("price_not_positive", "prices must be > 0"),
    "finite_number": ("price_not_finite", "prices must be finite numbers"),
}


def describe_validation_error(error: dict[str, Any]) -> dict[str, Any]:
    """Pydantic/FastAPI error item -> the same item with a ``PATH is VALUE; WHAT TO DO`` message."""
    loc: Loc = tuple(error.get("loc", ("body",)))
    kind = str(error.get("type", "value_error"))
    value = error.get("input")
    reason = str(error.get("msg", "is invalid"))
    if len(loc) >= 2 and loc[-2] == "closes" and kind in _PRICE_ERRORS:
        kind, reason = _PRICE_ERRORS[kind]
        if kind == "price_not_finite" and isinstance(value, int):  # an integer too big for a float
            kind, reason = "price_out_of_range", "prices must be at most 1.8e308"
    msg = _message(kind, loc, value, reason, error.get("ctx") or {})
    shown = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return Problem(loc, msg, kind, shown).as_dict()


# --- handlers ----------------------------------------------------------------------------------------------


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [describe_validation_error(e) for e in exc.errors()]}, status_code=422)


async def _domain_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ClosecastError)
    if isinstance(exc, InputInvalid):
        return JSONResponse({"detail": [p.as_dict() for p in exc.problems]}, status_code=422)
    status = status_of(exc)
    headers = {"Retry-After": RETRY_AFTER[status]} if status in RETRY_AFTER else {}
    if isinstance(exc, AuthFailed):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"detail": exc.message}, status_code=status, headers=headers or None)


def register_error_handlers(app: FastAPI) -> None:
    """Install the handlers: domain errors by ``STATUS``, 422s in the message format above."""
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(ClosecastError, _domain_handler)
