"""Turn dataset rows into model-ready uint8 batches, with photo-appropriate augmentation.

No torchvision (PITFALLS): PIL does one affine warp for crop + rotation + flip, numpy does colour jitter.
Batches stay uint8 until they reach the device, where the trainer normalises them: 4x less to copy.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass
class AugmentConfig:
    """Random resized crop, small rotation, colour jitter and horizontal flip (sides are merged)."""

    scale: tuple[float, float] = (0.55, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    max_rotation: float = 15.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hflip: float = 0.5


def resize_eval(img: Image.Image, size: int) -> Image.Image:
    """Deterministic resize that matches ViTImageProcessor (bilinear squash to size x size)."""
    return img.convert("RGB").resize((size, size), Image.BILINEAR)


def random_affine(img: Image.Image, size: int, cfg: AugmentConfig, rng: random.Random) -> Image.Image:
    """Crop (area share in cfg.scale), rotate and maybe flip in a single resampling."""
    img = img.convert("RGB")
    w0, h0 = img.size
    area = w0 * h0 * rng.uniform(*cfg.scale)
    aspect = math.exp(rng.uniform(math.log(cfg.ratio[0]), math.log(cfg.ratio[1])))
    cw = min(w0, math.sqrt(area * aspect))
    ch = min(h0, math.sqrt(area / aspect))
    # Box-reduce first so that the bilinear warp never shrinks by more than ~2x (no aliasing).
    factor = int(min(cw, ch) / (2 * size))
    if factor >= 2:
        img = img.reduce(factor)
        cw, ch, w0, h0 = cw / factor, ch / factor, img.size[0], img.size[1]
    cx = rng.uniform(cw / 2, w0 - cw / 2)
    cy = rng.uniform(ch / 2, h0 - ch / 2)
    theta = math.radians(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
    flip = -1.0 if rng.random() < cfg.hflip else 1.0
    a, b = math.cos(theta) * flip * cw / size, -math.sin(theta) * ch / size
    d, e = math.sin(theta) * flip * cw / size, math.cos(theta) * ch / size
    # output pixel (x, y) -> input (a x + b y + c, d x + e y + f), centred on (cx, cy)
    c = cx - (a + b) * size / 2
    f = cy - (d + e) * size / 2
    return img.transform((size, size), Image.AFFINE, (a, b, c, d, e, f), resample=Image.BILINEAR,
                         fillcolor=(0, 0, 0))


def colour_jitter(arr: np.ndarray, cfg: AugmentConfig, rng: random.Random) -> np.ndarray:
    """Brightness, contrast and saturation jitter on an HxWx3 uint8 array."""
    x = arr.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    mean = float(x.mean())
    x = (x - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    x *= rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    return np.clip(x, 0, 255).astype(np.uint8)


def to_uint8_chw(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


class ImageTransform:
    """`datasets.with_transform` callable: rows with PIL `image` -> `pixel_values` uint8 (3, S, S).

    Picklable, so DataLoader workers run it in parallel; augmentation draws from Python's `random`,
    which torch seeds per worker.
    """

    def __init__(self, size: int, train: bool, augment: AugmentConfig | None = None,
                 label_column: str = "labels") -> None:
        self.size = size
        self.train = train
        self.augment = augment or AugmentConfig()
        self.label_column = label_column

    def __call__(self, batch: dict) -> dict:
        out = []
        for img in batch["image"]:
            if self.train:
                img = random_affine(img, self.size, self.augment, random)
                out.append(torch.from_numpy(colour_jitter(np.asarray(img), self.augment, random)).permute(2, 0, 1))
            else:
                out.append(to_uint8_chw(resize_eval(img, self.size)))
        result = {"pixel_values": out}
        if self.label_column in batch:
            result["labels"] = batch[self.label_column]
        return result


def collate(features: list[dict]) -> dict:
    """Stack uint8 images and integer labels; extra keys (targets of other tasks) are stacked too."""
    batch = {"pixel_values": torch.stack([f["pixel_values"] for f in features])}
    for key in features[0]:
        if key != "pixel_values":
            batch[key] = torch.as_tensor([f[key] for f in features])
    return batch


def normalise(pixel_values: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) on the device -> float, normalised like the image processor does."""
    x = pixel_values.float().div_(255.0)
    return x.sub_(mean.view(1, 3, 1, 1)).div_(std.view(1, 3, 1, 1))
