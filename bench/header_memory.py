"""RSS of a server while four clients each send a 32 MB request header, and after: ``python -m app`` (the
project's server, header limits on) against a bare ``uvicorn app.main:app`` (none), A B A B.

    python bench/header_memory.py [--clients 4] [--mb 32]

Prints one line per run: before, peak and after RSS in MB, and the status the first client got.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import free_port, server_env, wait_for  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def send(port: int, size: int, got: list[bytes]) -> None:
    import socket

    chunk = b"c" * (256 * 1024)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(60)
        try:
            sock.sendall(b"POST /forecast HTTP/1.1\r\nHost: bench\r\nX-Huge: ")
            for _ in range(size // len(chunk)):
                sock.sendall(chunk)
            sock.sendall(b"\r\nContent-Length: 2\r\n\r\n{}")
        except OSError:
            pass
        try:
            got.append(sock.recv(64)[:12])
        except OSError:
            got.append(b"(reset)")


def run(kind: str, models: Path, clients: int, mb: int) -> None:
    port = free_port()
    command = [sys.executable, "-m", "app"]
    if kind == "uvicorn":
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--port",
            str(port),
            "--http",
            "httptools",
        ]
    env = server_env(model_dir=str(models), port=str(port), providers="cpu", log_level="warning")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/readyz"

        def ready() -> bool:
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=120, every=0.2)
        for _ in range(20):
            httpx.get(url)
        before = peak = rss_mb(proc.pid)
        got: list[bytes] = []
        threads = [threading.Thread(target=send, args=(port, mb * 1024 * 1024, got)) for _ in range(clients)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_mb(proc.pid))
            time.sleep(0.05)
        time.sleep(1)
        after = rss_mb(proc.pid)
        print(
            f"{kind:9s} before {before:6.1f} MB  peak {peak:6.1f} MB  after {after:6.1f} MB  "
            f"first answer {got[0] if got else b''!r}",
            flush=True,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--mb", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        shutil.copytree(ROOT / "tests" / "fixtures" / "models", models)
        for kind in ("closecast", "uvicorn", "closecast", "uvicorn"):
            run(kind, models, args.clients, args.mb)


if __name__ == "__main__":
    main()
