"""Messages that name the problem: a BOM before JSON, a lone surrogate escape, a training process that ran out
of disk; and under CLOSECAST_PROTECT_READS the 401 before any other answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.redact import public_data, public_metrics
from app.jobs.process import describe_exit, disk_full
from app.main import create_app
from tests.helpers import FIXTURE_MODELS, detail_msgs, make_settings
from tests.jobs.helpers import AUTH, build_app, trainer_settings
from tests.synthetic import calm_walk

JSON = {"content-type": "application/json"}


def _closes() -> str:
    return ", ".join(f"{c:.4f}" for c in calm_walk())


@pytest.mark.parametrize("path", ["/forecast", "/forecast/batch"])
def test_a_bom_before_json_is_named(client: TestClient, path: str) -> None:
    body = (
        f'{{"closes": [{_closes()}]}}'
        if path == "/forecast"
        else f'{{"series": [{{"closes": [{_closes()}]}}]}}'
    )
    response = client.post(path, content=b"\xef\xbb\xbf" + body.encode(), headers=JSON)
    assert response.status_code == 422
    (msg,) = detail_msgs(response)
    assert "byte order mark (BOM" in msg and "without it" in msg, msg


def test_a_lone_surrogate_escape_is_named(client: TestClient) -> None:
    body = f'{{"closes": [{_closes()}], "model": "\\ud800"}}'
    response = client.post("/forecast", content=body.encode(), headers=JSON)
    assert response.status_code == 422
    (msg,) = detail_msgs(response)
    assert "lone surrogate escape \\ud800" in msg, msg


def test_a_surrogate_pair_is_not_taken_for_a_lone_one(client: TestClient) -> None:
    body = f'{{"closes": [{_closes()}], "model": "\\ud83d\\ude00"}}'  # an emoji, well escaped
    response = client.post("/forecast", content=body.encode(), headers=JSON)
    assert response.status_code in (404, 422)
    assert not any("surrogate" in m for m in detail_msgs(response)) if response.status_code == 422 else True


def test_train_names_a_bom_and_a_lone_surrogate(model_dir: Path) -> None:
    with TestClient(build_app(trainer_settings(model_dir))) as trainer:
        for raw, says in (
            (b'\xef\xbb\xbf{"closes": [1, 2]}', "byte order mark"),
            (b'{"source": "\\udc00"}', "\\udc00"),
        ):
            response = trainer.post("/train", content=raw, headers={**JSON, **AUTH})
            assert response.status_code == 422
            (msg,) = detail_msgs(response)
            assert says in msg, msg


def test_a_training_process_that_filled_the_disk_says_so() -> None:
    # a real process writing to a full device: the kernel's ENOSPC, then an abort as torch's C++ would
    script = "import os, sys\ntry:\n    open('/dev/full', 'w').write('x' * 65536)\nexcept OSError as e:\n"
    script += "    print(f'OSError: {e}', file=sys.stderr, flush=True)\n    os.abort()\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode < 0
    lines = done.stderr.splitlines()
    full = disk_full(lines)
    message = describe_exit(done.returncode, lines[-1] if lines else None, full)
    assert full and "disk is full" in message and "SIGABRT" not in message, message
    other = describe_exit(done.returncode, None, disk_full([]))
    assert "killed by SIGABRT" in other  # any other abort is said as before


def test_protected_reads_answer_401_before_an_unknown_query_parameter(model_dir: Path) -> None:
    with TestClient(build_app(trainer_settings(model_dir, protect_reads=True))) as client:
        refused = client.get("/models?bogus=1")
        assert refused.status_code == 401
        assert client.get("/models?bogus=1", headers=AUTH).status_code == 422  # with the key: the 422


def test_public_data_keeps_counts_and_dates_and_drops_names() -> None:
    data = {
        "source": "secret-client.csv",
        "rows_used": 30,
        "series": [
            {"name": "secret-client", "source": "secret-client.csv", "rows": 10, "date_start": "2020-01-01"},
            {"name": "other", "source": "other.csv", "rows": 20, "date_start": "2021-01-01", "notes": ["x"]},
        ],
    }
    metrics = {"test": {"mae": 1.0}, "series": {"other": {"n": 2}, "secret-client": {"n": 1}}}
    shown = public_data(data)
    assert "secret" not in str(shown) and "other" not in str(shown)
    assert shown["rows_used"] == 30
    assert shown["series"] == [
        {"name": "series 1", "rows": 10, "date_start": "2020-01-01"},
        {"name": "series 2", "rows": 20, "date_start": "2021-01-01"},
    ]
    relabelled = public_metrics(metrics, data)
    assert relabelled == {"test": {"mae": 1.0}, "series": {"series 2": {"n": 2}, "series 1": {"n": 1}}}


def test_an_open_deployment_shows_no_training_file_name() -> None:
    with TestClient(create_app(make_settings(FIXTURE_MODELS))) as client:  # no key configured at all
        card = client.get("/models/current").json()
    assert "source" not in card["data"]
