"""The cache of exported ONNX graphs, without torch: where entries live, what identifies one, how a session
opens. `onnx_export.OnnxRunner` (torch) fills an entry; `lean` reads a filled one and predicts without
importing torch or transformers (their imports are most of a `predict` start: 5-9 s on 2 cores here).

An entry is `cache_dir()/onnx/<key>/`: logits.onnx (+ logits.int8.onnx, explain.onnx), each with
`<graph>.sha256.json` (its own sha256, and the entry it was written for), check.json (the fp32 graph's largest
probability difference against torch on a probe batch, and the sha256 of the graph it measured) and
predictor.json (the model folder's record, `model.folder.ModelFolder`, that the torch predictor used, and the
entry's key). The key hashes everything that decides the answers: the model folder's config.json,
preprocessor_config.json and every weights file transformers may load (`weights.weights_files`: safetensors,
pytorch_model*.bin, shards and their index), with the versions of loscat-hf, the exporter and the runtime. A
folder holding a peft adapter has no key (its base model's weights may be elsewhere): the torch-free start
loads it, and its graph is keyed on the loaded weights (`onnx_export.model_key`).

A graph is used only when its bytes hash to the digest recorded when it was written (`open_verified`): a graph
copied over another, or a whole entry copied under another key, is exported again (torch) or not used (the
torch-free start loads the model instead), never answered from. The hash (~0.4 s for ViT-B/16-384's 345 MB on
2 cores) runs beside ONNX Runtime's own start of the session (docs/predict.md has the numbers).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loscat_hf.io.atomic import write_atomic
from loscat_hf.io.hashing import file_sha256

logger = logging.getLogger(__name__)

EXPORT_VERSION = 2  # bump when the exported graph changes: old cache entries are then not reused
# bump when predictor.json's meaning changes (it is a ModelFolder record): 4 added problem_type, thresholds
# and threshold_record, so an entry written before them cannot answer a multi-region model as a single-region
# one
RECORD_VERSION = 4
OPSET = 18
CHECK_FILE = "check.json"
RECORD_FILE = "predictor.json"
HASH_SUFFIX = ".sha256.json"
# besides the weights, the files whose contents decide a loaded model's answers (a folder holding a peft
# adapter has no key: `weights.weights_fingerprint`)
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
                                              "onnx", "onnxscript"))
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


def folder_fingerprint(folder: Path) -> tuple[str, str] | None:
    """(cache key, weights fingerprint) of a model folder: the key is a sha256 over its config files and every
    weights file that loads (`weights.weights_fingerprint`) with the versions; None without weights or
    config.json."""
    from loscat_hf.model.weights import weights_fingerprint

    weights = weights_fingerprint(folder)
    if weights is None or not (folder / "config.json").is_file():
        return None
    digest = key_prefix()
    for path in (folder / n for n in MODEL_FILES):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(weights.encode())
    return digest.hexdigest()[:32], weights


def folder_key(folder: Path) -> str | None:
    """The cache key of a model folder (`folder_fingerprint`); None without weights or config.json."""
    found = folder_fingerprint(folder)
    return found[0] if found else None


def files_state(folder: Path) -> list[tuple[str, int, int]]:
    """(name, size, mtime) of the files a key hashes: unchanged between hashing and loading, or the key
    is void."""
    from loscat_hf.model.weights import weights_files

    paths = [*(folder / n for n in MODEL_FILES), *weights_files(folder)]
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


def open_session(graph: Path | bytes, threads: int):
    """An ONNX Runtime CPU session with `threads` intra-op threads, from a graph file or its bytes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # constant-folding notices about CastLike nodes are not problems
    source = graph if isinstance(graph, bytes) else str(graph)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def hash_record(graph: Path) -> Path:
    return graph.with_name(graph.name + HASH_SUFFIX)


def record_graph(graph: Path) -> str:
    """Hash a graph just written into its entry and record the digest beside it, with the entry's key (a graph
    copied in from another entry together with its record is still not this entry's)."""
    digest = file_sha256(graph)
    size = graph.stat().st_size
    write_json(hash_record(graph), {"key": graph.parent.name, "sha256": digest, "bytes": size})
    return digest


def recorded_digest(graph: Path) -> str | None:
    """The sha256 recorded when this entry's graph was written; None without a record of this entry."""
    record = read_json(hash_record(graph))
    if not isinstance(record, dict) or record.get("key") != graph.parent.name:
        return None
    digest = record.get("sha256")
    return digest if isinstance(digest, str) else None


def _identity(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def open_verified(graph: Path, threads: int):
    """An ONNX Runtime session of `graph` when the file hashes to the digest recorded when it was written;
    None when the graph or its record is missing or they differ (the caller exports again, or loads the
    model).

    The hash runs in a second thread while ONNX Runtime opens the file (hashlib releases the GIL), and the
    session is returned only after the digest matched and the file is still the one hashed (same inode, size
    and mtime: every writer here replaces a graph by renaming a new file over it). Opening from bytes
    instead would hash exactly the parsed bytes, but ONNX Runtime took 1.4 s instead of 0.6 s to open
    ViT-B/16-384's graph from them (docs/predict.md)."""
    expected = recorded_digest(graph)
    if expected is None or not graph.is_file():
        return None

    before = _identity(graph)
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashed = pool.submit(file_sha256, graph)
        try:
            session = open_session(graph, threads)
            failure = None
        except Exception as exc:  # noqa: BLE001 - a damaged graph: reported below only if its hash matched
            session, failure = None, exc
        try:
            same = hashed.result() == expected and _identity(graph) == before
        except OSError:
            same = False
    if not same:
        logger.warning("the cached ONNX graph %s is not the one written for this model (its sha256 differs "
                       "from the one recorded at export): not using it", graph)
        return None
    if failure is not None:
        raise failure
    return session
