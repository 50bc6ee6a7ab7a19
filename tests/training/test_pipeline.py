"""End to end on tiny models: bundle completeness, hashes, parity, determinism, unseen price levels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from closecast.bundle import load_forecaster
from closecast.config import Config, ModelConfig
from closecast.errors import BundleInvalid
from closecast.registry import read_current
from closecast.series import load_csv
from tests.synthetic import make_closes
from tests.training.conftest import TINY, train_tiny
from training.export import ParityError, check_parity, export_onnx, export_torchscript
from training.model import CloseLSTM
from training.pipeline import export_bundle, fit_and_score

ROOT = Path(__file__).resolve().parents[2]
BUNDLE_FILES = {"manifest.json", "model.onnx", "model.pt", "scaler.json", "report.png"}
# their keys are data (epochs, file names, levels, series names), not format; `data` differs by design
# between one series (the single-series fields) and the default's several (`data.series`)
OPAQUE = {"history", "steps_s", "files", "test_coverage", "series", "test_coverage_by_series", "data"}
# fields a bundle gained after the committed default was trained (readers default them when absent):
# per-step coverage; a synthetic fallback table's bar length (the tiny bundle has too few residuals)
ADDED_SINCE_DEFAULT: list[str] = [
    *(f"metrics.test.coverage_by_step{key}" for key in ("", ".80", ".95")),
    *(f"intervals.tables.{table}.steps_per_bar" for table in ("ewma", "window")),
]


def _fields(manifest: dict[str, Any], prefix: str = "") -> list[str]:
    """Every field path of a manifest, in order (``metrics.test.model.mae``)."""
    paths = []
    for key, value in manifest.items():
        paths.append(prefix + key)
        if isinstance(value, dict) and key not in OPAQUE:
            paths += _fields(value, f"{prefix}{key}.")
    return paths


def test_bundle_is_complete_and_self_describing(tiny_bundle: Path) -> None:
    assert {p.name for p in tiny_bundle.iterdir()} == BUNDLE_FILES
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    assert set(m["files"]) == BUNDLE_FILES - {"manifest.json"}
    assert m["config"]["data"]["window"] == 11 and m["input"]["shape"] == ["batch", 10, 1]
    assert m["data"]["split"] == {"train": 210, "validation": 30, "test": 60, "test_start": 240}
    test = m["metrics"]["test"]
    assert test["skill"] == pytest.approx(1 - test["model"]["mae"] / test["naive"]["mae"])
    assert m["metrics"]["beats_naive"] == (test["dm_pvalue"] < 0.05)
    assert test["skill_se"] > 0 and 0 <= test["dm_pvalue"] <= 1
    assert m["training"]["untrained"] == (m["training"]["best_epoch"] == 0)
    assert max(v for k, v in m["parity"].items() if k.endswith("max_abs")) <= 1e-5
    assert m["format_version"] == 2 and m["input"]["representation"] == "log_returns_window_rms"
    for table in m["intervals"]["tables"].values():
        q = np.asarray(table["residual_quantiles"])
        assert np.all(np.diff(q) >= 0) and q[0] < 0 < q[-1]
        assert table["tails"] == "symmetric" and np.array_equal(q, -q[::-1])
    assert set(m["metrics"]["test"]["coverage"]) == {"80", "95"}


def test_new_manifest_has_the_fields_of_the_committed_default(tiny_bundle: Path) -> None:
    """A new bundle reads like the committed default (format 2; the format-1 fixture is only ever read)."""
    registry = ROOT / "models" / "default"
    committed = json.loads((registry / str(read_current(registry)) / "manifest.json").read_text())
    new = json.loads((tiny_bundle / "manifest.json").read_text())
    assert [f for f in _fields(new) if f not in ADDED_SINCE_DEFAULT] == _fields(committed)


def test_fit_and_score_writes_nothing_and_the_bundle_records_its_scores(
    synthetic_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    scored = fit_and_score(load_csv(synthetic_csv), Config.from_overrides({**TINY, "epochs": 2}), quiet=True)
    assert list(tmp_path.iterdir()) == []
    test = scored.evaluation.metrics["test"]
    assert test["n"] == 60 and test["skill"] == pytest.approx(1 - test["model"]["mae"] / test["naive"]["mae"])
    assert set(scored.evaluation.intervals["test_coverage"]) == {"80", "95"}
    manifest = export_bundle(scored, tmp_path / "bundle")
    assert manifest["metrics"] == json.loads(json.dumps(scored.evaluation.metrics))
    assert manifest["intervals"] == json.loads(json.dumps(scored.evaluation.intervals))
    assert manifest["training"]["epochs_run"] == scored.fitted.epochs_run
    load_forecaster(tmp_path / "bundle", providers="cpu")


def test_bundle_loads_in_onnx_runtime_and_reproduces_its_metrics(tiny_bundle: Path) -> None:
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    forecaster = load_forecaster(tiny_bundle, providers="cpu")
    closes = make_closes(300)
    start = m["data"]["split"]["test_start"]
    x = np.lib.stride_tricks.sliding_window_view(closes, 11)[start - 11 : 300 - 11]
    mae = np.mean(np.abs(forecaster.predict_closes(x, 1)[:, 0] - closes[start:]))
    assert mae == pytest.approx(m["metrics"]["test"]["model"]["mae"], rel=1e-5)


def test_damaged_bundle_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_bundle, tmp_path / "copy")
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleInvalid, match=r"copy/model.onnx is damaged: sha256"):
        load_forecaster(copy, providers="cpu")


def test_forecasts_follow_the_pattern_at_unseen_price_levels(tiny_bundle: Path) -> None:
    """Trained around 100; asked at 10,000 and 0.5 it must forecast the same relative move."""
    forecaster = load_forecaster(tiny_bundle, providers="cpu")
    pattern = make_closes(40, level=100.0, seed=3)[-11:][None, :]
    ratios = [forecaster.predict_closes(pattern * k, 3) / (pattern[0, -1] * k) for k in (1.0, 100.0, 0.005)]
    np.testing.assert_allclose(ratios[1], ratios[0], rtol=1e-6)
    np.testing.assert_allclose(ratios[2], ratios[0], rtol=1e-6)
    assert np.all(np.abs(ratios[0] - 1) < 0.1)  # a sane daily move, not a level jump


def test_same_seed_gives_the_same_model(synthetic_csv: Path, tmp_path: Path) -> None:
    a = train_tiny(synthetic_csv, tmp_path / "a")
    b = train_tiny(synthetic_csv, tmp_path / "b")
    assert a["training"]["history"] == b["training"]["history"]
    assert a["sample"]["forecast"] == b["sample"]["forecast"]
    assert a["files"]["scaler.json"] == b["files"]["scaler.json"]


def test_parity_check_fails_when_exports_disagree(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CloseLSTM(ModelConfig(hidden_size=4))
    torch.nn.init.normal_(model.head.weight)
    export_onnx(model, tmp_path / "m.onnx", 5)
    with torch.no_grad():
        model.head.bias += 0.01  # the TorchScript and the reference now differ from the ONNX file
    export_torchscript(model, tmp_path / "m.pt", 5)
    x = np.random.default_rng(0).normal(size=(16, 5, 1)).astype(np.float32)
    with pytest.raises(ParityError, match=r"exported models disagree by 0\.01"):
        check_parity(model, tmp_path / "m.onnx", tmp_path / "m.pt", x)


def test_cli_registry_mode_writes_a_version_and_promotes(synthetic_csv: Path, tmp_path: Path) -> None:
    from closecast.registry import list_versions, read_current
    from training.__main__ import main

    code = main(
        [
            "train",
            "--csv",
            str(synthetic_csv),
            "--registry",
            str(tmp_path),
            "--model",
            "aapl",
            "--promote",
            "--quiet",
            "--window",
            "11",
            "--hidden-size",
            "4",
            "--epochs",
            "1",
        ]
    )
    assert code == 0
    versions = list_versions(tmp_path / "aapl")
    assert len(versions) == 1 and read_current(tmp_path / "aapl") == versions[0]
    assert list_versions(tmp_path) == []  # the named layout: nothing in the root itself


def test_evaluate_scores_a_bundle_like_its_manifest(
    tiny_bundle: Path, synthetic_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.__main__ import main

    assert main(["evaluate", "--bundle", str(tiny_bundle), "--csv", str(synthetic_csv), "--part", "all"]) == 0
    result = json.loads(capsys.readouterr().out)
    closes = make_closes(300)
    assert result["n"] == 300 - 11 and result["part"] == "all"
    naive = np.mean(np.abs(closes[11:] - closes[10:-1]))
    assert result["naive"]["mae"] == pytest.approx(naive, rel=1e-4)  # the CSV holds 6 decimals
    assert result["skill"] == pytest.approx(1 - result["model"]["mae"] / result["naive"]["mae"])
    assert set(result["interval_coverage"]) == {"80", "95"}


def test_evaluate_refuses_a_damaged_bundle_with_exit_2(
    tiny_bundle: Path, synthetic_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.__main__ import main

    copy = shutil.copytree(tiny_bundle, tmp_path / "copy")
    (copy / "scaler.json").write_text("{}")
    assert main(["evaluate", "--bundle", str(copy), "--csv", str(synthetic_csv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "copy/scaler.json is damaged" in err
