"""What the batch-parsing child process runs (``app.api.bodies.BatchParser`` starts it).

Kept apart and lean (the schemas, numpy and the standard library) so the spawned child imports no web stack.
The child validates with the same pydantic model as the event loop would, so answers and 422 messages are the
same, and sends the closes back as ONE float64 array plus the lengths: unpickling a million Python floats in
the server would cost its event loop about as much as the parsing it was spared.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from pydantic import ValidationError

from app.api.schemas import BatchForecastRequest
from app.memory import trim_heap

# ("ok", (ids, flat closes, lengths, horizon, levels, features)) or ("invalid", pydantic's error items);
# features: name -> (flat values, lengths with -1 where a series sent none), or None when no series sent any
FlatFeatures = dict[str, tuple[Any, Any]] | None
Parsed = tuple[str, Any]


def body_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's error items as FastAPI's body errors (``loc`` from ``"body"``). A JSON syntax error's
    ``input`` is the whole body: it is dropped (as FastAPI does), never echoed back or sent between processes.
    """
    return [
        {**e, "loc": ("body", *e["loc"]), **({"input": {}} if e["type"] == "json_invalid" else {})}
        for e in exc.errors(include_url=False)
    ]


def start(nice: int) -> None:
    """Initialiser of the child: lower its priority so the server's own requests come first on a busy CPU."""
    if nice:
        os.nice(nice)


def pid() -> int:
    """The child's process id (for its health and for tests)."""
    return os.getpid()


def _flat_features(series: list[Any]) -> FlatFeatures:
    """Every series' features as one float64 array and the lengths per name (-1: not sent), like closes."""
    if all(s.features is None for s in series):
        return None
    names = sorted({name for s in series for name in (s.features or {})})
    out = {}
    for name in names:
        values = [(s.features or {}).get(name) for s in series]
        lengths = np.fromiter(
            (-1 if v is None else len(v) for v in values), dtype=np.int64, count=len(values)
        )
        flat = np.fromiter((x for v in values if v is not None for x in v), dtype=np.float64)
        out[name] = (flat, lengths)
    return out


def unflatten_features(features: FlatFeatures, count: int) -> list[dict[str, Any] | None]:
    """``_flat_features`` back into one mapping (or None) per series, values as views of the arrays."""
    out: list[dict[str, Any] | None] = [None] * count
    for name, (flat, lengths) in (features or {}).items():
        ends = np.cumsum(np.maximum(lengths, 0)).tolist()
        for i, (end, n) in enumerate(zip(ends, lengths.tolist(), strict=True)):
            if n >= 0:
                out[i] = {**(out[i] or {}), name: flat[end - n : end]}
    return out


def parse_batch(body: bytes) -> Parsed:
    """Validate a ``/forecast/batch`` body; the closes as one flat array, or the validation errors."""
    try:
        request = BatchForecastRequest.model_validate_json(body)
    except ValidationError as exc:
        return "invalid", body_errors(exc)
    series = request.series
    lengths = np.fromiter((len(s.closes) for s in series), dtype=np.int64, count=len(series))
    flat = np.fromiter((c for s in series for c in s.closes), dtype=np.float64, count=int(lengths.sum()))
    parsed = [s.id for s in series], flat, lengths, request.horizon, request.level, _flat_features(series)
    del request, series
    trim_heap()  # the child's ~100 MB of Python floats are freed: give the pages back
    return "ok", parsed
