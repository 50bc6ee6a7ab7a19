"""Plain domain errors shared by serving and training; no web framework here.

Every message quotes the offending value and says what to do. Input problems carry a location (``loc``) and
a ``msg`` of the form ``PATH is VALUE; WHAT TO DO``, e.g. ``series[3].closes[5] is -3.2; prices must be > 0``;
``app/api/errors.py`` is the one place that turns these errors into HTTP answers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Loc = tuple[str | int, ...]


class ClosecastError(Exception):
    """Base of the domain errors; ``message`` is what the user reads."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BundleInvalid(ClosecastError):
    """A model bundle failed a check (format, file hash, scaler, ONNX contract, sample replay)."""


class ProviderUnavailable(ClosecastError):
    """The execution provider the settings demand could not be obtained."""


class ModelNotReady(ClosecastError):
    """No verified model is in memory yet."""

    def __init__(
        self, message: str = "no verified model is loaded yet; retry once /readyz answers 200"
    ) -> None:
        super().__init__(message)


class PayloadTooLarge(ClosecastError):
    """The request body or the batch is larger than the configured limit."""


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
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type, "input": json_safe(self.input)}


class InputInvalid(ClosecastError):
    """Input that passed the schema but not the model's or the deployment's limits (answered 422)."""

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


def json_safe(value: Any) -> Any:
    """Non-finite floats become strings so the error answer itself is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return render_value(value)
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# --- named models ------------------------------------------------------------------------------------------


class ModelNotFound(ClosecastError):
    """A request named a model the registry does not hold."""

    def __init__(self, model: str, known: Sequence[str]) -> None:
        shown = ", ".join(repr(k) for k in list(known)[:5]) or "none"
        more = f" and {len(known) - 5} more" if len(known) > 5 else ""
        super().__init__(
            f"model {model!r} is not in the registry; known models: {shown}{more} (GET /models lists them); "
            'train it first with POST /train and `"model": "' + model[:64] + '"`'
        )


class TooManyModels(ClosecastError):
    """A new model name beyond CLOSECAST_MAX_MODELS."""

    def __init__(self, model: str, limit: int) -> None:
        super().__init__(
            f"model {model!r} would be a new name but the registry already holds {limit} models "
            f"(CLOSECAST_MAX_MODELS); delete one with DELETE /models/{{name}} or raise the limit"
        )


class RegistryConflict(ClosecastError):
    """A registry change that would lose something served or recorded (a version in use, the default)."""


def model_name_invalid(loc: Loc, name: str, problem: str) -> Problem:
    return Problem(loc, f"{format_loc(loc)} is {render_value(name)}; {problem}", "model_name_invalid", name)
