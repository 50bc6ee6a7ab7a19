"""The S3-compatible server of the object-store tests (``tests/s3.py``): one per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.s3 import S3Server, start_s3

REQUIRE_S3 = os.environ.get("CLOSECAST_REQUIRE_S3") == "1"  # CI: a skip here is a failure


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a loopback port, or a skip saying why."""
    server = start_s3()
    if isinstance(server, str):
        if REQUIRE_S3:
            pytest.fail(f"CLOSECAST_REQUIRE_S3=1 but {server}")
        pytest.skip(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def aws_env(s3_server: S3Server) -> Iterator[dict[str, str]]:
    """The standard AWS settings pointing at the server, in this process's environment (and so in every
    process a test starts) for the module."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3_server.env().items():
            patch.setenv(name, value)
        yield s3_server.env()
