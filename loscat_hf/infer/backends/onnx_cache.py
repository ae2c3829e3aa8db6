"""The cache of exported ONNX graphs, without torch: where entries live, what identifies one, how a session
opens. `onnx_export.OnnxRunner` (torch) fills an entry; `lean` reads a filled one and predicts without
importing torch or transformers (their imports are most of a `predict` start: 5-9 s on 2 cores here).

An entry is `cache_dir()/onnx/<key>/`: logits.onnx (+ logits.int8.onnx, explain.onnx), check.json (the fp32
graph's largest probability difference against torch on a probe batch) and predictor.json (the model folder's
record, `model.folder.ModelFolder`, that the torch predictor used). The key hashes
the model folder's config.json, preprocessor_config.json and weights with the exporter's versions.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from loscat_hf.io.atomic import write_atomic

EXPORT_VERSION = 1  # bump when the exported graph changes: old cache entries are then not reused
RECORD_VERSION = 3  # bump when predictor.json's meaning changes (it is a ModelFolder record)
OPSET = 18
CHECK_FILE = "check.json"
RECORD_FILE = "predictor.json"
MODEL_FILES = ("config.json", "preprocessor_config.json")


def cache_dir() -> Path:
    """Where exported graphs live: $LOSCAT_HF_CACHE, else $XDG_CACHE_HOME/loscat_hf, else
    ~/.cache/loscat_hf."""
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
    versions = "|".join(_version(d) for d in ("loscat-hf", "torch", "transformers", "onnxruntime",
                                              "onnxscript"))
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
    """(name, size, mtime) of the files a key hashes: unchanged between hashing and loading, or the key
    is void."""
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
    """Atomic: a reader never sees half a record, two writers do not mix."""
    write_atomic(path, json.dumps(data, indent=2))


def open_session(path: Path, threads: int):
    """An ONNX Runtime CPU session with `threads` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # constant-folding notices about CastLike nodes are not problems
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
