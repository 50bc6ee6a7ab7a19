"""A machine without CUDA starts quietly: the CUDA provider is asked for only when its libraries load.

Real processes: ``python -m app`` with the default ``CLOSECAST_PROVIDERS=auto``, its stderr read whole.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from closecast.providers import cuda_built, cuda_unavailable
from tests.helpers import FIXTURE_MODELS, free_port, running_server, server_env

ROOT = Path(__file__).resolve().parents[2]
ORT_ERRORS = ("[E:onnxruntime", "Failed to load library", "Failed to create CUDAExecutionProvider")
needs_no_cuda = pytest.mark.skipif(cuda_unavailable() is None, reason="CUDA is usable on this machine")


def _serve_once() -> tuple[str, dict[str, object]]:
    """Start ``python -m app`` (providers auto), read the model card, stop it; its stderr and the card."""
    with running_server(FIXTURE_MODELS, "/models/current", providers="auto", log_level="info") as server:
        card: dict[str, object] = httpx.get(server.url + "/models/current", timeout=5).json()
    return server.stderr, card


@needs_no_cuda
def test_start_without_cuda_libraries_is_quiet_and_says_why_once() -> None:
    stderr, card = _serve_once()
    assert [line for line in stderr.splitlines() if any(e in line for e in ORT_ERRORS)] == []
    fallback = [line for line in stderr.splitlines() if "serving on CPUExecutionProvider" in line]
    assert len(fallback) == 1, stderr
    level = "WARNING" if cuda_built() else "INFO"
    assert fallback[0].endswith(f" {level} app: {cuda_unavailable()}; serving on CPUExecutionProvider")
    assert card["provider"] == "CPUExecutionProvider"


@needs_no_cuda
def test_cuda_demanded_without_its_libraries_refuses_to_start_clearly() -> None:
    env = server_env(model_dir=str(FIXTURE_MODELS), port=str(free_port()), providers="cuda")
    done = subprocess.run(
        [sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert f"CLOSECAST_PROVIDERS is 'cuda' but {cuda_unavailable()}; install CUDA and cuDNN" in done.stderr
    assert not any(e in done.stderr for e in ORT_ERRORS)
