"""Export the trained network to ONNX (served) and TorchScript, and prove the three agree.

The parity check runs PyTorch, ONNX Runtime and TorchScript on the same real windows; a bundle whose
exports disagree by more than ``PARITY_TOLERANCE`` (scaled units) is never written.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from closecast.bundle import INPUT_NAME, OUTPUT_NAME
from training.model import CloseLSTM
from training.onnx_graph import build_graph

PARITY_TOLERANCE = 1e-5
PAIRS = ("torch_vs_onnx_max_abs", "torch_vs_torchscript_max_abs", "onnx_vs_torchscript_max_abs")


class ParityError(RuntimeError):
    """The exported models do not compute what the trained one computes."""


def export_onnx(model: CloseLSTM, path: Path, seq_len: int, channels: int = 1) -> None:
    """Single-file ONNX with a dynamic batch axis (the sequence length and channels are the contract),
    written from the weights with ONNX's ``LSTM`` operator (``training/onnx_graph.py``): milliseconds, where
    tracing through torch's exporter took seconds."""
    path.write_bytes(build_graph(model, seq_len, channels))


def export_torchscript(model: torch.nn.Module, path: Path, seq_len: int, channels: int = 1) -> None:
    example = torch.zeros(2, seq_len, channels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated upstream; the file is for torch users
        # no check_trace: the parity check compares the trace with PyTorch on every test window anyway,
        # and the check imports torch.distributed and sympy (seconds)
        traced = torch.jit.trace(model, example, check_trace=False)
    traced.save(str(path))


def onnx_session(path: Path) -> ort.InferenceSession:
    """One thread, and no memory arena: the parity check feeds batches of varying size, and the arena keeps
    a block for each size it has seen (hundreds of MB on a long test part)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_cpu_mem_arena = False
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_parity(
    model: torch.nn.Module,
    onnx_path: Path,
    script_path: Path,
    batches: np.ndarray | Iterable[np.ndarray],
) -> dict[str, float]:
    """Max abs differences of the three runtimes on windows ``[B, T, C]`` (one array, or batches of them so
    a long test part is never one tensor); ``ParityError`` above tolerance."""
    model.eval()
    session = onnx_session(onnx_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: see export_torchscript
        scripted = torch.jit.load(str(script_path))
    figures = dict.fromkeys(PAIRS, 0.0)
    n = 0
    for x in [batches] if isinstance(batches, np.ndarray) else batches:
        xt = torch.from_numpy(x).float()
        with torch.no_grad():
            ref, script_out = model(xt).numpy(), scripted(xt).numpy()
        onnx_out = session.run([OUTPUT_NAME], {INPUT_NAME: x.astype(np.float32)})[0]
        for key, (a, b) in zip(
            PAIRS, ((ref, onnx_out), (ref, script_out), (onnx_out, script_out)), strict=True
        ):
            figures[key] = float(np.maximum(figures[key], np.max(np.abs(a - b))))  # NaN stays NaN
        n += x.shape[0]
    worst = max(figures.values())
    if not worst <= PARITY_TOLERANCE:  # also catches NaN
        raise ParityError(
            f"exported models disagree by {worst:.3g} (tolerance {PARITY_TOLERANCE}): {figures}"
        )
    return {**figures, "tolerance": PARITY_TOLERANCE, "n_windows": n}
