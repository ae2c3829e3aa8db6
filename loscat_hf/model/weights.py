"""Which files of a local model folder hold the weights transformers loads, and one fingerprint over them.

The fingerprint says which weights answered: the ONNX cache is keyed on it, `predict --resume` and the
labelling log record it, and an evaluation report names it so that a card never shows another model's
numbers. Torch-free and transformers-free: the fast `predict` start uses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from loscat_hf.io.hashing import file_sha256

# The files `from_pretrained` loads weights from, as transformers.utils names them (SAFE_WEIGHTS_NAME,
# WEIGHTS_NAME and their index files, with "-0000k-of-0000n" shards and ".variant" names). Spelled out, not
# imported: the torch-free `predict` start imports no transformers (tests/test_cache_keys.py checks them
# against transformers). "*.safetensors" was the whole rule before, so a safetensors-only folder keeps its
# fingerprint; training_args.bin is not a weights file.
_LOADABLE = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json",
             "pytorch_model*.bin.index.json")
# peft's adapter files (ADAPTER_CONFIG_NAME, ADAPTER_SAFE_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME): with peft
# installed, what loads is a base model (the one adapter_config.json names, often elsewhere: another folder,
# a Hub id) plus the adapter. No hash of this folder's files is sure to cover that, so a folder holding an
# adapter has no fingerprint: no ONNX cache key (nothing cached, nothing stale)
_ADAPTER = ("adapter_config.json", "adapter_model*")


def weights_files(folder: str | Path) -> list[Path]:
    """Every file of a local model folder that transformers may load weights from, sorted by name: the
    patterns above, and any shard an index file names."""
    root = Path(folder)
    if not root.is_dir():
        return []
    found = {p for pattern in _LOADABLE for p in root.glob(pattern)
             if p.is_file() and not p.name.startswith("adapter_model")}
    for index in [p for p in found if p.name.endswith(".index.json")]:
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            continue  # a damaged index: hashed as it is; loading it fails with transformers' own error
        inside = (os.path.normpath(s) for s in shards if isinstance(s, str) and not os.path.isabs(s))
        found |= {root / s for s in inside if not s.startswith("..") and (root / s).is_file()}
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _holds_adapter(folder: str | Path) -> bool:
    """The folder holds a peft adapter (its config or weights): what loads is not this folder's alone."""
    return any(p.is_file() for pattern in _ADAPTER for p in Path(folder).glob(pattern))


def weights_fingerprint(folder: str | Path) -> str | None:
    """sha256 over every weights file of a model folder that transformers may load (names and contents:
    safetensors, pytorch_model*.bin, shards and their index files): which weights an evaluation report
    measured, so a card never shows another model's numbers. None for a Hub id, a folder without them, or
    one holding a peft adapter (its base model's weights are not in it)."""
    files = weights_files(folder)
    if not any(not p.name.endswith(".index.json") for p in files) or _holds_adapter(folder):
        return None
    digest = hashlib.sha256()
    for path in files:  # relative names: a top-level file's is its name, as always
        name = path.relative_to(folder).as_posix()
        digest.update(name.encode() + b"\0" + bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()
