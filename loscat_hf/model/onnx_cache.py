"""The cache of exported ONNX graphs, without torch: where entries live, what identifies one, how a session
opens. `backends.OnnxRunner` (torch) fills an entry; `infer.lean` reads a filled one and predicts without
importing torch or transformers (their imports are most of a `predict` start: 5-9 s on 2 cores here).

An entry is `cache_dir()/onnx/<key>/`: logits.onnx (+ logits.int8.onnx, explain.onnx), check.json (the fp32
graph's largest probability difference against torch on a probe batch) and predictor.json (labels, input
size, normalisation, resample filter, temperature and packing size the torch predictor used). The key hashes
the model folder's config.json, preprocessor_config.json and weights with the exporter's versions.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path

from loscat_hf.errors import LoscatError

ONNX_PACKAGES = ("onnxruntime", "onnx", "onnxscript")
EXTRA_HINT = "pip install 'loscat-hf[onnx]' (onnxruntime, onnx, onnxscript)"
EXPORT_VERSION = 1  # bump when the exported graph changes: old cache entries are then not reused
RECORD_VERSION = 1  # bump when predictor.json's meaning changes
OPSET = 18
CHECK_FILE = "check.json"
RECORD_FILE = "predictor.json"
MODEL_FILES = ("config.json", "preprocessor_config.json")


def onnx_installed() -> bool:
    """Whether the optional ONNX extra is importable (checked without importing it)."""
    return all(importlib.util.find_spec(name) is not None for name in ONNX_PACKAGES)


def cache_dir() -> Path:
    """Where exported graphs live: $LOSCAT_HF_CACHE, else $XDG_CACHE_HOME/loscat_hf, else ~/.cache/loscat_hf."""
    if os.environ.get("LOSCAT_HF_CACHE"):
        return Path(os.environ["LOSCAT_HF_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "loscat_hf"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def key_prefix():
    """The part of every key that is not the model: a new exporter, runtime or loscat-hf exports afresh."""
    versions = "|".join(_version(d) for d in ("loscat-hf", "torch", "transformers", "onnxruntime", "onnxscript"))
    return hashlib.sha256(f"{EXPORT_VERSION}|{RECORD_VERSION}|{OPSET}|{versions}|".encode())


def local_model_folder(name: str | os.PathLike) -> Path | None:
    """The folder holding a model's files: a local folder, or a Hub id's snapshot already in the HF cache."""
    path = Path(os.path.expanduser(str(name)))
    if path.is_dir():
        return path
    if str(name).count("/") != 1 or path.exists():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(str(name), "config.json")
    return Path(found).parent if isinstance(found, str) else None


def folder_key(folder: Path) -> str | None:
    """sha256 over a model folder's config files and weights (`checkpoints.weights_fingerprint`); None without
    safetensors weights."""
    from loscat_hf.model.checkpoints import weights_fingerprint

    weights = weights_fingerprint(folder)
    if weights is None or not (folder / "config.json").is_file():
        return None
    digest = key_prefix()
    for path in (folder / n for n in MODEL_FILES):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(weights.encode())
    return digest.hexdigest()[:32]


def files_state(folder: Path) -> list[tuple[str, int, int]]:
    """(name, size, mtime) of the files a key hashes: unchanged between hashing and loading, or the key is void."""
    paths = [*(folder / n for n in MODEL_FILES), *sorted(folder.glob("*.safetensors"))]
    return [(p.name, (st := p.stat()).st_size, st.st_mtime_ns) for p in paths if p.is_file()]


def is_exact(check: dict | None) -> bool:
    """A recorded export check passes today's threshold (recomputed: the threshold may have changed)."""
    from loscat_hf.defaults import EXACT_PROB_DIFF

    try:
        return check is not None and float(check["max_prob_diff"]) < EXACT_PROB_DIFF
    except (KeyError, TypeError, ValueError):
        return False


def entry(key: str) -> Path:
    return cache_dir() / "onnx" / key


def graph_name(kind: str, int8: bool) -> str:
    return f"{kind}{'.int8' if int8 else ''}.onnx"


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: dict) -> None:
    """Atomic (temp file + rename): a reader never sees half a record, two writers do not mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def open_session(path: Path, threads: int):
    """An ONNX Runtime CPU session with `threads` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # constant-folding notices about CastLike nodes are not problems
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def choose_backend(backend: str, device: str, precision: str) -> str:
    """"torch" or "onnx" for a --backend / --precision / device ("cpu", "cuda:1", ...) combination; a combination that cannot run
    is a LoscatError naming the fix."""
    from loscat_hf.defaults import BACKENDS

    device_type = str(device).split(":")[0]
    if backend == "auto" and os.environ.get("LOSCAT_BACKEND", "auto") != "auto":
        backend = os.environ["LOSCAT_BACKEND"]  # what "auto" means on this machine (e.g. torch where no cache)
        where = " (from env LOSCAT_BACKEND)"
    else:
        where = ""
    if backend not in BACKENDS:
        raise LoscatError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}{where}", param="backend")
    if backend == "auto":
        backend = "onnx" if device_type == "cpu" and precision != "bf16" and onnx_installed() else "torch"
        if precision == "int8" and backend == "torch":
            raise LoscatError(f"precision 'int8' runs on ONNX Runtime on CPU: {EXTRA_HINT}" if device_type == "cpu"
                              else "precision 'int8' runs on CPU only; use bf16 on a GPU", param="precision")
    if backend == "onnx":
        if device_type != "cpu":
            raise LoscatError(f"backend 'onnx' runs on CPU here (device {device}); use backend='torch' on a GPU",
                              param="backend")
        if precision == "bf16":
            raise LoscatError("precision 'bf16' runs on the torch backend; use backend='torch'",
                              param=("precision", "backend"))
        if not onnx_installed():
            raise LoscatError(f"backend 'onnx' needs the ONNX extra: {EXTRA_HINT}", param="backend")
    elif precision == "int8":
        raise LoscatError("precision 'int8' runs on the ONNX Runtime backend only (torch's dynamic quantisation "
                          f"is deprecated): use backend='onnx' or 'auto'{where}; {EXTRA_HINT}",
                          param=("precision", "backend"))
    return backend
