"""Supervised background loops of one worker: each runs on its own, and one that fails is restarted.

The pointer watcher and the job runner used to share one task group, so a job store error that escaped the
runner cancelled the watcher too: the worker kept answering ``/readyz`` 200 and never followed a promotion
again. Here every loop runs under its own supervisor: an exception is logged, counted
(``closecast_background_failures_total{task}``), shown as down (``closecast_background_up{task}`` 0 and a
``degraded`` entry on ``/readyz``) and the loop is started again after a backoff that doubles from
``BACKOFF_MIN_S`` to ``BACKOFF_MAX_S`` and resets once a run has stayed up for ``HEALTHY_AFTER_S``. A loop
that must heal fast (the pointer watchers: a replica follows promotions within the reload interval once the
database is back) caps its own backoff (``Supervised.max_backoff_s``).
Cancellation (shutdown) goes straight through. Adding a loop is one ``Supervised(...)`` line in the app.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a run that lasted this long was healthy: the next failure backs off from the start


class _Once:
    """A ``TaskStatus`` that passes on only its first ``started()``, so a restarted loop may call it again."""

    def __init__(self, status: TaskStatus[None]) -> None:
        self._status: TaskStatus[None] | None = status

    def started(self, value: None = None) -> None:
        status, self._status = self._status, None
        if status is not None:
            status.started(value)


@dataclass
class Supervised:
    """A loop ``fn`` that should run until shutdown, under the name its metrics and ``/readyz`` use.

    ``waits_for_start``: ``fn`` takes ``task_status`` and startup waits until its first run calls
    ``task_status.started()`` (or fails). ``health``: a probe that names a problem the loop survives but the
    operator should see (e.g. a locked job store); ``None`` when all is well. ``max_backoff_s``: the longest
    wait before a restart, below the app's cap (a watcher that must follow promotions within its interval).
    ``retry_in``: the wait before the restart after the last failure.
    """

    name: str
    fn: Callable[..., Awaitable[Any]]
    waits_for_start: bool = False
    health: Callable[[], str | None] | None = None
    max_backoff_s: float | None = None
    up: bool = field(default=False, init=False)
    failures: int = field(default=0, init=False)
    last_error: str | None = field(default=None, init=False)
    retry_in: float | None = field(default=None, init=False)

    def problem(self) -> str | None:
        """What is wrong with this loop now, in one line (None when it runs and its probe is happy)."""
        if not self.up and self.last_error is not None:
            return f"{self.name}: {self.last_error}"
        found = self.health() if self.health is not None else None
        return f"{self.name}: {found}" if found else None


Hook = Callable[[Supervised], None]


def describe(exc: BaseException) -> str:
    """One line for an exception: its message, or its type when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Background:
    """The supervised loops of one app; ``start`` them in the lifespan's task group."""

    def __init__(
        self,
        tasks: Sequence[Supervised],
        on_change: Hook | None = None,
        on_failure: Hook | None = None,
        backoff: tuple[float, float, float] = (BACKOFF_MIN_S, BACKOFF_MAX_S, HEALTHY_AFTER_S),
    ) -> None:
        self.tasks = list(tasks)
        self._on_change = on_change or (lambda task: None)
        self._on_failure = on_failure or (lambda task: None)
        self.backoff = backoff

    def degraded(self) -> list[str]:
        """The problems of every loop, for ``/readyz``'s ``degraded`` list."""
        return [p for task in self.tasks if (p := task.problem())]

    async def start(self, group: TaskGroup) -> None:
        """Start every loop in ``group``; returns once those that wait for their start have started."""
        for task in self.tasks:
            await group.start(self._supervise, task)

    async def _supervise(self, task: Supervised, *, task_status: TaskStatus[None]) -> None:
        status = _Once(task_status)
        low, high, healthy = self.backoff
        if task.max_backoff_s is not None:
            low, high = min(low, task.max_backoff_s), min(high, task.max_backoff_s)
        delay = low
        logged: str | None = None  # the last failure logged with its traceback
        while True:
            began = time.monotonic()
            self._set_up(task, True)
            try:
                if task.waits_for_start:
                    await task.fn(task_status=status)
                else:
                    status.started()
                    await task.fn()
                log.info("background task %s ended", task.name)
                self._set_up(task, False)
                return
            except anyio.get_cancelled_exc_class():
                self._set_up(task, False)
                raise
            except Exception as exc:
                task.failures += 1
                lasted = time.monotonic() - began >= healthy
                again = not lasted and logged == describe(exc)  # the same failure as the last one logged
                task.last_error = logged = describe(exc)
                delay = low if lasted else delay
                task.retry_in = delay
                self._set_up(task, False)
                self._on_failure(task)
                # the traceback once per streak: a database down for minutes, retried every reload
                # interval, must not flood the log (a full stderr pipe would block the process)
                log.error(
                    "background task %s failed (%s); restarting in %.1f s",
                    task.name,
                    task.last_error,
                    delay,
                    exc_info=None if again else exc,
                )
            status.started()  # a first run that failed must not hold up startup
            await anyio.sleep(delay)
            delay = min(high, delay * 2)

    def _set_up(self, task: Supervised, up: bool) -> None:
        task.up = up
        self._on_change(task)
