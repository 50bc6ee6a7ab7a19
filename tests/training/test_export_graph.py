"""The ONNX graph written from the weights (``training/onnx_graph.py``): for every LSTM shape closecast
trains, the three-way parity check holds at its usual tolerance, the batch axis is dynamic, and the graph
keeps the served contract (input and output names, shapes, one fused LSTM node per layer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from closecast.bundle import INPUT_NAME, OUTPUT_NAME
from closecast.config import ModelConfig
from training.export import PARITY_TOLERANCE, check_parity, export_onnx, export_torchscript, onnx_session
from training.model import CloseLSTM
from training.onnx_graph import OPSET

SHAPES = {  # name: (model config, input channels)
    "plain": (ModelConfig(hidden_size=8), 1),
    "stacked": (ModelConfig(hidden_size=6, num_layers=3, dropout=0.2), 1),
    "bidirectional": (ModelConfig(hidden_size=5, bidirectional=True), 1),
    "features": (ModelConfig(hidden_size=7), 4),
    "bidirectional_stacked_features": (
        ModelConfig(hidden_size=6, num_layers=2, dropout=0.1, bidirectional=True),
        3,
    ),
}


def _model(cfg: ModelConfig, channels: int) -> CloseLSTM:
    """Random weights everywhere, the head included (a zero head makes every runtime agree trivially)."""
    torch.manual_seed(0)
    model = CloseLSTM(cfg, channels=channels)
    torch.nn.init.normal_(model.head.weight)
    torch.nn.init.normal_(model.head.bias)
    with torch.no_grad():  # biases apart from zero, so a swapped input/hidden bias would show
        for name, p in model.lstm.named_parameters():
            if name.startswith("bias"):
                p.normal_()
    return model.eval()


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_lstm_shape_exports_with_parity(shape: str, tmp_path: Path) -> None:
    cfg, channels = SHAPES[shape]
    model = _model(cfg, channels)
    seq_len = 12
    export_onnx(model, tmp_path / "m.onnx", seq_len, channels)
    export_torchscript(model, tmp_path / "m.pt", seq_len, channels)
    x = np.random.default_rng(1).normal(size=(37, seq_len, channels)).astype(np.float32)
    parity = check_parity(model, tmp_path / "m.onnx", tmp_path / "m.pt", [x[:1], x[1:8], x[8:]])
    assert parity["n_windows"] == 37
    assert max(parity[k] for k in parity if k.endswith("max_abs")) <= PARITY_TOLERANCE
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    assert np.std(reference) > 1e-3  # the outputs vary: the comparison above compared something


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_graph_keeps_the_served_contract(shape: str, tmp_path: Path) -> None:
    cfg, channels = SHAPES[shape]
    export_onnx(_model(cfg, channels), tmp_path / "m.onnx", 10, channels)
    written = (tmp_path / "m.onnx").read_bytes()
    graph = onnx.load_from_string(written)
    onnx.checker.check_model(graph, full_check=True)
    assert graph.SerializeToString() == written  # protobuf's own encoding, byte for byte
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    (inp,), (out,) = graph.graph.input, graph.graph.output
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert (inp.name, dims) == (INPUT_NAME, ["batch", 10, channels])
    assert (out.name, [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]) == (
        OUTPUT_NAME,
        ["batch", 1],
    )
    lstms = [n for n in graph.graph.node if n.op_type == "LSTM"]
    assert len(lstms) == cfg.num_layers
    direction = "bidirectional" if cfg.bidirectional else "forward"
    assert all(onnx.helper.get_node_attr_value(n, "direction").decode() == direction for n in lstms)
    session = onnx_session(tmp_path / "m.onnx")
    x = np.zeros((3, 10, channels), np.float32)
    assert session.run([OUTPUT_NAME], {INPUT_NAME: x})[0].shape == (3, 1)


def test_bidirectional_graph_reads_the_first_step_through_the_backward_state(tmp_path: Path) -> None:
    """Changing only the first return moves the ONNX output as it moves PyTorch's (the backward
    direction's final state is the one after reading step 0, not its state at the last step)."""
    model = _model(ModelConfig(hidden_size=5, bidirectional=True), 1)
    export_onnx(model, tmp_path / "m.onnx", 12, 1)
    session = onnx_session(tmp_path / "m.onnx")
    x = np.random.default_rng(2).normal(size=(4, 12, 1)).astype(np.float32)
    x2 = x.copy()
    x2[:, 0, 0] += 1.0
    onnx_delta = (
        session.run([OUTPUT_NAME], {INPUT_NAME: x2})[0] - session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    )
    with torch.no_grad():
        torch_delta = (model(torch.from_numpy(x2)) - model(torch.from_numpy(x))).numpy()
    assert np.all(np.abs(torch_delta) > 1e-4)
    np.testing.assert_allclose(onnx_delta, torch_delta, atol=PARITY_TOLERANCE)
