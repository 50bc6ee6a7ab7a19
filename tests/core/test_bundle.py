"""Loading a bundle: every check refuses a damaged bundle with a message naming what failed."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from closecast import registry
from closecast.bundle import load_forecaster
from closecast.errors import BundleInvalid, ProviderUnavailable
from tests.helpers import (
    DEFAULT,
    FORMAT1_BUNDLE,
    FORMAT1_MODELS,
    FORMAT2_BUNDLE,
    copy_registry,
    make_settings,
)
from tests.synthetic import calm_walk


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A private copy of the format-1 registry: these checks edit format 1's manifest fields."""
    return copy_registry(tmp_path / "models", FORMAT1_MODELS)


@pytest.fixture
def bundle(model_dir: Path) -> Path:
    return model_dir / DEFAULT / FORMAT1_BUNDLE.name


def _edit_manifest(bundle: Path, change: Any) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _rehash(bundle: Path, name: str) -> None:
    digest = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    _edit_manifest(bundle, lambda m: m["files"].__setitem__(name, digest))


def test_load_verifies_the_fixture_bundle() -> None:
    model = load_forecaster(FORMAT1_BUNDLE, "cpu")
    assert model.version == FORMAT1_BUNDLE.name
    assert model.provider == "CPUExecutionProvider"
    assert model.window == json.loads((FORMAT1_BUNDLE / "manifest.json").read_text())["input"]["window"]


def test_load_refuses_a_flipped_byte_in_the_model(bundle: Path) -> None:
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(
        BundleInvalid,
        match=rf"^{bundle.name}/model.onnx is damaged: sha256 [0-9a-f]{{64}} but "
        r"the manifest expects [0-9a-f]{64}$",
    ):
        load_forecaster(bundle, "cpu")


def test_load_refuses_a_wrong_hash_in_the_manifest(bundle: Path) -> None:
    _edit_manifest(bundle, lambda m: m["files"].__setitem__("scaler.json", "0" * 64))
    with pytest.raises(
        BundleInvalid, match=f"scaler.json is damaged: sha256 .* but the manifest expects {'0' * 64}"
    ):
        load_forecaster(bundle, "cpu")


def test_load_refuses_a_missing_file(bundle: Path) -> None:
    (bundle / "report.png").unlink()
    with pytest.raises(
        BundleInvalid, match=re.escape(f"{bundle.name}/report.png is missing (the manifest lists it)")
    ):
        load_forecaster(bundle, "cpu")


def test_load_refuses_an_unlisted_model_file(bundle: Path) -> None:
    _edit_manifest(bundle, lambda m: m["files"].pop("model.onnx"))
    with pytest.raises(BundleInvalid, match=re.escape("manifest files lists no sha256 for model.onnx")):
        load_forecaster(bundle, "cpu")


def test_load_refuses_a_file_outside_the_bundle(bundle: Path) -> None:
    _edit_manifest(bundle, lambda m: m["files"].__setitem__("../current", "0" * 64))
    with pytest.raises(
        BundleInvalid, match=re.escape("manifest files names '../current', which is not a file")
    ):
        load_forecaster(bundle, "cpu")


def test_load_refuses_an_unknown_format_version(bundle: Path) -> None:
    _edit_manifest(bundle, lambda m: m.__setitem__("format_version", 3))
    with pytest.raises(
        BundleInvalid, match="format_version is 3 but this service reads format_version 1 or 2;"
    ):
        load_forecaster(bundle, "cpu")


def test_load_refuses_a_missing_manifest(bundle: Path) -> None:
    (bundle / "manifest.json").unlink()
    with pytest.raises(
        BundleInvalid, match=f"manifest.json does not exist; {bundle.name} is not a model bundle"
    ):
        load_forecaster(bundle, "cpu")


def test_load_refuses_a_manifest_that_is_not_json(bundle: Path) -> None:
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleInvalid, match=re.escape("manifest.json is not readable JSON")):
        load_forecaster(bundle, "cpu")


def test_load_refuses_a_broken_scaler(bundle: Path) -> None:
    scaler = json.loads((bundle / "scaler.json").read_text())
    (bundle / "scaler.json").write_text(json.dumps({**scaler, "std": 0.0}))
    _rehash(bundle, "scaler.json")
    with pytest.raises(BundleInvalid, match=r"scaler\.json is not a usable scaler: scaler std is 0\.0;"):
        load_forecaster(bundle, "cpu")


def test_load_refuses_a_sample_it_does_not_reproduce(bundle: Path) -> None:
    _edit_manifest(
        bundle, lambda m: m["sample"]["forecast"].__setitem__(1, m["sample"]["forecast"][1] * 1.01)
    )
    with pytest.raises(
        BundleInvalid,
        match=r"sample 1 forecasts .* but the manifest expects .* \(relative error "
        r"0\.0099\d* > tolerance .*\); the model does not reproduce its training-time output",
    ):
        load_forecaster(bundle, "cpu")


def test_load_refuses_a_window_the_model_does_not_take(bundle: Path) -> None:
    _edit_manifest(bundle, lambda m: m["input"].__setitem__("window", 20))
    with pytest.raises(
        BundleInvalid, match=r"model.onnx input shape is \['batch', \d+, 1\]; expected \['batch', 19, 1\]"
    ):
        load_forecaster(bundle, "cpu")


def test_load_refuses_unordered_interval_quantiles(bundle: Path) -> None:
    _edit_manifest(bundle, lambda m: m["intervals"]["residual_quantiles"].reverse())
    with pytest.raises(BundleInvalid, match=re.escape("non-decreasing residual_quantiles")):
        load_forecaster(bundle, "cpu")


def test_load_refuses_unknown_interval_units(bundle: Path) -> None:
    _edit_manifest(bundle, lambda m: m["intervals"].__setitem__("units", "percent"))
    with pytest.raises(BundleInvalid, match=re.escape("intervals.units is 'percent'; this service reads")):
        load_forecaster(bundle, "cpu")


@pytest.mark.parametrize(
    ("numbers", "bad"), [([3, 2], "steps[0].step is 3; expected 2"), ([2, 4], "steps[1].step is 4")]
)
def test_load_refuses_per_step_tables_out_of_order_or_with_a_gap(
    tmp_path: Path, numbers: list[int], bad: str
) -> None:
    """Per-step tables are served by position, so a swapped or missing step would serve the wrong table."""
    bundle = Path(shutil.copytree(FORMAT2_BUNDLE, tmp_path / FORMAT2_BUNDLE.name))

    def add_steps(m: dict[str, Any]) -> None:
        table = m["intervals"]["tables"]["window"]
        table["steps"] = [{"step": h, "residual_quantiles": table["residual_quantiles"]} for h in numbers]

    _edit_manifest(bundle, add_steps)
    with pytest.raises(BundleInvalid, match=re.escape(f"intervals.tables.window.{bad}")):
        load_forecaster(bundle, "cpu")


def test_load_accepts_quantiles_in_log_return_units(bundle: Path) -> None:
    _edit_manifest(bundle, lambda m: m["intervals"].pop("units"))  # bundles written before window_volatility
    model = load_forecaster(bundle, "cpu")
    (item,) = model.forecast([calm_walk()], levels=[80]).items
    q_lo, _ = model.residual_quantiles(80)
    assert item.intervals[80][0][0] == pytest.approx(item.forecast[0] * math.exp(q_lo), rel=1e-12)


def test_load_refuses_cuda_when_no_gpu_is_usable() -> None:
    if "CUDAExecutionProvider" in load_forecaster(FORMAT1_BUNDLE, "auto").session.get_providers():
        pytest.skip("a GPU is usable here")
    with pytest.raises(
        ProviderUnavailable,
        match=r"CLOSECAST_PROVIDERS is 'cuda' but (CUDA libraries|no CUDA|ONNX Runtime obtained)",
    ):
        load_forecaster(FORMAT1_BUNDLE, "cuda")


def test_load_auto_uses_the_first_provider_that_works() -> None:
    provider = load_forecaster(FORMAT1_BUNDLE, "auto").provider
    assert provider in ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert provider in ort.get_available_providers()


def test_start_refuses_a_damaged_bundle(bundle: Path, model_dir: Path) -> None:
    (bundle / "model.onnx").write_bytes(b"not a model")
    with (
        pytest.raises(BundleInvalid, match=re.escape("model.onnx is damaged")),
        TestClient(create_app(make_settings(model_dir))),
    ):
        pass


def test_start_refuses_an_empty_model_dir(tmp_path: Path) -> None:
    with (
        pytest.raises(BundleInvalid, match="in the registry: the `current` pointer is missing"),
        TestClient(create_app(make_settings(tmp_path))),
    ):
        pass


def test_start_refuses_a_pointer_to_a_missing_version_without_history(model_dir: Path) -> None:
    (model_dir / DEFAULT / "current").write_text("20990101T000000Z-deadbeef\n")
    (model_dir / DEFAULT / registry.PROMOTIONS).unlink()  # nothing promoted to fall back to
    with (
        pytest.raises(
            BundleInvalid, match="pointer names '20990101T000000Z-deadbeef', which is not a bundle here"
        ),
        TestClient(create_app(make_settings(model_dir))),
    ):
        pass


def test_start_seeds_an_empty_model_dir_from_the_default(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    settings = make_settings(volume, default_model_dir=FORMAT1_MODELS)
    with TestClient(create_app(settings)) as c:
        assert (
            c.post("/forecast", json={"closes": calm_walk()}).json()["model_version"] == FORMAT1_BUNDLE.name
        )
    assert registry.list_versions(volume / DEFAULT) == [FORMAT1_BUNDLE.name]


def test_start_keeps_a_model_dir_that_already_has_versions(model_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(FORMAT1_BUNDLE, model_dir / DEFAULT / "20991231T000000Z-00000001")
    registry.set_current(model_dir / DEFAULT, "20991231T000000Z-00000001")
    with TestClient(create_app(make_settings(model_dir, default_model_dir=FORMAT1_MODELS))) as c:
        assert c.get("/readyz").json()["model_version"] == "20991231T000000Z-00000001"
