"""Who each process is to PostgreSQL, and how a training child reaches Optuna's schema without the service's
password. Plain functions, no psycopg: the job supervisor uses them in installs without a database driver.

- ``application_name``: every connection says its role and host (``closecast-worker@host``), so
  ``pg_stat_activity`` tells an API replica from a worker, a migration and a training child.
- Optuna's tables (a distributed tune job's study) live in a schema of their own (``CLOSECAST_OPTUNA_SCHEMA``)
  and are reached through a role of their own (``CLOSECAST_OPTUNA_ROLE``). The child gets a URL without a
  password, that role's password in a 0600 ``PGPASSFILE`` in its work dir (libpq reads it), the schema in
  ``PGOPTIONS`` and its ``PGAPPNAME``; never the service's database URL.
- The role's password is ``CLOSECAST_OPTUNA_PASSWORD``, else derived from the database URL's password
  (HMAC-SHA256), so every process of one deployment computes the same one with no extra setting. Without
  either the role gets no password: it can log in only where the server trusts the client (as the main user
  does, since its URL holds none).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from app.config import Settings

PASSFILE = ".pgpass"  # in a job's work dir: removed with it, whichever way the job ends


def application_name(role: str) -> str:
    """``closecast-<role>@<host>``, cut to PostgreSQL's 63 bytes (it would truncate it anyway)."""
    return f"closecast-{role}@{socket.gethostname()}".encode()[:63].decode("utf-8", "ignore")


@dataclass(frozen=True)
class OptunaAccess:
    """Optuna's schema and role in the service's database, and the role's password (None: no password)."""

    schema: str
    role: str
    password: str | None

    @classmethod
    def of(cls, database_url: str, schema: str, role: str, password: str | None) -> OptunaAccess:
        """The access every process of a deployment agrees on: the given password, else one derived from
        the database URL's password, else none."""
        if password is None:
            secret = urlsplit(database_url).password
            if secret:
                message = f"closecast optuna role {role}".encode()
                password = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
        return cls(schema, role, password)

    def child_url(self, database_url: str) -> str:
        """The service's URL with this role as its user, no password (host, port, database, query kept)."""
        parts = urlsplit(database_url)
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        netloc = f"{quote(self.role, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))

    def child_environment(self, database_url: str, work: Path) -> dict[str, str]:
        """What a training child needs to open the study: the URL (``CLOSECAST_TUNE_STORAGE``), the schema as
        its search path, its application name and, with a password, a 0600 passfile written in ``work``."""
        env = {
            "CLOSECAST_TUNE_STORAGE": self.child_url(database_url),
            "PGOPTIONS": f"-c search_path={self.schema}",
            "PGAPPNAME": application_name("train"),
        }
        if self.password is not None:
            env["PGPASSFILE"] = str(write_passfile(work / PASSFILE, self.role, self.password))
        return env


def _escape(field: str) -> str:
    return field.replace("\\", "\\\\").replace(":", "\\:")


def write_passfile(path: Path, role: str, password: str) -> Path:
    """A libpq password file holding ``role``'s password for any host, port and database, created 0600
    (libpq ignores a passfile others may read) before a byte of it is written."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"*:*:*:{_escape(role)}:{_escape(password)}\n")
    return path


SECRET_ENV = ("CLOSECAST_API_KEY", "CLOSECAST_DATABASE_URL", "CLOSECAST_OPTUNA_PASSWORD", "PGPASSWORD")


def optuna_access(settings: Settings) -> OptunaAccess | None:
    """Optuna's schema and role for ``settings``' database (None without one)."""
    if settings.database_url is None:
        return None
    given = settings.optuna_password.get_secret_value() if settings.optuna_password else None
    url = settings.database_url.get_secret_value()
    return OptunaAccess.of(url, settings.optuna_schema, settings.optuna_role, given or None)
