"""Export time and serving speed: torch's dynamo exporter (an unrolled graph) against the graph written
from the weights with ONNX's LSTM operator (``training/onnx_graph.py``), for each LSTM shape.

    python bench/export_speed.py [--batch 256] [--window 30] [--repeats 200] [--rounds 2]

For each shape: the export time of each way, then ONNX Runtime (one thread, as the parity check and a
single-threaded worker run it) on the same batch of random windows, A B A B (``--rounds`` times each),
reporting the median milliseconds per ``session.run`` and the ratio; plus the largest difference between
the two graphs' outputs. The dynamo exporter needs ``onnxscript`` (the ``train`` extra).
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import tempfile
import time
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch

from closecast.bundle import INPUT_NAME, OUTPUT_NAME
from closecast.config import ModelConfig
from training.export import export_onnx, export_torchscript, onnx_session
from training.model import CloseLSTM

SHAPES = {
    "plain h32": (ModelConfig(hidden_size=32), 1),
    "stacked 2x32": (ModelConfig(hidden_size=32, num_layers=2), 1),
    "bidirectional h32": (ModelConfig(hidden_size=32, bidirectional=True), 1),
    "bi 2x32 + 3 features": (ModelConfig(hidden_size=32, num_layers=2, bidirectional=True), 4),
}


def dynamo_export(model: torch.nn.Module, path: Path, seq_len: int, channels: int) -> None:
    """The exporter the bundles used before: torch.onnx.export(dynamo=True), batch axis dynamic."""
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (torch.zeros(2, seq_len, channels),),
            dynamo=True,
            external_data=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"returns": {0: batch}},
        )
    assert program is not None
    program.save(str(path), external_data=False)


def _timed(fn: object, *args: object) -> float:
    started = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - started


def _run_ms(session: object, x: np.ndarray, repeats: int) -> float:
    feed = {INPUT_NAME: x}
    session.run([OUTPUT_NAME], feed)  # type: ignore[attr-defined]  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        session.run([OUTPUT_NAME], feed)  # type: ignore[attr-defined]
    return 1000 * (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--batch", type=int, default=256, help="windows per session.run (default %(default)s)"
    )
    parser.add_argument("--window", type=int, default=30, help="closes per window (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=200, help="runs per timing (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds (default %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seq_len = args.window - 1
    tmp = Path(tempfile.mkdtemp(prefix="closecast-export-bench-"))
    for name, (cfg, channels) in SHAPES.items():
        torch.manual_seed(0)
        model = CloseLSTM(cfg, channels).eval()
        torch.nn.init.normal_(model.head.weight)
        old, new, script = tmp / "dynamo.onnx", tmp / "direct.onnx", tmp / "m.pt"
        old_s = _timed(dynamo_export, model, old, seq_len, channels)
        new_s = _timed(export_onnx, model, new, seq_len, channels)
        trace_s = _timed(export_torchscript, model, script, seq_len, channels)
        x = np.random.default_rng(0).normal(size=(args.batch, seq_len, channels)).astype(np.float32)
        a, b = onnx_session(old), onnx_session(new)
        diff = float(
            np.max(
                np.abs(a.run([OUTPUT_NAME], {INPUT_NAME: x})[0] - b.run([OUTPUT_NAME], {INPUT_NAME: x})[0])
            )
        )
        old_ms, new_ms = [], []
        for _ in range(args.rounds):
            old_ms.append(_run_ms(a, x, args.repeats))
            new_ms.append(_run_ms(b, x, args.repeats))
        o, n = statistics.median(old_ms), statistics.median(new_ms)
        print(
            f"{name:<22} export: dynamo {old_s:6.2f} s, direct {1000 * new_s:6.1f} ms "
            f"(TorchScript trace {1000 * trace_s:6.1f} ms) | run of {args.batch}: dynamo {o:7.2f} ms, "
            f"direct {n:7.2f} ms ({o / n:.2f}x) | max |diff| {diff:.1e}"
        )


if __name__ == "__main__":
    main()
