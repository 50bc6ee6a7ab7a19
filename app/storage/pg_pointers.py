"""The registry pointers in PostgreSQL (scale-out mode): which version of each model name is served, and
the history of that choice, shared by every replica and worker.

    pointers    (model, version, serial)           one row per model name
    promotions  (serial, model, version, at, previous, reason)   append-only, as promotions.jsonl

A promotion is one transaction: the model's pointer row is locked (``FOR UPDATE``, or an advisory lock
while it has none), the history row inserted, the pointer moved, and ``pg_notify('closecast_promotions',
model)`` sent, which PostgreSQL delivers only on commit. Replicas ``LISTEN`` and reload at once; since a
notification sent while a replica was disconnected is lost, each also polls every
``CLOSECAST_RELOAD_INTERVAL_S`` (``follow_promotions``). Bundles stay directories on the shared models
volume; only the choice of version lives here, so the same candidates rule as ``FilePointers`` applies:
the pointer's version if its bundle exists, then promoted versions newest first.

On start, a model name the database has no pointer for is seeded from the registry's files (``current``
and ``promotions.jsonl``) — the first start against an empty database keeps serving what was served.
From then on the files are no longer read for that model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager, suppress
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread
import psycopg

from app.inference.holder import ModelHolder
from app.storage.pg import CHANNEL, Database, unavailable
from closecast import registry
from closecast.registry import FilePointers, PointerRead, Promotion
from closecast.registry_lock import registry_lock

log = logging.getLogger(__name__)


class PostgresPointers:
    """Pointers and promotion history per model name in PostgreSQL (implements ``PointerStore``)."""

    def __init__(self, db: Database, files: FilePointers) -> None:
        self.db = db
        self.files = files  # where the bundles are (the shared volume), and the files seeded from
        self._listener: psycopg.Connection[Any] | None = None

    # --- PointerStore ------------------------------------------------------------------------------------

    def _pointed(self, model: str) -> tuple[str | None, int | None]:
        with self.db.connection() as conn:
            row = conn.execute("SELECT version, serial FROM pointers WHERE model = %s", (model,)).fetchone()
        return (row["version"], row["serial"]) if row else (None, None)

    def read_pointer(self, model: str) -> PointerRead:
        """The pointer row as ``FilePointers`` reads its file: a servable version, or what is wrong."""
        version, _ = self._pointed(model)
        if version is None:
            return PointerRead(None, f"the database has no pointer for model {model!r}")
        if not registry.is_bundle(self.files.model_dir_of(model), version):
            return PointerRead(None, f"the database pointer names {version!r}, which is not a bundle here")
        return PointerRead(version)

    def stamp(self, model: str) -> tuple[int, int] | None:
        """Identity of the pointer's last write (its promotion serial), as the holder stamps a file."""
        _, serial = self._pointed(model)
        return None if serial is None else (serial, 0)

    def change_lock(self) -> AbstractContextManager[None]:
        """This process's threads only: ``promote`` compares (``expected``) and writes pointer and history in
        one transaction under a per-model advisory lock, so other processes need no file lock."""
        return registry_lock(None)

    def current(self, model: str) -> str | None:
        candidates = self.candidates(model)
        return candidates[0] if candidates else None

    def candidates(self, model: str) -> list[str]:
        """The pointer's version, then promoted versions newest first; only bundles that exist."""
        model_dir = self.files.model_dir_of(model)
        with self.db.connection() as conn:
            pointed = conn.execute("SELECT version FROM pointers WHERE model = %s", (model,)).fetchone()
            promoted = conn.execute(
                "SELECT version FROM promotions WHERE model = %s ORDER BY serial DESC", (model,)
            ).fetchall()
        ordered: list[str] = []
        for version in ([pointed["version"]] if pointed else []) + [r["version"] for r in promoted]:
            if version not in ordered and registry.is_bundle(model_dir, version):
                ordered.append(version)
        return ordered

    def promote(self, model: str, version: str, reason: str = "", expected: tuple[str, ...] = ()) -> None:
        """Record the promotion, move the pointer and notify every replica: one transaction, under the
        model's advisory lock; with ``expected`` the pointer is compared inside it (compare-and-set), so a
        promotion judged against one version never overrides another replica's rollback."""
        if not registry.is_bundle(self.files.model_dir_of(model), version):
            raise ValueError(f"version {version!r} is not a bundle in the registry")
        at = datetime.now(UTC).isoformat(timespec="seconds")
        with self.db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('closecast pointer ' || %s))", (model,))
            row = conn.execute("SELECT version FROM pointers WHERE model = %s", (model,)).fetchone()
            if expected and (now := row["version"] if row else None) not in expected:
                raise registry.PointerMoved(model, expected, now)
            serial = conn.execute(
                "INSERT INTO promotions (model, version, at, previous, reason) VALUES (%s, %s, %s, %s, %s) "
                "RETURNING serial",
                (model, version, at, row["version"] if row else None, reason),
            ).fetchone()
            assert serial is not None
            conn.execute(
                "INSERT INTO pointers (model, version, serial) VALUES (%s, %s, %s) ON CONFLICT (model) "
                "DO UPDATE SET version = excluded.version, serial = excluded.serial, updated_at = now()",
                (model, version, serial["serial"]),
            )
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, model))

    def history(self, model: str) -> list[Promotion]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT version, at, previous, reason FROM promotions WHERE model = %s ORDER BY serial",
                (model,),
            ).fetchall()
        return [Promotion(**row) for row in rows]

    # --- seeding and notifications -----------------------------------------------------------------------

    def seed(self, models: Iterable[str]) -> list[str]:
        """Give every model name without a pointer here the pointer and history of its files; returns the
        names seeded. Safe from several processes at once (per-model advisory lock, one transaction each)."""
        seeded = []
        for model in models:
            model_dir = self.files.model_dir_of(model)
            pointed = registry.read_pointer(model_dir).version
            history = registry.promotion_history(model_dir)
            if pointed is None and not history:
                continue
            with self.db.transaction() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('closecast pointer ' || %s))", (model,))
                if conn.execute("SELECT 1 FROM pointers WHERE model = %s", (model,)).fetchone():
                    continue
                serial = 0
                for item in history:
                    row = conn.execute(
                        "INSERT INTO promotions (model, version, at, previous, reason) "
                        "VALUES (%(model)s, %(version)s, %(at)s, %(previous)s, %(reason)s) RETURNING serial",
                        {"model": model, **asdict(item)},
                    ).fetchone()
                    serial = row["serial"] if row else serial
                version = pointed or history[-1].version
                conn.execute(
                    "INSERT INTO pointers (model, version, serial) VALUES (%s, %s, %s)",
                    (model, version, serial),
                )
            seeded.append(model)
            log.info("seeded the database pointer of model %s from its files: %s", model, version)
        return seeded

    def wait_for_promotion(self, timeout_s: float) -> bool:
        """Blocking: True as soon as a promotion is notified, False after ``timeout_s`` without one.

        The listening connection is its own (not pooled); it is opened on first use and again after it
        breaks, which raises ``StoreUnavailable`` (the watcher is supervised: it backs off and retries).
        """
        try:
            if self._listener is None or self._listener.closed:
                self._listener = self.db.listen_connection()
                self._listener.execute(f"LISTEN {CHANNEL}")
            for _ in self._listener.notifies(timeout=timeout_s, stop_after=1):
                return True
            return False
        except psycopg.Error as exc:
            self.close()
            raise unavailable(exc) from exc

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(psycopg.Error):  # a connection already broken
                listener.close()


async def follow_promotions(holder: ModelHolder, pointers: PostgresPointers, interval_s: float) -> None:
    """Run until cancelled: reload when a promotion is notified, and at least every ``interval_s``.

    Supervised (``app/background.py``): a database that is down ends the loop with ``StoreUnavailable``;
    the replica keeps serving the model it holds, ``/readyz`` lists the problem, and the loop starts again
    after a backoff.
    """
    try:
        while True:
            await anyio.to_thread.run_sync(pointers.wait_for_promotion, interval_s, abandon_on_cancel=True)
            await anyio.to_thread.run_sync(holder.reload_if_changed)
    finally:
        pointers.close()
