"""The ``closecast`` command (also ``python -m app``): one grammar for the three things a process can be.

    closecast [serve] [--host H] [--port P] [--workers N]   the HTTP service (uvicorn, uvloop, httptools)
    closecast worker                                        a training worker, no HTTP (app/worker.py)
    closecast migrate [--wait S]                            apply the PostgreSQL schema migrations, exit

``serve`` runs uvicorn with the project's own HTTP protocol (``app/http_limits.py``): request headers are
bounded in size (431) and must arrive within a deadline; a bare ``uvicorn app.main:app`` lacks both. Flags
override the ``CLOSECAST_HOST`` / ``_PORT`` / ``_WORKERS`` settings, which stay the defaults. Bad usage or a
refused setting is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, NoReturn

from pydantic import ValidationError

from app.config import Settings, get_settings

COMMANDS = ("serve", "worker", "migrate")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit 2), not usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _serve_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--host", default=default, help="interface to bind (default: CLOSECAST_HOST)")
    parser.add_argument("--port", type=int, default=default, help="TCP port (default: CLOSECAST_PORT)")
    parser.add_argument(
        "--workers", type=int, default=default, help="worker processes (default: CLOSECAST_WORKERS)"
    )


def build_parser() -> argparse.ArgumentParser:
    """``closecast [serve] [flags] | worker | migrate``; the serve flags work with or without ``serve``."""
    parser = _Parser(
        prog="closecast",
        description="Next-close forecasting service. Without a command: serve.",
        epilog="Every setting is also an environment variable CLOSECAST_<NAME>; flags override them.",
    )
    _serve_flags(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="{serve,worker,migrate}")
    # SUPPRESS: a flag given before `serve` is not reset by the subcommand's own default
    _serve_flags(
        commands.add_parser("serve", help="serve the HTTP API (the default)", argument_default=None),
        argparse.SUPPRESS,
    )
    commands.add_parser("worker", help="run a training worker: claims queued jobs, serves no HTTP")
    migrate = commands.add_parser(
        "migrate", help="apply the PostgreSQL schema migrations (CLOSECAST_DATABASE_URL), then exit"
    )
    migrate.add_argument(
        "--wait", type=float, default=30.0, metavar="S", help="wait this long for the database (default 30)"
    )
    return parser


def _settings(parser: argparse.ArgumentParser, **overrides: Any) -> Settings:
    """The environment's settings with the flags given on top, validated; a refused value exits 2."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**given) if given else get_settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        where = str(error["loc"][0]) if error["loc"] else "settings"
        name = f"--{where}" if where in given else f"CLOSECAST_{where.upper()}"
        parser.error(f"{name}: {error['msg']}")


def serve(settings: Settings) -> None:
    """Run uvicorn on ``settings``' host, port and workers with the header-limiting protocol."""
    import uvicorn

    from app.http_limits import LimitedHttpToolsProtocol

    uvicorn.run(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http=LimitedHttpToolsProtocol,
        ws="none",  # no websocket routes: not importing a websocket library saves ~6% of the start
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,  # per-request lines cost more than the forecast; /metrics counts requests
    )


def migrate(parser: argparse.ArgumentParser, settings: Settings, wait_s: float) -> None:
    """Bring the PostgreSQL schema up to date (the same steps every process runs at start), then exit."""
    if settings.database_url is None:
        parser.error("migrate needs CLOSECAST_DATABASE_URL (postgresql://user:password@host/db)")
    import psycopg

    from app.storage.pg import Database, connect_kwargs

    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)  # its retries would print a line each
    url = settings.database_url.get_secret_value()
    from app.storage.pg_access import optuna_access

    db = Database(url, 1, settings.job_store_timeout_s, "migrate", optuna_access(settings))
    try:
        db.open(wait_s=wait_s)
        print(f"closecast: database schema at version {db.migrate()}")
    except Exception as exc:  # one line, never a traceback (and never the URL: it may hold a password)
        reason: BaseException = exc
        try:  # the pool only says it timed out: one direct attempt says why
            psycopg.connect(url, **connect_kwargs(settings.job_store_timeout_s, "migrate")).close()
        except psycopg.Error as direct:
            reason = direct
        first = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
        print(f"closecast: migrate failed after {wait_s:g} s: {first}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        db.close()


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default: the command line) and run the command it names."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    given = [f"--{name}" for name in ("host", "port", "workers") if getattr(args, name, None) is not None]
    if args.command in ("worker", "migrate") and given:
        parser.error(f"{' '.join(given)} only applies to serve, not to {args.command}")
    if args.command == "worker":
        from app.worker import main as worker_main

        _settings(parser)  # a refused setting: one line, exit 2, before the worker starts
        worker_main()
    elif args.command == "migrate":
        migrate(parser, _settings(parser), args.wait)
    else:
        serve(_settings(parser, host=args.host, port=args.port, workers=args.workers))


if __name__ == "__main__":
    main()
