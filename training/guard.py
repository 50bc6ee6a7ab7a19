"""A training run that nobody waits for ends itself: when the service that started it dies, or when it has
run past its own time limit.

The service supervises its training process and kills it on timeout, but a service that is SIGKILLed (or
runs out of memory) runs no shutdown code, and the child lives on in its own session, training with no
limit. ``PR_SET_PDEATHSIG`` does not help: it fires when the spawning *thread* exits, and the service
spawns from a pool thread that may retire at any time. So the child watches its parent itself: a daemon
thread polls ``os.getppid()`` (it changes the moment the parent dies: the orphan is re-parented to init or a
subreaper) and the parent's start time in ``/proc`` (a recycled pid is another process), and keeps a
wall-clock deadline of its own.

Stopping is graceful first: ``Stop`` is raised in the main thread (a directed ``SIGALRM``), so the bundle
writer removes its temporary directory and nothing half-written is left; if the main thread has not ended
``GRACE_S`` later (stuck in native code), the process leaves with ``os._exit``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import suppress
from pathlib import Path
from types import FrameType

POLL_S = 0.25  # how often the parent is looked at: an orphan lives at most about this long
GRACE_S = 5.0  # after asking the main thread to stop, how long before the process is ended outright
EXIT_TIME_LIMIT = 124  # as coreutils timeout(1)
EXIT_PARENT_GONE = 125


class Stop(BaseException):
    """Raised in the main thread to end the run. A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way turns it into an ordinary failure; ``finally`` blocks still run."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from Linux ``/proc``); None if it is gone or a
    zombie. Together with the pid it names one process: pids are recycled, start times are not."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # fields 3.. of proc(5)
    except (OSError, IndexError):
        return None
    return None if fields[0] in {"Z", "X"} else fields[19]  # state, starttime


class Parent:
    """The process that must stay alive for this run to be wanted (the service worker that spawned it)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.is_direct = os.getppid() == pid  # else a wrapper stands between: only /proc can tell
        self.started = start_time(pid)
        self.has_proc = Path("/proc/self/stat").exists()

    def gone(self) -> bool:
        if self.is_direct and os.getppid() != self.pid:
            return True
        if self.has_proc:
            return self.started is None or start_time(self.pid) != self.started
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # exists, owned by another user
            pass
        return False


def write_stderr(line: str) -> None:
    """One line on stderr without buffering: the reading end may be gone with the parent (EPIPE)."""
    with suppress(OSError):
        os.write(2, (line + "\n").encode("utf-8", "replace"))


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _pending or Stop(f"stopped by signal {signum}", EXIT_TIME_LIMIT)


_pending: Stop | None = None
_disarmed = threading.Event()


def _stop_main_thread(stop: Stop, prog: str) -> None:
    """Ask the main thread to raise ``stop``; end the process if it has not finished ``GRACE_S`` later."""
    global _pending
    _pending = stop
    main = threading.main_thread()
    if main.ident is not None:
        signal.pthread_kill(main.ident, signal.SIGALRM)  # a real signal: a blocking call returns EINTR
    main.join(GRACE_S)
    if not main.is_alive() or _disarmed.is_set():  # it stopped (the interpreter is on its way out)
        return
    write_stderr(f"{prog}: error: {stop.reason}; the run did not stop within {GRACE_S:g} s, ending it")
    os._exit(stop.code)


def _reason_to_stop(parent: Parent | None, deadline: float | None, limit_s: float | None) -> Stop | None:
    if parent is not None and parent.gone():
        why = f"the service process {parent.pid} that started this run is gone; stopped (--parent-pid)"
        return Stop(why, EXIT_PARENT_GONE)
    if deadline is not None and time.monotonic() >= deadline:
        return Stop(
            f"training ran longer than its time limit of {limit_s:g} s; stopped (--time-limit)",
            EXIT_TIME_LIMIT,
        )
    return None


def _watch(parent: Parent | None, deadline: float | None, limit_s: float | None, prog: str) -> None:
    while not _disarmed.is_set():
        stop = _reason_to_stop(parent, deadline, limit_s)
        if stop is not None:
            _stop_main_thread(stop, prog)
            return
        time.sleep(POLL_S if deadline is None else min(POLL_S, max(0.0, deadline - time.monotonic())))


def start_guard(parent_pid: int | None, time_limit_s: float | None, prog: str) -> None:
    """From the main thread: watch ``parent_pid`` and a wall-clock ``time_limit_s`` (each optional) in a
    daemon thread; when either says stop, ``Stop`` is raised in the main thread.

    Wall-clock rather than ``RLIMIT_CPU``: the service's own timeout is wall-clock, and CPU time would
    neither count a run that waits nor stay comparable across thread counts."""
    if parent_pid is None and time_limit_s is None:
        return
    parent = Parent(parent_pid) if parent_pid is not None else None
    if parent is not None and parent.gone():
        raise Stop(
            f"the service process {parent_pid} is not running; not starting (--parent-pid)", EXIT_PARENT_GONE
        )
    signal.signal(signal.SIGALRM, _raise_stop)
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    threading.Thread(
        target=_watch, args=(parent, deadline, time_limit_s, prog), name="training-guard", daemon=True
    ).start()


def stop_guard() -> None:
    """From the main thread, once the run has ended either way: a stop arriving now would only turn a
    finished run into a failed one."""
    if not _disarmed.is_set() and signal.getsignal(signal.SIGALRM) is _raise_stop:
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
    _disarmed.set()
