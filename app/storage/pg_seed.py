"""Seeding the PostgreSQL pointers from their mirror copy at start (scale-out mode).

The database is the one source of truth, and the mirror (``PostgresPointers.mirror``: the object store's
``<model>/current`` and ``promotions.jsonl``, or the files beside the bundles on the shared volume) holds a
copy of it. A model name the database has no pointer for takes the mirror's copy, so the first start against
an empty database keeps serving what was served; one it has a pointer for keeps it, and a copy that differs
is logged and rewritten from the database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict

from app.storage.pg_pointers import POINTER_LOCK, PostgresPointers
from closecast.registry import Promotion

log = logging.getLogger(__name__)


def seed_pointers(pointers: PostgresPointers, models: Iterable[str]) -> list[str]:
    """Give every model name without a pointer the pointer and history of its mirror copy; returns the names
    seeded. Safe from several processes at once (per-model advisory lock, one transaction each)."""
    seeded = []
    for model in sorted({*models, *pointers.mirror.models()}):
        pointed, history = pointers.mirror.read_pointer(model)
        if _seed_one(pointers, model, pointed, history):
            seeded.append(model)
            log.info("seeded the database pointer of model %s from %s: %s", model, pointers.where(), pointed)
            continue
        have, _ = pointers.pointed(model)
        if have is not None and (
            have != pointed or [p.version for p in history] != [p.version for p in pointers.history(model)]
        ):
            log.warning(
                "the database points model %s at %s, %s at %s: the database is kept (it is the source of "
                "truth) and the copy rewritten",
                *(model, have, pointers.where(), pointed),
            )
            pointers.write_mirror(model)
    return seeded


def _seed_one(pointers: PostgresPointers, model: str, pointed: str | None, history: list[Promotion]) -> bool:
    """Insert ``history`` and the pointer unless the database has a pointer for ``model``."""
    if pointed is None and not history:
        return False
    with pointers.db.transaction() as conn:
        conn.execute(POINTER_LOCK, (model,))
        if conn.execute("SELECT 1 FROM pointers WHERE model = %s", (model,)).fetchone():
            return False
        serial = 0
        for item in history:
            row = conn.execute(
                "INSERT INTO promotions (model, version, at, previous, reason) "
                "VALUES (%(model)s, %(version)s, %(at)s, %(previous)s, %(reason)s) RETURNING serial",
                {"model": model, **asdict(item)},
            ).fetchone()
            serial = row["serial"] if row else serial
        conn.execute(
            "INSERT INTO pointers (model, version, serial) VALUES (%s, %s, %s)",
            (model, pointed or history[-1].version, serial),
        )
    return True
