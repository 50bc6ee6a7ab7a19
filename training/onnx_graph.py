"""The served ONNX graph written straight from a ``CloseLSTM``'s weights, with ONNX's own ``LSTM`` operator.

Tracing the module through torch's exporter (``torch.onnx.export(dynamo=True)``) took ~10 s per bundle
for a network that is always the same few operators; building the graph here takes milliseconds. It is the
graph the exporter made, less its bookkeeping (zero initial states built with Shape/Expand, Slices): one
``LSTM`` node per layer, a Transpose and Reshape between them, a Gemm head. The three-way parity check
(``training/export.py``) still proves it computes what the module computes.

PyTorch and ONNX store the same LSTM differently: PyTorch's gates are stacked ``i, f, g, o`` with input
and hidden biases apart (``bias_ih``, ``bias_hh``); ONNX stacks ``i, o, f, c`` and concatenates the biases
as ``[Wb, Rb]``. A bidirectional layer's forward and backward weights are the two slices of the ONNX
``num_directions`` axis.
"""

from __future__ import annotations

import numpy as np

import closecast
from closecast.bundle import INPUT_NAME, OUTPUT_NAME
from training import onnx_wire as wire
from training.model import CloseLSTM

OPSET = 20  # what torch's exporter wrote for these bundles (LSTM, Gemm, Reshape unchanged since opset 14)
IR_VERSION = 10  # the ONNX file format of opset 20, read by onnxruntime >= 1.16
TORCH_TO_ONNX_GATES = (0, 3, 1, 2)  # ONNX gate k is PyTorch gate TORCH_TO_ONNX_GATES[k] (i, o, f, c)


def _gates(weight: np.ndarray) -> np.ndarray:
    """``[4H, ...]`` in PyTorch's gate order -> the same rows in ONNX's."""
    blocks = np.split(weight, 4, axis=0)
    return np.concatenate([blocks[k] for k in TORCH_TO_ONNX_GATES], axis=0)


def _layer_weights(model: CloseLSTM, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``W [D, 4H, in]``, ``R [D, 4H, H]``, ``B [D, 8H]`` of one layer (D = 2 when bidirectional)."""
    params = {name: p.detach().cpu().numpy().astype(np.float32) for name, p in model.lstm.named_parameters()}
    suffixes = ["", "_reverse"] if model.bidirectional else [""]
    w, r, b = [], [], []
    for s in suffixes:
        w.append(_gates(params[f"weight_ih_l{layer}{s}"]))
        r.append(_gates(params[f"weight_hh_l{layer}{s}"]))
        b.append(
            np.concatenate([_gates(params[f"bias_ih_l{layer}{s}"]), _gates(params[f"bias_hh_l{layer}{s}"])])
        )
    return np.stack(w), np.stack(r), np.stack(b)


def build_graph(model: CloseLSTM, seq_len: int, channels: int) -> bytes:
    """The ONNX file's bytes: ``returns [batch, seq_len, channels]`` -> ``next_return [batch, 1]``, batch
    dynamic (``"batch"``)."""
    lstm = model.lstm
    hidden, layers = lstm.hidden_size, lstm.num_layers
    direction = "bidirectional" if model.bidirectional else "forward"
    if (2 if model.bidirectional else 1) * hidden != model.head.in_features:
        raise ValueError(f"the head reads {model.head.in_features} features; the LSTM gives another count")
    inits = [
        wire.tensor("seq_batch_features", np.array([0, 0, -1], dtype=np.int64)),
        wire.tensor("batch_features", np.array([0, -1], dtype=np.int64)),
        wire.tensor("head_weight", model.head.weight.detach().cpu().numpy().astype(np.float32)),
        wire.tensor("head_bias", model.head.bias.detach().cpu().numpy().astype(np.float32)),
    ]
    nodes = [wire.node("Transpose", [INPUT_NAME], ["x_0"], perm=[1, 0, 2])]  # [B, T, C] -> [T, B, C]
    for layer in range(layers):
        w, r, b = _layer_weights(model, layer)
        inits += [wire.tensor(f"{n}_{layer}", a) for a, n in ((w, "W"), (r, "R"), (b, "B"))]
        last = layer == layers - 1
        outputs = ["", f"h_{layer}"] if last else [f"y_{layer}"]  # the last layer: its final states only
        inputs = [f"x_{layer}", f"W_{layer}", f"R_{layer}", f"B_{layer}"]
        nodes.append(wire.node("LSTM", inputs, outputs, direction=direction, hidden_size=hidden))
        if not last:  # Y [T, D, B, H] -> [T, B, D, H] -> [T, B, D*H]: the next layer's input
            nodes.append(wire.node("Transpose", [f"y_{layer}"], [f"yt_{layer}"], perm=[0, 2, 1, 3]))
            nodes.append(wire.node("Reshape", [f"yt_{layer}", "seq_batch_features"], [f"x_{layer + 1}"]))
    # Y_h [D, B, H]: the forward direction after the last step, the backward one after the first (the
    # states CloseLSTM's head reads) -> [B, D, H] -> [B, D*H] -> head -> [B, 1]
    nodes.append(wire.node("Transpose", [f"h_{layers - 1}"], ["final_t"], perm=[1, 0, 2]))
    nodes.append(wire.node("Reshape", ["final_t", "batch_features"], ["final"]))
    nodes.append(wire.node("Gemm", ["final", "head_weight", "head_bias"], [OUTPUT_NAME], transB=1))
    graph = wire.graph(
        nodes,
        "closecast_lstm",
        [wire.value_info(INPUT_NAME, ["batch", seq_len, channels])],
        [wire.value_info(OUTPUT_NAME, ["batch", 1])],
        inits,
    )
    return wire.model(
        graph,
        ir_version=IR_VERSION,
        opset=OPSET,
        producer="closecast",
        producer_version=closecast.__version__,
    )
