"""Region prediction with a loaded torch model: the predictor behind the Space, `explain` and `predict` where
no cached ONNX graph can answer (`infer.load.load_predictor` chooses).

`RegionPredictor` loads any image-classification folder or Hub id that plain `transformers` can load,
decodes photos as its model folder records (`answers.load_decoded`: as packing does, or the whole photo
for a converted study checkpoint; EXIF-upright, sRGB, metadata-free), squashes them to the model's input
size like the training eval transform, and returns calibrated probabilities (the temperature fitted by
`train` or `calibrate`, 1.0 when absent: uncalibrated). Whether torch or ONNX Runtime runs the forward
pass is `backends.runner`'s business.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from loscat_hf.defaults import MIN_CONFIDENCE, MIN_MARGIN, PRECISIONS
from loscat_hf.errors import LoscatError
from loscat_hf.infer.answers import (  # noqa: F401  (RegionPrediction, load_photo: part of this module's API)
    ImageInput,
    PhotoPredictor,
    RegionPrediction,
    load_photo,
)
from loscat_hf.infer.backends.runner import backend_of, make_runner, onnx_key, prepare_explain
from loscat_hf.model.folder import config_path, folder_from_config, load_config
from loscat_hf.model.inference import pick_device
from loscat_hf.model.processor import processor_stats

logger = logging.getLogger(__name__)


class RegionPredictor(PhotoPredictor):
    """Predict the LoSCAT region of photos with a saved model folder or Hub id.

    precision: "fp32"; "bf16" (autocast; on CPUs with AVX-512-BF16/AMX and on GPUs); "int8" (ONNX Runtime's
    dynamic int8 quantisation, CPU only); "auto" = bf16 on a GPU, fp32 on CPU.
    backend: "torch", "onnx" (ONNX Runtime, the `onnx` extra) or "auto" = onnx on CPU when installed and exact
    (infer/backends/choice.py).
    temperature: calibrate with this instead of the folder's recorded one (`.folder.temperature` stays the
    record; `.temperature` is what predictions use).
    """

    def __init__(self, model: torch.nn.Module, *, image_size: int, image_mean: Sequence[float],
                 image_std: Sequence[float], resample: int = Image.BILINEAR, device: str | None = None,
                 precision: str = "auto", backend: str = "auto",
                 min_confidence: float = MIN_CONFIDENCE, min_margin: float = MIN_MARGIN,
                 temperature: float | None = None, allow_inexact: bool = False, name: str = "",
                 _onnx_key: str | None = None) -> None:
        if precision not in PRECISIONS:
            raise LoscatError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        dev = pick_device(device)
        self.model = model
        self.config = model.config
        self.folder = folder_from_config(model.config, name=name, image_size=image_size,
                                         image_mean=image_mean, image_std=image_std, resample=resample)
        self.precision = precision
        self.temperature = self.folder.temperature if temperature is None else float(temperature)
        self.runner = make_runner(model, image_mean, image_std, dev, precision, backend, key=_onnx_key,
                                  record=self.folder.to_dict(), allow_inexact=allow_inexact)
        self.backend = backend_of(self.runner)
        self.min_confidence = float(min_confidence)
        self.min_margin = float(min_margin)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> RegionPredictor:
        """Load a local folder or a Hub id (the HF cache works offline with HF_HUB_OFFLINE=1)."""
        from safetensors import SafetensorError
        from torch.nn.utils import get_total_norm
        from transformers import AutoModelForImageClassification

        from loscat_hf.model.build import weight_shapes

        name = os.path.expanduser(str(name_or_path))
        config = load_config(name)
        where = config_path(name)
        # Check the weights file before loading it: a damaged file or a head that disagrees with config.json
        # is a one-line error naming the file, not a safetensors or transformers traceback.
        shapes = weight_shapes(name) if os.path.isdir(name) else None
        head = (shapes or {}).get("classifier.weight")
        if head and head[0] != config.num_labels:
            raise LoscatError(f"{where} lists {config.num_labels} classes (id2label/num_labels) but the "
                              f"classifier in {os.path.join(name, 'model.safetensors')} has {head[0]} "
                              "outputs; restore the config.json that was saved with these weights")
        key = onnx_key(name, kwargs.get("backend", "auto"), kwargs.get("device"),
                       kwargs.get("precision", "auto"))
        try:
            model = AutoModelForImageClassification.from_pretrained(name, config=config)
        except (OSError, ValueError, SafetensorError) as exc:
            raise LoscatError(f"cannot load model {name!r}: {str(exc).splitlines()[0]}") from None
        except RuntimeError:  # transformers: weights whose shapes do not fit the config (e.g. the head)
            raise LoscatError(f"cannot load model {name!r}: its weights do not fit {where} (layer "
                              "shapes or the number of classes differ); restore the config.json saved "
                              "with them") from None
        # one fused norm over all weights (NaN/inf propagate): 0.03 s for ViT-B here, against 0.24 s for a
        # per-tensor isfinite loop, on every start of predict and the Space
        if not torch.isfinite(get_total_norm(list(model.parameters()), norm_type=2.0, foreach=True)):
            raise LoscatError(f"model {name!r} has NaN or infinite weights (a damaged file or a diverged "
                              "training run); copy the folder again or re-train")
        return cls(model, **processor_stats(name, model.config), name=name, _onnx_key=key.key(), **kwargs)

    @property
    def device(self) -> torch.device:
        return self.runner.device

    def logits(self, pixel_values: torch.Tensor | np.ndarray, tta: bool = False) -> np.ndarray:
        """uint8 (B, 3, S, S) -> float32 logits (B, num_labels); tta averages with the mirrored photo."""
        return self.runner(torch.as_tensor(pixel_values), tta=tta)

    def explain_inputs(self, image: ImageInput) -> tuple[Image.Image, torch.Tensor]:
        """The decoded photo and its model input, for explanation maps drawn over what the model saw."""
        img = self.load(image)
        return img, torch.from_numpy(self.pixels(img))

    def prepare_explain(self) -> None:
        """Ready the explanation path now (the ONNX explanation graph is exported on first use)."""
        prepare_explain(self.runner)
