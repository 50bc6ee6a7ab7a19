"""Export the trained network to ONNX (served) and TorchScript, and prove the three agree.

The parity check runs PyTorch, ONNX Runtime and TorchScript on the same real windows; a bundle whose
exports disagree by more than ``PARITY_TOLERANCE`` (scaled units) is never written.
"""

from __future__ import annotations

import io
import logging
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from closecast.bundle import INPUT_NAME, OUTPUT_NAME

PARITY_TOLERANCE = 1e-5


class ParityError(RuntimeError):
    """The exported models do not compute what the trained one computes."""


def export_onnx(model: torch.nn.Module, path: Path, seq_len: int, channels: int = 1) -> None:
    """Single-file ONNX with a dynamic batch axis (the sequence length is the model's contract)."""
    example = torch.zeros(2, seq_len, channels)
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    quiet_logger = logging.getLogger("torch.onnx")
    level = quiet_logger.level
    quiet_logger.setLevel(logging.ERROR)  # "torchvision is not installed" notes are noise here
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):  # the exporter chats on stdout
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            external_data=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"returns": {0: batch}},  # keyed by the forward() argument
        )
    quiet_logger.setLevel(level)
    if program is None:
        raise ParityError("torch.onnx.export returned no program")
    program.save(str(path), external_data=False)


def export_torchscript(model: torch.nn.Module, path: Path, seq_len: int, channels: int = 1) -> None:
    example = torch.zeros(2, seq_len, channels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated upstream; the file is for torch users
        traced = torch.jit.trace(model, example)
    traced.save(str(path))


def onnx_session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_parity(
    model: torch.nn.Module, onnx_path: Path, script_path: Path, x: np.ndarray
) -> dict[str, float]:
    """Max abs differences of the three runtimes on ``x`` ``[N, T, 1]``; ``ParityError`` above tolerance."""
    model.eval()
    xt = torch.from_numpy(x).float()
    with torch.no_grad():
        ref = model(xt).numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: see export_torchscript
            scripted = torch.jit.load(str(script_path))(xt).numpy()
    onnx_out = onnx_session(onnx_path).run([OUTPUT_NAME], {INPUT_NAME: x.astype(np.float32)})[0]
    figures = {
        "torch_vs_onnx_max_abs": float(np.max(np.abs(ref - onnx_out))),
        "torch_vs_torchscript_max_abs": float(np.max(np.abs(ref - scripted))),
        "onnx_vs_torchscript_max_abs": float(np.max(np.abs(onnx_out - scripted))),
    }
    worst = max(figures.values())
    if not worst <= PARITY_TOLERANCE:  # also catches NaN
        raise ParityError(
            f"exported models disagree by {worst:.3g} (tolerance {PARITY_TOLERANCE}): {figures}"
        )
    return {**figures, "tolerance": PARITY_TOLERANCE, "n_windows": int(x.shape[0])}
