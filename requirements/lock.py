"""The images' lock files, made from pyproject.toml with uv: one per virtual environment the Dockerfile
builds.

    python requirements/lock.py            # write serve.txt, cpu.txt, cuda.txt beside this file
    python requirements/lock.py --check    # CI: re-resolve into a temporary folder, compare, exit 1 on drift
    python requirements/lock.py --upgrade  # after moving EXCLUDE_NEWER: take the newest versions before it

- serve.txt (serve venv, the base of cpu's; Python 3.11): the dependencies and the `pg` extra, onnxruntime
  (CPU) for onnxruntime-gpu.
- cpu.txt (cpu; 3.11): serve.txt's pins plus the `train` extra and torch's own requirements, not torch.
- cuda.txt (cuda; Ubuntu 24.04's 3.12): the dependencies and `pg` with onnxruntime-gpu, the `train` extra,
  torch's requirements.

torch is not in any lock: the images install its CPU build from the CPU index by version (TORCH_VERSION in the
Dockerfile) with --no-deps; what it needs (torch-cpu.in, from the CPU wheel's metadata) is locked and hashed.
Resolution ignores files uploaded after EXCLUDE_NEWER, so re-resolving gives the same pins and the same hash
lists however much is published later: that is what makes `--check` stable. uv reads no pip configuration
(pip.conf, PIP_CONSTRAINT) and runs here with --no-config, so neither a machine's pip nor uv settings leak in.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORT_VERSION = "1.31.1"  # ONNX Runtime, CPU and CUDA builds alike (the CUDA base image must match it)
EXCLUDE_NEWER = "2026-11-29T00:00:00Z"
PLATFORM = "x86_64-manylinux_2_28"  # markers are evaluated for it; every wheel's hash is kept (arm64 too)
COMMAND = "python requirements/lock.py"
# name -> (Python, lock whose pins constrain this one)
LOCKS: dict[str, tuple[str, str | None]] = {
    "serve.txt": ("3.11", None),
    "cpu.txt": ("3.11", "serve.txt"),
    "cuda.txt": ("3.12", None),
}


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def torch_version() -> str:
    """TORCH_VERSION, the Dockerfile's global ARG (the torch the images install beside the lock)."""
    match = re.search(r"^ARG TORCH_VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(encoding="utf-8"), re.M)
    assert match, "Dockerfile has no `ARG TORCH_VERSION=...`"
    return match.group(1)


def inputs() -> dict[str, list[str]]:
    """What each lock resolves: pyproject.toml's lists, ONNX Runtime swapped per image, torch swapped for its
    requirements."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    header = (HERE / "torch-cpu.in").read_text(encoding="utf-8").splitlines()[0]
    if f"torch=={torch_version()}+cpu" not in header:
        sys.exit(
            f"requirements/torch-cpu.in is for {header!r}, the Dockerfile installs torch {torch_version()}"
        )
    common = [d for d in project["dependencies"] if _name(d) not in ("onnxruntime", "onnxruntime-gpu")]
    train = [d for d in project["optional-dependencies"]["train"] if _name(d) != "torch"]
    common += project["optional-dependencies"]["pg"]  # every image can join a PostgreSQL scale-out
    torch_needs = _lines(HERE / "torch-cpu.in")
    return {
        "serve.txt": [*common, f"onnxruntime=={ORT_VERSION}"],
        "cpu.txt": [*common, f"onnxruntime=={ORT_VERSION}", *train, *torch_needs],
        "cuda.txt": [*common, f"onnxruntime-gpu=={ORT_VERSION}", *train, *torch_needs],
    }


def parse_lock(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (pinned requirement, its hashes); comments and formatting ignored."""
    entries: dict[str, tuple[str, frozenset[str]]] = {}
    logical = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        hashes = frozenset(re.findall(r"--hash=(\S+)", line))
        requirement = re.sub(r"\s*--hash=\S+", "", line).strip()
        entries[_name(requirement)] = (re.sub(r"\s+", "", requirement), hashes)
    return entries


def _uv() -> list[str]:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if found is None:
        sys.exit("uv is not installed: `pip install -e '.[dev]'` brings it")
    return [found]


def compile_locks(out: Path, upgrade: bool) -> None:
    """Resolve every lock into ``out``; a lock already there is uv's preference (its pins are kept unless
    --upgrade)."""
    # uv settings from the environment must not change what is resolved; the cache and network ones may stay.
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k in ("UV_CACHE_DIR",)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for lock, requirements in inputs().items():
            python, base = LOCKS[lock]
            (work / lock.replace(".txt", ".in")).write_text("\n".join(requirements) + "\n", encoding="utf-8")
            command = [
                *_uv(),
                "pip",
                "compile",
                lock.replace(".txt", ".in"),
                "--output-file",
                str(out / lock),
                "--generate-hashes",
                "--no-config",
                "--quiet",
                "--python-version",
                python,
                "--python-platform",
                PLATFORM,
                "--exclude-newer",
                EXCLUDE_NEWER,
                "--custom-compile-command",
                COMMAND,
            ]
            if base is not None:  # the same pins as the venv this one is built on
                pins = [entry for entry, _ in parse_lock(out / base).values()]
                (work / base).write_text("\n".join(pins) + "\n", encoding="utf-8")
                command += ["--constraint", base]
            if upgrade:
                command.append("--upgrade")
            subprocess.run(command, cwd=work, env=env, check=True, timeout=300)


def check() -> int:
    """0 when re-resolving pyproject.toml, the committed locks as preferences, gives the committed locks."""
    drift = 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        for lock in LOCKS:
            if not (HERE / lock).is_file():
                print(f"lock: requirements/{lock} is missing; run `{COMMAND}`", file=sys.stderr)
                return 1
            shutil.copy(HERE / lock, fresh / lock)
        compile_locks(fresh, upgrade=False)
        for lock in LOCKS:
            if parse_lock(HERE / lock) != parse_lock(fresh / lock):
                drift += 1
                old = (HERE / lock).read_text(encoding="utf-8").splitlines()
                new = (fresh / lock).read_text(encoding="utf-8").splitlines()
                diff = difflib.unified_diff(old, new, f"requirements/{lock}", "re-resolved", lineterm="")
                print("\n".join(diff), file=sys.stderr)
    if drift:
        print(f"lock: {drift} lock(s) do not match pyproject.toml; run `{COMMAND}`", file=sys.stderr)
        return 1
    print(f"lock: {', '.join(LOCKS)} match pyproject.toml")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="compare, write nothing; exit 1 on drift")
    mode.add_argument("--upgrade", action="store_true", help="newest versions before EXCLUDE_NEWER")
    args = parser.parse_args()
    if args.check:
        return check()
    compile_locks(HERE, upgrade=args.upgrade)
    print(f"lock: wrote {', '.join(f'requirements/{lock}' for lock in LOCKS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
