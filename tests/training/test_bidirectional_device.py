"""Bidirectional encoders through export and serving; ``--device``: recorded, deterministic on the CPU."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch

from closecast.bundle import load_forecaster
from closecast.config import ModelConfig
from tests.synthetic import make_closes
from tests.training.conftest import TINY
from training.__main__ import main
from training.export import check_parity, export_onnx, export_torchscript
from training.model import CloseLSTM
from training.tune import suggest


def test_bidirectional_stack_exports_with_parity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CloseLSTM(ModelConfig(hidden_size=6, num_layers=2, dropout=0.2, bidirectional=True))
    torch.nn.init.normal_(model.head.weight)  # a zero head would make every runtime agree trivially
    model.eval()
    export_onnx(model, tmp_path / "m.onnx", 12)
    export_torchscript(model, tmp_path / "m.pt", 12)
    x = np.random.default_rng(0).normal(size=(50, 12, 1)).astype(np.float32)
    parity = check_parity(model, tmp_path / "m.onnx", tmp_path / "m.pt", [x[:20], x[20:]])
    assert parity["n_windows"] == 50 and parity["torch_vs_onnx_max_abs"] <= 1e-5
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
        x2 = x.copy()
        x2[:, 0, 0] += 1.0  # the first return reaches the head through the backward direction's final state
        assert np.all(np.abs(model(torch.from_numpy(x2)).numpy() - y) > 0)


def _train(csv: Path, out: Path, *flags: str) -> dict[str, Any]:
    args = ["train", "--csv", str(csv), "--out", str(out), "--quiet"]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    assert main([*args, *flags]) == 0
    return json.loads((out / "manifest.json").read_text())


def test_bidirectional_bundle_serves(synthetic_csv: Path, tmp_path: Path) -> None:
    m = _train(synthetic_csv, tmp_path / "bi", "--bidirectional", "--epochs=2")
    assert m["config"]["model"]["bidirectional"] is True
    assert max(v for k, v in m["parity"].items() if k.endswith("max_abs")) <= 1e-5
    forecaster = load_forecaster(tmp_path / "bi", providers="cpu")
    closes = make_closes(40, seed=5)[-11:][None, :]
    assert np.all(np.isfinite(forecaster.predict_closes(closes, 2)))


def test_cpu_training_is_deterministic_and_records_the_device(synthetic_csv: Path, tmp_path: Path) -> None:
    a = _train(synthetic_csv, tmp_path / "a", "--device", "cpu")
    b = _train(synthetic_csv, tmp_path / "b", "--device", "cpu")
    assert a["config"]["train"]["device"] == "cpu" and a["training"]["device"] == "cpu"
    assert a["training"]["history"] == b["training"]["history"] and a["metrics"] == b["metrics"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        wa, wb = (torch.jit.load(str(tmp_path / d / "model.pt")).state_dict() for d in "ab")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_auto_device_is_the_cpu_without_a_gpu(synthetic_csv: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: auto picks it")
    m = _train(synthetic_csv, tmp_path / "auto", "--epochs=1")
    assert m["config"]["train"]["device"] == "auto" and m["training"]["device"] == "cpu"


def test_cuda_without_a_gpu_is_refused(
    synthetic_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    args = ["train", "--csv", str(synthetic_csv), "--out", str(tmp_path / "c"), "--quiet", "--device", "cuda"]
    assert main(args) == 2
    assert (
        "device is 'cuda' but torch sees no CUDA GPU here; use --device cpu or auto"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--bidirectional", True), ("--bidirectional=false", False), ("--bidirectional=True", True)],
)
def test_bidirectional_flag_forms(flag: str, value: bool) -> None:
    from training.__main__ import _config, build_parser

    args = build_parser().parse_args(["train", "--csv", "x.csv", "--out", "o", flag])
    assert _config(args).model.bidirectional is value


def test_tuning_searches_bidirectional_unless_fixed() -> None:
    trial = optuna.trial.FixedTrial(
        {
            "window": 21,
            "hidden_size": 16,
            "num_layers": 1,
            "lr": 1e-3,
            "batch_size": 64,
            "loss": "huber",
            "bidirectional": True,
        }
    )
    assert suggest(trial, {}, 60)["bidirectional"] is True
    assert suggest(trial, {"bidirectional": False}, 60)["bidirectional"] is False
