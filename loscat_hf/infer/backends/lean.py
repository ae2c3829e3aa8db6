"""`predict`'s fast start: a model whose ONNX graph is already cached runs without torch or transformers.

Importing torch and building a transformers model took 5-9 s of every `loscat-hf predict` start on 2 cores
here, for a forward pass that ONNX Runtime runs from the cached graph. When the backend resolves to onnx, the
folder's files hash to a filled cache entry (onnx_cache.py), the fp32 graph passed its exactness check and
the graph's bytes hash to the sha256 recorded when it was written, `lean_predictor` returns a LeanPredictor:
the torch predictor's answers (same decode, same graph, same model folder record), from numpy arrays.
Otherwise it returns None and the torch predictor loads (and fills the cache, or exports a graph that did
not verify again, for the next run).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from loscat_hf.infer.answers import PhotoPredictor, PredictorSettings
from loscat_hf.infer.backends import onnx_cache
from loscat_hf.infer.backends.choice import choose_backend, gpu_present
from loscat_hf.model.folder import MULTI_LABEL, ModelFolder, threshold_values

logger = logging.getLogger(__name__)


class LeanPredictor(PhotoPredictor):
    """A PhotoPredictor whose forward pass is a cached ONNX graph, run from numpy arrays."""

    backend = "onnx"

    def __init__(self, session, folder: ModelFolder, settings: PredictorSettings,
                 weights_sha256: str | None = None) -> None:
        precision = settings.precision
        self.int8 = precision == "int8"
        self.session = session  # `onnx_cache.open_verified`: the graph written for these weights
        self.weights_sha256 = weights_sha256  # hashed for the cache key; `predict --resume` records it
        self.folder = folder
        self.temperature = folder.temperature
        self.mean = np.asarray(folder.image_mean, np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(folder.image_std, np.float32).reshape(1, 3, 1, 1)
        self.precision = precision
        self.min_confidence = settings.min_confidence
        self.min_margin = settings.min_margin

    def _run(self, x: np.ndarray) -> np.ndarray:
        # per-run activation scales: photo by photo, as the torch runner does
        if self.int8 and x.shape[0] > 1:
            return np.concatenate([self._run(x[i:i + 1]) for i in range(x.shape[0])])
        return self.session.run(None, {"pixel_values": x})[0]

    def logits(self, pixel_values, tta: bool = False) -> np.ndarray:
        """uint8 (B, 3, S, S) -> float32 logits, normalised as `model.transforms.normalise` does."""
        x = ((np.asarray(pixel_values, np.float32) / np.float32(255.0) - self.mean)
             / self.std).astype(np.float32)
        logits = self._run(np.ascontiguousarray(x))
        if tta:
            logits = (logits + self._run(np.ascontiguousarray(x[..., ::-1]))) / 2
        return logits


def _same_answers(record: ModelFolder, config: dict | None) -> bool:
    """The cached record reads the model as its config.json does now: single- or multi-region, and the same
    per-class thresholds (the key already hashes config.json; this holds even for a record written by a
    loscat-hf that kept no thresholds)."""
    return (isinstance(config, dict) and record.multi_label == (config.get("problem_type") == MULTI_LABEL)
            and record.thresholds == threshold_values(config, record.labels))


def lean_predictor(model: str | os.PathLike,
                   settings: PredictorSettings | None = None) -> LeanPredictor | None:
    """A LeanPredictor when this model's ONNX graph is cached and exact and the settings ask for ONNX Runtime;
    else None (the caller loads the torch predictor, which raises on settings that cannot run)."""
    from loscat_hf.errors import LoscatError
    from loscat_hf.hardware import compute_threads

    settings = settings or PredictorSettings()
    device, precision = settings.device, settings.precision
    if precision not in ("auto", "fp32", "int8") or (device is None and gpu_present()):
        return None
    try:
        if choose_backend(settings.backend, device or "cpu", precision) != "onnx":
            return None
    except LoscatError:
        return None  # the torch predictor raises the same error with its full context
    if not Path(os.path.expanduser(str(model))).is_dir() and os.environ.get("HF_HUB_OFFLINE") != "1":
        # a Hub id: the torch predictor asks the Hub for a newer revision; offline, the cache is it
        return None
    folder = onnx_cache.local_model_folder(model)
    found = onnx_cache.folder_fingerprint(folder) if folder is not None else None
    if found is None:
        return None
    key, weights = found
    entry = onnx_cache.entry(key)
    check = onnx_cache.read_json(entry / onnx_cache.CHECK_FILE)
    record = onnx_cache.read_json(entry / onnx_cache.RECORD_FILE)
    graph = entry / onnx_cache.graph_name("logits", precision == "int8")
    measured = onnx_cache.recorded_digest(entry / onnx_cache.graph_name("logits", False))
    # the check counts for the fp32 graph it measured; both records were written for this entry
    if not (onnx_cache.is_exact(check) and measured is not None and check.get("sha256") == measured
            and isinstance(record, dict) and record.get("version") == onnx_cache.RECORD_VERSION
            and record.get("key") == key and graph.is_file()):
        return None
    logger.info("running %s from its cached ONNX graph %s", model, entry)
    try:
        fields = {k: v for k, v in record.items() if k not in ("version", "key")}
        folder_record = ModelFolder.from_dict(fields, name=os.path.expanduser(str(model)))
        if not _same_answers(folder_record, onnx_cache.read_json(folder / "config.json")):
            logger.warning("the cached record in %s does not match %s/config.json: loading the model", entry,
                           folder)
            return None
        session = onnx_cache.open_verified(graph, compute_threads())
        if session is None:  # not the graph written for these weights: the torch load exports it again
            return None
        return LeanPredictor(session, folder_record, settings, weights_sha256=weights)
    except Exception as exc:  # noqa: BLE001 - a damaged cache entry: the torch predictor takes over
        logger.warning("cannot run the cached ONNX graph in %s (%s): loading the model", entry, exc)
        return None
