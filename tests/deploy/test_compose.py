"""compose.yaml against the Compose Specification's JSON schema (vendored in tests/deploy/compose_spec/).

`docker compose` (v2) implements that specification; the schema catches a misspelt key, a wrong type or a
field in the wrong place without a Docker engine. Debian's `docker-compose` 1.29 predates parts of it (e.g.
`configs.*.content`), so it is not the reference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.dockerfile import ROOT

SPEC = Path(__file__).resolve().parent / "compose_spec"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SPEC / "compose-spec.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _problems(validator: jsonschema.protocols.Validator, document: Any) -> list[str]:
    errors = validator.iter_errors(document)
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_vendored_schema_keeps_its_licence() -> None:
    assert "Apache License" in (SPEC / "LICENSE").read_text(encoding="utf-8")
    assert "Compose Specification" in (SPEC / "NOTICE").read_text(encoding="utf-8")


def test_compose_file_follows_the_compose_specification(validator: jsonschema.protocols.Validator) -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert _problems(validator, compose) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda c: c["services"]["closecast"].update(restart_policy="always"), "services/closecast"),
        (lambda c: c["services"]["closecast"].update(ports="8000:8000"), "services/closecast/ports"),
        (lambda c: c["configs"]["nginx-upstream"].update(contents="typo"), "configs/nginx-upstream"),
    ],
)
def test_schema_refuses_a_broken_compose_file(
    validator: jsonschema.protocols.Validator, change: Any, where: str
) -> None:
    """The check above can fail: a misspelt key, a wrong type."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    change(compose)
    problems = _problems(validator, compose)
    assert any(p.startswith(f"{where}:") for p in problems), problems


def test_nginx_serves_the_committed_config_once_the_replicas_are_healthy() -> None:
    """compose mounts deploy/nginx.conf, the file tests/deploy/test_nginx.py runs in a real nginx."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    nginx = compose["services"]["nginx"]
    sources = {c["source"]: c["target"] for c in nginx["configs"]}
    assert {compose["configs"][s]["file"]: t for s, t in sources.items()} == {
        "./deploy/nginx.conf": "/etc/nginx/conf.d/default.conf"
    }
    assert nginx["depends_on"] == {r: {"condition": "service_healthy"} for r in ("api-a", "api-b")}
    for replica in ("api-a", "api-b"):
        assert compose["services"][replica]["healthcheck"].get("disable") is not True
