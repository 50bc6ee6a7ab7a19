"""``POST /models/{model}/versions`` through the real app: a bundle trained elsewhere uploaded as a
``.tar.gz``, listed, promoted and served; each bad archive refused with nothing left on disk."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.helpers import DEFAULT, FIXTURE_BUNDLE, FIXTURE_VERSION, copy_registry
from tests.jobs.helpers import AUTH, trainer_settings

GZIP = {**AUTH, "Content-Type": "application/gzip"}
MAX_UPLOAD = 200_000  # the fixture bundle is ~113 kB unpacked, ~100 kB packed (its PNG does not shrink)
BUNDLE = {p.name: p.read_bytes() for p in sorted(FIXTURE_BUNDLE.iterdir())}


def archive(
    files: dict[str, bytes], folder: str | None = "my-bundle", links: dict[str, str] | None = None
) -> bytes:
    """A .tar.gz of ``files``, inside ``folder`` (None: at the root), plus symbolic ``links``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}" if folder else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return out.getvalue()


def closes() -> list[float]:
    return (100 * np.exp(np.cumsum(np.full(60, 0.001)))).tolist()


def on_disk(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    model_dir = copy_registry(tmp_path / "models")
    with TestClient(create_app(trainer_settings(model_dir, max_upload_bytes=MAX_UPLOAD))) as test_client:
        test_client.root = model_dir  # type: ignore[attr-defined]
        yield test_client


@pytest.mark.parametrize("folder", ["my-bundle", None])
def test_a_new_name_is_created_current_listed_and_served(client: TestClient, folder: str | None) -> None:
    response = client.post("/models/uploaded/versions", content=archive(BUNDLE, folder), headers=GZIP)
    assert response.status_code == 201, response.text
    version = response.json()["version"]
    assert response.json() == {"model": "uploaded", "version": version} and version != FIXTURE_VERSION
    listed = {m["model"]: m for m in client.get("/models").json()["models"]}
    assert listed["uploaded"]["current_version"] == version
    last = client.get("/models/uploaded/history").json()["promotions"][0]
    assert (last["to"], last["from"], last["by"]) == (version, None, "upload")
    served = client.post("/forecast", json={"closes": closes(), "horizon": 2, "model": "uploaded"})
    assert served.status_code == 200 and served.json()["model_version"] == version
    default = client.post("/forecast", json={"closes": closes(), "horizon": 2})
    assert served.json()["forecast"] == default.json()["forecast"]  # the same network, now under two names


def test_an_existing_name_gets_it_unpromoted_then_promoted_and_served(client: TestClient) -> None:
    response = client.post("/models/default/versions", content=archive(BUNDLE), headers=GZIP)
    assert response.status_code == 201, response.text
    version = response.json()["version"]
    versions = client.get("/models/default/versions", headers=AUTH).json()
    assert versions["current"] == FIXTURE_VERSION and version in [v["version"] for v in versions["versions"]]
    promoted = client.post(f"/models/default/versions/{version}/promote", headers=AUTH)
    assert promoted.status_code == 200, promoted.text
    served = client.post("/forecast", json={"closes": closes(), "horizon": 1})
    assert served.json()["model_version"] == version


def _without(name: str) -> dict[str, bytes]:
    return {k: v for k, v in BUNDLE.items() if k != name}


BAD = {
    "outside": (archive({**BUNDLE, "../evil.txt": b"x"}), "a path outside the bundle"),
    "absolute": (archive({"/etc/evil": b"x"}, folder=None), "a path outside the bundle"),
    "link": (archive(BUNDLE, links={"my-bundle/scaler2.json": "/etc/passwd"}), "not a plain file"),
    "missing": (archive(_without("model.onnx")), "model.onnx is missing"),
    "extra": (archive({**BUNDLE, "notes.txt": b"hello"}), "does not list: notes.txt"),
    "damaged": (archive({**BUNDLE, "scaler.json": BUNDLE["scaler.json"] + b" "}), "damaged"),
    "two folders": (archive({"a/x": b"1", "b/y": b"2"}, folder=None), "a single folder"),
    "nested": (archive({"deep/manifest.json": b"{}"}), "a single folder"),
    "not gzip": (b"not an archive at all", "not a readable .tar.gz"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_archive_is_422_and_leaves_nothing(client: TestClient, case: str) -> None:
    root: Path = client.root  # type: ignore[attr-defined]
    before = on_disk(root)
    body, words = BAD[case]
    response = client.post("/models/uploaded/versions", content=body, headers=GZIP)
    assert response.status_code == 422, response.text
    assert words in response.text
    assert on_disk(root) == before
    assert client.get("/models/uploaded").status_code == 404


def test_too_large_packed_or_unpacked_is_413_and_leaves_nothing(client: TestClient) -> None:
    root: Path = client.root  # type: ignore[attr-defined]
    before = on_disk(root)
    big = client.post("/models/uploaded/versions", content=os.urandom(MAX_UPLOAD + 1), headers=GZIP)
    assert big.status_code == 413 and "CLOSECAST_MAX_UPLOAD_BYTES" in big.text
    bomb = archive({**BUNDLE, "padding.bin": bytes(4 * MAX_UPLOAD)})  # zeros: tiny packed
    assert len(bomb) < MAX_UPLOAD
    response = client.post("/models/uploaded/versions", content=bomb, headers=GZIP)
    assert response.status_code == 413 and "unpacks to more than" in response.text, response.text
    assert on_disk(root) == before


def test_the_upload_needs_the_key_and_a_gzip_body(client: TestClient) -> None:
    body = archive(BUNDLE)
    no_key = client.post(
        "/models/uploaded/versions", content=body, headers={"Content-Type": "application/gzip"}
    )
    assert no_key.status_code == 401
    wrong = client.post(
        "/models/uploaded/versions", content=body, headers={**AUTH, "Content-Type": "text/csv"}
    )
    assert wrong.status_code == 415 and "application/gzip" in wrong.text
    bad_name = client.post("/models/current/versions", content=body, headers=GZIP)
    assert bad_name.status_code == 422
    assert DEFAULT in client.get("/models").text


@pytest.mark.parametrize("layout", ["folder", "dot"])
def test_an_archive_made_by_the_tar_command_is_accepted(
    client: TestClient, tmp_path: Path, layout: str
) -> None:
    """As the docs say: ``tar -czf B -C parent version`` (a folder), or ``-C bundle .`` (``./`` names)."""
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("no tar command on this machine")
    out = tmp_path / "bundle.tar.gz"
    where = (
        ["-C", str(FIXTURE_BUNDLE.parent), FIXTURE_BUNDLE.name]
        if layout == "folder"
        else ["-C", str(FIXTURE_BUNDLE), "."]
    )
    subprocess.run([tar, "-czf", str(out), *where], check=True)
    response = client.post("/models/from-tar/versions", content=out.read_bytes(), headers=GZIP)
    assert response.status_code == 201, response.text
    assert client.get("/models/from-tar").json()["version"] == response.json()["version"]
