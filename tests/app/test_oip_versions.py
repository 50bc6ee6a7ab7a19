"""The inference protocol's version paths: a version the pointer does not serve is loaded, verified and
answered by itself (without being promoted); the served version stays what the name answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from app.main import create_app
from tests.helpers import FIXTURE_VERSION, copy_registry, make_settings

OTHER = "20261224T000000Z-0000abcd"  # a second, never promoted version: a copy of the fixture's bundle


def test_a_version_that_is_not_served_answers_by_itself(tmp_path: Path) -> None:
    root = copy_registry(tmp_path / "models")
    shutil.copytree(root / "default" / FIXTURE_VERSION, root / "default" / OTHER)
    with TestClient(create_app(make_settings(root))) as client:
        window = client.get("/v2/models/default").json()["parameters"]["window"]
        closes = np.linspace(100.0, 110.0, 2 * window).tolist()
        body = {"inputs": [{"name": "closes", "shape": [2, window], "datatype": "FP64", "data": closes}]}
        pinned = client.post(f"/v2/models/default/versions/{OTHER}/infer", json=body)
        served = client.post("/v2/models/default/infer", json=body)
        assert pinned.status_code == served.status_code == 200, pinned.text
        assert pinned.json()["model_version"] == OTHER
        assert served.json()["model_version"] == FIXTURE_VERSION  # nothing was promoted
        assert pinned.json()["outputs"] == served.json()["outputs"]  # the same bundle, the same answers
        meta = client.get(f"/v2/models/default/versions/{OTHER}").json()
        assert meta["parameters"]["served_version"] == OTHER and meta["versions"] == [FIXTURE_VERSION, OTHER]
        assert client.get(f"/v2/models/default/versions/{OTHER}/ready").json() == {
            "name": "default",
            "ready": True,
        }
        missing = client.post("/v2/models/default/versions/20200101T000000Z-00000000/infer", json=body)
        assert missing.status_code == 404 and "is not a version of model 'default'" in missing.json()["error"]
