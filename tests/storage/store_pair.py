"""Two API replicas (``python -m app``), each with its own empty model dir, sharing only a throwaway
PostgreSQL and a bucket on the real S3-compatible server: the object-store tests' shape."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from app.storage.s3 import S3Store
from closecast.objectstore import StoreRegistry
from tests.helpers import FIXTURE_BUNDLE, FIXTURE_MODELS, Server, running_server
from tests.jobs.helpers import AUTH, KEY
from tests.s3 import S3Server

GZIP = {**AUTH, "Content-Type": "application/gzip"}


@dataclass
class Pair:
    a: Server
    b: Server
    dirs: list[Path]
    store_url: str
    pg_url: str
    tmp: Path

    @property
    def bundles(self) -> StoreRegistry:
        return StoreRegistry(S3Store(self.store_url), self.tmp / "inspect")

    def pointer(self, model: str) -> str | None:
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            row = conn.execute("SELECT version FROM pointers WHERE model = %s", (model,)).fetchone()
        return row[0] if row else None


@contextmanager
def store_pair(tmp: Path, pg_url: str, s3_server: S3Server, **settings: str) -> Iterator[Pair]:
    """Both replicas on a new bucket seeded with the fixture registry, keyed, jobs off, pointers polled
    every 0.5 s; ``settings`` (CLOSECAST_* names, lowercase, without the prefix) add or override."""
    store_url = f"s3://{s3_server.new_bucket()}/reg"
    common = {
        "database_url": pg_url,
        "model_store": store_url,
        "default_model_dir": str(FIXTURE_MODELS),
        "api_key": KEY,
        "run_jobs": "false",
        "reload_interval_s": "0.5",
        **settings,
    }
    dirs = [tmp / "a", tmp / "b"]
    with running_server(dirs[0], **common) as a, running_server(dirs[1], **common) as b:
        yield Pair(a, b, dirs, store_url, pg_url, tmp)


def bundle_archive() -> bytes:
    """The fixture bundle as a .tar.gz (an upload gets a version name of its own)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path in sorted(FIXTURE_BUNDLE.iterdir()):
            tar.add(path, arcname=f"bundle/{path.name}")
    return out.getvalue()


def upload(server: Server, model: str) -> httpx.Response:
    """``POST /models/{model}/versions`` with the fixture bundle."""
    return httpx.post(
        f"{server.url}/models/{model}/versions", content=bundle_archive(), headers=GZIP, timeout=60
    )
