"""A throwaway nginx for the tests and bench/proxy_kill.py: the committed ``deploy/nginx.conf`` (the one
compose.yaml mounts) with its two replica addresses and its port swapped for loopback ones, run in the
foreground with its pid file, logs and temporary files in a temporary directory.

The binary is Debian's (``apt-get install -y nginx-light``). Where it is missing the tests are skipped,
unless ``CLOSECAST_REQUIRE_NGINX=1`` (CI) turns the skip into a failure, so CI cannot go green without them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.helpers import ROOT, Server, copy_registry, free_port, running_server, wait_for

CONF = ROOT / "deploy" / "nginx.conf"
REQUIRE_ENV = "CLOSECAST_REQUIRE_NGINX"
REQUIRED = os.environ.get(REQUIRE_ENV) == "1"  # read once: the tests clear CLOSECAST_*
# the access log the tests read: the replicas a request was sent to, in order ("a, b" when it was retried)
LOG_FORMAT = '$msec $request_method $uri $status "$upstream_addr" "$upstream_status"'
TEMP_PATHS = ("client-body", "proxy", "fastcgi", "uwsgi", "scgi")


def find_nginx() -> str | None:
    """The nginx binary: on the PATH, or Debian's /usr/sbin/nginx (not on a normal user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def missing_reason() -> str | None:
    """Why the nginx tests cannot run here, or None when they can."""
    if find_nginx() is None:
        return "nginx is not installed: apt-get install -y nginx-light"
    return None


def render_site(upstreams: Sequence[str], port: int, conf: str | None = None) -> str:
    """``deploy/nginx.conf`` (or ``conf``) with ``upstreams`` for its replicas and ``port`` to listen on."""
    text = CONF.read_text(encoding="utf-8") if conf is None else conf
    servers = re.findall(r"^(\s*server )(\S+)( .*;)$", text, re.M)
    if len(servers) != len(upstreams):
        raise ValueError(f"{CONF.name} names {len(servers)} replicas; {len(upstreams)} addresses were given")
    for (head, address, tail), upstream in zip(servers, upstreams, strict=True):
        text = text.replace(f"{head}{address}{tail}", f"{head}{upstream}{tail}", 1)
    text, listens = re.subn(r"^(\s*listen )\d+;", rf"\g<1>127.0.0.1:{port};", text, flags=re.M)
    if listens != 1:
        raise ValueError(f"{CONF.name} has {listens} `listen` lines; the tests expect one")
    return text


def _main_conf(root: Path, site: Path, binary: str) -> str:
    """The top-level config: everything nginx writes stays in ``root``; the site is included in ``http``."""
    built = subprocess.run([binary, "-V"], capture_output=True, text=True, check=False).stderr
    temps = [
        f"  {kind.replace('-', '_')}_temp_path {root / kind};"
        for kind in TEMP_PATHS
        if f"--http-{kind}-temp-path" in built  # a module left out of the build has no such directive
    ]
    user = ["user root;"] if os.geteuid() == 0 else []  # workers read nothing outside root; keep it simple
    return "\n".join(
        [
            *user,
            "worker_processes 1;",
            f"pid {root / 'nginx.pid'};",
            f"error_log {root / 'error.log'} info;",
            "events { worker_connections 256; }",
            "http {",
            f"  log_format upstreams '{LOG_FORMAT}';",
            f"  access_log {root / 'access.log'} upstreams;",
            *temps,
            f"  include {site};",
            "}",
            "",
        ]
    )


@dataclass
class Nginx:
    """A running nginx: its process, base URL and directory (``access.log``, ``error.log``)."""

    proc: subprocess.Popen[bytes]
    url: str
    root: Path

    def access(self, at_least: int = 0) -> list[AccessLine]:
        """The access log, one entry per request nginx answered, once it has ``at_least`` entries (nginx
        logs a request just after its answer is sent, so a client may have it a moment before the log)."""
        path = self.root / "access.log"

        def lines() -> list[AccessLine]:
            text = path.read_text(encoding="utf-8") if path.exists() else ""
            return [AccessLine.parse(line) for line in text.splitlines() if line.strip()]

        if at_least:
            wait_for(lambda: len(lines()) >= at_least, timeout=10, every=0.02)
        return lines()

    def errors(self) -> str:
        return (self.root / "error.log").read_text(encoding="utf-8", errors="replace")


@dataclass(frozen=True)
class AccessLine:
    """One request as nginx logged it: when it ended, what it was, and each replica it was sent to."""

    at: float
    method: str
    uri: str
    status: int
    upstreams: tuple[str, ...]

    @classmethod
    def parse(cls, line: str) -> AccessLine:
        msec, method, uri, status, rest = line.split(" ", 4)
        addresses = rest.split('" "')[0].strip('"')
        tried = tuple(a for a in re.split(r"\s*,\s*|\s+:\s+", addresses) if a and a != "-")
        return cls(float(msec), method, uri, int(status), tried)


@dataclass
class Load:
    """Client threads posting ``body`` to ``path`` until stopped, each on its own keep-alive connection;
    every status and transport error is kept (list.append is atomic under the GIL)."""

    url: str
    path: str
    body: object
    threads: int = 4
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=20) as client:
            while not self._stop.is_set():
                try:
                    self.statuses.append(client.post(self.path, json=self.body).status_code)
                except httpx.HTTPError as exc:
                    self.errors.append(f"{time.time():.3f} {exc!r}")  # when: compare with the access log

    @contextmanager
    def running(self) -> Iterator[Load]:
        workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in workers:
            worker.start()
        try:
            yield self
        finally:
            self._stop.set()
            for worker in workers:
                worker.join(timeout=30)


@contextmanager
def running_replicas(root: Path, count: int = 2) -> Iterator[list[Server]]:
    """``count`` API replicas (``python -m app``, jobs off), each over its own copy of the fixture registry
    under ``root``, started side by side: each loads and verifies the model, which is most of a start."""
    with ExitStack() as stack:

        def start(n: int) -> Server:  # ExitStack.enter_context only appends to a deque: safe from threads
            models = copy_registry(root / f"replica-{n}")
            return stack.enter_context(running_server(models, run_jobs="false"))

        with ThreadPoolExecutor(count) as pool:
            yield list(pool.map(start, range(count)))


@contextmanager
def running_nginx(upstreams: Sequence[str], edit: Callable[[str], str] | None = None) -> Iterator[Nginx]:
    """nginx in front of ``upstreams`` (``host:port``) on a free loopback port, from ``deploy/nginx.conf``
    (changed by ``edit`` first, if given), yielded once it answers; stopped (SIGQUIT, then SIGKILL) after."""
    binary = find_nginx()
    if binary is None:
        raise RuntimeError("nginx is not installed: apt-get install -y nginx-light")
    root = Path(tempfile.mkdtemp(prefix="closecast-nginx-"))
    port = free_port()
    conf = CONF.read_text(encoding="utf-8")
    site = root / "site.conf"
    site.write_text(render_site(upstreams, port, edit(conf) if edit else conf), encoding="utf-8")
    main = root / "nginx.conf"
    main.write_text(_main_conf(root, site, binary), encoding="utf-8")
    command = [binary, "-p", str(root), "-c", str(main), "-g", "daemon off;"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = Nginx(proc, f"http://127.0.0.1:{port}", root)

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}: {proc.communicate()[1].decode()}")
        try:  # a TCP connection only: an HTTP probe would be a request to a replica, which tests count
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        wait_for(listening, timeout=20, every=0.05)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: lets the access log be written out
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        shutil.rmtree(root, ignore_errors=True)
