"""Triton's ``perf_analyzer`` (the field's C++ load generator for the inference protocol) against closecast's
``POST /v2/models/default/infer``, binary tensors, batches of N series.

    python bench/perf_analyzer.py                        # batch 64, concurrency 1, 2, 4, 8
    python bench/perf_analyzer.py --batch 256 --concurrency 1:16:4 --interval-ms 5000

Sets itself up once under ``--home`` (default ``~/.cache/closecast/perf_analyzer``); never a need of tests:

- the ``perf_analyzer`` binary from the manylinux wheel of ``tritonclient==2.40.0`` (``pip download``; the
  binary is ``tritonclient-2.40.0.data/data/bin/perf_analyzer`` inside it);
- ``libcudart.so.12`` from PyPI's ``nvidia-cuda-runtime-cu12`` (``pip install --target``), put on
  ``LD_LIBRARY_PATH`` (the binary links it even when it drives a server over HTTP);
- Debian's ``libb64-0d`` (``apt-get install -y libb64-0d``, run as root when it is missing).

Then it starts ``python -m app`` on a free loopback port over ``--model-dir`` and runs perf_analyzer with real
closes (``--input-data``: prices must be > 0, so its random data would be refused).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import serve

from closecast.bundle import load_forecaster

WHEEL = "tritonclient==2.40.0"
MEMBER = "tritonclient-2.40.0.data/data/bin/perf_analyzer"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model-dir", type=Path, default=None, help="registry (default: models/, else the fixture)"
    )
    p.add_argument("--batch", type=int, default=64, help="series per request (the tensor's N)")
    p.add_argument(
        "--concurrency", default="1:8", help="perf_analyzer --concurrency-range (start:end[:step])"
    )
    p.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer --measurement-interval")
    p.add_argument("--providers", default="cpu", choices=["auto", "cpu", "cuda"], help="CLOSECAST_PROVIDERS")
    p.add_argument(
        "--home", type=Path, default=Path.home() / ".cache" / "closecast" / "perf_analyzer", help="setup dir"
    )
    return p.parse_args()


def install(home: Path) -> tuple[Path, dict[str, str]]:
    """The perf_analyzer binary and the environment it runs in, set up under ``home`` once."""
    binary = home / "perf_analyzer"
    if not binary.exists():
        wheels = home / "wheel"
        pip = [sys.executable, "-m", "pip"]
        subprocess.run(
            [*pip, "download", "--no-deps", "--only-binary=:all:", WHEEL, "-d", wheels], check=True
        )
        (wheel,) = wheels.glob("tritonclient-2.40.0-*manylinux*.whl")
        with zipfile.ZipFile(wheel) as z:
            binary.write_bytes(z.read(MEMBER))
        binary.chmod(0o755)
    cudart = home / "cudart"
    lib = cudart / "nvidia" / "cuda_runtime" / "lib"
    if not (lib / "libcudart.so.12").exists():
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(cudart)]
        subprocess.run([*pip, "nvidia-cuda-runtime-cu12"], check=True)
    if subprocess.run(["dpkg", "-s", "libb64-0d"], capture_output=True).returncode != 0:
        if os.geteuid() != 0:
            raise SystemExit("perf_analyzer needs Debian's libb64-0d: sudo apt-get install -y libb64-0d")
        subprocess.run(["apt-get", "install", "-y", "-q", "libb64-0d"], check=True)
    env = {**os.environ, "LD_LIBRARY_PATH": f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    return binary, env


def main() -> None:
    args = parse_args()
    args.home.mkdir(parents=True, exist_ok=True)
    binary, env = install(args.home)
    model_dir = serve.pick_model_dir(args.model_dir)
    bundle = serve.default_bundle(model_dir)
    if bundle is None:
        raise SystemExit(f"no current bundle of the default model in {model_dir}")
    window = load_forecaster(bundle, "cpu").window
    series = serve.sample_closes(window, args.batch)
    load_before = os.getloadavg()
    server, port, _ = serve.closecast(model_dir, args.providers)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "closes.json"
            flat = [close for s in series for close in s]
            sample = {"closes": {"content": flat, "shape": [args.batch, window]}}
            data.write_text(json.dumps({"data": [sample]}))
            argv = [str(binary), "-i", "http", "-u", f"127.0.0.1:{port}", "-m", "default"]
            argv += ["--input-data", str(data), "--shape", f"closes:{args.batch},{window}"]
            argv += ["--concurrency-range", args.concurrency, "--measurement-interval", str(args.interval_ms)]
            print(
                f"model {bundle.name} (window {window}), {args.batch} series per request:", " ".join(argv[1:])
            )
            sys.stdout.flush()
            subprocess.run(argv, env=env, check=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    load = " ".join(f"{x:.2f}" for x in load_before), " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"series/s = infer/sec x {args.batch}; load average at the start: {load[0]}; at the end: {load[1]}")


if __name__ == "__main__":
    if shutil.which("dpkg") is None:
        raise SystemExit("this script sets up perf_analyzer on Debian/Ubuntu (dpkg, apt-get)")
    main()
