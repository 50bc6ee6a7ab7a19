"""Whether ONNX Runtime's CUDA provider can work here, found out before ONNX Runtime is asked.

``onnxruntime-gpu`` lists ``CUDAExecutionProvider`` as available whether or not the CUDA libraries are
installed; asked for it on a machine without them, it prints a red ``[E:onnxruntime ...] Failed to load
library`` error (through its own logger, past our session options) and falls back to the CPU. So the
service asks first: it loads the provider library the way ONNX Runtime would (its linked CUDA libraries —
``libcudart``, ``libcublas``, ``libcublasLt``, ``libcurand``, the driver's ``libcuda`` — come with it),
then cuDNN (loaded by ONNX Runtime at run time; the LSTM kernels need it), then asks the driver for a device.
The answer is cached: libraries do not appear while a process runs.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import onnxruntime as ort

CUDA_PROVIDER = "CUDAExecutionProvider"
CUDNN = "libcudnn.so.9"  # ONNX Runtime 1.2x-1.3x CUDA builds: "Require cuDNN 9.* and CUDA 13.*"


def _load(library: str) -> str | None:
    """None when ``library`` (a path or a soname) loads, else the loader's reason, shortened."""
    try:
        ctypes.CDLL(library)
    except OSError as exc:
        return str(exc).split(": cannot open shared object file")[0]  # "libcublasLt.so.13"
    return None


def _device_count() -> int:
    """CUDA devices the driver sees (0 when it cannot initialise: no GPU, or none visible)."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
    except (OSError, AttributeError):
        return 0
    return count.value


def cuda_built() -> bool:
    """Whether this ONNX Runtime build has a CUDA provider at all (``onnxruntime-gpu``, not the CPU one)."""
    return CUDA_PROVIDER in ort.get_available_providers()


@functools.cache
def cuda_unavailable() -> str | None:
    """None when ONNX Runtime's CUDA provider can load and find a GPU, else why not, in a few words
    ("CUDA libraries not found (libcublasLt.so.13)"). Checked once per process."""
    if not cuda_built():
        return f"this ONNX Runtime build ({ort.__version__}) has no CUDA provider"
    provider = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    if provider.is_file():  # a Linux wheel; elsewhere ONNX Runtime is left to find out
        missing = _load(str(provider)) or _load(CUDNN)
        if missing:
            return f"CUDA libraries not found ({missing})"
        if _device_count() == 0:
            return "no CUDA device is visible"
    return None
