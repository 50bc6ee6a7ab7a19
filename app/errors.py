"""Domain errors and the one place that maps them to HTTP answers.

Every message quotes the offending value and says what to do. Validation problems, whether pydantic finds
them or the forecaster does (the window is only known once a model is loaded), leave as FastAPI's 422 shape
``{"detail": [{"loc", "msg", "type", "input"}]}`` with a ``msg`` of the form ``PATH is VALUE; WHAT TO DO``,
e.g. ``series[3].closes[5] is -3.2; prices must be > 0``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

Loc = tuple[str | int, ...]


class ClosecastError(Exception):
    """Base of the domain errors; ``status_code`` is the HTTP answer when one reaches a request."""

    status_code: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BundleInvalid(ClosecastError):
    """A model bundle failed a check (format, file hash, scaler, ONNX contract, sample replay)."""

    status_code = 409


class ProviderUnavailable(ClosecastError):
    """The execution provider the settings demand could not be obtained."""

    status_code = 503


class ModelNotReady(ClosecastError):
    """No verified model is in memory yet."""

    status_code = 503

    def __init__(
        self, message: str = "no verified model is loaded yet; retry once /readyz answers 200"
    ) -> None:
        super().__init__(message)


class PayloadTooLarge(ClosecastError):
    """The request body or the batch is larger than the configured limit."""

    status_code = 413


class TooManySeries(PayloadTooLarge):
    def __init__(self, count: int, limit: int) -> None:
        super().__init__(
            f"series has {count} entries but at most {limit} are accepted per request "
            f"(CLOSECAST_MAX_BATCH_SERIES); split the batch"
        )


@dataclass(frozen=True)
class Problem:
    """One input problem in FastAPI's 422 item shape; ``loc`` starts with ``"body"``."""

    loc: Loc
    msg: str
    type: str
    input: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type, "input": _json_safe(self.input)}


class InputInvalid(ClosecastError):
    """Input that passed the schema but not the model's or the deployment's limits (answered 422)."""

    status_code = 422

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.msg for p in problems))
        self.problems = list(problems)


def series_too_short(loc: Loc, count: int, window: int) -> Problem:
    return Problem(
        loc,
        f"{format_loc(loc)} has {count} values but the model needs at least {window} (its window); "
        f"send at least {window}",
        "series_too_short",
        count,
    )


def series_too_long(loc: Loc, count: int, limit: int) -> Problem:
    return Problem(
        loc,
        f"{format_loc(loc)} has {count} values but at most {limit} are accepted (CLOSECAST_MAX_CLOSES); "
        f"send the latest {limit}",
        "series_too_long",
        count,
    )


def horizon_too_large(horizon: int, limit: int) -> Problem:
    return Problem(
        ("body", "horizon"),
        f"horizon is {horizon}; at most {limit} steps are served (CLOSECAST_MAX_HORIZON)",
        "horizon_too_large",
        horizon,
    )


def forecast_overflow(loc: Loc, last_close: float) -> Problem:
    return Problem(
        loc,
        f"{format_loc(loc)} ends at {last_close!r}, where the forecast or its interval does not fit a "
        f"float64 (above 1.8e308 or below 2.2e-308); send prices in another unit",
        "forecast_not_finite",
        last_close,
    )


# --- formatting -------------------------------------------------------------------------------------------


def format_loc(loc: Sequence[str | int]) -> str:
    """``("body", "series", 3, "closes", 5)`` -> ``series[3].closes[5]``."""
    parts = list(loc[1:]) if loc and loc[0] == "body" else list(loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def render_value(value: Any, limit: int = 60) -> str:
    """A value as the client wrote it (JSON, NaN/Infinity included), cut to ``limit`` characters."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_safe(value: Any) -> Any:
    """Non-finite floats become strings so the error answer itself is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return render_value(value)
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _message(kind: str, loc: Loc, value: Any, reason: str, ctx: dict[str, Any]) -> str:
    path = format_loc(loc)
    if kind == "json_invalid":
        return f"body is not valid JSON ({ctx.get('error', '')} at character {loc[-1]}); send a JSON object"
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
    msg = _message(kind, loc, value, reason, error.get("ctx") or {})
    shown = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return Problem(loc, msg, kind, shown).as_dict()


# --- the one mapping to HTTP -------------------------------------------------------------------------------


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [describe_validation_error(e) for e in exc.errors()]}, status_code=422)


async def _domain_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ClosecastError)
    if isinstance(exc, InputInvalid):
        return JSONResponse({"detail": [p.as_dict() for p in exc.problems]}, status_code=422)
    headers = {"Retry-After": "5"} if exc.status_code == 503 else None
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)


def register_error_handlers(app: FastAPI) -> None:
    """Install the handlers: domain errors by their ``status_code``, 422s in the message format above."""
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(ClosecastError, _domain_handler)
