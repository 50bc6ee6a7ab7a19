"""The training subprocess, and the processes around it as the service sees them (Linux ``/proc``).

Who owns a job is a worker process; whether it is still alive is asked of the kernel, not assumed from a pid:
pids are recycled, and a restarted container hands out the same small ones again.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import app as _package
from app.storage.pg_access import SECRET_ENV

PROJECT_ROOT = Path(_package.__file__).resolve().parents[1]  # holds the `app` and `training` packages
# The child's own time limit runs this much longer than the service's timeout, so that a live supervisor
# always ends a slow run first (with its usual message); the child's limit is the backstop when none is.
OWN_LIMIT_SLACK_S = 5.0


@dataclass
class TrainingProcess:
    """A running training CLI and the last lines it wrote to stderr (a thread reads them: it never blocks)."""

    popen: subprocess.Popen[bytes]
    stderr_tail: deque[str]
    reader: threading.Thread

    @classmethod
    def start(
        cls,
        python: str,
        flags: dict[str, Any],
        cwd: Path,
        threads: int,
        timeout_s: float,
        command: str = "train",
        extra_env: dict[str, str] | None = None,
    ) -> TrainingProcess:
        """``python -m training <command> --quiet --flag=value ...`` in its own session (one ``killpg`` ends
        it all), stdout dropped, stderr through a pipe. ``--flag=value`` keeps a value starting with ``-``
        (a column name) a value; flags whose value is None are left out, a list is the flag repeated.

        The child also looks after itself (``training/guard.py``): it ends itself soon after this process
        dies (``--parent-pid``; a SIGKILLed service runs no cleanup, and its child has its own session), and
        after ``timeout_s`` plus ``OWN_LIMIT_SLACK_S`` (``--time-limit``) should nobody be supervising it."""
        own = {"parent-pid": os.getpid(), "time-limit": f"{timeout_s + OWN_LIMIT_SLACK_S:g}"}
        given = [
            f"--{flag}={value}"
            for flag, values in {**flags, **own}.items()
            for value in (values if isinstance(values, list) else [values])
            if value is not None
        ]
        popen = subprocess.Popen(
            [python, "-m", "training", command, "--quiet", *given],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env={**training_environment(threads), **(extra_env or {})},
            start_new_session=True,
        )
        tail: deque[str] = deque(maxlen=50)
        assert popen.stderr is not None
        reader = threading.Thread(
            target=_drain, args=(popen.stderr, tail), name="training-stderr", daemon=True
        )
        reader.start()
        return cls(popen, tail, reader)

    def last_stderr_line(self) -> str | None:
        """Once the process has ended: the last non-empty line it wrote to stderr."""
        self.reader.join(timeout=5)
        lines = [line for line in self.stderr_tail if line]
        return lines[-1] if lines else None

    def stderr_lines(self) -> list[str]:
        """Once the process has ended: the last lines it wrote to stderr (``last_stderr_line`` waited)."""
        return [line for line in self.stderr_tail if line]


def training_environment(threads: int) -> dict[str, str]:
    """The service's environment without its secrets (API key, database URL and passwords: the child needs
    none; a distributed study's access comes apart, ``study_environment``), with thread counts pinned and the
    packages findable."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env.update(
        OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1", MPLBACKEND="Agg"
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _drain(stream: IO[bytes], tail: deque[str]) -> None:
    with stream:
        for raw in iter(lambda: stream.readline(65536), b""):
            tail.append(raw.decode("utf-8", "replace").strip())


def _host_identity() -> str:
    """Hostname and boot id: a pid only names the same process on the same running kernel."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


HOST_AND_BOOT = _host_identity()


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux ``/proc``); None if gone, a zombie or
    unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # fields 3.. of proc(5)
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]  # state, starttime


def process_alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` (or, without /proc, exists)."""
    if started is None:
        return pid_alive(pid)
    return process_start(pid) == started


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def command_line_mentions(pid: int, needle: str) -> bool:
    """Whether process ``pid`` was started with ``needle`` in its arguments (Linux ``/proc``; else False),
    so a recycled pid is never killed by mistake."""
    try:
        return needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def last_line(path: Path, tail_bytes: int = 8192) -> str | None:
    """The last non-empty line of a text file (only its tail is read), or None."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - tail_bytes))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return None
    lines = [ln for ln in lines if ln]
    return lines[-1] if lines else None


# What a process writing to a full disk says (OSError 28, a C++ layer's own words, a quota); torch and ONNX
# may then abort (SIGABRT), which alone would say nothing about the cause.
DISK_FULL_MARKERS = ("No space left on device", "[Errno 28]", "ENOSPC", "Disk quota exceeded", "[Errno 122]")
LOW_DISK_BYTES = 1024 * 1024  # a volume with less free than this after a failed run is taken as full


def disk_full(stderr_lines: list[str], dirs: tuple[Path, ...] = ()) -> bool:
    """Whether a failed run ran out of disk: its stderr says so, or a directory it writes to has (nearly) no
    room left."""
    if any(marker in line for line in stderr_lines for marker in DISK_FULL_MARKERS):
        return True
    for directory in dirs:
        try:
            if shutil.disk_usage(directory).free < LOW_DISK_BYTES:
                return True
        except OSError:
            continue
    return False


def describe_exit(returncode: int, last: str | None, out_of_disk: bool = False) -> str:
    """Why the CLI ended: its own one-line message for exit 2 (bad input), a full disk (``disk_full``), else
    the code or the signal, with the last line of stderr (for a crash, the exception)."""
    if returncode == 2 and last:
        return last
    if out_of_disk:
        how = f"exited with code {returncode}" if returncode >= 0 else "was aborted"
        return (
            f"the training process {how} because the disk is full (no space left on the volume of "
            "CLOSECAST_MODEL_DIR); free some space (DELETE /models/{model}/versions/{version}, "
            "CLOSECAST_KEEP_VERSIONS) and train again"
        )
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = " (out of memory, or killed by an operator)" if -returncode == signal.SIGKILL else ""
        return f"the training process was killed by {name}{why}"
    return f"the training process exited with code {returncode}" + (f": {last}" if last else "")
