"""The serving process never imports torch, even while it validates and queues training jobs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVE_AND_SUBMIT = """
import json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from tests.synthetic import random_walk
from tests.jobs.helpers import AUTH, build_app, trainer_settings
closes = random_walk(300).tolist()
csv = "Close\\n" + "\\n".join(map(str, closes)) + "\\n"
with TestClient(build_app(trainer_settings(Path(sys.argv[1])))) as client:
    answers = [
        client.post("/train", json={"closes": closes, "params": {"window": 11}}, headers=AUTH).status_code,
        client.post("/train", json={"closes": closes[:10]}, headers=AUTH).status_code,
        client.post("/train", files={"file": ("p.csv", csv)}, data={"epochs": "2"}, headers=AUTH).status_code,
        client.post("/forecast", json={"closes": closes[-20:]}).status_code,
        client.get("/models").status_code,
    ]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "training", "onnx", "matplotlib"))
print(json.dumps({"answers": answers, "loaded": loaded}))
"""


def test_train_requests_do_not_import_torch(model_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVE_AND_SUBMIT, str(model_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["answers"] == [202, 422, 202, 200, 200]
    assert report["loaded"] == []  # the checks it runs live in the core (numpy only)
