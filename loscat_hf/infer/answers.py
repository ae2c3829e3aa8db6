"""What a prediction is, and the photo -> model input steps, without torch: shared by the torch predictor
(`predictor.RegionPredictor`), the torch-free ONNX one that `predict` starts in about a second
(`backends.lean.LeanPredictor`) and the decoding workers. `PhotoPredictor` is what they share: only the
forward pass (`logits`) differs between backends."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from loscat_hf.defaults import MAX_SIDE, MIN_CONFIDENCE, MIN_MARGIN, SIZE_SLACK
from loscat_hf.io.images import open_image, resize_eval
from loscat_hf.model.calibration import apply_temperature, needs_review
from loscat_hf.model.folder import DECODING_MODES, FULL, PACKED, Decoding, ModelFolder
from loscat_hf.model.thresholds import needs_review_multi, regions, sigmoid
from loscat_hf.taxonomy import SET_SEPARATOR

ImageInput = str | os.PathLike | bytes | BinaryIO | Image.Image


@dataclass(frozen=True)
class PredictorSettings:
    """How a predictor runs and when it asks for a person's look: set once by `load_predictor`, passed down
    whole to whichever backend loads."""

    device: str | None = None
    precision: str = "auto"
    backend: str = "auto"
    min_confidence: float = MIN_CONFIDENCE
    min_margin: float = MIN_MARGIN

    @classmethod
    def of(cls, *, device: str | None = None, precision: str = "auto", backend: str = "auto",
           min_confidence: float | None = None, min_margin: float | None = None) -> PredictorSettings:
        """Settings from optional arguments: a threshold left None is the default."""
        return cls(device, precision, backend,
                   MIN_CONFIDENCE if min_confidence is None else float(min_confidence),
                   MIN_MARGIN if min_margin is None else float(min_margin))


@dataclass
class RegionPrediction:
    """One photo's answer: the region, its calibrated probability, the top-k and whether a person should
    look; `regions`: every region the photo shows, most probable first (a single-region model: the one).

    A multi-region model's scores are per-class sigmoids (they need not sum to 1): `regions` are the classes
    at or above their thresholds, `label`/`probability` the highest score, and a person should look when no
    class passes or a score sits within the margin of its threshold."""

    label: str
    probability: float
    top: list[tuple[str, float]]
    needs_review: bool
    probabilities: dict[str, float] = field(repr=False, default_factory=dict)
    regions: list[tuple[str, float]] = field(default_factory=list)
    multi_label: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def region_cells(self) -> tuple[str, str]:
        """`regions` as predict writes them (its `regions` and `regions_probability` cells, the Space's batch
        table): ';'-joined, most probable first, the scores to 4 decimals."""
        return (SET_SEPARATOR.join(c for c, _ in self.regions),
                SET_SEPARATOR.join(f"{score:.4f}" for _, score in self.regions))


def to_predictions(logits: np.ndarray, labels: list[str], temperature: float, min_confidence: float,
                   min_margin: float, top_k: int = 3,
                   thresholds: Sequence[float] = ()) -> list[RegionPrediction]:
    """Calibrated predictions from raw logits: top-k, and review flags by confidence and margin.
    `thresholds` (a multi-region model's, one per label): sigmoid scores, every class at or above its
    threshold in `regions`, review when none passes or one sits within `min_margin` of its threshold."""
    multi = len(thresholds) > 0
    if multi:
        probs = sigmoid(logits, temperature)
        flags = needs_review_multi(probs, thresholds, min_margin)
        shown = regions(probs, thresholds, labels)
    else:
        probs = apply_temperature(logits, temperature)
        flags = needs_review(probs, min_confidence, min_margin)
        shown = [[] for _ in probs]
    out = []
    for row, flag, passed in zip(probs, flags, shown, strict=True):
        order = np.argsort(-row)
        top = [(labels[i], float(row[i])) for i in order[: max(1, top_k)]]
        out.append(RegionPrediction(
            label=top[0][0], probability=top[0][1], top=top, needs_review=bool(flag),
            probabilities={labels[i]: float(row[i]) for i in range(len(labels))},
            regions=passed if multi else top[:1], multi_label=multi,
        ))
    return out


def load_photo(image: ImageInput, max_side: int = MAX_SIDE, min_side: int | None = None,
               mode: str = PACKED) -> Image.Image:
    """Decode a photo as the model's training photos were (EXIF-upright, sRGB, metadata-free); raises
    ImageProblemError. Workers decode with it.

    `mode` PACKED: the way packing does, shorter side <= max_side (the packing size). With `min_side` (the
    model's input size) a JPEG decodes at the coarsest DCT scale whose shorter side still covers it (1/8 of a
    2000x1500 photo for the 64 px tiny preset, 1/4 of a 3000x2000 photo for 384 px), never upsampled, and is
    resampled only where decoding at the packing size would have been too.
    `mode` FULL: the whole photo at full resolution, no DCT scaling and no shrink (`max_side`, `min_side`
    unused): the one resize to the input size then sees the pixels the study's own script resizes."""
    if mode not in DECODING_MODES:
        raise ValueError(f"decoding mode {mode!r} is not one of {DECODING_MODES}")
    full = mode == FULL
    if isinstance(image, Image.Image):
        return open_image(_encode_png(image), max_side=None if full else max_side)
    if full:
        return open_image(image)
    small = min_side if min_side and min_side < max_side else None
    return open_image(image, max_side=max_side, size_slack=SIZE_SLACK, min_side=small)


def load_decoded(image: ImageInput, decoding: Decoding) -> Image.Image:
    """A photo decoded as the model folder's record says: `load_photo` with its mode and sizes."""
    return load_photo(image, decoding.max_side, decoding.image_size, decoding.mode)


def photo_array(image: Image.Image, image_size: int, resample: int = Image.BILINEAR) -> np.ndarray:
    """A decoded photo -> uint8 (3, S, S), the same squash-resize as the training eval transform."""
    return np.ascontiguousarray(
        np.asarray(resize_eval(image, image_size, resample), dtype=np.uint8).transpose(2, 0, 1))


def _encode_png(image: Image.Image) -> bytes:
    """A PIL image from a caller goes through the same safe decode path as a file (modes, alpha, EXIF)."""
    import io

    buf = io.BytesIO()
    if image.mode == "CMYK":  # PNG has no CMYK
        image = image.convert("RGB")
    exif = image.getexif() if hasattr(image, "getexif") else None
    image.save(buf, format="PNG", exif=exif.tobytes() if exif else b"")
    return buf.getvalue()


def decode(image: ImageInput, decoding: Decoding) -> np.ndarray:
    """A photo -> uint8 (3, S, S) model input, decoded as the model folder records (`decoding.mode`) and
    squashed once with its resample filter."""
    return photo_array(load_decoded(image, decoding), decoding.image_size, decoding.resample)


class PhotoPredictor:
    """What every predictor shares, whatever runs its forward pass: a photo decoded as the model folder
    records (`folder.decoding`: what training saw), calibrated top-k with review flags. A subclass sets
    `folder`, `backend`, `precision`, `temperature` and the thresholds, and implements `logits`."""

    folder: ModelFolder
    backend: str
    precision: str
    temperature: float
    min_confidence: float = MIN_CONFIDENCE
    min_margin: float = MIN_MARGIN

    @property
    def labels(self) -> list[str]:
        return list(self.folder.labels)

    @property
    def decoding(self) -> Decoding:
        return self.folder.decoding

    @property
    def image_size(self) -> int:
        return self.folder.image_size

    def load(self, image: ImageInput) -> Image.Image:
        """Decode a photo (path, bytes, stream or PIL image) as the model folder records (packed, or the
        whole photo for a converted study checkpoint); raises ImageProblemError."""
        return load_decoded(image, self.decoding)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """A decoded photo -> uint8 (3, S, S), the same squash-resize as the training eval transform."""
        return photo_array(image, self.decoding.image_size, self.decoding.resample)

    def logits(self, pixel_values, tta: bool = False) -> np.ndarray:
        """uint8 (B, 3, S, S) -> float32 logits (B, num_labels); tta averages with the mirrored photo."""
        raise NotImplementedError

    def from_logits(self, logits: np.ndarray, top_k: int = 3) -> list[RegionPrediction]:
        """Calibrated predictions from raw logits: top-k, and review flags by confidence and margin."""
        return to_predictions(logits, self.labels, self.temperature, self.min_confidence, self.min_margin,
                              top_k, self.folder.thresholds)

    def predict(self, images: Sequence[ImageInput] | ImageInput, top_k: int = 3, tta: bool = False,
                batch_size: int = 16) -> list[RegionPrediction] | RegionPrediction:
        """Predict one photo (returns one RegionPrediction) or a list (returns a list, same order).

        Unreadable photos raise ImageProblemError; `loscat-hf predict` turns them into rows instead.
        """
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        results: list[RegionPrediction] = []
        for start in range(0, len(items), batch_size):
            batch = np.stack([self.pixels(self.load(x)) for x in items[start:start + batch_size]])
            results += self.from_logits(self.logits(batch, tta=tta), top_k=top_k)
        return results[0] if single else results

    def __call__(self, images, top_k: int = 3, tta: bool = False, batch_size: int = 16):
        return self.predict(images, top_k=top_k, tta=tta, batch_size=batch_size)
