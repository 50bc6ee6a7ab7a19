"""The ``closecast`` command (``python -m app``): one grammar, help that exits 0, usage errors as one line and
exit 2, flags over settings, and ``migrate`` against a real PostgreSQL."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest

from app.storage.pg import MIGRATION_LOCK, MIGRATIONS
from tests.helpers import FIXTURE_MODELS, ROOT, free_port, server_env, wait_for


def closecast(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=server_env(model_dir=str(FIXTURE_MODELS), providers="cpu", **settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["serve", "--help"], ["worker", "--help"]])
def test_help_exits_0_and_names_the_grammar(args: list[str]) -> None:
    done = closecast(*args)
    assert done.returncode == 0, done.stderr
    assert "usage: closecast" in done.stdout


def test_top_level_help_lists_every_command_and_flag() -> None:
    out = closecast("--help").stdout
    for word in ("serve", "worker", "migrate", "--host", "--port", "--workers", "CLOSECAST_PORT"):
        assert word in out, word


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["--port", "eighty"], "invalid int value: 'eighty'"),
        (["--port", "70000"], "--port: Input should be less than or equal to 65535"),
        (["serve", "--workers", "0"], "--workers: Input should be greater than or equal to 1"),
        (["worker", "--port", "9000"], "unrecognized arguments: --port 9000"),
        (["--port", "9000", "migrate"], "--port only applies to serve, not to migrate"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(args: list[str], says: str) -> None:
    done = closecast(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert done.stderr.startswith("closecast: ")


def test_a_refused_setting_is_one_line_and_exit_2() -> None:
    done = closecast(port="0")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "CLOSECAST_PORT" in done.stderr, done.stderr


def test_migrate_without_a_database_url_is_one_line_and_exit_2() -> None:
    done = closecast("migrate")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "CLOSECAST_DATABASE_URL" in done.stderr, done.stderr


def test_migrate_brings_the_schema_up_to_date_and_exits(pg_url: str) -> None:
    first = closecast("migrate", database_url=pg_url)
    assert first.returncode == 0, first.stderr
    assert f"version {len(MIGRATIONS)}" in first.stdout
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT max(version) FROM closecast_schema").fetchone()
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    assert row is not None and row[0] == len(MIGRATIONS)
    assert "jobs" in tables
    again = closecast("migrate", database_url=pg_url)  # idempotent: nothing left to apply
    assert again.returncode == 0 and f"version {len(MIGRATIONS)}" in again.stdout


def test_migrate_makes_optunas_schema_and_role_with_a_hashed_password(pg_url: str) -> None:
    done = closecast(
        "migrate", database_url=pg_url.replace("postgres@", "postgres:main-pw@"), optuna_role="o_cmd"
    )
    assert done.returncode == 0, done.stderr
    with psycopg.connect(pg_url) as conn:
        schema = conn.execute("SELECT has_schema_privilege('o_cmd', 'closecast_optuna', 'CREATE')").fetchone()
        (password,) = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'o_cmd'"
        ).fetchone() or (None,)
        public = conn.execute("SELECT has_schema_privilege('o_cmd', 'public', 'CREATE')").fetchone()
    assert schema == (True,) and public == (False,)  # its schema only
    assert password is not None and password.startswith("SCRAM-SHA-256$")  # never sent in clear


def test_migrate_by_a_user_who_may_not_create_roles_warns_and_names_the_docs(pg_cluster: Any) -> None:
    pg_url = pg_cluster.create_database()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # a database owner, as a managed service gives
        conn.execute("CREATE ROLE plain_owner LOGIN")
        conn.execute(f'ALTER DATABASE "{pg_url.rsplit("/", 1)[1]}" OWNER TO plain_owner')
    url = pg_url.replace("postgres@", "plain_owner@")
    done = closecast("migrate", database_url=url, optuna_role="o_missing", optuna_schema="o_missing_schema")
    assert done.returncode == 0, done.stderr
    assert "the role o_missing for Optuna's schema o_missing_schema does not exist" in done.stderr
    with psycopg.connect(pg_url) as conn:
        made = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'o_missing_schema'").fetchone()
        role = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'o_missing'").fetchone()
    assert made == (1,) and role == (0,)


def test_migrate_names_itself_to_postgresql(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:  # held by this test: migrate waits behind it
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "migrate"],
            cwd=ROOT,
            env=server_env(model_dir=str(FIXTURE_MODELS), database_url=pg_url, job_store_timeout_s="30"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        waiting = "SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        names = wait_for(lambda: [r[0] for r in conn.execute(waiting).fetchall()], timeout=60, every=0.1)
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, stderr
    assert names == [f"closecast-migrate@{socket.gethostname()}"]


def test_migrate_reports_an_unreachable_database_in_one_line() -> None:
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    done = closecast("migrate", "--wait", "1", database_url=url, job_store_timeout_s="1")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "migrate failed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@contextmanager
def _serving(*args: str, **settings: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=server_env(model_dir=str(FIXTURE_MODELS), providers="cpu", **settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _ready(url: str, proc: subprocess.Popen[str]) -> bool:
    assert proc.poll() is None, proc.communicate()[1]
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("serve", [[], ["serve"]])
def test_the_port_flag_overrides_the_setting(serve: list[str]) -> None:
    flag_port, env_port = free_port(), free_port()
    with _serving(*serve, "--host", "127.0.0.1", "--port", str(flag_port), port=str(env_port)) as proc:
        wait_for(lambda: _ready(f"http://127.0.0.1:{flag_port}", proc), timeout=60, every=0.1)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{env_port}/readyz", timeout=1)
