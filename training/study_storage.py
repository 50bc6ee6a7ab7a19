"""Where an Optuna study is kept: the storage URL (SQLite file in ``--out`` by default, or a server
database shared by a job's shards), how it is opened, and how it is named in a manifest (no password)."""

from __future__ import annotations

import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

HEARTBEAT_S = 10  # --trial-heartbeat / --trial-grace by default; a /train job's shards: its heartbeat, lease
HEARTBEAT_GRACE_S = 30


def redact(storage: str) -> str:
    """A storage URL without its password (``postgresql://user:***@host/db``)."""
    parts = urlsplit(storage)
    if parts.password is None:
        return storage
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def rdb_storage(
    url: str, heartbeat: int = HEARTBEAT_S, grace: int = HEARTBEAT_GRACE_S
) -> str | optuna.storages.RDBStorage:
    """A server database (PostgreSQL) gets trial heartbeats every ``heartbeat`` s: a trial whose shard was
    killed is failed ``grace`` s after its last one (when any shard starts its next trial) and run again
    once. ``postgresql://`` URLs use psycopg 3 (the `pg` extra). Optuna creates its tables on first use,
    which races when shards start together ("relation studies already exists"), so that happens under a
    PostgreSQL advisory lock. A SQLite file (one process) is left as is."""
    if url.startswith("sqlite"):
        return url
    plain = url
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    elif url.startswith("postgresql+psycopg://"):
        plain = "postgresql://" + url.split("://", 1)[1]
    else:
        return url  # another database: Optuna's defaults
    import psycopg  # the `pg` extra; only for PostgreSQL studies

    with warnings.catch_warnings(), psycopg.connect(plain, autocommit=True) as conn:
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: since Optuna 2.8
        conn.execute("SELECT pg_advisory_lock(hashtext('closecast optuna schema'))")  # freed on close
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=heartbeat,
            grace_period=grace,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
        )


def sqlite_file(storage: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` storage (None for any other, ``:memory:`` included)."""
    prefix = "sqlite:///"
    if not storage.startswith(prefix) or storage.endswith(":memory:"):
        return None
    return Path(storage[len(prefix) :]).resolve()


def only_study_files(out: Path, study_file: Path | None) -> bool:
    """Whether ``out`` holds nothing but the study's SQLite file (and its journal): the search's own."""
    if study_file is None or not out.is_dir():
        return False
    return all(p.name.startswith(study_file.name) for p in out.iterdir())


def default_storage(out_dir: Path, study: str) -> str:
    """A SQLite file in ``out_dir`` (made when the search starts): the study survives the process and
    resumes under its name."""
    return f"sqlite:///{(out_dir / f'{study}.optuna.sqlite3').resolve()}"
