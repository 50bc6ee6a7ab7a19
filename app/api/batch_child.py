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

# ("ok", (ids, flat closes, lengths, horizon, levels)) or ("invalid", pydantic's error items)
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


def parse_batch(body: bytes) -> Parsed:
    """Validate a ``/forecast/batch`` body; the closes as one flat array, or the validation errors."""
    try:
        request = BatchForecastRequest.model_validate_json(body)
    except ValidationError as exc:
        return "invalid", body_errors(exc)
    series = request.series
    lengths = np.fromiter((len(s.closes) for s in series), dtype=np.int64, count=len(series))
    flat = np.fromiter((c for s in series for c in s.closes), dtype=np.float64, count=int(lengths.sum()))
    parsed = [s.id for s in series], flat, lengths, request.horizon, request.level
    del request, series
    trim_heap()  # the child's ~100 MB of Python floats are freed: give the pages back
    return "ok", parsed
