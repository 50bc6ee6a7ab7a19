"""A loaded model's poll with an object store and PostgreSQL: one database round trip per model, which both
tells whether the model was deleted (its pointer row gone) and gives the pointer and history it follows.
Real PostgreSQL and a real S3-compatible server (moto's); the count is the connection pool's own."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg

from app.inference.models import LoadedModels
from app.metrics import Metrics
from app.storage.backends import build_backends
from tests.helpers import DEFAULT, FIXTURE_VERSION, copy_registry, make_settings
from tests.s3 import S3Server


def test_a_loaded_models_poll_asks_the_database_once(
    pg_cluster: Any, s3_server: S3Server, aws_env: dict[str, str], tmp_path: Path
) -> None:
    source = copy_registry(tmp_path / "source")
    shutil.copytree(source / DEFAULT, source / "extra")  # a named model: same bundle, pointer and history
    url = pg_cluster.create_database("poll")
    settings = make_settings(
        tmp_path / "cache",
        database_url=url,
        model_store=f"s3://{s3_server.new_bucket()}/reg",
        default_model_dir=str(source),
    )
    models = LoadedModels(settings, Metrics())
    backends = build_backends(settings, models)
    backends.open()
    try:
        assert models.forecaster_of("extra").version == FIXTURE_VERSION
        pool = getattr(models.pointers, "db").pool  # noqa: B009 - the PostgreSQL pointer store's pool
        before = pool.get_stats()["requests_num"]
        models.reload_loaded()  # what every CLOSECAST_RELOAD_INTERVAL_S does for each loaded model
        assert pool.get_stats()["requests_num"] - before == 1
        assert models.loaded("extra") is not None

        with psycopg.connect(url, autocommit=True) as other:  # another replica deleted the model
            other.execute("DELETE FROM promotions WHERE model = 'extra'")
            other.execute("DELETE FROM pointers WHERE model = 'extra'")
        assert (tmp_path / "cache" / "extra" / FIXTURE_VERSION).is_dir()  # this cache still holds it
        models.reload_loaded()
        assert models.loaded("extra") is None  # unloaded: the one read found no pointer
    finally:
        backends.close()
