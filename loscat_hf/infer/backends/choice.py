"""Which backend runs a predictor's forward pass, decided without importing torch or ONNX Runtime.

"torch"; "onnx" (the optional extra `pip install 'loscat-hf[onnx]'`: onnxruntime, onnx, onnxscript); "auto" =
env LOSCAT_BACKEND when set, else onnx on CPU when the extra is installed, torch otherwise.
"""

from __future__ import annotations

import importlib.util
import os

from loscat_hf.errors import LoscatError

ONNX_PACKAGES = ("onnxruntime", "onnx", "onnxscript")
EXTRA_HINT = "pip install 'loscat-hf[onnx]' (onnxruntime, onnx, onnxscript)"


def onnx_installed() -> bool:
    """Whether the optional ONNX extra is importable (checked without importing it)."""
    return all(importlib.util.find_spec(name) is not None for name in ONNX_PACKAGES)


def gpu_present() -> bool:
    """Whether a GPU may be visible (NVIDIA driver or ROCm device), judged without importing torch: then the
    torch predictor decides (it puts the model on the GPU by default, where ONNX Runtime's CPU graph would be
    the slower choice). Errs towards "yes": the cost is only the slower start."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES", "x").strip() in ("", "-1")
    return not hidden and (os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/kfd"))


def choose_backend(backend: str, device: str, precision: str) -> str:
    """"torch" or "onnx" for a --backend / --precision / device ("cpu", "cuda:1", ...) combination; a
    combination that cannot run is a LoscatError naming the fix."""
    from loscat_hf.defaults import BACKENDS

    device_type = str(device).split(":")[0]
    if backend == "auto" and os.environ.get("LOSCAT_BACKEND", "auto") != "auto":
        # what "auto" means on this machine (e.g. torch where no cache)
        backend = os.environ["LOSCAT_BACKEND"]
        where = " (from env LOSCAT_BACKEND)"
    else:
        where = ""
    if backend not in BACKENDS:
        raise LoscatError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}{where}",
                          param="backend")
    if backend == "auto":
        backend = "onnx" if device_type == "cpu" and precision != "bf16" and onnx_installed() else "torch"
        if precision == "int8" and backend == "torch":
            raise LoscatError(f"precision 'int8' runs on ONNX Runtime on CPU: {EXTRA_HINT}"
                              if device_type == "cpu"
                              else "precision 'int8' runs on CPU only; use bf16 on a GPU", param="precision")
    if backend == "onnx":
        if device_type != "cpu":
            raise LoscatError(f"backend 'onnx' runs on CPU here (device {device}); use backend='torch' "
                              "on a GPU", param="backend")
        if precision == "bf16":
            raise LoscatError("precision 'bf16' runs on the torch backend; use backend='torch'",
                              param=("precision", "backend"))
        if not onnx_installed():
            raise LoscatError(f"backend 'onnx' needs the ONNX extra: {EXTRA_HINT}", param="backend")
    elif precision == "int8":
        raise LoscatError("precision 'int8' runs on the ONNX Runtime backend only (torch's dynamic "
                          f"quantisation is deprecated): use backend='onnx' or 'auto'{where}; {EXTRA_HINT}",
                          param=("precision", "backend"))
    return backend
