"""Hot swap: each worker follows the registry's `current` pointer without dropping a request."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.inference import holder as holder_module
from app.inference.holder import ModelHolder
from app.main import create_app
from closecast import registry
from tests.helpers import DEFAULT, FIXTURE_BUNDLE, make_settings
from tests.synthetic import calm_walk

NEW = "20991231T000000Z-0000beef"


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:  # generous for a busy CI box
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _add_version(model_dir: Path, name: str = NEW) -> Path:
    shutil.copytree(model_dir / DEFAULT / FIXTURE_BUNDLE.name, model_dir / DEFAULT / name)
    return model_dir / DEFAULT / name


def _served(client: TestClient) -> str:
    version: str = client.post("/forecast", json={"closes": calm_walk()}).json()["model_version"]
    return version


def test_pointer_change_swaps_the_served_model(model_dir: Path) -> None:
    _add_version(model_dir)
    with TestClient(create_app(make_settings(model_dir))) as c:
        assert _served(c) == FIXTURE_BUNDLE.name
        registry.set_current(model_dir / DEFAULT, NEW)
        _wait_for(lambda: _served(c) == NEW)
        assert c.get("/models/current").json()["version"] == NEW
        assert (
            'closecast_model_reloads_total{model="default",outcome="swapped"} 2.0' in c.get("/metrics").text
        )


def test_damaged_bundle_at_the_pointer_keeps_the_old_model(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = _add_version(model_dir)
    (bad / "scaler.json").write_text("{}")
    with TestClient(create_app(make_settings(model_dir))) as c:
        registry.set_current(model_dir / DEFAULT, NEW)
        _wait_for(
            lambda: (
                'closecast_model_reloads_total{model="default",outcome="refused"} 1.0'
                in c.get("/metrics").text
            )
        )
        assert _served(c) == FIXTURE_BUNDLE.name
        assert c.get("/readyz").status_code == 200
    assert f"refused model {NEW}, keeping {FIXTURE_BUNDLE.name}: {NEW}/scaler.json is damaged" in caplog.text


def test_refused_version_is_retried_only_after_the_pointer_is_rewritten(model_dir: Path) -> None:
    bad = _add_version(model_dir)
    (bad / "scaler.json").write_text("{}")
    holder = ModelHolder(model_dir, "cpu")
    holder.swap(holder.load_current())
    registry.set_current(model_dir / DEFAULT, NEW)
    assert holder.reload_if_changed() is None
    shutil.rmtree(bad)
    _add_version(model_dir)  # repaired under the same name: not retried on every tick
    assert holder.reload_if_changed() is None
    registry.set_current(model_dir / DEFAULT, NEW)
    assert holder.reload_if_changed() is not None


def test_load_version_verifies_without_swapping(model_dir: Path) -> None:
    _add_version(model_dir)
    holder = ModelHolder(model_dir, "cpu")
    holder.swap(holder.load_current())
    loaded = holder.load_version(NEW)
    assert loaded.version == NEW
    assert holder.current is not None and holder.current.version == FIXTURE_BUNDLE.name
    previous = holder.swap(loaded)
    assert previous is not None and previous.version == FIXTURE_BUNDLE.name
    assert holder.current is loaded


class _GatedSession:
    """Holds every model call until the test opens the gate."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.entered = threading.Event()
        self.gate = threading.Event()

    def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
        self.entered.set()
        assert self.gate.wait(30)
        return self.session.run(outputs, feeds)


def test_in_flight_request_finishes_on_the_model_it_started_with(model_dir: Path) -> None:
    _add_version(model_dir)
    with TestClient(create_app(make_settings(model_dir, inline_batch_threshold=0))) as c:
        holder: ModelHolder = c.app.state.holder  # type: ignore[attr-defined]
        old = holder.current
        assert old is not None
        old.session = gated = _GatedSession(old.session)
        answers: list[Any] = []
        body = {"series": [{"id": "a", "closes": calm_walk()}], "horizon": 3}
        request = threading.Thread(target=lambda: answers.append(c.post("/forecast/batch", json=body)))
        request.start()
        assert gated.entered.wait(30)
        registry.set_current(model_dir / DEFAULT, NEW)  # so the pointer watcher agrees with the swap below
        holder.swap(holder.load_version(NEW))  # swap while the request sits inside the old model
        gated.gate.set()
        request.join(30)
        assert answers[0].status_code == 200
        assert answers[0].json()["model_version"] == FIXTURE_BUNDLE.name
        assert _served(c) == NEW


def test_rollback_while_the_watcher_loads_is_not_undone_by_the_stale_load(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher starts loading NEW; a rollback lands before that load ends: the stale NEW is dropped."""
    _add_version(model_dir)
    real_load = holder_module.load_forecaster
    loading, release = threading.Event(), threading.Event()

    def slow_load(bundle_dir: Path, *args: Any) -> Any:
        if bundle_dir.name == NEW:
            loading.set()
            assert release.wait(30)
        return real_load(bundle_dir, *args)

    monkeypatch.setattr(holder_module, "load_forecaster", slow_load)
    key = "hot-swap-key-0123456789"
    with TestClient(create_app(make_settings(model_dir, api_key=key))) as c:
        holder: ModelHolder = c.app.state.holder  # type: ignore[attr-defined]
        real_reload = holder.reload_if_changed
        after_release: list[Any] = []

        def reload() -> Any:
            result = real_reload()
            if release.is_set():  # ticks run one after another: the first one here is the one held in load
                after_release.append(result)
            return result

        monkeypatch.setattr(holder, "reload_if_changed", reload)
        registry.set_current(model_dir / DEFAULT, NEW)
        assert loading.wait(30)  # the watcher is inside the load of NEW
        rollback = c.post(
            f"/models/{FIXTURE_BUNDLE.name}/promote", headers={"Authorization": f"Bearer {key}"}
        )
        assert rollback.json() == {"model": "default", "version": FIXTURE_BUNDLE.name, "previous": NEW}
        release.set()
        _wait_for(lambda: len(after_release) >= 2)  # the stale load's tick, and one more
        assert after_release[0] is None  # dropped, not swapped in
        assert registry.read_current(model_dir / DEFAULT) == FIXTURE_BUNDLE.name
        assert _served(c) == FIXTURE_BUNDLE.name
        assert c.get("/models/default/versions").json()["served"] == FIXTURE_BUNDLE.name
