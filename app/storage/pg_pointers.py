"""The registry pointers in PostgreSQL (scale-out mode): which version of each model name is served, and
the history of that choice, shared by every replica and worker.

    pointers    (model, version, serial)           one row per model name
    promotions  (serial, model, version, at, previous, reason)   append-only, as promotions.jsonl

A promotion is one transaction: the model's pointer row is locked (``FOR UPDATE``, or an advisory lock
while it has none), the history row inserted, the pointer moved, and ``pg_notify('closecast_promotions',
model)`` sent, which PostgreSQL delivers only on commit. Replicas ``LISTEN`` and reload that model at once
(the default and named models alike); since a notification sent while a replica was disconnected is lost,
each follows every loaded model again when it listens anew and also polls every
``CLOSECAST_RELOAD_INTERVAL_S`` (``follow_promotions``). Bundles stay directories on the shared models
volume; only the choice of version lives here, so the same candidates rule as ``FilePointers`` applies:
the pointer's version if its bundle exists, then promoted versions newest first.

The database is the one source of truth; the ``mirror`` keeps a copy of every model's pointer and history
after each promotion: the object store's ``<model>/current`` and ``promotions.jsonl`` with
``CLOSECAST_MODEL_STORE``, the files beside the bundles on the shared volume without one. On start, the
database takes the mirror's copy where it has no pointer (``app/storage/pg_seed.py``).

With an object store (``bundles``), a version is servable when it is in the local cache or in the store; the
holder fetches it into the cache (``fetch``) before loading it, and a worker uploads a version before it
enters its cache (``publish``).

Promotions and removals (``model_lock``: ``DELETE`` of a version or a model, retention) of one model hold its
``pg_advisory_xact_lock``, whichever replica makes them: a promotion checks inside it that the store (or
the shared volume) still has the version, a removal that the version is neither current nor promoted, so
one of the two is refused and no pointer ever names a removed version.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import psycopg

from app.inference.models import LoadedModels
from app.storage.errors import StoreUnavailable
from app.storage.pg import CHANNEL, Database, unavailable
from closecast import pointer_store, registry
from closecast.objectstore import FileMirror, PointerMirror, StoreRegistry
from closecast.pointer_store import FilePointers
from closecast.registry import PointerRead, PointerState, Promotion
from closecast.registry_lock import registry_lock

log = logging.getLogger(__name__)

POINTER_LOCK = "SELECT pg_advisory_xact_lock(hashtext('closecast pointer ' || %s))"
MIRROR_LOCK = "hashtext('closecast mirror ' || %s)"


class PostgresPointers:
    """Pointers and promotion history per model name in PostgreSQL (implements ``PointerStore``)."""

    def __init__(self, db: Database, files: FilePointers, bundles: StoreRegistry | None = None) -> None:
        self.db = db
        self.files = files  # where the bundles are: the shared volume, or the local cache of the store's
        self.bundles = bundles
        self.mirror: PointerMirror = bundles if bundles is not None else FileMirror(files.root)
        self._listener: psycopg.Connection[Any] | None = None
        self._held = threading.local()  # .conn: this thread's connection inside ``model_lock``

    def _servable(self, model: str, version: str) -> bool:
        """A bundle here, or (with a store) one the store holds, which ``fetch`` brings here."""
        if registry.is_bundle(self.files.model_dir_of(model), version):
            return True
        return self.bundles is not None and self.bundles.has(model, version)

    def fetch(self, model: str, version: str) -> None:
        """Bring ``version`` into the local cache from the store (the holder calls it before loading)."""
        if self.bundles is not None:
            self.bundles.fetch(model, version)

    def publish(self, model: str, version: str, bundle: Path | None = None) -> None:
        """Upload a version to the store: a worker's verified ``bundle`` before it enters the cache (so a
        cached version is always one the store has), and before any promotion."""
        if self.bundles is not None:
            self.bundles.publish(model, version, bundle)

    def delete_model(self, model: str) -> None:
        """Forget ``model``'s pointer and history (``DELETE /models/{model}``), and with a store remove its
        versions and pointer copy from it, in one transaction under the model's lock: every replica stops
        listing it, and those serving it unload it at their next pointer check."""
        with self._locked(model) as conn:
            if self.bundles is not None:
                self.bundles.delete_model(model)
            conn.execute("DELETE FROM promotions WHERE model = %s", (model,))
            conn.execute("DELETE FROM pointers WHERE model = %s", (model,))
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, model))

    @contextmanager
    def model_lock(self, model: str) -> Iterator[None]:
        """The model's pointer lock, held by a transaction until the block ends (see the module's text):
        a promotion of ``model`` on any replica waits for the removal inside it, and the reads inside it
        (``current``, ``history``) go through that transaction's connection."""
        with self._locked(model):
            yield

    @contextmanager
    def _locked(self, model: str) -> Iterator[psycopg.Connection[Any]]:
        """The pointer lock (then the mirror's, so no pointer copy is written while a model is removed) in
        a transaction on one connection, which this thread's reads use meanwhile; re-entrant (another
        model's locks join the transaction already open)."""
        held = getattr(self._held, "conn", None)
        with nullcontext(held) if held is not None else self.db.transaction() as conn:
            conn.execute(POINTER_LOCK, (model,))  # a lock this transaction holds is granted again at once
            conn.execute(f"SELECT pg_advisory_xact_lock({MIRROR_LOCK})", (model,))
            self._held.conn = conn
            try:
                yield conn
            finally:
                self._held.conn = held

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's connection inside ``model_lock``, else a pooled one."""
        held = getattr(self._held, "conn", None)
        if held is not None:
            yield held
            return
        with self.db.connection() as conn:
            yield conn

    def names(self) -> list[str]:
        """Model names the database has a pointer for (servable on a replica whose cache is empty)."""
        with self.db.connection() as conn:
            return [row["model"] for row in conn.execute("SELECT model FROM pointers ORDER BY model")]

    def model_names(self) -> list[str]:
        """The model names ``CLOSECAST_MAX_MODELS`` counts: the database's, and the object store's (every
        replica's and worker's, not this cache's) or the shared volume's."""
        stored = self.bundles.models() if self.bundles is not None else registry.list_models(self.files.root)
        return sorted({*stored, *self.names()})

    # --- PointerStore ------------------------------------------------------------------------------------

    def pointed(self, model: str) -> tuple[str | None, int | None]:
        with self._conn() as conn:
            row = conn.execute("SELECT version, serial FROM pointers WHERE model = %s", (model,)).fetchone()
        return (row["version"], row["serial"]) if row else (None, None)

    def read_pointer(self, model: str) -> PointerRead:
        """The pointer row as ``FilePointers`` reads its file: a servable version, or what is wrong."""
        version, _ = self.pointed(model)
        if version is None:
            return PointerRead(None, f"the database has no pointer for model {model!r}")
        if not self._servable(model, version):
            return PointerRead(None, f"the database pointer names {version!r}, which is not a bundle here")
        return PointerRead(version)

    def stamp(self, model: str) -> tuple[int, int] | None:
        """Identity of the pointer's last write (its promotion serial), as the holder stamps a file."""
        _, serial = self.pointed(model)
        return None if serial is None else (serial, 0)

    def state(self, model: str) -> PointerState:
        """Stamp, servable pointer and candidates from one query (a loaded model's poll: one round trip)."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT p.version, p.serial, ARRAY(SELECT h.version FROM promotions h WHERE h.model = %(m)s "
                "ORDER BY h.serial DESC) AS promoted FROM (SELECT 1) one "
                "LEFT JOIN pointers p ON p.model = %(m)s",
                {"m": model},
            ).fetchone()
        assert row is not None  # one row, whatever the tables hold
        candidates = self._present_of(model, [row["version"]] if row["version"] else [], row["promoted"])
        stamp = None if row["serial"] is None else (row["serial"], 0)
        pointed = row["version"] if row["version"] in candidates else None
        return PointerState(stamp, pointed, candidates)

    def change_lock(self) -> AbstractContextManager[None]:
        """This process's threads only: ``promote`` compares (``expected``) and writes pointer and history in
        one transaction under a per-model advisory lock, so other processes need no file lock."""
        return registry_lock(None)

    def current(self, model: str) -> str | None:
        candidates = self.candidates(model)
        return candidates[0] if candidates else None

    def candidates(self, model: str) -> list[str]:
        """The pointer's version, then promoted versions newest first; only bundles that exist (here, or
        in the store: the store is asked only when the pointer's version is not in the local cache)."""
        return self.state(model).candidates

    def _present_of(self, model: str, pointed: list[str], promoted: list[str]) -> list[str]:
        """Of the pointer's version and the promoted ones (newest first), those here or in the store."""
        model_dir = self.files.model_dir_of(model)
        named = list(dict.fromkeys(pointed + promoted))
        local = [version for version in named if registry.is_bundle(model_dir, version)]
        if self.bundles is None or (local and local[0] == named[0]):
            return local
        stored = set(self.bundles.versions(model))
        return [version for version in named if version in local or version in stored]

    def promote(
        self, model: str, version: str, reason: str = "", expected: tuple[str, ...] = ()
    ) -> str | None:
        """Record the promotion, move the pointer and notify every replica: one transaction, under the
        model's advisory lock; with ``expected`` the pointer is compared inside it (compare-and-set), so a
        promotion judged against one version never overrides another replica's rollback. Returns the
        version the pointer named before, read under that lock (``FOR UPDATE`` on the row too): two replicas
        promoting at once each get the one the other replaced, as the history records it. The version
        must be there for every replica, checked under that lock (a removal holds it too): else
        ``ValueError`` and nothing changes."""
        at = datetime.now(UTC).isoformat(timespec="seconds")
        with self.db.transaction() as conn:
            conn.execute(POINTER_LOCK, (model,))
            row = conn.execute(
                "SELECT version FROM pointers WHERE model = %s FOR UPDATE", (model,)
            ).fetchone()
            previous = row["version"] if row else None
            if not self._shared(model, version):
                raise ValueError(f"version {version!r} is not a bundle in the registry")
            if expected and previous not in expected:
                raise pointer_store.PointerMoved(model, expected, previous)
            serial = conn.execute(
                "INSERT INTO promotions (model, version, at, previous, reason) VALUES (%s, %s, %s, %s, %s) "
                "RETURNING serial",
                (model, version, at, previous, reason),
            ).fetchone()
            assert serial is not None
            conn.execute(
                "INSERT INTO pointers (model, version, serial) VALUES (%s, %s, %s) ON CONFLICT (model) "
                "DO UPDATE SET version = excluded.version, serial = excluded.serial, updated_at = now()",
                (model, version, serial["serial"]),
            )
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, model))
        self.write_mirror(model)
        return previous

    def _shared(self, model: str, version: str) -> bool:
        """There for every replica: in the store (its manifest: never a cached copy of a version removed
        meanwhile), or a bundle on the shared volume."""
        if self.bundles is not None:
            return self.bundles.present(model, version)
        return registry.is_bundle(self.files.model_dir_of(model), version)

    def write_mirror(self, model: str) -> None:
        """Copy the committed pointer and history of ``model`` to the mirror. Under a per-model session lock
        and read inside it, so concurrent promotions leave the newest state, whichever writes last. A
        mirror that cannot be written is logged: the database holds the truth, the next promotion retries."""
        lock = MIRROR_LOCK
        try:
            with self.db.connection() as conn:
                conn.execute(f"SELECT pg_advisory_lock({lock})", (model,))
                try:
                    row = conn.execute("SELECT version FROM pointers WHERE model = %s", (model,)).fetchone()
                    rows = conn.execute(
                        "SELECT version, at, previous, reason FROM promotions WHERE model = %s "
                        "ORDER BY serial",
                        (model,),
                    ).fetchall()
                    if row is not None:
                        self.mirror.write_pointer(model, row["version"], [Promotion(**r) for r in rows])
                finally:
                    conn.execute(f"SELECT pg_advisory_unlock({lock})", (model,))
        except (OSError, ValueError, StoreUnavailable) as exc:
            log.warning("could not copy the pointer of model %s to %s: %s", model, self.where(), exc)

    def where(self) -> str:
        return "the object store" if self.bundles is not None else "the model files"

    def history(self, model: str) -> list[Promotion]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT version, at, previous, reason FROM promotions WHERE model = %s ORDER BY serial",
                (model,),
            ).fetchall()
        return [Promotion(**row) for row in rows]

    # --- notifications ----------------------------------------------------------------------------------

    def listen(self) -> None:
        """Blocking: open the listening connection (its own, not pooled) and ``LISTEN``, unless it is open.

        Raises ``StoreUnavailable`` when the database cannot be reached; broken connections left in the pool
        are dropped then too, so the first request after the database returns gets a live one at once.
        """
        if self._listener is not None and not self._listener.closed:
            return
        try:
            self._listener = self.db.listen_connection()  # StoreUnavailable when it cannot connect
            self._listener.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            self._lost()
            raise unavailable(exc) from exc
        except StoreUnavailable:
            self._lost()
            raise

    def wait_for_promotion(self, timeout_s: float) -> list[str]:
        """Blocking: the model names promoted, as soon as one is notified; empty after ``timeout_s``.

        The listening connection is opened on first use and again after it breaks, which raises
        ``StoreUnavailable`` (the watcher is supervised: it backs off and retries).
        """
        self.listen()
        assert self._listener is not None
        try:
            names = [n.payload for n in self._listener.notifies(timeout=timeout_s, stop_after=1)]
            if names:  # the others already here come along (several promotions in one moment)
                names += [n.payload for n in self._listener.notifies(timeout=0.001)]
            return list(dict.fromkeys(names))
        except psycopg.Error as exc:
            self._lost()
            raise unavailable(exc) from exc

    def _lost(self) -> None:
        """The database went away: so did the listener and, likely, the pool's idle connections."""
        self.close()
        self.db.drop_broken()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(psycopg.Error):  # a connection already broken
                listener.close()


async def follow_promotions(models: LoadedModels, pointers: PostgresPointers, interval_s: float) -> None:
    """Run until cancelled: reload a model as soon as its promotion is notified (the default and the named
    models alike), and the default at least every ``interval_s`` (the others: ``watch_models``).

    On every (re)start it listens first, then follows every loaded model once: a promotion notified while
    this replica was not listening (the database was down) is caught then, not an interval later.
    Supervised (``app/background.py``, its backoff capped by the interval): a database that is down ends the
    loop with ``StoreUnavailable``; the replica keeps serving the model it holds, ``/readyz`` lists the
    problem, and the loop starts again.
    """
    run = anyio.to_thread.run_sync
    try:
        await run(pointers.listen, abandon_on_cancel=True)
        await run(models.reload_every)
        while True:
            names = await run(pointers.wait_for_promotion, interval_s, abandon_on_cancel=True)
            for name in names or [models.default_name]:
                await run(models.reload_model, name)
    finally:
        pointers.close()
