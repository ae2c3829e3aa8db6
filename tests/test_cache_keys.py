"""The ONNX cache answers only for the files it was made from: the key covers every weights file transformers
may load, and a graph is used only when its bytes are the ones written for that key."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_tiny_model
from PIL import Image

from loscat_hf.model.weights import weights_files, weights_fingerprint


def _peaky(d: Path, seed: int) -> dict[str, torch.Tensor]:
    """A tiny model's weights with a scaled-up head: confident answers that differ between seeds."""
    from safetensors.torch import load_file

    state = load_file(save_tiny_model(d, seed=seed) / "model.safetensors")
    state["classifier.weight"] = state["classifier.weight"] * 40
    return state


def _photos(n: int = 4) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)) for _ in range(n)]


def _probs(pred) -> np.ndarray:
    return np.array([[p.probabilities[c] for c in pred.labels] for p in pred.predict(_photos())])


def test_weights_files_are_every_name_transformers_loads_weights_from(tmp_path):
    """The names are spelled out in model/weights.py (the torch-free start imports no transformers): they
    must be transformers' own. A peft adapter's files are not among them (a folder holding one has no key)."""
    import transformers.utils as tu

    names = [tu.SAFE_WEIGHTS_NAME, tu.WEIGHTS_NAME, tu.SAFE_WEIGHTS_INDEX_NAME, tu.WEIGHTS_INDEX_NAME,
             "pytorch_model-00001-of-00002.bin", "model-00002-of-00002.safetensors",  # shards
             "pytorch_model.fp16.bin", "model.fp16.safetensors"]  # variants (modeling_utils._add_variant)
    for name in [*names, tu.ADAPTER_SAFE_WEIGHTS_NAME, tu.ADAPTER_WEIGHTS_NAME]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / tu.WEIGHTS_INDEX_NAME).write_text('{"weight_map": {"a": "odd-shard.bin", "b": "../out.bin"}}')
    (tmp_path / "odd-shard.bin").write_bytes(b"x")  # named by the index: loaded, so hashed
    (tmp_path.parent / "out.bin").write_bytes(b"x")  # outside the folder: never
    (tmp_path / "training_args.bin").write_bytes(b"x")  # not weights
    (tmp_path / "config.json").write_text("{}")
    assert sorted(p.name for p in weights_files(tmp_path)) == sorted([*names, "odd-shard.bin"])


def test_every_loadable_weights_file_decides_the_fingerprint(tmp_path):
    model = save_tiny_model(tmp_path / "m")
    safetensors_only = weights_fingerprint(model)
    # the rule before: safetensors only; a folder that has nothing else keeps its fingerprint (evaluation
    # reports recorded it as the weights they measured)
    digest = hashlib.sha256()
    for path in sorted(model.glob("*.safetensors")):
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    assert safetensors_only == digest.hexdigest()
    (model / "training_args.bin").write_bytes(b"not weights")
    assert weights_fingerprint(model) == safetensors_only
    (model / "pytorch_model.bin").write_bytes(b"weights one")
    with_bin = weights_fingerprint(model)
    (model / "pytorch_model.bin").write_bytes(b"weights two")
    assert len({safetensors_only, with_bin, weights_fingerprint(model)}) == 3
    bare = tmp_path / "bare"  # no weights file at all: no fingerprint, no cache key
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    (bare / "training_args.bin").write_bytes(b"x")
    from loscat_hf.infer.backends import onnx_cache

    assert weights_fingerprint(bare) is None and onnx_cache.folder_key(bare) is None


def test_a_folder_holding_a_peft_adapter_has_no_cache_key(tmp_path):
    """With peft installed, an adapter loads on top of the base model its adapter_config.json names (another
    folder, a Hub id): a key over this folder's files would not change with that base, and its cached graph
    would go on answering for the old one. No key: the graph is keyed on the loaded weights instead."""
    import transformers.utils as tu

    from loscat_hf.infer.backends import onnx_cache

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "config.json").write_text("{}")
    (adapter / tu.ADAPTER_CONFIG_NAME).write_text('{"base_model_name_or_path": "../base"}')
    (adapter / tu.ADAPTER_SAFE_WEIGHTS_NAME).write_bytes(b"lora")
    assert weights_files(adapter) == []
    assert weights_fingerprint(adapter) is None and onnx_cache.folder_key(adapter) is None
    full = save_tiny_model(tmp_path / "full")  # a whole model with an adapter beside it: no key either
    assert onnx_cache.folder_key(full) is not None
    (full / tu.ADAPTER_WEIGHTS_NAME).write_bytes(b"lora")
    assert weights_fingerprint(full) is None and onnx_cache.folder_key(full) is None


onnx = pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnxscript")),
                          reason="needs the onnx extra")


@onnx
def test_new_weights_in_pytorch_model_bin_are_never_answered_from_the_old_graph(tmp_path, monkeypatch):
    """transformers loads pytorch_model.bin where there is no model.safetensors, even beside another
    *.safetensors file (here a leftover variant): the key must change with the .bin, or the cached graph of
    the old weights keeps answering."""
    from safetensors.torch import save_file

    from loscat_hf.infer.backends import lean
    from loscat_hf.infer.predictor import RegionPredictor

    monkeypatch.setenv("LOSCAT_HF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(lean, "gpu_present", lambda: False)
    model = save_tiny_model(tmp_path / "model", seed=1)
    first = _peaky(tmp_path / "a", seed=1)
    torch.save(first, model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    save_file(first, model / "model.fp16.safetensors", metadata={"format": "pt"})  # not what loads
    old = _probs(RegionPredictor.from_pretrained(model, backend="onnx"))  # exports, fills the cache
    assert lean.lean_predictor(model) is not None

    torch.save(_peaky(tmp_path / "b", seed=7), model / "pytorch_model.bin")
    truth = _probs(RegionPredictor.from_pretrained(model, backend="torch"))
    assert np.abs(truth - old).max() > 0.1  # the new weights answer differently
    assert lean.lean_predictor(model) is None  # a new key: nothing cached for these weights yet
    assert np.abs(_probs(RegionPredictor.from_pretrained(model, backend="onnx")) - truth).max() < 1e-3
    assert np.abs(_probs(lean.lean_predictor(model)) - truth).max() < 1e-3


@onnx
@pytest.mark.parametrize("copied", ["graph", "entry"])
def test_a_graph_copied_over_another_is_exported_again_never_answered_from(tmp_path, monkeypatch, copied):
    """Model A's cache entry gets model B's graph (alone, or B's whole entry with its records): the torch-free
    start does not use it, and the torch load exports A's graph again and answers as A."""
    from safetensors.torch import save_file

    from loscat_hf.infer.backends import lean, onnx_cache
    from loscat_hf.infer.predictor import RegionPredictor

    monkeypatch.setenv("LOSCAT_HF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(lean, "gpu_present", lambda: False)
    models = {}
    for name, seed in (("a", 2), ("b", 8)):
        models[name] = save_tiny_model(tmp_path / name, seed=seed)
        save_file(_peaky(tmp_path / f"raw-{name}", seed), models[name] / "model.safetensors",
                  metadata={"format": "pt"})
    truth = _probs(RegionPredictor.from_pretrained(models["a"], backend="torch"))
    for m in models.values():
        RegionPredictor.from_pretrained(m, backend="onnx")  # exports both graphs
    entry_a, entry_b = (onnx_cache.entry(onnx_cache.folder_key(m)) for m in models.values())
    graph = onnx_cache.graph_name("logits", False)
    assert np.abs(_probs(lean.lean_predictor(models["a"])) - truth).max() < 1e-3  # before: A's own graph
    if copied == "graph":
        shutil.copy(entry_b / graph, entry_a / graph)
    else:
        shutil.rmtree(entry_a)
        shutil.copytree(entry_b, entry_a)
    assert lean.lean_predictor(models["a"]) is None
    again = RegionPredictor.from_pretrained(models["a"], backend="onnx")
    assert again.backend == "onnx" and np.abs(_probs(again) - truth).max() < 1e-3
    # exported again: the entry holds A's graph, and the torch-free start uses it once more
    digest = hashlib.sha256((entry_a / graph).read_bytes()).hexdigest()
    assert onnx_cache.recorded_digest(entry_a / graph) == digest
    assert np.abs(_probs(lean.lean_predictor(models["a"])) - truth).max() < 1e-3
