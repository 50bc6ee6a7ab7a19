"""Bundles in a real S3-compatible server (moto's, over HTTP): upload with the manifest last, download into
an empty cache with verification, the pointer copy, seeding an empty bucket, and the settings that ask for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.storage.s3 import S3Store
from closecast import registry
from closecast.bundle import load_forecaster
from closecast.errors import BundleInvalid
from closecast.objectstore import ObjectStoreError, StoreRegistry, seed_store
from closecast.registry import Promotion
from tests.helpers import DEFAULT, FIXTURE_MODELS, FIXTURE_VERSION, copy_registry
from tests.s3 import S3Server


@pytest.fixture
def store(s3_server: S3Server, aws_env: dict[str, str]) -> S3Store:
    return S3Store(f"s3://{s3_server.new_bucket()}/registry/prod")


def test_a_published_version_is_fetched_into_an_empty_cache_and_serves(
    store: S3Store, tmp_path: Path
) -> None:
    source = StoreRegistry(store, copy_registry(tmp_path / "source"))
    assert source.publish(DEFAULT, FIXTURE_VERSION) is True
    assert source.publish(DEFAULT, FIXTURE_VERSION) is False  # present: not uploaded twice
    keys = store.keys("")
    assert f"{DEFAULT}/{FIXTURE_VERSION}/manifest.json" in keys
    assert all(k.startswith(f"{DEFAULT}/{FIXTURE_VERSION}/") for k in keys)

    cache = StoreRegistry(store, tmp_path / "cache")
    assert cache.versions(DEFAULT) == [FIXTURE_VERSION] and cache.models() == [DEFAULT]
    assert cache.fetch(DEFAULT, FIXTURE_VERSION) is True
    assert cache.fetch(DEFAULT, FIXTURE_VERSION) is False  # cached: versions are immutable
    bundle = tmp_path / "cache" / DEFAULT / FIXTURE_VERSION
    assert load_forecaster(bundle, "cpu").version == FIXTURE_VERSION
    assert sorted(p.name for p in bundle.iterdir()) == sorted(
        p.name for p in (FIXTURE_MODELS / DEFAULT / FIXTURE_VERSION).iterdir()
    )


def test_a_version_without_its_manifest_is_not_there(store: S3Store, tmp_path: Path) -> None:
    bundle = FIXTURE_MODELS / DEFAULT / FIXTURE_VERSION
    for path in bundle.iterdir():  # an upload that died before its last object
        if path.name != "manifest.json":
            store.upload(f"{DEFAULT}/{FIXTURE_VERSION}/{path.name}", path)
    cache = StoreRegistry(store, tmp_path / "cache")
    assert cache.versions(DEFAULT) == [] and not cache.has(DEFAULT, FIXTURE_VERSION)
    with pytest.raises(BundleInvalid, match="not in the object store"):
        cache.fetch(DEFAULT, FIXTURE_VERSION)


def test_a_damaged_file_in_the_store_never_reaches_the_cache(store: S3Store, tmp_path: Path) -> None:
    StoreRegistry(store, copy_registry(tmp_path / "source")).publish(DEFAULT, FIXTURE_VERSION)
    store.put(f"{DEFAULT}/{FIXTURE_VERSION}/scaler.json", b'{"mean": 0, "std": 1}')
    cache = StoreRegistry(store, tmp_path / "cache")
    with pytest.raises(BundleInvalid, match="damaged"):
        cache.fetch(DEFAULT, FIXTURE_VERSION)
    assert list((tmp_path / "cache" / DEFAULT).iterdir()) == []  # no bundle, no temporary directory


def test_the_pointer_copy_round_trips(store: S3Store, tmp_path: Path) -> None:
    bundles = StoreRegistry(store, tmp_path / "cache")
    assert bundles.read_pointer("aapl") == (None, [])
    history = [
        Promotion("v1", "2026-12-01T00:00:00+00:00", None, "first"),
        Promotion("v2", "t2", "v1", "job"),
    ]
    bundles.write_pointer("aapl", "v2", history)
    assert bundles.read_pointer("aapl") == ("v2", history)
    assert store.get("aapl/current") == b"v2\n"
    lines = (store.get("aapl/promotions.jsonl") or b"").decode().splitlines()
    assert [json.loads(line)["version"] for line in lines] == ["v1", "v2"]


def test_an_empty_store_is_seeded_once_from_a_registry(store: S3Store, tmp_path: Path) -> None:
    bundles = StoreRegistry(store, tmp_path / "cache")
    assert seed_store(bundles, FIXTURE_MODELS, DEFAULT) == [DEFAULT]
    assert bundles.versions(DEFAULT) == [FIXTURE_VERSION]
    pointed, history = bundles.read_pointer(DEFAULT)
    assert pointed == registry.read_current(FIXTURE_MODELS / DEFAULT) and history[-1].version == pointed
    other = copy_registry(tmp_path / "other")
    (other / "second").mkdir()
    assert seed_store(bundles, other, DEFAULT) == []  # the store holds a model: never seeded again
    assert bundles.models() == [DEFAULT]


def test_a_flat_registry_seeds_the_default_model(store: S3Store, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    (flat).mkdir()
    (flat / FIXTURE_VERSION).symlink_to(FIXTURE_MODELS / DEFAULT / FIXTURE_VERSION)
    bundles = StoreRegistry(store, tmp_path / "cache")
    assert seed_store(bundles, flat, "prices") == ["prices"]
    assert bundles.versions("prices") == [FIXTURE_VERSION]
    assert bundles.read_pointer("prices")[0] is None  # no pointer to copy: the database decides


def test_a_missing_bucket_is_an_object_store_error_naming_it(
    s3_server: S3Server, aws_env: dict[str, str]
) -> None:
    store = S3Store("s3://no-such-bucket-here/models")
    with pytest.raises(
        ObjectStoreError, match=r"s3://no-such-bucket-here: list '' failed \(NoSuchBucket\)"
    ) as err:
        store.keys("")
    assert aws_env["AWS_SECRET_ACCESS_KEY"] not in str(err.value)


@pytest.mark.parametrize("url", ["s3:/bucket", "gs://bucket/x", "s3://", "s3:///prefix"])
def test_a_store_url_that_is_not_s3_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValidationError, match=r"CLOSECAST_MODEL_STORE is .*use s3://bucket"):
        Settings(model_dir=tmp_path, model_store=url, database_url="postgresql://h/db")


def test_a_store_without_a_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="CLOSECAST_MODEL_STORE needs CLOSECAST_DATABASE_URL"):
        Settings(model_dir=tmp_path, model_store="s3://bucket/models")


def test_a_store_whose_cache_is_the_seed_registry_is_refused(tmp_path: Path) -> None:
    """A listing prunes the cache to the bucket: it must never be the registry the bucket is seeded from."""
    url, db = "s3://bucket/models", "postgresql://h/db"
    with pytest.raises(ValidationError, match=r"are both '.*/models'; with CLOSECAST_MODEL_STORE"):
        Settings(
            model_dir=tmp_path / "models",
            default_model_dir=tmp_path / "x/../models",
            model_store=url,
            database_url=db,
        )
    Settings(model_dir=tmp_path / "models", default_model_dir=tmp_path / "models")  # no store: allowed
    Settings(
        model_dir=tmp_path / "cache", default_model_dir=tmp_path / "models", model_store=url, database_url=db
    )
