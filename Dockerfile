# closecast images: one Dockerfile, three targets (BuildKit builds only the stages a target needs).
#
#   docker build -t closecast .                         cpu (default, the last stage): serving + /train
#   docker build --target serve -t closecast:serve .    serving only, no torch; /train answers 503
#   docker build --target cuda  -t closecast:cuda  .    ONNX Runtime on CUDA 13 + cuDNN 9: docker run --gpus all
#
#   docker run -p 8000:8000 -v closecast-models:/models closecast
#
# No `# syntax=` line: BuildKit's built-in Dockerfile frontend (Docker 20.10 and later) already knows every
# instruction used here (RUN --mount included), and a syntax line would make each build pull a frontend image
# from a registry, which an air-gapped site cannot reach.
#
# Layers go from rarely to often changed: dependencies (from the hashed locks in requirements/, rebuilt only
# when a lock changes), then the default model, then the code (a small wheel). The registry lives in the
# /models volume; an empty volume receives the baked default model at first start (CLOSECAST_DEFAULT_MODEL_DIR,
# see closecast/registry.py).

ARG PYTHON_IMAGE=python:3.11-slim
# ONNX Runtime 1.31's CUDA wheel (pinned in requirements/cuda.txt, see ORT_VERSION in requirements/lock.py)
# links libcudart.so.13 / libcublas.so.13 and loads cuDNN 9: the CUDA base must be CUDA 13.x with cuDNN 9
# (a 12.x base fails over to the CPU). Change both together.
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
# torch is the one package outside the locks: its CPU build lives on its own index, so it is pinned here by
# version and installed with --no-deps; what it needs is in the locks (requirements/torch-cpu.in), hashed.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Air-gapped builds: a folder inside the build context (git-ignored, let through by .dockerignore). When it holds
# a torch wheel of TORCH_VERSION, the cpu and cuda targets install torch from it with no index at all:
#   pip download --no-deps --dest torch-wheels torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
ARG TORCH_WHEELS=torch-wheels


# ---- wheel: the code, built once for every target -----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
# README.md is the package's long description; the glob keeps the build working without it.
COPY pyproject.toml README.md* ./
COPY app ./app
COPY closecast ./closecast
COPY training ./training
RUN pip wheel --no-deps --no-cache-dir --disable-pip-version-check --wheel-dir /dist .


# ---- default-model: only the version models/default/current names, readable by the non-root user ----------
FROM ${PYTHON_IMAGE} AS default-model
COPY models /src/models
# A checkout may hold local experiments and other models next to the default: only the default model's
# current version is baked in (named layout, /out/default/), readable by the non-root user whatever the
# modes in the checkout.
RUN version="$(cat /src/models/default/current)" \
    && test -f "/src/models/default/${version}/manifest.json" \
    && mkdir -p /out/default \
    && cp -R "/src/models/default/${version}" /src/models/default/current /out/default/ \
    && cp /src/models/README.md /out/ \
    && chmod -R u=rwX,go=rX /out


# ---- dependency virtual environments (/opt/venv), from the locks in requirements/ ---------------------------
# Each lock pins every package and the hashes of its files (made from pyproject.toml by requirements/lock.py,
# checked by CI): --require-hashes refuses any other file, --no-deps installs the lock and nothing else, and
# `pip check` proves the result complete. Only a lock's change reinstalls: pyproject.toml is not copied here.
FROM ${PYTHON_IMAGE} AS venv-serve
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements/serve.txt /tmp/requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --require-hashes --no-deps -r /tmp/requirements/serve.txt \
    && pip check

# cpu.txt holds serve.txt's pins (already installed) plus the train extra and torch's requirements.
FROM venv-serve AS venv-cpu
ARG TORCH_VERSION
ARG TORCH_INDEX_URL
COPY requirements/cpu.txt /tmp/requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --require-hashes --no-deps -r /tmp/requirements/cpu.txt
# The CPU build of torch (~750 MB installed); PyPI's default torch is the CUDA build (several GB).
ARG TORCH_WHEELS
COPY ${TORCH_WHEELS}* /tmp/torch-wheels/
RUN --mount=type=cache,target=/root/.cache/pip \
    if ls /tmp/torch-wheels/torch-"${TORCH_VERSION}"[-+]*.whl >/dev/null 2>&1; then \
        pip install --no-deps --no-index --find-links /tmp/torch-wheels "torch==${TORCH_VERSION}"; \
    else \
        pip install --no-deps --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"; \
    fi \
    && rm -rf /tmp/torch-wheels \
    && pip check

# Ubuntu 24.04's Python 3.12 on the CUDA base; builder and runtime share this layer, so the venv's
# interpreter path is the same in both.
FROM ${CUDA_IMAGE} AS cuda-python
ARG DEBIAN_FRONTEND=noninteractive
# DL3008 (pin apt versions) ignored: these are the base release's own packages, and Ubuntu drops superseded
# versions from its archive, so a pinned version breaks the next rebuild; pin CUDA_IMAGE by digest instead.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

FROM cuda-python AS venv-cuda
ARG TORCH_VERSION
ARG TORCH_INDEX_URL
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
# cuda.txt is resolved for this Python (3.12), with onnxruntime-gpu in place of onnxruntime.
COPY requirements/cuda.txt /tmp/requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --require-hashes --no-deps -r /tmp/requirements/cuda.txt
# /train runs on the CPU here too: the LSTM is small and training/ never asks for a GPU. Python 3.12 here: a
# wheel folder for this target holds the cp312 wheel (the tag decides; pip refuses the wrong one).
ARG TORCH_WHEELS
COPY ${TORCH_WHEELS}* /tmp/torch-wheels/
RUN --mount=type=cache,target=/root/.cache/pip \
    if ls /tmp/torch-wheels/torch-"${TORCH_VERSION}"[-+]*.whl >/dev/null 2>&1; then \
        pip install --no-deps --no-index --find-links /tmp/torch-wheels "torch==${TORCH_VERSION}"; \
    else \
        pip install --no-deps --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"; \
    fi \
    && rm -rf /tmp/torch-wheels \
    && pip check


# ---- runtime: what every slim image shares -------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="closecast" \
      org.opencontainers.image.description="Next-close forecasts from an LSTM, served by ONNX Runtime" \
      org.opencontainers.image.licenses="MIT"
# A fixed numeric uid: Kubernetes' runAsNonRoot can check it, and a bind mount can be chowned to it.
RUN groupadd --system --gid 10001 closecast \
    && useradd --system --uid 10001 --gid closecast --no-log-init --create-home --home-dir /home/closecast \
       --shell /usr/sbin/nologin closecast \
    && install -d -o closecast -g closecast -m 0755 /models
# The CMD is the project's own server command (`closecast`: uvloop, httptools with bounded request heads,
# CLOSECAST_MAX_HEADER_BYTES and CLOSECAST_HEADER_TIMEOUT_S). It reads CLOSECAST_HOST, CLOSECAST_PORT and
# CLOSECAST_WORKERS (-e CLOSECAST_PORT=8001 moves it, and the HEALTHCHECK with it: several containers can
# share a host network).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CLOSECAST_MODEL_DIR=/models \
    CLOSECAST_DEFAULT_MODEL_DIR=/opt/closecast/models \
    CLOSECAST_HOST=0.0.0.0 \
    CLOSECAST_PORT=8000
WORKDIR /home/closecast
EXPOSE 8000
# A fresh named volume starts as a copy of this directory (empty, owned by closecast).
VOLUME ["/models"]
# Ready means a verified model is loaded; urllib raises on 503 or a refused connection (exit 1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CLOSECAST_PORT', '8000') + '/readyz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]
CMD ["closecast"]


# ---- serve: no torch, CPU ONNX Runtime (~300 MB) -------------------------------------------------------------
FROM runtime AS serve
COPY --from=venv-serve /opt/venv /opt/venv
COPY --from=default-model /out /opt/closecast/models
RUN --mount=type=bind,from=wheel,source=/dist,target=/dist pip install --no-deps --no-cache-dir /dist/*.whl
USER 10001:10001


# ---- cuda: ONNX Runtime on the GPU, CPU torch for /train ----------------------------------------------------
# The runtime lines repeat those of `runtime` (a different base); tests/deploy checks they stay identical.
FROM cuda-python AS cuda
LABEL org.opencontainers.image.title="closecast" \
      org.opencontainers.image.description="Next-close forecasts from an LSTM, served by ONNX Runtime" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 closecast \
    && useradd --system --uid 10001 --gid closecast --no-log-init --create-home --home-dir /home/closecast \
       --shell /usr/sbin/nologin closecast \
    && install -d -o closecast -g closecast -m 0755 /models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CLOSECAST_MODEL_DIR=/models \
    CLOSECAST_DEFAULT_MODEL_DIR=/opt/closecast/models \
    CLOSECAST_HOST=0.0.0.0 \
    CLOSECAST_PORT=8000
WORKDIR /home/closecast
EXPOSE 8000
VOLUME ["/models"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CLOSECAST_PORT', '8000') + '/readyz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]
CMD ["closecast"]
COPY --from=venv-cuda /opt/venv /opt/venv
COPY --from=default-model /out /opt/closecast/models
RUN --mount=type=bind,from=wheel,source=/dist,target=/dist pip install --no-deps --no-cache-dir /dist/*.whl
USER 10001:10001


# ---- cpu (default): serving + /train on CPU torch (~1.3 GB) --------------------------------------------------
FROM runtime AS cpu
COPY --from=venv-cpu /opt/venv /opt/venv
COPY --from=default-model /out /opt/closecast/models
RUN --mount=type=bind,from=wheel,source=/dist,target=/dist pip install --no-deps --no-cache-dir /dist/*.whl
USER 10001:10001
