"""Serving throughput: the HTTP service under ``wrk`` against the no-op endpoint and ONNX Runtime alone.

    apt-get install -y wrk                 # Debian/Ubuntu package `wrk` (4.x, with Lua scripting)
    python bench/serve.py                  # models/ (or the test fixture when models/ holds none), 5 s each
    python bench/serve.py --model-dir models --duration 10 --batch 256 --connections 32
    python bench/serve.py --rounds 5       # alternate no-op and /forecast 5 times, median of each

Starts ``python -m app`` (uvicorn, uvloop, httptools, one worker, ``CLOSECAST_ENABLE_NOOP=true``) on a free
loopback port, waits for ``/readyz``, then drives three POST endpoints with ``wrk`` and a Lua script:

- ``/noop/forecast``: parsing and validation only, the ceiling of the HTTP stack;
- ``/forecast``: one series;
- ``/forecast/batch``: ``--batch`` series per request (series/s = req/s x batch).

It also times ONNX Runtime alone in this process (no HTTP, no JSON: ``session.run`` on the same batch
shapes) and prints one table with the ratios. wrk and the server share the machine's cores, so the
figures are a lower bound on what a dedicated server does; compare runs on the same machine only. The
server's CPU time per request (from ``/proc``) is steadier than req/s where other work shares the
machine: "vs no-op CPU" is the no-op's CPU per request over this row's, the req/s ratio a server with a
core of its own would reach.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import wrk

from closecast import registry
from closecast.bundle import load_forecaster

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model-dir", type=Path, default=None, help="registry (default: models/, else the fixture)"
    )
    p.add_argument("--duration", type=int, default=3, help="seconds per wrk run (plus a 1 s warm-up)")
    p.add_argument("--connections", default="1,16,64", help="wrk connection counts for /forecast")
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--closes", type=int, default=200, help="closes in the /forecast body")
    p.add_argument("--batch", type=int, default=64, help="series per /forecast/batch request")
    p.add_argument("--horizon", type=int, default=1, help="horizon of every request")
    p.add_argument("--providers", default="cpu", choices=["auto", "cpu", "cuda"], help="CLOSECAST_PROVIDERS")
    p.add_argument(
        "--rounds", type=int, default=2, help="A B A B rounds; ratios are per round, the table their median"
    )
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    args.connections = [int(c) for c in args.connections.split(",")]
    return args


DEFAULT_MODEL = "default"  # CLOSECAST_DEFAULT_MODEL's default: the servers run without CLOSECAST_* set


def default_bundle(root: Path) -> Path | None:
    """The default model's current bundle in the registry ``root`` (``root/default/<version>``), if any."""
    version = registry.read_current(root / DEFAULT_MODEL)
    return root / DEFAULT_MODEL / version if version else None


def pick_model_dir(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit.resolve()
    for candidate in (ROOT / "models", ROOT / "tests" / "fixtures" / "models"):
        if default_bundle(candidate) is not None:
            return candidate
    raise SystemExit("no model bundle in models/ or tests/fixtures/models/; pass --model-dir")


def sample_closes(n: int, count: int) -> list[list[float]]:
    """``count`` windows of ``n`` real S&P 500 closes when the data file is there, else a random walk."""
    csv = ROOT / "data" / "sp500_daily.csv"
    if csv.is_file():
        closes = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=4)
    else:
        closes = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 5000)))
    starts = np.linspace(0, len(closes) - n, count).astype(int)
    return [closes[s : s + n].round(2).tolist() for s in starts]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


def start_server(
    argv: list[str], env_extra: dict[str, str], ready_path: str
) -> tuple[subprocess.Popen[bytes], float]:
    """Start a server; return it and the seconds from start to its first 200 on ``ready_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSECAST_")}
    env.update(env_extra)
    started = time.perf_counter()
    server = subprocess.Popen(argv, cwd=ROOT, env=env)
    port = env_extra["CLOSECAST_PORT"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"{argv} exited with {server.returncode} before it was ready")
        try:
            get_json(f"http://127.0.0.1:{port}{ready_path}")
            ready_s, cpu_s = time.perf_counter() - started, cpu_seconds(server.pid)
            print(f"{' '.join(argv[1:4])}: ready after {ready_s:.2f} s, {cpu_s:.2f} CPU s")
            return server, time.perf_counter() - started
        except OSError:
            time.sleep(0.02)
    server.kill()
    raise SystemExit(f"{argv} was not ready within 60 s")


def closecast(model_dir: Path, providers: str, **settings: str) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    env = {
        "CLOSECAST_MODEL_DIR": str(model_dir),
        "CLOSECAST_PORT": str(port),
        "CLOSECAST_ENABLE_NOOP": "true",
        "CLOSECAST_PROVIDERS": providers,
        "CLOSECAST_LOG_LEVEL": "warning",
        **{f"CLOSECAST_{k.upper()}": v for k, v in settings.items()},
    }
    server, ready_s = start_server([sys.executable, "-m", "app"], env, "/readyz")
    return server, port, ready_s


def floor() -> tuple[subprocess.Popen[bytes], int, float]:
    """The bare FastAPI app (``bench/floor_app.py``) under the same uvicorn options as ``python -m app``."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.floor_app:app", "--port", str(port), "--loop", "uvloop"]
    argv += ["--http", "httptools", "--ws", "none", "--no-access-log", "--log-level", "warning"]
    server, ready_s = start_server(argv, {"CLOSECAST_PORT": str(port)}, "/readyz")
    return server, port, ready_s


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, in ticks


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80].strip()


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def run_wrk(
    url: str, body_path: Path, connections: int, args: argparse.Namespace, pid: int
) -> dict[str, Any]:
    """One wrk run (after a 1 s warm-up): req/s, p50/p99 in ms, errors, the server's CPU µs per request."""
    script = wrk.write_script(body_path.with_suffix(".lua"), body_path)
    base = ["wrk", f"-t{min(args.threads, connections)}", f"-c{connections}", "--latency", "-s", str(script)]
    subprocess.run([*base, "-d1s", url], check=True, capture_output=True)  # warm-up
    cpu = cpu_seconds(pid)
    done = subprocess.run([*base, f"-d{args.duration}s", url], check=True, capture_output=True, text=True)
    cpu = cpu_seconds(pid) - cpu
    r = wrk.summary(done.stdout)
    return {
        **{k: r[k] for k in ("req_s", "p50_ms", "p99_ms", "errors")},
        "cpu_us": cpu / max(r["requests"], 1) * 1e6,
    }


Target = tuple[str, str, int, Path, int]  # name, url, series per request, body file, server pid


def compare(
    targets: list[Target], connections: int, args: argparse.Namespace, ort: Callable[[], float]
) -> list[dict[str, Any]]:
    """Every target once per round, in turn (A B A B), after ONNX Runtime alone (``ort``: its series/s
    for the targets' batch): each round's ratios to the first target (the floor) and to ONNX Runtime see
    the same load on a shared machine; a row holds the median run and the median ratios."""
    runs: list[list[dict[str, Any]]] = [[] for _ in targets]
    ort_rates: list[float] = []
    for _ in range(args.rounds):
        ort_rates.append(ort())
        for i, (_, url, _, body, pid) in enumerate(targets):
            runs[i].append(run_wrk(url, body, connections, args, pid))
    rates = ", ".join(f"{r:.0f}" for r in ort_rates)
    print(f"ONNX Runtime alone, batch {targets[0][2]}, before each round ({connections} conns): {rates}")
    rows = []
    for (name, _, n, _, _), mine in zip(targets, runs, strict=True):
        ratios = {
            key: statistics.median(m[key] / f[key] for m, f in zip(mine, runs[0], strict=True))
            for key in ("req_s", "p50_ms", "p99_ms", "cpu_us")
        }
        # a request of horizon h makes h model calls: ``ort`` is ORT-alone series/s divided by h
        vs_ort = statistics.median(m["req_s"] * n / o for m, o in zip(mine, ort_rates, strict=True))
        median = sorted(mine, key=lambda r: float(r["req_s"]))[len(mine) // 2]
        rows.append({"name": name, "c": connections, "n": n, **median, "vs": ratios, "vs_ort": vs_ort})
    return rows


def time_ort(
    model_dir: Path, windows: list[list[float]], providers: str, seconds: float = 3.0
) -> dict[str, Any]:
    """ONNX Runtime alone: ``session.run`` on prepared inputs, same batch, same thread count as the server."""
    bundle = default_bundle(model_dir)
    assert bundle is not None
    model = load_forecaster(bundle, providers, ort_threads=1)
    x = np.zeros((len(windows), model.window - 1, 1), np.float32)  # its time does not depend on values
    feeds = {model.input_name: x}
    for _ in range(20):
        model.session.run([model.output_name], feeds)
    times = []
    cpu = time.process_time()
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        t = time.perf_counter()
        model.session.run([model.output_name], feeds)
        times.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu
    calls_s = len(times) / sum(times)
    return {
        "req_s": calls_s,
        "p50_ms": float(np.percentile(times, 50)) * 1e3,
        "p99_ms": float(np.percentile(times, 99)) * 1e3,
        "errors": 0,
        "cpu_us": cpu / len(times) * 1e6,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "| endpoint | conns | series/req | req/s | p50 ms | p99 ms | req/s vs floor | p50 vs floor | "
        "p99 vs floor | CPU µs/req | CPU vs floor | series/s vs ORT alone | errors |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        vs, n = r["vs"], r["n"]
        vs_ort = f"{r['vs_ort']:.2f}×"  # the floor's too: what the HTTP stack alone leaves of it
        print(
            f"| {r['name']} | {r['c']} | {n} | {r['req_s']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.2f} | "
            f"{vs['req_s']:.2f}× | {vs['p50_ms']:.2f}× | {vs['p99_ms']:.2f}× | {r['cpu_us']:.0f} | "
            f"{vs['cpu_us']:.2f}× | {vs_ort} | {int(r['errors'])} |"
        )


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")
    # The image's `pip install` compiles the wheel's bytecode; with PYTHONDONTWRITEBYTECODE=1 (the image,
    # this VM) a source checkout would otherwise compile every project module at each start (~0.15 CPU s).
    for package in ("app", "closecast", "bench"):
        compileall.compile_dir(ROOT / package, quiet=1)
    model_dir = pick_model_dir(args.model_dir)
    bundle = default_bundle(model_dir)
    if bundle is None:
        raise SystemExit(f"no current bundle of model {DEFAULT_MODEL!r} in {model_dir}")
    window = load_forecaster(bundle, "cpu").window
    windows = sample_closes(window, args.batch)
    load_before = os.getloadavg()
    ort_rows = {n: time_ort(model_dir, windows[:n], args.providers) for n in (1, args.batch)}

    def ort_alone(n: int) -> Callable[[], float]:
        """ONNX Runtime alone for 1 s on ``n`` series: series/s per request of ``args.horizon`` steps."""
        return lambda: time_ort(model_dir, windows[:n], args.providers, 1.0)["req_s"] * n / args.horizon

    floor_server, floor_port, floor_ready = floor()
    plain, plain_port, _ = closecast(model_dir, args.providers, batch_max_size="1")
    served, port, ready_s = closecast(model_dir, args.providers)  # the defaults: batching as shipped
    servers = [floor_server, plain, served]
    try:
        card = get_json(f"http://127.0.0.1:{port}/models/current")
        level = [80, 95]
        single = {"closes": sample_closes(args.closes, 1)[0], "horizon": args.horizon, "level": level}
        batch = {
            "series": [{"id": f"s{i}", "closes": w} for i, w in enumerate(windows)],
            "horizon": args.horizon,
            "level": level,
        }
        print(
            f"model {card['version']} (window {window}, {card['provider']}) from {model_dir}; "
            f"wrk -t{args.threads} -d{args.duration}s x {args.rounds} rounds A B A B, {args.closes} closes "
            f"per /forecast, horizon {args.horizon}, {os.cpu_count()} CPU cores shared by wrk and servers\n"
        )
        rows: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory() as tmp:
            one, many = Path(tmp) / "one.json", Path(tmp) / "batch.json"
            one.write_text(json.dumps(single))
            many.write_text(json.dumps(batch))
            f, a, b = (f"http://127.0.0.1:{p}" for p in (floor_port, plain_port, port))
            singles: list[Target] = [
                ("floor /forecast", f"{f}/forecast", 1, one, floor_server.pid),
                ("/forecast, batching off", f"{a}/forecast", 1, one, plain.pid),
                ("/forecast (as shipped)", f"{b}/forecast", 1, one, served.pid),
                ("/noop/forecast", f"{b}/noop/forecast", 1, one, served.pid),
            ]
            for c in args.connections:
                rows += compare(singles, c, args, ort_alone(1))
            batches: list[Target] = [
                ("floor /forecast/batch", f"{f}/forecast/batch", args.batch, many, floor_server.pid),
                ("/forecast/batch", f"{b}/forecast/batch", args.batch, many, served.pid),
            ]
            for c in (1, 16):
                rows += compare(batches, c, args, ort_alone(args.batch))
        helpers = children(served.pid)
        memory = f"API process RSS {rss_mb(served.pid):.0f} MB"
        memory += "".join(f"; child `{cmdline(c)}` RSS {rss_mb(c):.0f} MB" for c in helpers) or "; no child"
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            server.wait(timeout=30)
    print_table(rows)
    for n, r in ort_rows.items():
        print(
            f"\nONNX Runtime alone, batch {n}: {r['req_s'] * n:.0f} series/s, p50 {r['p50_ms']:.3f} ms",
            end="",
        )
    print(f"\n\n{memory}; ready {ready_s:.2f} s after start (floor {floor_ready:.2f} s)")
    load = " ".join(f"{x:.2f}" for x in load_before), " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average (1, 5, 15 min) at the start: {load[0]}; at the end: {load[1]}")


if __name__ == "__main__":
    main()
