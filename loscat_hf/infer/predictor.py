"""Region prediction for single photos and lists of photos: the Python API behind `predict` and the Space.

`RegionPredictor` loads any image-classification folder or Hub id that plain `transformers` can load,
decodes photos exactly as packing does (`images.open_image`: EXIF-upright, sRGB, metadata-free, shorter
side at most 512 px), squashes them to the model's input size like the training eval transform, and
returns calibrated probabilities (the temperature saved by training, 1.0 when absent).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from loscat_hf.defaults import MAX_SIDE, MAX_SIDE_KEY, PRECISIONS
from loscat_hf.errors import LoscatError
from loscat_hf.infer.answers import (  # noqa: F401  (RegionPrediction, load_photo: part of this module's API)
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_MIN_MARGIN,
    ImageInput,
    RegionPrediction,
    check_labels,
    load_photo,
    photo_array,
    to_predictions,
)
from loscat_hf.model import onnx_cache
from loscat_hf.model.backends import OnnxRunner, choose_backend
from loscat_hf.model.calibration import temperature_from_config
from loscat_hf.model.inference import LogitRunner, pick_device

logger = logging.getLogger(__name__)


def _processor_stats(model_dir: str, config) -> dict[str, Any]:
    """Input size, mean, std and resample filter from the folder's preprocessor_config.json, or google/vit-*'s
    defaults for a bare folder."""
    from loscat_hf.model.build import load_processor, processor_resample, processor_size

    try:
        processor = load_processor(model_dir)
        return dict(image_size=processor_size(processor), image_mean=list(processor.image_mean),
                    image_std=list(processor.image_std), resample=processor_resample(processor))
    except (OSError, ValueError, TypeError):
        size = int(getattr(config, "image_size", 224))
        logger.warning("no image processor in %s: using %d px, bilinear, mean = std = 0.5 (google/vit-* "
                       "defaults)", model_dir, size)
        return dict(image_size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=Image.BILINEAR)


class RegionPredictor:
    """Predict the LoSCAT region of photos with a saved model folder or Hub id.

    precision: "fp32"; "bf16" (autocast; on CPUs with AVX-512-BF16/AMX and on GPUs); "int8" (ONNX Runtime's
    dynamic int8 quantisation, CPU only); "auto" = bf16 on a GPU, fp32 on CPU.
    backend: "torch", "onnx" (ONNX Runtime, the `onnx` extra) or "auto" = onnx on CPU when installed and exact
    (model/backends.py).
    """

    def __init__(self, model: torch.nn.Module, *, image_size: int, image_mean: Sequence[float],
                 image_std: Sequence[float], resample: int = Image.BILINEAR, device: str | None = None,
                 precision: str = "auto", backend: str = "auto",
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE, min_margin: float = DEFAULT_MIN_MARGIN,
                 temperature: float | None = None, allow_inexact: bool = False, _onnx_key: str | None = None) -> None:
        if precision not in PRECISIONS:
            raise LoscatError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        dev = pick_device(device)
        check_labels(model.config)
        chosen = choose_backend(backend, dev, precision)
        self.model = model
        self.config = model.config
        self.labels = [self.config.id2label[i] for i in range(self.config.num_labels)]
        self.image_size = int(image_size)
        self.resample = int(resample)  # the model's preprocessor_config filter
        self.precision = precision
        self.temperature = temperature_from_config(self.config) if temperature is None else float(temperature)
        # the size the training photos were packed at (recorded by `train`) caps the decode size
        self.packing_side = int(getattr(self.config, MAX_SIDE_KEY, None) or MAX_SIDE)
        # what infer.lean needs to run this model from its cached ONNX graph without torch
        record = dict(labels=self.labels, image_size=self.image_size, image_mean=[float(v) for v in image_mean],
                      image_std=[float(v) for v in image_std], resample=self.resample,
                      temperature=temperature_from_config(self.config), packing_side=self.packing_side)
        self.runner = _runner(model, image_mean, image_std, dev, precision, chosen, explicit=backend == "onnx",
                              key=_onnx_key, record=record, allow_inexact=allow_inexact)
        self.backend = "onnx" if isinstance(self.runner, OnnxRunner) else "torch"
        self.min_confidence = float(min_confidence)
        self.min_margin = float(min_margin)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> RegionPredictor:
        """Load a local folder or a Hub id (the HF cache works offline with HF_HUB_OFFLINE=1)."""
        from safetensors import SafetensorError
        from torch.nn.utils import get_total_norm
        from transformers import AutoConfig, AutoModelForImageClassification

        from loscat_hf.model.build import weight_shapes

        name = os.path.expanduser(str(name_or_path))
        looks_local = name.startswith(("/", ".")) or name.count("/") > 1 or "\\" in name
        if looks_local and not os.path.exists(name):
            raise LoscatError(f"cannot load model {name!r}: no such folder (and not a Hub id 'owner/name')")
        try:
            config = AutoConfig.from_pretrained(name)
        except (OSError, ValueError) as exc:
            raise LoscatError(f"cannot load model {name!r}: {str(exc).splitlines()[0]}") from None
        where = os.path.join(name, "config.json") if os.path.isdir(name) else f"{name}'s config.json"
        check_labels(config, where)
        # Check the weights file before loading it: a damaged file or a head that disagrees with config.json
        # is a one-line error naming the file, not a safetensors or transformers traceback.
        shapes = weight_shapes(name) if os.path.isdir(name) else None
        head = (shapes or {}).get("classifier.weight")
        if head and head[0] != config.num_labels:
            raise LoscatError(f"{where} lists {config.num_labels} classes (id2label/num_labels) but the classifier "
                              f"in {os.path.join(name, 'model.safetensors')} has {head[0]} outputs; restore the "
                              "config.json that was saved with these weights")
        # The ONNX cache key, hashed before the weights load (~0.3 s for ViT-B): only where ONNX Runtime may run;
        # settings that cannot run raise in __init__, with the same check
        try:
            onnx_likely = choose_backend(kwargs.get("backend", "auto"), str(pick_device(kwargs.get("device"))),
                                         kwargs.get("precision", "auto")) == "onnx"
        except LoscatError:
            onnx_likely = False
        folder = onnx_cache.local_model_folder(name) if onnx_likely else None
        state = onnx_cache.files_state(folder) if folder is not None else None
        key = onnx_cache.folder_key(folder) if folder is not None else None
        try:
            model = AutoModelForImageClassification.from_pretrained(name, config=config)
        except (OSError, ValueError, SafetensorError) as exc:
            raise LoscatError(f"cannot load model {name!r}: {str(exc).splitlines()[0]}") from None
        except RuntimeError:  # transformers: weights whose shapes do not fit the config (e.g. the head)
            raise LoscatError(f"cannot load model {name!r}: its weights do not fit {where} (layer shapes or the "
                              "number of classes differ); restore the config.json saved with them") from None
        # one fused norm over all weights (NaN/inf propagate): 0.03 s for ViT-B here, against 0.24 s for a
        # per-tensor isfinite loop, on every start of predict and the Space
        if not torch.isfinite(get_total_norm(list(model.parameters()), norm_type=2.0, foreach=True)):
            raise LoscatError(f"model {name!r} has NaN or infinite weights (a damaged file or a diverged "
                              "training run); copy the folder again or re-train")
        # the files hashed before loading must still be the files loaded: else key the graph by the weights
        if key is not None and onnx_cache.files_state(folder) != state:
            key = None
        return cls(model, **_processor_stats(name, model.config), _onnx_key=key, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.runner.device

    def load(self, image: ImageInput) -> Image.Image:
        """Decode a photo (path, bytes, stream or PIL image) the way packing does; raises ImageProblemError."""
        return load_photo(image, self.packing_side, self.image_size)

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """A decoded photo -> uint8 (3, S, S), the same squash-resize as the training eval transform."""
        return torch.from_numpy(photo_array(image, self.image_size, self.resample))

    def logits(self, pixel_values: torch.Tensor | np.ndarray, tta: bool = False) -> np.ndarray:
        """uint8 (B, 3, S, S) -> float32 logits (B, num_labels); tta averages with the mirrored photo."""
        return self.runner(torch.as_tensor(pixel_values), tta=tta)

    def explain_inputs(self, image: ImageInput) -> tuple[Image.Image, torch.Tensor]:
        """The decoded photo and its model input, for explanation maps drawn over what the model saw."""
        img = self.load(image)
        return img, self.pixels(img)

    def from_logits(self, logits: np.ndarray, top_k: int = 3) -> list[RegionPrediction]:
        """Calibrated predictions from raw logits: top-k, and review flags by confidence and margin."""
        return to_predictions(logits, self.labels, self.temperature, self.min_confidence, self.min_margin, top_k)

    def predict(self, images: Sequence[ImageInput] | ImageInput, top_k: int = 3, tta: bool = False,
                batch_size: int = 16) -> list[RegionPrediction] | RegionPrediction:
        """Predict one photo (returns one RegionPrediction) or a list (returns a list, same order).

        Unreadable photos raise ImageProblemError; `loscat-hf predict` turns them into rows instead.
        """
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        results: list[RegionPrediction] = []
        for start in range(0, len(items), batch_size):
            batch = torch.stack([self.pixels(self.load(x)) for x in items[start:start + batch_size]])
            results += self.from_logits(self.logits(batch, tta=tta), top_k=top_k)
        return results[0] if single else results

    __call__ = predict


def _runner(model: torch.nn.Module, mean, std, device: torch.device, precision: str, backend: str,
            explicit: bool, key: str | None = None, record: dict | None = None,
            allow_inexact: bool = False) -> LogitRunner:
    """The forward-pass runner: ONNX Runtime when chosen and exact (int8 is never exact: asked for), else torch.
    With backend "auto" any failure of the ONNX step (a read-only cache, an exporter error) falls back to
    torch with a warning; `allow_inexact` (compare-backends) keeps an inexact graph, to report it.

    int8 runs photo by photo: dynamic quantisation scales activations per run, so in a batch a photo's answer
    would depend on its companions."""
    if backend == "onnx":
        try:
            runner = OnnxRunner(model, mean, std, int8=precision == "int8", key=key, record=record)
        except Exception as exc:  # noqa: BLE001 - export/cache trouble must not stop an auto run
            if explicit or precision == "int8":
                raise LoscatError(f"the ONNX backend could not start ({type(exc).__name__}: {exc}); use "
                                  "backend='torch'", param="backend") from exc
            logger.warning("the ONNX backend could not start (%s: %s): using torch", type(exc).__name__, exc)
            runner = None
        if runner is not None and (runner.exact or precision == "int8" or allow_inexact):
            return runner
    if backend == "onnx" and runner is not None:
        diff = runner.check.get("max_prob_diff", float("nan"))
        if explicit:
            raise LoscatError(f"the ONNX graph of this model is not exact (max probability difference {diff:.2g} "
                              "against torch on the probe photos); use backend='torch'", param="backend")
        logger.warning("the ONNX graph differs from torch by up to %.2g in probability: using torch", diff)
    bf16 = {"auto": None, "fp32": False, "bf16": True}[precision]
    return LogitRunner(model, mean, std, device=str(device), bf16=bf16)


