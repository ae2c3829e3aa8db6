"""Turn dataset rows into model-ready uint8 batches, with photo-appropriate augmentation.

No torchvision (docs/pitfalls.md, "torch / torchvision"). DataLoader workers only decode and
random-resized-crop (one PIL resize); batches stay uint8 until they reach the device, where flip, rotation
and colour jitter run batched and the trainer normalises: 4x less to copy, and the CPU work per image stays
small.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from loscat_hf.data.dataset import TARGET_COLUMN
from loscat_hf.io.images import resize_eval


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


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")  # convert() copies even when already RGB


def random_resized_crop(img: Image.Image, size: int, cfg: AugmentConfig, rng: random.Random,
                        resample: int = Image.BILINEAR) -> Image.Image:
    """Crop a random box (area share in cfg.scale, aspect in cfg.ratio) and resize it in one PIL call."""
    img = _rgb(img)
    w0, h0 = img.size
    area = w0 * h0 * rng.uniform(*cfg.scale)
    aspect = math.exp(rng.uniform(math.log(cfg.ratio[0]), math.log(cfg.ratio[1])))
    cw = min(w0, math.sqrt(area * aspect))
    ch = min(h0, math.sqrt(area / aspect))
    x0 = rng.uniform(0, w0 - cw)
    y0 = rng.uniform(0, h0 - ch)
    return img.resize((size, size), resample, box=(x0, y0, x0 + cw, y0 + ch))


def device_augment(x: torch.Tensor, cfg: AugmentConfig,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip, small rotation and colour jitter of a float (B, 3, H, W) batch in [0, 1], on its device.

    Batched tensor ops cost almost nothing on a GPU, and keep the CPU workers down to decode + crop.
    """
    b = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator) * (hi - lo) + lo).to(x.device).view(b, 1, 1, 1)

    flip = (torch.rand(b, generator=generator) < cfg.hflip).to(x.device)
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
    if cfg.max_rotation > 0:
        theta = torch.deg2rad(uniform(-cfg.max_rotation, cfg.max_rotation).view(b))
        cos, sin = torch.cos(theta), torch.sin(theta)
        zeros = torch.zeros_like(cos)
        mat = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
        grid = torch.nn.functional.affine_grid(mat.to(x.dtype), list(x.shape), align_corners=False)
        x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                            align_corners=False)
    grey = x.mean(dim=1, keepdim=True)
    x = grey + (x - grey) * uniform(1 - cfg.saturation, 1 + cfg.saturation)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    x = x * uniform(1 - cfg.brightness, 1 + cfg.brightness)
    return x.clamp_(0.0, 1.0)


def to_uint8_chw(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


class ImageTransform:
    """`datasets.with_transform` callable: rows with PIL `image` -> `pixel_values` uint8 (3, S, S).

    Picklable, so DataLoader workers run it in parallel; augmentation draws from Python's `random`,
    which torch seeds per worker. `resample` is the model's own filter (`model.folder.processor_resample`).
    """

    def __init__(self, size: int, train: bool, augment: AugmentConfig | None = None,
                 label_column: str = "labels", resample: int = Image.BILINEAR) -> None:
        self.size = size
        self.resample = int(resample)
        self.train = train
        self.augment = augment or AugmentConfig()
        self.label_column = label_column

    def __call__(self, batch: dict) -> dict:
        out = []
        for img in batch["image"]:
            # --crop-scale 1: the whole photo, as in evaluation
            if self.train and self.augment.scale[0] < 1.0:
                img = random_resized_crop(img, self.size, self.augment, random, self.resample)
            else:
                img = resize_eval(img, self.size, self.resample)
            out.append(to_uint8_chw(img))
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


def normalise(pixel_values: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              augment: AugmentConfig | None = None) -> torch.Tensor:
    """uint8 (B, 3, H, W) on the device -> float, (augmented and) normalised like the image processor."""
    x = pixel_values.float().div_(255.0)
    if augment is not None:
        x = device_augment(x, augment)
    return x.sub_(mean.view(1, 3, 1, 1)).div_(std.view(1, 3, 1, 1))


class ScoreTransform(ImageTransform):
    """ImageTransform that also passes the score targets through to the collator."""

    def __call__(self, batch: dict) -> dict:
        result = super().__call__(batch)
        if TARGET_COLUMN in batch:
            result[TARGET_COLUMN] = batch[TARGET_COLUMN]
        return result
