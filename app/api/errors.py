"""The one place that turns errors into HTTP answers, and pydantic's 422 items into closecast's messages.

Validation problems, whether pydantic finds them or the forecaster does (the window is only known once a
model is loaded), leave as FastAPI's 422 shape ``{"detail": [{"loc", "msg", "type", "input"}]}`` with a
``msg`` of the form ``PATH is VALUE; WHAT TO DO``. Every other domain error gets the status of the first
class in ``STATUS`` it is an instance of, and ``{"detail": message}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.api.bodies import ParserCrashed
from app.api.openapi import operations_at
from app.jobs.errors import (
    AuthFailed,
    CurrentIsNot,
    JobFinished,
    JobNotFound,
    JobsUnavailable,
    StorageFailed,
    StorageFull,
    TrainingDisabled,
    VersionNotFound,
)
from app.storage.errors import QueueFull, StoreUnavailable
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
    (CurrentIsNot, 412),
    (PayloadTooLarge, 413),
    (QueueFull, 429),
    (StorageFull, 507),
    (StorageFailed, 503),
    (JobsUnavailable, 503),
    (StoreUnavailable, 503),
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
    problem (``/train``); pydantic-core's parser (the forecast routes) puts line and column in ``error``; a
    BOM or a lone surrogate escape is described in full (``bodies.json_text_problem``: "it ...")."""
    if error.startswith("it "):
        return f"body is not valid JSON: {error}"
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
    "float_type": ("price_not_number", "prices must be numbers"),
    "float_parsing": ("price_not_number", "prices must be numbers"),
    "greater_than": ("price_not_positive", "prices must be > 0"),
    "finite_number": ("price_not_finite", "prices must be finite numbers"),
}


_FEATURE_ERRORS = {"float_type", "float_parsing", "greater_than_equal", "finite_number"}


def _feature_rule(name: str) -> str:
    return (
        "a volume must be finite and >= 0" if name == "volume" else f"a {name} price must be finite and > 0"
    )


def describe_validation_error(error: dict[str, Any]) -> dict[str, Any]:
    """Pydantic/FastAPI error item -> the same item with a ``PATH is VALUE; WHAT TO DO`` message."""
    loc: Loc = tuple(error.get("loc", ("body",)))
    kind = str(error.get("type", "value_error"))
    value = error.get("input")
    reason = str(error.get("msg", "is invalid"))
    not_a_number = kind in ("float_type", "float_parsing") and (type(value) is int)  # a number, too big
    if len(loc) >= 2 and loc[-2] == "closes" and kind in _PRICE_ERRORS and not not_a_number:
        kind, reason = _PRICE_ERRORS[kind]
        if kind == "price_not_finite" and isinstance(value, int):  # an integer too big for a float
            kind, reason = "price_out_of_range", "prices must be at most 1.8e308"
    if len(loc) >= 3 and loc[-3] == "features" and kind in _FEATURE_ERRORS and not not_a_number:
        kind, reason = "feature_invalid", _feature_rule(str(loc[-2]))  # the core's words for the same rule
    msg = _message(kind, loc, value, reason, error.get("ctx") or {})
    shown = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return Problem(loc, msg, kind, shown).as_dict()


# --- handlers ----------------------------------------------------------------------------------------------


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [describe_validation_error(e) for e in exc.errors()]}, status_code=422)


def without_paths(text: str, model_dir: Path) -> str:
    """``text`` with the model dir's absolute path replaced by its setting's name: the last line of defence,
    for messages built from errors that name the files they failed on."""
    return text.replace(str(model_dir), "CLOSECAST_MODEL_DIR")


async def _domain_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ClosecastError)
    if isinstance(exc, InputInvalid):
        return JSONResponse({"detail": [p.as_dict() for p in exc.problems]}, status_code=422)
    status = status_of(exc)
    headers = {"Retry-After": RETRY_AFTER[status]} if status in RETRY_AFTER else {}
    if isinstance(exc, AuthFailed):
        headers["WWW-Authenticate"] = "Bearer"
    detail = without_paths(exc.message, request.app.state.settings.model_dir)
    if isinstance(exc, CurrentIsNot):  # the version to send in If-Match next, as body and ETag
        if exc.current is not None:
            headers["ETag"] = f'"{exc.current}"'
        return JSONResponse({"detail": detail, "current": exc.current}, status_code=status, headers=headers)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method the API serves at ``path`` (Starlette names only the first matching route's), as
    OpenAPI documents them; HEAD wherever GET is."""
    methods = set(operations_at(app, path))
    return sorted(methods | {"HEAD"} if "GET" in methods else methods)


async def _http_handler(request: Request, exc: Exception) -> Any:
    """FastAPI's own answer, with a complete ``Allow`` header on a 405."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # FastAPI's answer to a JSON body it could not decode (bytes that are not UTF-8): a 422 like any
        # other bad body, in the 422 shape the API promises
        error = {"error": "the body is not UTF-8 JSON"}
        problem = {"type": "json_invalid", "loc": ("body", 0), "msg": "", "input": {}, "ctx": error}
        return await _validation_handler(request, RequestValidationError([problem]))
    if exc.status_code == 405:
        allow = allowed_methods(request.app, request.url.path)
        if allow:  # else a route outside the API (/docs): Starlette's header is complete
            exc = HTTPException(405, exc.detail, headers={**(exc.headers or {}), "Allow": ", ".join(allow)})
    return await http_exception_handler(request, exc)


def register_error_handlers(app: FastAPI) -> None:
    """Install the handlers: domain errors by ``STATUS``, 422s in the message format above, and 405s that
    list every method of the path."""
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(ClosecastError, _domain_handler)
    app.add_exception_handler(HTTPException, _http_handler)
