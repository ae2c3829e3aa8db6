"""The predictor seam: `load_predictor` chooses how a model runs and returns one interface, `Predictor`.

Callers (`predict`, `explain`, `compare-backends`, the Space, the labelling app) never choose between torch,
ONNX Runtime and the torch-free cached graph themselves: every backend-specific step lives in
`infer/backends/` (the only package that imports ONNX Runtime).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from loscat_hf.errors import LoscatError
from loscat_hf.infer.answers import ImageInput, PredictorSettings, RegionPrediction
from loscat_hf.model.folder import Decoding, ModelFolder


@runtime_checkable
class Predictor(Protocol):
    """What every loaded predictor offers, whichever backend runs it."""

    folder: ModelFolder
    backend: str
    precision: str
    temperature: float
    min_confidence: float
    min_margin: float

    @property
    def labels(self) -> list[str]: ...

    @property
    def decoding(self) -> Decoding: ...

    def load(self, image: ImageInput) -> Image.Image: ...

    def pixels(self, image: Image.Image) -> np.ndarray: ...

    def logits(self, pixel_values, tta: bool = False) -> np.ndarray: ...

    def from_logits(self, logits: np.ndarray, top_k: int = 3) -> list[RegionPrediction]: ...

    def predict(self, images: Sequence[ImageInput] | ImageInput, top_k: int = 3, tta: bool = False,
                batch_size: int = 16) -> list[RegionPrediction] | RegionPrediction: ...


def load_predictor(model: str | os.PathLike | Predictor, *, backend: str = "auto",
                   device: str | None = None, precision: str = "auto", min_confidence: float | None = None,
                   min_margin: float | None = None, explain: bool = False,
                   allow_inexact: bool = False) -> Predictor:
    """A predictor for a model folder or Hub id (a ready predictor is returned as it is).

    A model whose exact ONNX graph is cached runs from it without importing torch (about a second to start);
    otherwise the torch model loads, and runs on torch or ONNX Runtime as `backend`/`precision`/`device` ask.
    `explain`: the caller needs attention maps (always the loaded model). `allow_inexact` (compare-backends)
    keeps an ONNX graph that differs from torch, to report by how much."""
    if isinstance(model, Predictor):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise LoscatError(f"model must be a model folder, a Hub id or a loaded predictor, got "
                          f"{type(model).__name__}", param="model")
    settings = PredictorSettings.of(device=device, precision=precision, backend=backend,
                                    min_confidence=min_confidence, min_margin=min_margin)
    if not explain and not allow_inexact:
        from loscat_hf.infer.backends.lean import lean_predictor

        lean = lean_predictor(model, settings)
        if lean is not None:
            return lean
    from loscat_hf.infer.predictor import RegionPredictor

    return RegionPredictor.from_pretrained(model, allow_inexact=allow_inexact, **asdict(settings))
