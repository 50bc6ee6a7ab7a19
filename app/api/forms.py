"""Hand-written OpenAPI request bodies (``POST /train``), from the pydantic models that validate them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its nested models written in place (for hand-written OpenAPI bodies)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            # a bound behind a BeforeValidator (WholeNumber) comes out as pydantic's own `ge`/`le`
            return {_BOUNDS.get(k, k): resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def form_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``inline_schema`` for a multipart form: a form field is a string or absent, never JSON ``null``, so
    the ``null`` alternatives (and null defaults) are dropped: the text ``null`` gets a 422."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            alternatives = node.get("anyOf")
            if isinstance(alternatives, list) and {"type": "null"} in alternatives:
                rest = [a for a in alternatives if a != {"type": "null"}]
                node = {k: v for k, v in node.items() if k != "anyOf"}
                node = {**rest[0], **node} if len(rest) == 1 else {**node, "anyOf": rest}  # outer bounds win
            if node.get("default", 0) is None:
                node = {k: v for k, v in node.items() if k != "default"}
            return {k: strip(v) for k, v in node.items()}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    stripped: dict[str, Any] = strip(inline_schema(model))
    return stripped
