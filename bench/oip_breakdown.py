"""Where a batch's CPU time goes, in this process, stage by stage: ONNX Runtime alone, the core forecaster
(``forecast_rows``, what ``/forecast/batch`` calls too), the protocol's parsing and answer, and the whole ASGI
app (every middleware and route, all but uvicorn's socket and HTTP parsing) for each body.

    python bench/oip_breakdown.py                # models/ (else the fixture), batch 64, 7 rounds

CPU time (``time.process_time``), not wall time: on a shared machine other processes stretch wall time but
not, much, the CPU a stage uses. Stages are timed in turn within each round (A B C A B C ...) and the table
holds each stage's median over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import serve
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.oip import parse_infer
from app.api.routes.oip import answer_infer
from app.config import Settings
from app.main import create_app

Body = tuple[str, bytes, list[tuple[bytes, bytes]]]


def bodies(closes: np.ndarray) -> dict[str, Body]:
    """The three requests of one batch: OIP binary, OIP JSON, ``/forecast/batch``."""
    tensor = {"name": "closes", "shape": list(closes.shape), "datatype": "FP64"}
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": closes.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    binary_headers = [(b"inference-header-content-length", str(len(header)).encode())]
    plain = json.dumps({"inputs": [{**tensor, "data": closes.ravel().tolist()}]}).encode()
    batch = {"series": [{"id": f"s{i}", "closes": s} for i, s in enumerate(closes.tolist())]}
    json_type = [(b"content-type", b"application/json")]
    return {
        "OIP binary": ("/v2/models/default/infer", header + closes.tobytes(), binary_headers),
        "OIP JSON": ("/v2/models/default/infer", plain, json_type),
        "/forecast/batch": ("/forecast/batch", json.dumps(batch).encode(), json_type),
    }


async def call_app(app: FastAPI, body: Body) -> int:
    """One request through the whole ASGI app, as uvicorn would hand it over; its status."""
    path, data, headers = body
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 1),
        "headers": [(b"content-length", str(len(data)).encode()), *headers],
    }
    messages = [{"type": "http.request", "body": data, "more_body": False}]
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


def cpu_us(fn: Callable[[], Any], n: int) -> float:
    """CPU µs per call of ``fn`` over ``n`` calls."""
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) / n * 1e6


def stages(app: FastAPI, closes: np.ndarray) -> dict[str, Callable[[], Any]]:
    model = app.state.models.default.current
    loop = asyncio.new_event_loop()
    requests = bodies(closes)
    binary = requests["OIP binary"]
    size = dict(binary[2])[b"inference-header-content-length"].decode()
    parsed = parse_infer(binary[1], size)
    series = list(closes)
    locs = [("body", "series", i, "closes") for i in range(len(closes))]
    feeds = {model.input_name: np.zeros((len(closes), model.window - 1, 1), np.float32)}
    for body in requests.values():
        assert loop.run_until_complete(call_app(app, body)) == 200
    out: dict[str, Callable[[], Any]] = {
        "ONNX Runtime alone (session.run)": lambda: model.session.run([model.output_name], feeds),
        "core forecaster (forecast_rows)": lambda: model.forecast_rows(series, 1, (80, 95), locs),
        "OIP parse, binary": lambda: parse_infer(binary[1], size),
        "OIP parse, JSON": lambda: parse_infer(requests["OIP JSON"][1], None),
        "OIP answer (checks, forecast, encode)": lambda: loop.run_until_complete(
            answer_infer(parsed, app.state, "default", model)
        ),
    }
    for name, body in requests.items():
        out[f"ASGI app, {name}"] = lambda body=body: loop.run_until_complete(call_app(app, body))
    return out


def breakdown(model_dir: Path, batch: int, rounds: int, calls: int = 200) -> None:
    """Print the table of stages' median CPU µs per batch, and each one's share of ORT alone's speed."""
    app = create_app(Settings(model_dir=model_dir, providers="cpu", log_level="warning"))
    with TestClient(app):
        window = app.state.models.default.current.window
        closes = np.array(serve.sample_closes(window, batch), dtype=np.float64)
        timed = stages(app, closes)
        runs: dict[str, list[float]] = {name: [] for name in timed}
        for _ in range(rounds):
            for name, fn in timed.items():
                runs[name].append(cpu_us(fn, calls))
    ort = statistics.median(runs["ONNX Runtime alone (session.run)"])
    print(f"\nCPU per batch of {batch} in one process, median of {rounds} interleaved rounds of {calls}:")
    print("| stage | CPU µs per batch | series/s on one core | vs ORT alone |")
    print("|---|--:|--:|--:|")
    for name, values in runs.items():
        us = statistics.median(values)
        print(f"| {name} | {us:.0f} | {batch / us * 1e6:.0f} | {ort / us:.2f}× |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=None, help="registry (default: models/, else fixture)")
    p.add_argument("--batch", type=int, default=64, help="series per request")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the table holds medians")
    args = p.parse_args()
    breakdown(serve.pick_model_dir(args.model_dir), args.batch, args.rounds)


if __name__ == "__main__":
    main()
