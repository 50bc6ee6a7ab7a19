"""``/openapi.json`` with the real limits: the served model's window and this deployment's settings.

The request models can only declare the service's hard ceilings (they are built at import, before settings
are read or a model is loaded). The schema FastAPI builds from them is patched here with what this worker
really accepts: ``closes`` at least the served model's window (``minItems``) and at most
``CLOSECAST_MAX_CLOSES``, ``horizon`` at most ``CLOSECAST_MAX_HORIZON``, and, with
``CLOSECAST_PROTECT_READS``, the 401 of the protected reads. It is rebuilt when a hot swap changes the model
(other models state their window on their card, ``GET /models``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from fastapi import FastAPI

from app.api.responses import MEANING
from app.config import Settings
from app.inference.holder import ModelHolder

_CLOSES_OWNERS = ("ForecastRequest", "SeriesIn")
_HORIZON_OWNERS = ("ForecastRequest", "BatchForecastRequest", "BacktestRequest")


def _closes_description(settings: Settings, window: int | None, version: str | None) -> str:
    limit = f"at most {settings.max_closes} (CLOSECAST_MAX_CLOSES)"
    if window is None:
        return (
            "closing prices, oldest first; at least the served model's window (GET /models/current: no "
            f"model is loaded yet, so minItems 2 is only the schema's floor), {limit}; only the latest "
            "window is used"
        )
    return (
        f"closing prices, oldest first; at least {window}, the window of the model served now ({version}; "
        f"GET /models/current), {limit}; only the latest window is used"
    )


def patch_limits(schema: dict[str, Any], settings: Settings, window: int | None, version: str | None) -> None:
    """Write the deployment's limits and the served model's window into ``schema`` (in place)."""
    components = schema.get("components", {}).get("schemas", {})
    for name in _CLOSES_OWNERS:
        closes = components.get(name, {}).get("properties", {}).get("closes")
        if closes is not None:
            closes["maxItems"] = settings.max_closes
            closes["minItems"] = window or closes.get("minItems", 2)
            closes["description"] = _closes_description(settings, window, version)
    for name in _HORIZON_OWNERS:
        horizon = components.get(name, {}).get("properties", {}).get("horizon")
        if horizon is not None:
            horizon["maximum"] = settings.max_horizon
    backtest = components.get("BacktestRequest", {}).get("properties", {})
    if "closes" in backtest:  # the window is a floor there: the folds asked for need more (said in a 422)
        backtest["closes"].update(minItems=window or backtest["closes"].get("minItems", 2))
        backtest["closes"]["maxItems"] = settings.max_closes
    if "folds" in backtest:
        backtest["folds"]["maximum"] = settings.max_backtest_folds


def _protect_reads(schema: dict[str, Any], protected: tuple[str, ...]) -> None:
    """Reads behind the key (CLOSECAST_PROTECT_READS): each says it needs it and may answer 401."""
    unauthorized = {
        "description": MEANING[401],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}},
    }
    for path, item in schema.get("paths", {}).items():
        if path.startswith(protected):
            for operation in item.values():
                operation.setdefault("security", [{"HTTPBearer": []}])
                operation.setdefault("responses", {}).setdefault("401", unauthorized)


_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _standard_bounds(node: Any) -> None:
    """pydantic writes a bound behind a ``BeforeValidator`` (``WholeNumber``) as its own ``ge``/``le``, which
    JSON Schema ignores: rename them (in place) so the schema states the bound validation enforces."""
    if isinstance(node, dict):
        if node.get("type") in ("integer", "number"):
            for key in [k for k in node if k in _BOUNDS]:
                node[_BOUNDS[key]] = node.pop(key)
        for value in node.values():
            _standard_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _standard_bounds(value)


@lru_cache(maxsize=64)
def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")


def operations_at(app: FastAPI, path: str) -> dict[str, dict[str, Any]]:
    """The operations OpenAPI documents for a request path, by upper-case method (``{}`` if none): one
    source for the methods a path allows and the query parameters an operation takes."""
    for template, item in app.openapi().get("paths", {}).items():
        if _template_regex(template).match(path):
            return {method.upper(): op for method, op in item.items() if isinstance(op, dict)}
    return {}


def install(app: FastAPI, settings: Settings, holder: ModelHolder, protected: tuple[str, ...]) -> None:
    """Replace ``app.openapi`` with a builder that states the real limits, cached per served version."""
    build = app.openapi
    cached: dict[str | None, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        model = holder.current
        version = model.version if model is not None else None
        if version not in cached:
            app.openapi_schema = None  # FastAPI's own cache: build afresh, then patch
            schema = build()
            patch_limits(schema, settings, model.window if model is not None else None, version)
            _standard_bounds(schema.get("components", {}))
            if protected:
                _protect_reads(schema, protected)
            cached.clear()
            cached[version] = app.openapi_schema = schema
        return cached[version]

    app.openapi = openapi  # type: ignore[method-assign]
