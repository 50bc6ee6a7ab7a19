"""Memory and cold-start cost of named models: the resident memory each extra loaded model adds, and the
latency of the first request to a model that is not loaded (load + verify + forecast) next to a warm one.

    python bench/models_memory.py                    # 20 copies of models/default's current version
    python bench/models_memory.py --models 50 --bundle tests/fixtures/models/default/20261123T000000Z-fixture1

Builds a temporary registry with the default model and ``--models`` more names (copies of ``--bundle``),
starts the real app in this process (``TestClient`` runs the lifespan; CPU, one ORT thread) with an LRU large
enough for all of them, then asks each model once (cold) and again (warm), reading this process's resident
set (``/proc/self/statm``) after each cold load. Goal: <= 5 MB per extra model, cold <= 50 ms.
A second pass with ``CLOSECAST_MAX_LOADED_MODELS=2`` measures evict-and-reload (every request cold).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from closecast import registry

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * PAGE / 1e6


def build_registry(root: Path, bundle: Path, n: int) -> list[str]:
    names = [f"asset{k:03d}" for k in range(n)]
    for name in ["default", *names]:
        shutil.copytree(bundle, root / name / bundle.name)
        registry.set_current(root / name, bundle.name, "bench")
    return names


def closes(window: int) -> list[float]:
    return [100.0 * (1.0 + 0.001 * ((k * 7919) % 13 - 6)) for k in range(window + 5)]


def timed_post(client: TestClient, body: dict[str, object]) -> float:
    started = time.perf_counter()
    response = client.post("/forecast", json=body)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed * 1000


def run(root: Path, names: list[str], max_loaded: int, window: int) -> dict[str, list[float]]:
    settings = Settings(model_dir=root, providers="cpu", max_loaded_models=max_loaded, reload_interval_s=60)
    out: dict[str, list[float]] = {"cold": [], "warm": [], "rss_step": []}
    with TestClient(create_app(settings)) as client:
        for _ in range(20):  # warm up the HTTP path and the default model
            timed_post(client, {"closes": closes(window)})
        gc.collect()
        before = rss_mb()
        for name in names:
            body = {"closes": closes(window), "model": name}
            out["cold"].append(timed_post(client, body))
            out["warm"].append(statistics.median(timed_post(client, body) for _ in range(5)))
            gc.collect()
            now = rss_mb()
            out["rss_step"].append(now - before)
            before = now
    return out


def summary(label: str, values: list[float], unit: str) -> str:
    q = statistics.quantiles(values, n=20)
    return f"{label:<34} median {statistics.median(values):7.2f} {unit}  p95 {q[-1]:7.2f} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_bundle = ROOT / "models" / "default" / str(registry.read_current(ROOT / "models" / "default"))
    parser.add_argument("--bundle", type=Path, default=default_bundle)
    parser.add_argument("--models", type=int, default=20, help="extra model names")
    args = parser.parse_args()
    window = int(__import__("json").loads((args.bundle / "manifest.json").read_text())["input"]["window"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        names = build_registry(root, args.bundle, args.models)
        all_loaded = run(root, names, args.models + 1, window)
        lru_of_two = run(root, names, 2, window)
    total = sum(all_loaded["rss_step"])
    print(f"bundle {args.bundle.name} (window {window}), {args.models} extra models, CPU, 1 ORT thread")
    print(summary("RSS added per extra loaded model", all_loaded["rss_step"][1:], "MB"))
    print(f"{'RSS added by all extra models':<34} {total:7.1f} MB ({total / args.models:.2f} MB each)")
    print(summary("first request, cold model", all_loaded["cold"], "ms"))
    print(summary("request, warm model", all_loaded["warm"], "ms"))
    print(summary("cold request, LRU of 2 (evicting)", lru_of_two["cold"], "ms"))


if __name__ == "__main__":
    main()
