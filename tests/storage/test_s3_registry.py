"""With an object store, the registry API answers from the store and the database, not from one replica's
cache: two API replicas (``python -m app``) with their own empty model dirs, a real S3-compatible server
(moto's) and a throwaway PostgreSQL. A version uploaded through one replica is listed by the other, which
never downloaded it; deleting a version or a model through one removes it from the store and the database,
and the other stops listing and serving it; ``CLOSECAST_MAX_MODELS`` counts the store's models.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.storage.s3 import S3Store
from tests.helpers import (
    DEFAULT,
    FIXTURE_VERSION,
    SYNTHETIC_CSV,
    Server,
    wait_for,
)
from tests.jobs.helpers import AUTH
from tests.s3 import S3Server
from tests.storage.store_pair import Pair, store_pair, upload

CLOSES = [float(row["Close"]) for row in csv.DictReader(SYNTHETIC_CSV.read_text().splitlines())]
MAX_MODELS = 2


@pytest.fixture(scope="module")
def pair(
    pg_url: str, s3_server: S3Server, aws_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("s3registry")
    with store_pair(tmp, pg_url, s3_server, max_models=str(MAX_MODELS)) as pair:
        yield pair


def _versions(server: Server, model: str) -> list[str]:
    response = httpx.get(f"{server.url}/models/{model}/versions", headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    return [v["version"] for v in response.json()["versions"]]


def _models(server: Server) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/models", headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    return {m["model"]: m for m in response.json()["models"]}


def _forecast(server: Server, model: str) -> httpx.Response:
    return httpx.post(f"{server.url}/forecast", json={"closes": CLOSES[-30:], "model": model}, timeout=30)


def test_a_version_uploaded_through_one_replica_is_listed_by_the_other_from_the_store(pair: Pair) -> None:
    sent = upload(pair.a, DEFAULT)
    assert sent.status_code == 201, sent.text
    version = sent.json()["version"]
    assert version in pair.bundles.versions(DEFAULT)
    assert _versions(pair.b, DEFAULT) == [version, FIXTURE_VERSION]  # newest first
    assert not (pair.dirs[1] / DEFAULT / version).exists()  # listed from the store, not downloaded
    listed = httpx.get(f"{pair.b.url}/models/{DEFAULT}/versions", headers=AUTH, timeout=30).json()
    uploaded = next(v for v in listed["versions"] if v["version"] == version)
    assert uploaded["current"] is False and uploaded["window"] is not None and not uploaded.get("problem")
    assert _models(pair.b)[DEFAULT]["versions"] == 2
    pair.tmp.joinpath("uploaded").write_text(version)


def test_the_current_and_promoted_versions_are_refused_and_nothing_leaves_the_store(pair: Pair) -> None:
    refused = httpx.delete(
        f"{pair.b.url}/models/{DEFAULT}/versions/{FIXTURE_VERSION}", headers=AUTH, timeout=30
    )
    assert refused.status_code == 409, refused.text
    assert "current version" in refused.text
    assert FIXTURE_VERSION in pair.bundles.versions(DEFAULT)


def test_a_version_deleted_through_one_replica_leaves_the_store_and_the_other_replicas_cache(
    pair: Pair,
) -> None:
    version = pair.tmp.joinpath("uploaded").read_text()
    assert (pair.dirs[0] / DEFAULT / version / "manifest.json").is_file()  # a uploaded it: a cached it
    deleted = httpx.delete(f"{pair.b.url}/models/{DEFAULT}/versions/{version}", headers=AUTH, timeout=30)
    assert deleted.status_code == 200, deleted.text
    assert pair.bundles.versions(DEFAULT) == [FIXTURE_VERSION]
    assert not [k for k in S3Store(pair.store_url).keys(f"{DEFAULT}/{version}/")]  # every file went
    assert _versions(pair.a, DEFAULT) == [FIXTURE_VERSION]
    assert not (pair.dirs[0] / DEFAULT / version).exists()  # dropped from a's cache as it listed
    again = httpx.delete(f"{pair.a.url}/models/{DEFAULT}/versions/{version}", headers=AUTH, timeout=30)
    assert again.status_code == 404, again.text


def test_max_models_counts_the_store_not_the_cache_and_a_deleted_model_is_gone_everywhere(
    pair: Pair,
) -> None:
    created = upload(pair.a, "extra")
    assert created.status_code == 201, created.text
    version = created.json()["version"]
    assert _models(pair.b)["extra"]["current_version"] == version  # b has none of it cached
    assert not (pair.dirs[1] / "extra").exists()
    assert _forecast(pair.a, "extra").status_code == 200  # loaded in a

    over = upload(pair.b, "third")  # b's cache holds one model; the store holds two = MAX_MODELS
    assert over.status_code == 409, over.text
    assert "third" not in pair.bundles.models()

    deleted = httpx.delete(f"{pair.b.url}/models/extra", headers=AUTH, timeout=30)
    assert deleted.status_code == 200, deleted.text
    assert pair.bundles.models() == [DEFAULT]
    assert not S3Store(pair.store_url).keys("extra/")
    assert "extra" not in _models(pair.a)
    wait_for(lambda: _forecast(pair.a, "extra").status_code == 404, timeout=30, every=0.2)  # a unloaded it
    assert "extra" not in _models(pair.b)
