"""A ``/train`` job trains where ``CLOSECAST_TRAIN_DEVICE`` says, with the ``bidirectional`` param."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from tests.helpers import copy_registry
from tests.jobs.helpers import TINY, build_app, submit, trainer_settings, wait_status
from tests.synthetic import make_closes


def test_a_job_passes_the_device_setting_and_bidirectional_param(tmp_path: Path) -> None:
    model_dir = copy_registry(tmp_path / "models")
    settings = trainer_settings(model_dir, train_device="cpu")
    with TestClient(build_app(settings)) as client:
        params = {**TINY, "epochs": 1, "bidirectional": True}
        job_id = submit(client, make_closes(300, seed=2), promote="never", params=params)
        final = wait_status(client, job_id, "succeeded", "failed", "cancelled")
    assert final["status"] == "succeeded", final
    manifest = json.loads((model_dir / final["result"]["version"] / "manifest.json").read_text())
    assert manifest["config"]["train"]["device"] == "cpu" and manifest["training"]["device"] == "cpu"
    assert manifest["config"]["model"]["bidirectional"] is True
