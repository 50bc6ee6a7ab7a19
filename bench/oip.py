"""Batches of series over the Open Inference Protocol: binary tensors vs JSON tensors vs ``/forecast/batch``
vs ONNX Runtime alone, in series per second, in one run.

    apt-get install -y wrk
    python bench/oip.py                          # models/ (else the test fixture), batches of 64, 3 rounds
    python bench/oip.py --batch 256 --connections 16 --duration 5 --rounds 5

Starts ``python -m app`` on a free loopback port and drives, with ``wrk`` and one body file each:

- ``OIP binary``: ``POST /v2/models/default/infer``, closes ``[N, T]`` FP64 as binary tensor data, all outputs
  asked for as binary (``binary_data_output``);
- ``OIP JSON``: the same request with JSON tensors in and out;
- ``/forecast/batch``: the same N series as closecast's own JSON body.

Before each round ONNX Runtime alone runs 1 s in this process (``session.run`` on the same batch shape, no
HTTP, no parsing); then each target once, in turn (A B A B ...), so each round's ratios see the same load.
The table holds the median run of each target and the median of its per-round ratios to ORT alone. wrk and
the server share the machine's cores: compare runs on one machine only, and read the load average printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import serve
import wrk

from closecast.bundle import load_forecaster

BINARY = "OIP binary"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model-dir", type=Path, default=None, help="registry (default: models/, else the fixture)"
    )
    p.add_argument("--batch", type=int, default=64, help="series per request")
    p.add_argument("--closes", type=int, default=0, help="closes per series (default: the model's window)")
    p.add_argument("--duration", type=int, default=3, help="seconds per wrk run (plus a 1 s warm-up)")
    p.add_argument("--connections", type=int, default=8, help="wrk connections")
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--rounds", type=int, default=3, help="A B A B rounds; the table holds medians")
    p.add_argument("--providers", default="cpu", choices=["auto", "cpu", "cuda"], help="CLOSECAST_PROVIDERS")
    return p.parse_args()


def infer_bodies(closes: np.ndarray, tmp: Path) -> tuple[Path, dict[str, str], Path]:
    """The binary infer body and its headers, and the JSON one, for closes ``[N, T]``."""
    tensor = {"name": "closes", "shape": list(closes.shape), "datatype": "FP64"}
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": closes.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    binary = tmp / "infer.bin"
    binary.write_bytes(header + closes.astype("<f8").tobytes())
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    plain = tmp / "infer.json"
    plain.write_text(json.dumps({"inputs": [{**tensor, "data": closes.ravel().tolist()}]}))
    return binary, headers, plain


def run_wrk(
    url: str, body: Path, headers: dict[str, str] | None, args: argparse.Namespace, pid: int
) -> dict[str, Any]:
    """One wrk run after a 1 s warm-up: req/s, p50/p99 ms, errors, the server's CPU µs per request."""
    script = wrk.write_script(body.with_suffix(body.suffix + ".lua"), body, headers)
    base = ["wrk", f"-t{args.threads}", f"-c{args.connections}", "--latency", "-s", str(script)]
    subprocess.run([*base, "-d1s", url], check=True, capture_output=True)
    cpu = serve.cpu_seconds(pid)
    done = subprocess.run([*base, f"-d{args.duration}s", url], check=True, capture_output=True, text=True)
    cpu = serve.cpu_seconds(pid) - cpu
    r = wrk.summary(done.stdout)
    return {**r, "cpu_us": cpu / max(r["requests"], 1) * 1e6}


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")
    model_dir = serve.pick_model_dir(args.model_dir)
    bundle = serve.default_bundle(model_dir)
    if bundle is None:
        raise SystemExit(f"no current bundle of the default model in {model_dir}")
    window = load_forecaster(bundle, "cpu").window
    length = args.closes or window
    series = serve.sample_closes(length, args.batch)
    closes = np.array(series, dtype=np.float64)
    load_before = os.getloadavg()
    server, port, _ = serve.closecast(model_dir, args.providers)
    base = f"http://127.0.0.1:{port}"
    runs: dict[str, list[dict[str, Any]]] = {}
    ort: list[float] = []
    ort_cpu: list[float] = []  # CPU µs per session.run
    try:
        with tempfile.TemporaryDirectory() as tmp:
            binary, headers, plain = infer_bodies(closes, Path(tmp))
            batch = Path(tmp) / "batch.json"
            batch.write_text(
                json.dumps({"series": [{"id": f"s{i}", "closes": s} for i, s in enumerate(series)]})
            )
            infer = f"{base}/v2/models/default/infer"
            targets = [(BINARY, infer, binary, headers), ("OIP JSON", infer, plain, None)]
            targets.append(("/forecast/batch", f"{base}/forecast/batch", batch, None))
            print(
                f"model {bundle.name} (window {window}) from {model_dir}; {args.batch} series of {length} "
                f"closes per request; wrk -t{args.threads} -c{args.connections} -d{args.duration}s x "
                f"{args.rounds} rounds A B A B; {os.cpu_count()} CPU cores shared by wrk and the server\n"
            )
            for _ in range(args.rounds):
                alone = serve.time_ort(model_dir, series, args.providers, 1.0)
                ort.append(alone["req_s"] * args.batch)
                ort_cpu.append(alone["cpu_us"])
                for name, url, body, sent in targets:
                    runs.setdefault(name, []).append(run_wrk(url, body, sent, args, server.pid))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    print_table(runs, ort, ort_cpu, args.batch)
    load = " ".join(f"{x:.2f}" for x in load_before), " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average (1, 5, 15 min) at the start: {load[0]}; at the end: {load[1]}")


def print_table(
    runs: dict[str, list[dict[str, Any]]], ort: list[float], ort_cpu: list[float], batch: int
) -> None:
    """The median run of each route; "vs ORT alone" compares series/s (wall clock, per round), "CPU vs ORT"
    the CPU ONNX Runtime alone spends per batch with the server's per request (steadier on a shared machine:
    what a server with a core of its own would reach)."""
    rates = ", ".join(f"{r:.0f}" for r in ort)
    cpus = ", ".join(f"{c:.0f}" for c in ort_cpu)
    print(f"ONNX Runtime alone, batch {batch}, before each round: {rates} series/s; {cpus} CPU µs per call")
    print(
        "| route | series/s | req/s | p50 ms | p99 ms | server CPU µs/req | vs ORT alone | CPU vs ORT "
        "| vs OIP binary | errors |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for name, mine in runs.items():
        median = sorted(mine, key=lambda r: float(r["req_s"]))[len(mine) // 2]
        vs_ort = statistics.median(m["req_s"] * batch / o for m, o in zip(mine, ort, strict=True))
        vs_cpu = statistics.median(o / m["cpu_us"] for m, o in zip(mine, ort_cpu, strict=True))
        vs_bin = statistics.median(m["req_s"] / b["req_s"] for m, b in zip(mine, runs[BINARY], strict=True))
        print(
            f"| {name} | {median['req_s'] * batch:.0f} | {median['req_s']:.0f} | {median['p50_ms']:.2f} | "
            f"{median['p99_ms']:.2f} | {median['cpu_us']:.0f} | {vs_ort:.2f}× | {vs_cpu:.2f}× | "
            f"{vs_bin:.2f}× | {int(median['errors'])} |"
        )


if __name__ == "__main__":
    main()
