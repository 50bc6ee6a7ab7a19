"""Supervised background loops: one that fails is logged, counted and restarted; the others never notice."""

from __future__ import annotations

import itertools

import anyio
import pytest
from anyio.abc import TaskStatus
from fastapi.testclient import TestClient

from app.background import Background, Supervised
from app.main import create_app
from tests.helpers import FIXTURE_MODELS, make_settings

QUICK = (0.01, 0.04, 60.0)  # backoff from 10 ms, capped at 40 ms


class FlakyLoop:
    """Raises on its first ``fail`` runs, then runs until cancelled."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.runs = 0
        self.running = anyio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        if self.runs <= self.fail:
            raise RuntimeError(f"boom {self.runs}")
        self.running.set()
        await anyio.sleep_forever()


def test_a_loop_that_raises_is_restarted_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    anyio.run(_a_loop_that_raises_is_restarted_and_counted)
    assert "background task flaky failed (boom 3); restarting in 0.0 s" in caplog.text


async def _a_loop_that_raises_is_restarted_and_counted() -> None:
    flaky, ticks = FlakyLoop(fail=3), []
    failed: list[str] = []

    async def steady() -> None:
        while True:
            ticks.append(1)
            await anyio.sleep(0.005)

    tasks = [Supervised("flaky", flaky), Supervised("steady", steady)]
    background = Background(tasks, on_failure=lambda t: failed.append(t.name), backoff=QUICK)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            await background.start(group)
            await flaky.running.wait()
            group.cancel_scope.cancel()
    assert flaky.runs == 4 and tasks[0].failures == 3 and failed == ["flaky"] * 3
    assert tasks[1].failures == 0 and len(ticks) > 3  # the other loop ran on throughout


def test_backoff_doubles_up_to_its_cap() -> None:
    delays, gaps = anyio.run(_failing_loop_delays, Supervised("broken", _always_fails), (0.02, 0.08, 60.0))
    assert delays == [0.02, 0.04, 0.08, 0.08, 0.08]
    # each restart waited at least its delay (however loaded the machine, a sleep never ends early)
    assert all(gap >= delay - 0.002 for gap, delay in zip(gaps, delays, strict=False))


def test_a_loop_may_cap_its_own_backoff_below_the_apps() -> None:
    task = Supervised("pointer", _always_fails, max_backoff_s=0.05)
    delays, _ = anyio.run(_failing_loop_delays, task, (0.02, 30.0, 60.0))
    assert delays == [0.02, 0.04, 0.05, 0.05, 0.05]
    quick = Supervised("pointer", _always_fails, max_backoff_s=0.01)  # under the app's first delay too
    assert anyio.run(_failing_loop_delays, quick, (0.02, 30.0, 60.0))[0] == [0.01] * 5


async def _always_fails() -> None:
    raise OSError("no")


async def _failing_loop_delays(
    task: Supervised, backoff: tuple[float, float, float]
) -> tuple[list[float], list[float]]:
    """The delays the supervisor chose after the first five failures of ``task``, and the gaps between its
    runs (no deadline on them: a loaded machine only makes them longer)."""
    delays: list[float] = []
    started: list[float] = []
    fn, enough = task.fn, anyio.Event()

    async def timed() -> None:
        started.append(anyio.current_time())
        await fn()

    task.fn = timed

    def failed(task: Supervised) -> None:
        assert task.retry_in is not None
        delays.append(task.retry_in)
        if len(delays) == 5:
            enough.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            await Background([task], on_failure=failed, backoff=backoff).start(group)
            await enough.wait()
            group.cancel_scope.cancel()
    return delays, [b - a for a, b in itertools.pairwise(started)]


def test_a_down_loop_and_a_probe_show_as_degraded() -> None:
    anyio.run(_a_down_loop_and_a_probe_show_as_degraded)


async def _a_down_loop_and_a_probe_show_as_degraded() -> None:
    release = anyio.Event()

    async def fails_once_then_waits() -> None:
        if not release.is_set():
            release.set()
            raise RuntimeError("database is locked")
        await anyio.sleep_forever()

    down = Supervised("jobs", fails_once_then_waits)
    probed = Supervised("pointer", anyio.sleep_forever, health=lambda: "model dir unreadable")
    background = Background([down, probed], backoff=(0.2, 0.2, 60.0))
    async with anyio.create_task_group() as group:
        await background.start(group)
        await release.wait()
        await anyio.sleep(0.05)  # inside the backoff: the loop is down
        assert background.degraded() == ["jobs: database is locked", "pointer: model dir unreadable"]
        await anyio.sleep(0.3)  # restarted
        assert background.degraded() == ["pointer: model dir unreadable"]
        group.cancel_scope.cancel()
    assert not down.up and not probed.up


def test_startup_waits_for_a_loop_that_asks_and_not_for_one_that_fails_first() -> None:
    anyio.run(_startup_waits_for_a_loop_that_asks_and_not_for_one_that_fails_first)


async def _startup_waits_for_a_loop_that_asks_and_not_for_one_that_fails_first() -> None:
    order: list[str] = []

    async def starts_after_setup(*, task_status: TaskStatus[None]) -> None:
        await anyio.sleep(0.05)
        order.append("set up")
        task_status.started()
        await anyio.sleep_forever()

    async def fails_before_starting(*, task_status: TaskStatus[None]) -> None:
        raise RuntimeError("cannot set up")

    tasks = [
        Supervised("a", starts_after_setup, waits_for_start=True),
        Supervised("b", fails_before_starting, waits_for_start=True),
    ]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            await Background(tasks, backoff=(1.0, 1.0, 60.0)).start(group)
            order.append("started")
            group.cancel_scope.cancel()
    assert order == ["set up", "started"]


def test_app_exports_each_loop_as_up_and_lists_no_degraded_part() -> None:
    with TestClient(create_app(make_settings(FIXTURE_MODELS))) as client:
        metrics = client.get("/metrics").text
        assert client.get("/readyz").json()["degraded"] == []
    assert 'closecast_background_up{task="pointer"} 1.0' in metrics
    assert 'closecast_background_up{task="jobs"} 1.0' in metrics


def test_the_same_failure_again_is_logged_without_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A database down for minutes fails the watcher every reload interval: one traceback, then one line
    per retry (an unread stderr pipe filled by tracebacks would block the process)."""
    anyio.run(_failing_loop_delays, Supervised("pointer", _always_fails), (0.01, 0.01, 60.0))
    failures = [r for r in caplog.records if "background task pointer failed (no)" in r.getMessage()]
    assert len(failures) >= 5 and [r.exc_info is not None for r in failures[:3]] == [True, False, False]
