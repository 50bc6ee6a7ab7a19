"""Starvation: /forecast latency alone, then while clients loop large /forecast/batch bodies.

    python bench/starvation.py                         # 2 batch clients, 1000 series x 1000 closes (~7.8 MB)
    python bench/starvation.py --batch-clients 2 --series 1000 --closes 1000 --duration 10 --rounds 3
    python bench/starvation.py --burst 0               # skip the burst of 8 concurrent bodies (RSS)

Starts the service with ``python -m uvicorn APP`` (the options ``python -m app`` uses: uvloop, httptools,
no access log, one worker, CLOSECAST_ENABLE_NOOP=true) on a free loopback port, then per round:
1. ``wrk`` drives POST /forecast alone (``--connections`` closed-loop connections): p50, p99, req/s;
2. the same while ``--batch-clients`` processes each loop POST /forecast/batch with the big body.
It prints each phase, the ratio p99 with / p99 alone and whether the target holds
(p99 with <= 3 x p99 alone, or <= p99 alone + 20 ms), plus the batch clients' throughput and statuses
(a fix that refuses or starves the batches is no fix). wrk, the batch clients and the server share the
machine's cores: compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import wrk

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--app", default="app.main:app", help="ASGI target for uvicorn")
    p.add_argument("--model-dir", type=Path, default=ROOT / "models")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=8, help="wrk connections on /forecast")
    p.add_argument("--batch-clients", type=int, default=2)
    p.add_argument("--series", type=int, default=1000)
    p.add_argument("--closes", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2, help="alone/with pairs (A B A B); medians reported")
    p.add_argument("--burst", type=int, default=8, help="after the rounds, N concurrent big bodies; RSS")
    p.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the server")
    return p.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSECAST_")}
    env.update(
        CLOSECAST_MODEL_DIR=str(args.model_dir),
        CLOSECAST_ENABLE_NOOP="true",
        CLOSECAST_PROVIDERS="cpu",
        CLOSECAST_LOG_LEVEL="warning",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
    )
    env.update(kv.split("=", 1) for kv in args.env)
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        args.app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode} before it was ready")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).read()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server was not ready within 60 s")


def rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(k) for k in kids]


def sample_closes(n: int, count: int) -> list[list[float]]:
    csv = ROOT / "data" / "sp500_daily.csv"
    closes = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=4)
    starts = np.linspace(0, len(closes) - n, count).astype(int)
    return [closes[s : s + n].round(2).tolist() for s in starts]


def batch_client(port: int, body_path: str, stop: Any, out: Any) -> None:
    """Loop POST /forecast/batch until ``stop``; put (count, statuses, latencies) on ``out``."""
    body = Path(body_path).read_bytes()
    statuses: dict[int, int] = {}
    lat: list[float] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while not stop.is_set():
        t = time.perf_counter()
        try:
            conn.request("POST", "/forecast/batch", body, {"content-type": "application/json"})
            r = conn.getresponse()
            r.read()
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        except OSError as exc:
            statuses[-1] = statuses.get(-1, 0) + 1
            print("batch client:", exc, file=sys.stderr)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        lat.append(time.perf_counter() - t)
    out.put((statuses, lat))


def run_wrk(url: str, script: Path, args: argparse.Namespace, seconds: int) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s", "--timeout", "30s", "-s", str(script), url]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    r = wrk.summary(done.stdout)
    return {k: r[k] for k in ("req_s", "p50_ms", "p99_ms", "max_ms", "errors")}


def with_batches(
    port: int, url: str, script: Path, body_path: Path, args: argparse.Namespace, pid: int
) -> tuple[dict[str, float], dict[str, Any]]:
    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=batch_client, args=(port, str(body_path), stop, out))
        for _ in range(args.batch_clients)
    ]
    for p in procs:
        p.start()
    time.sleep(2.0)  # the batch clients are in full swing before wrk starts
    peak = [rss_mb(pid)]
    sampling = True

    def sample() -> None:
        while sampling:
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    w = run_wrk(url, script, args, args.duration)
    span = time.perf_counter() - t0 + 2.0
    stop.set()
    results = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join()
    sampling = False
    statuses: dict[int, int] = {}
    lat: list[float] = []
    for st, la in results:
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
        lat += la
    batch = {
        "batches_s": len(lat) / span,
        "batch_p50_ms": statistics.median(lat) * 1e3 if lat else float("nan"),
        "statuses": statuses,
        "rss_peak_mb": peak[0],
    }
    return w, batch


def burst(port: int, body: bytes, n: int, pid: int) -> dict[str, float]:
    """n concurrent big bodies at once; RSS before, at peak, 3 s and 10 s after."""
    before = rss_mb(pid)
    peak = [before]
    done = threading.Event()

    def one() -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        c.request("POST", "/forecast/batch", body, {"content-type": "application/json"})
        c.getresponse().read()
        c.close()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.05)

    s = threading.Thread(target=sample, daemon=True)
    s.start()
    threads = [threading.Thread(target=one) for _ in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    done.set()
    time.sleep(3)
    after3 = rss_mb(pid)
    time.sleep(7)
    return {"before": before, "peak": peak[0], "after_3s": after3, "after_10s": rss_mb(pid), "burst_s": took}


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")
    port = free_port()
    server = start_server(args, port)
    base = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            single = {"closes": sample_closes(30, 1)[0], "horizon": 1}
            (work / "single.json").write_text(json.dumps(single))
            wrk.write_script(work / "post.lua", work / "single.json")
            series = sample_closes(args.closes, args.series)
            big = json.dumps(
                {"series": [{"id": f"s{i}", "closes": c} for i, c in enumerate(series)], "horizon": 1},
                separators=(",", ":"),
            ).encode()
            (work / "batch.json").write_bytes(big)
            print(
                f"app {args.app}; /forecast by wrk -t1 -c{args.connections} -d{args.duration}s; "
                f"{args.batch_clients} batch clients x {args.series} series x {args.closes} closes "
                f"({len(big) / 1e6:.1f} MB); {os.cpu_count()} cores shared by all"
            )
            url = f"{base}/forecast"
            run_wrk(url, work / "post.lua", args, 2)  # warm-up
            alone_runs, with_runs, batch_runs = [], [], []
            for i in range(args.rounds):
                a = run_wrk(url, work / "post.lua", args, args.duration)
                w, b = with_batches(port, url, work / "post.lua", work / "batch.json", args, server.pid)
                alone_runs.append(a)
                with_runs.append(w)
                batch_runs.append(b)
                print(
                    f"round {i + 1}: alone p50 {a['p50_ms']:.2f} p99 {a['p99_ms']:.2f} ms"
                    f" {a['req_s']:.0f} req/s"
                    f" | with p50 {w['p50_ms']:.2f} p99 {w['p99_ms']:.2f} max {w['max_ms']:.0f} ms"
                    f" {w['req_s']:.0f} req/s err {w['errors']:.0f} | batches {b['batches_s']:.2f}/s"
                    f" p50 {b['batch_p50_ms']:.0f} ms {b['statuses']} rss peak {b['rss_peak_mb']:.0f} MB",
                    flush=True,
                )
            med = lambda runs, k: statistics.median(r[k] for r in runs)  # noqa: E731
            p99a, p99w = med(alone_runs, "p99_ms"), med(with_runs, "p99_ms")
            refused = sum(n for b in batch_runs for k, n in b["statuses"].items() if k != 200)
            ok = p99w <= max(3 * p99a, p99a + 20) and refused == 0  # starving or failing batches is no fix
            print(
                f"RESULT p99 alone {p99a:.2f} ms, with {args.batch_clients} batch clients {p99w:.2f} ms "
                f"({p99w / p99a:.1f}x); req/s {med(alone_runs, 'req_s'):.0f} -> "
                f"{med(with_runs, 'req_s'):.0f}; batches {med(batch_runs, 'batches_s'):.2f}/s "
                f"({refused} not 200); target <= max(3x, +20 ms) {'MET' if ok else 'MISSED'}",
                flush=True,
            )
            if args.burst:
                r = burst(port, big, args.burst, server.pid)
                print(
                    f"BURST {args.burst} x {len(big) / 1e6:.1f} MB in {r['burst_s']:.1f} s: RSS "
                    f"{r['before']:.0f} -> peak {r['peak']:.0f} -> {r['after_3s']:.0f} (3 s) -> "
                    f"{r['after_10s']:.0f} MB (10 s)",
                    flush=True,
                )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
