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
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from closecast import registry
from closecast.bundle import load_forecaster
from closecast.representation import model_inputs

ROOT = Path(__file__).resolve().parents[1]

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("%(body)s", "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, \\"p99_us\\": %%d, " ..
    "\\"socket_errors\\": %%d, \\"non_2xx\\": %%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model-dir", type=Path, default=None, help="registry (default: models/, else the fixture)"
    )
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (plus a 1 s warm-up)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections")
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--batch", type=int, default=64, help="series per /forecast/batch request")
    p.add_argument("--horizon", type=int, default=1, help="horizon of every request")
    p.add_argument("--providers", default="cpu", choices=["auto", "cpu", "cuda"], help="CLOSECAST_PROVIDERS")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="no-op and /forecast runs, alternated; the table shows the median of each (for shared machines)",
    )
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def pick_model_dir(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit.resolve()
    for candidate in (ROOT / "models", ROOT / "tests" / "fixtures" / "models"):
        if registry.read_current(candidate):
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


def start_server(model_dir: Path, port: int, providers: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSECAST_")}
    env.update(
        CLOSECAST_MODEL_DIR=str(model_dir),
        CLOSECAST_PORT=str(port),
        CLOSECAST_ENABLE_NOOP="true",
        CLOSECAST_PROVIDERS=providers,
        CLOSECAST_LOG_LEVEL="warning",
    )
    server = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode} before it was ready")
        try:
            get_json(f"http://127.0.0.1:{port}/readyz")
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server was not ready within 60 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, in ticks


def run_wrk(
    url: str, body: dict[str, Any], args: argparse.Namespace, workdir: Path, pid: int
) -> dict[str, Any]:
    """One wrk run (after a 1 s warm-up); returns req/s, p50/p99 in ms, error counts and the server's CPU
    time per request (what other load on a shared machine disturbs least)."""
    body_path = workdir / f"body-{abs(hash(url))}.json"
    body_path.write_text(json.dumps(body))
    script = workdir / "post.lua"
    script.write_text(LUA % {"body": body_path})
    base = ["wrk", f"-t{args.threads}", f"-c{args.connections}", "--latency", "-s", str(script)]
    subprocess.run([*base, "-d1s", url], check=True, capture_output=True)  # warm-up
    cpu = cpu_seconds(pid)
    done = subprocess.run([*base, f"-d{args.duration}s", url], check=True, capture_output=True, text=True)
    cpu = cpu_seconds(pid) - cpu
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH "))
    r = json.loads(line.removeprefix("BENCH "))
    return {
        "req_s": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1e3,
        "p99_ms": r["p99_us"] / 1e3,
        "errors": r["socket_errors"] + r["non_2xx"],
        "cpu_us": cpu / max(r["requests"], 1) * 1e6,  # a little high: requests wrk left unfinished count too
    }


def alternate(
    base: str, body: dict[str, Any], args: argparse.Namespace, workdir: Path, pid: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--rounds`` runs of the no-op then /forecast, alternated so that both see the same load on a
    shared machine; returns the median run of each and prints every round's ratio."""
    noop, single = [], []
    for _ in range(args.rounds):
        noop.append(run_wrk(f"{base}/noop/forecast", body, args, workdir, pid))
        single.append(run_wrk(f"{base}/forecast", body, args, workdir, pid))
    if args.rounds > 1:
        ratios = ", ".join(f"{s['req_s'] / n['req_s']:.2f}×" for n, s in zip(noop, single, strict=True))
        print(f"/forecast ÷ no-op req/s by round: {ratios}\n")
    return _median(noop), _median(single)


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: float(r["req_s"]))[len(runs) // 2]


def time_ort(
    model_dir: Path, windows: list[list[float]], providers: str, seconds: float = 3.0
) -> dict[str, Any]:
    """ONNX Runtime alone: ``session.run`` on prepared inputs, same batch, same thread count as the server."""
    version = registry.read_current(model_dir)
    assert version is not None
    model = load_forecaster(model_dir / version, providers, ort_threads=1)
    x = model_inputs(np.asarray(windows, dtype=np.float64), model.scaler)
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


Row = tuple[str, int, dict[str, Any]]


def print_table(rows: list[Row], noop: dict[str, Any], ort: dict[int, float]) -> None:
    print(
        f"| {'what':<32} | {'series/req':>10} | {'req/s':>9} | {'series/s':>10} | {'p50 ms':>7} | "
        f"{'p99 ms':>7} | {'vs no-op req/s':>14} | {'vs ORT alone series/s':>21} | {'CPU µs/req':>10} | "
        f"{'vs no-op CPU':>12} | errors |"
    )
    widths = (34, 11, 10, 11, 8, 8, 15, 22, 11, 13, 7)
    print("|" + "|".join("-" * w if i == 0 else "-" * w + ":" for i, w in enumerate(widths)) + "|")
    for name, n, r in rows:
        series_s = r["req_s"] * n
        alone = name.startswith("ONNX")
        vs_noop = float("nan") if alone else r["req_s"] / noop["req_s"]
        vs_ort = float("nan") if alone or n not in ort else series_s / ort[n]
        cpu_vs_noop = float("nan") if alone else noop["cpu_us"] / r["cpu_us"]  # requests per CPU second
        print(
            f"| {name:<32} | {n:>10} | {r['req_s']:>9.0f} | {series_s:>10.0f} | {r['p50_ms']:>7.2f} | "
            f"{r['p99_ms']:>7.2f} | {_ratio(vs_noop):>14} | {_ratio(vs_ort):>21} | {r['cpu_us']:>10.0f} | "
            f"{_ratio(cpu_vs_noop):>12} | {int(r['errors']):>6} |"
        )


def _ratio(value: float) -> str:
    return "—" if value != value else f"{value:.2f}×"


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")
    model_dir = pick_model_dir(args.model_dir)
    port = free_port()
    server = start_server(model_dir, port, args.providers)
    base = f"http://127.0.0.1:{port}"
    try:
        card = get_json(f"{base}/models/current")
        window = int(card["window"])
        windows = sample_closes(window, args.batch)
        level = [80, 95]
        single = {"closes": windows[-1], "horizon": args.horizon, "level": level}
        batch = {
            "series": [{"id": f"s{i}", "closes": w} for i, w in enumerate(windows)],
            "horizon": args.horizon,
            "level": level,
        }
        print(
            f"model {card['version']} (window {window}, {card['provider']}) from {model_dir}; "
            f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, horizon {args.horizon}, "
            f"{os.cpu_count()} CPU cores shared by wrk and the server\n"
        )
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            noop, single_runs = alternate(base, single, args, work, server.pid)
            rows: list[Row] = [
                ("POST /noop/forecast", 1, noop),
                ("POST /forecast", 1, single_runs),
                (
                    "POST /forecast/batch",
                    args.batch,
                    run_wrk(f"{base}/forecast/batch", batch, args, work, server.pid),
                ),
            ]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    ort_rows: list[Row] = [
        (f"ONNX Runtime alone, batch {n}", n, time_ort(model_dir, windows[:n], args.providers))
        for n in (1, args.batch)
    ]
    # a request of horizon h makes h model calls: compare with ORT-alone series/s divided by h
    ort = {n: r["req_s"] * n / args.horizon for _, n, r in ort_rows}
    print_table(rows + ort_rows, rows[0][2], ort)


if __name__ == "__main__":
    main()
