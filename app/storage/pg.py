"""The PostgreSQL connection of one process (scale-out mode): a small pool, the schema, and error mapping.

Only used when ``CLOSECAST_DATABASE_URL`` is set (``backends.py`` decides). psycopg lives in ``app/``
rather than the core so the core stays numpy + ONNX Runtime + stdlib, and training never needs a database
driver (Optuna's RDB storage brings its own through SQLAlchemy).

The schema is created or migrated on start under a session advisory lock, so several replicas and workers
starting at once never race on ``CREATE TABLE``; each migration step is idempotent and recorded in
``closecast_schema``. Every connection has a short ``connect_timeout`` and statement timeout, and the pool
waits at most ``CLOSECAST_JOB_STORE_TIMEOUT_S`` for a connection, so a database that is down answers 503 at
once instead of hanging requests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from app.storage.errors import StoreUnavailable
from app.storage.pg_access import OptunaAccess, application_name

log = logging.getLogger(__name__)

STORE_NAME = "PostgreSQL"  # how answers name the store (never the URL: it may hold a password)
MIGRATION_LOCK = 7_310_014  # pg_advisory_lock key: "closecast schema"
CHANNEL = "closecast_promotions"  # NOTIFY channel; the payload is the model name

# Each step runs once, in order, inside the advisory lock; its index + 1 is the schema version.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS jobs (
        seq              BIGSERIAL PRIMARY KEY,
        id               TEXT NOT NULL UNIQUE,
        status           TEXT NOT NULL
                         CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
        name             TEXT NOT NULL,
        promote          TEXT NOT NULL,
        spec             JSONB NOT NULL,
        progress         JSONB,
        result           JSONB,
        error            TEXT,
        created_at       TEXT NOT NULL,
        started_at       TEXT,
        finished_at      TEXT,
        owner_pid        INTEGER,
        owner_host       TEXT,
        owner_started    TEXT,
        owner_token      TEXT,
        heartbeat_at     DOUBLE PRECISION,
        child_pid        INTEGER,
        cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
        model            TEXT NOT NULL DEFAULT 'default'
    );
    CREATE UNIQUE INDEX IF NOT EXISTS one_running_job_per_model ON jobs (model) WHERE status = 'running';
    CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (model, seq) WHERE status = 'queued';
    CREATE TABLE IF NOT EXISTS pointers (
        model      TEXT PRIMARY KEY,
        version    TEXT NOT NULL,
        serial     BIGINT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE IF NOT EXISTS promotions (
        serial   BIGSERIAL PRIMARY KEY,
        model    TEXT NOT NULL,
        version  TEXT NOT NULL,
        at       TEXT NOT NULL,
        previous TEXT,
        reason   TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX IF NOT EXISTS promotions_by_model ON promotions (model, serial);
    """,
    # 2: a distributed tune job's shards (spec.shard_of = its parent) run beside their parent and each other;
    # the rule "one running job per model" holds for every other job.
    """
    DROP INDEX IF EXISTS one_running_job_per_model;
    CREATE UNIQUE INDEX IF NOT EXISTS one_running_job_per_model_but_shards ON jobs (model)
        WHERE status = 'running' AND (spec->>'shard_of') IS NULL;
    """,
)


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The domain error (503) for a database that cannot be used now; the text never carries the URL."""
    if isinstance(exc, PoolTimeout):
        return StoreUnavailable("unreachable", STORE_NAME, "no connection within the store timeout")
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction | psycopg.errors.InsufficientPrivilege):
        return StoreUnavailable("read-only", STORE_NAME, type(exc).__name__)
    if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
        return StoreUnavailable("locked", STORE_NAME, type(exc).__name__)
    if isinstance(exc, psycopg.OperationalError):
        return StoreUnavailable("unreachable", STORE_NAME, type(exc).__name__)
    return StoreUnavailable("failed", STORE_NAME, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def connect_kwargs(timeout_s: float, role: str = "api") -> dict[str, Any]:
    """Per connection: give up connecting after ``timeout_s``, cancel statements that wait longer, and say
    which kind of process on which host this is (``pg_stat_activity.application_name``)."""
    ms = max(100, int(timeout_s * 1000))
    return {
        "connect_timeout": max(1, round(timeout_s)),
        "options": f"-c statement_timeout={5 * ms} -c lock_timeout={ms}",
        "application_name": application_name(role),
    }


class Database:
    """The pool of one process; ``open`` connects and migrates, ``close`` ends every connection."""

    def __init__(
        self,
        url: str,
        pool_size: int = 4,
        timeout_s: float = 2.0,
        role: str = "api",
        optuna: OptunaAccess | None = None,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.role = role  # api, worker, migrate: in every connection's application_name
        self.optuna = optuna  # its schema (and role, when allowed) are made by `migrate`
        self.pool = ConnectionPool(
            url,
            connection_class=psycopg.Connection[DictRow],
            min_size=1,
            max_size=pool_size,
            timeout=timeout_s,
            kwargs={**connect_kwargs(timeout_s, role), "autocommit": True, "row_factory": dict_row},
            check=ConnectionPool.check_connection,  # after a database restart, no request gets a dead one
            reconnect_timeout=0,  # keep trying for ever: the database comes back
            open=False,
            name="closecast",
        )

    def open(self, wait_s: float = 30.0) -> None:
        """Connect (waiting up to ``wait_s`` for a database still starting), then migrate the schema."""
        self.pool.open(wait=True, timeout=wait_s)
        self.migrate()

    def close(self) -> None:
        self.pool.close()

    def migrate(self) -> int:
        """Apply the missing ``MIGRATIONS`` under the advisory lock; returns the schema version."""
        with self.pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS closecast_schema (version INTEGER NOT NULL)")
                row = conn.execute("SELECT max(version) AS v FROM closecast_schema").fetchone()
                have = int(row["v"] or 0) if row else 0
                for number, step in enumerate(MIGRATIONS[have:], start=have + 1):
                    with conn.transaction():
                        conn.execute(step)
                        conn.execute("INSERT INTO closecast_schema (version) VALUES (%s)", (number,))
                    log.info("database schema migrated to version %d", number)
                if self.optuna is not None:
                    prepare_optuna(conn, self.optuna)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        return len(MIGRATIONS)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        """A pooled autocommit connection; any database failure becomes ``StoreUnavailable`` (503)."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except psycopg.IntegrityError:
            raise  # a constraint said no (e.g. another worker's running job): the caller's answer
        except (psycopg.Error, PoolTimeout) as exc:
            raise unavailable(exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[DictRow]]:
        """One transaction on a pooled connection, committed on success, rolled back on any exception."""
        with self.connection() as conn, conn.transaction():
            yield conn

    def drop_broken(self) -> None:
        """Check the pool's idle connections now and drop the broken ones (a database restart broke them
        all): otherwise the first requests after it returns each meet one, and the pool's own check loop
        backs off a second and more between them. Never raises: it is called on the way out of a failure."""
        try:
            self.pool.check()
        except Exception as exc:  # best effort: the failure being reported matters more
            log.debug("checking the pool's connections failed: %s", exc)

    def listen_connection(self) -> psycopg.Connection[Any]:
        """A connection of its own (outside the pool) for ``LISTEN``; the caller closes it."""
        try:
            return psycopg.connect(self.url, autocommit=True, **connect_kwargs(self.timeout_s, self.role))
        except psycopg.Error as exc:
            raise unavailable(exc) from exc


def prepare_optuna(conn: psycopg.Connection[Any], access: OptunaAccess) -> None:
    """Optuna's schema, and its role when this user may create roles (CREATEROLE or superuser): created or
    given the deployment's password, allowed to use and create in that schema only. A user who may not: the
    role must exist already (docs/scale-out.md has the SQL); a warning says what is missing."""
    schema, role = sql.Identifier(access.schema), sql.Identifier(access.role)
    me = conn.execute(
        "SELECT rolsuper OR rolcreaterole AS can FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (access.role,)).fetchone() is not None
    password: sql.Composable = sql.SQL("NULL")
    if access.password is not None:  # sent hashed (SCRAM, as psql's \\password does): never in a server log
        hashed = conn.pgconn.encrypt_password(access.password.encode(), access.role.encode())
        password = sql.Literal(hashed.decode())
    try:
        if me is not None and me["can"]:
            verb = sql.SQL("ALTER" if exists else "CREATE")
            conn.execute(sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(verb, role, password))
            exists = True
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        if exists:
            conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(schema, role))
    except psycopg.errors.InsufficientPrivilege as exc:
        log.warning("Optuna's schema %s: %s", access.schema, str(exc).splitlines()[0])
        return
    if not exists:
        log.warning(
            "the role %s for Optuna's schema %s does not exist and this user may not create roles: "
            'distributed tune jobs fail until it does (docs/scale-out.md, "Optuna\'s schema")',
            access.role,
            access.schema,
        )
