"""What a prediction is, and the photo -> model input steps, without torch: shared by the torch predictor
(`predictor.RegionPredictor`), the torch-free ONNX one that `predict` starts in about a second
(`lean.LeanPredictor`) and the decoding workers."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from loscat_hf.defaults import MAX_SIDE, SIZE_SLACK
from loscat_hf.errors import LoscatError
from loscat_hf.io.images import open_image, resize_eval
from loscat_hf.model.calibration import apply_temperature

ImageInput = str | os.PathLike | bytes | BinaryIO | Image.Image
DEFAULT_MIN_CONFIDENCE = 0.5
DEFAULT_MIN_MARGIN = 0.1


@dataclass
class RegionPrediction:
    """One photo's answer: the region, its calibrated probability, the top-k and whether a person should look."""

    label: str
    probability: float
    top: list[tuple[str, float]]
    needs_review: bool
    probabilities: dict[str, float] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_predictions(logits: np.ndarray, labels: list[str], temperature: float, min_confidence: float,
                   min_margin: float, top_k: int = 3) -> list[RegionPrediction]:
    """Calibrated predictions from raw logits: top-k, and review flags by confidence and margin."""
    probs = apply_temperature(logits, temperature)
    out = []
    for row in probs:
        order = np.argsort(-row)
        top = [(labels[i], float(row[i])) for i in order[: max(1, top_k)]]
        margin = float(row[order[0]] - row[order[1]]) if len(order) > 1 else 1.0
        out.append(RegionPrediction(
            label=top[0][0], probability=top[0][1], top=top,
            needs_review=bool(top[0][1] < min_confidence or margin < min_margin),
            probabilities={labels[i]: float(row[i]) for i in range(len(labels))},
        ))
    return out


def check_labels(config, where: str = "the model config") -> None:
    """id2label must name every output 0..num_labels-1 once: else predictions would carry wrong or no names."""
    n = int(config.num_labels)
    id2label = {int(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
    if n < 1 or set(id2label) != set(range(n)):
        raise LoscatError(f"{where} has num_labels {n} but id2label ids {sorted(id2label)}: each of the {n} "
                          "outputs needs one class name; restore the config.json saved with the model")
    if len(set(id2label.values())) != n:
        raise LoscatError(f"{where} names a class twice in id2label; restore the config.json saved with the model")




def load_photo(image: ImageInput, max_side: int = MAX_SIDE, min_side: int | None = None) -> Image.Image:
    """Decode a photo the way packing does (EXIF-upright, sRGB, metadata-free, shorter side <= max_side, the
    packing size); raises ImageProblemError. Workers decode with it.

    `min_side` (the model's input size): a JPEG decodes at the coarsest DCT scale whose shorter side still
    covers it (1/8 of a 2000x1500 photo for the 64 px tiny preset, 1/4 of a 3000x2000 photo for 384 px), never
    upsampled, and is resampled only where decoding at the packing size would have been too."""
    if isinstance(image, Image.Image):
        return open_image(_encode_png(image), max_side=max_side)
    small = min_side if min_side and min_side < max_side else None
    return open_image(image, max_side=max_side, size_slack=SIZE_SLACK, min_side=small)


def photo_array(image: Image.Image, image_size: int, resample: int = Image.BILINEAR) -> np.ndarray:
    """A decoded photo -> uint8 (3, S, S), the same squash-resize as the training eval transform."""
    return np.ascontiguousarray(np.asarray(resize_eval(image, image_size, resample), dtype=np.uint8).transpose(2, 0, 1))


def _encode_png(image: Image.Image) -> bytes:
    """A PIL image from a caller goes through the same safe decode path as a file (modes, alpha, EXIF)."""
    import io

    buf = io.BytesIO()
    if image.mode == "CMYK":  # PNG has no CMYK
        image = image.convert("RGB")
    exif = image.getexif() if hasattr(image, "getexif") else None
    image.save(buf, format="PNG", exif=exif.tobytes() if exif else b"")
    return buf.getvalue()
