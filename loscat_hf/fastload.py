"""Parallel photo decoding for batched labelling: DataLoader workers turn paths into uint8 model inputs.

Why: decoding a camera JPEG costs far more than a small model's forward pass. Workers decode with JPEG
draft mode (`predict.load_photo`, the predictor's own decode) and squash to the
model size, so the main process only runs the model; batches stay uint8 until the device.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import torch

from loscat_hf.predict import load_photo, photo_pixels


class PhotoPixels(torch.utils.data.Dataset):
    """Paths -> uint8 (3, S, S), decoded exactly like `RegionPredictor.load` + `.pixels`."""

    def __init__(self, paths: Sequence[str | os.PathLike], image_size: int) -> None:
        self.paths = [str(p) for p in paths]
        self.image_size = int(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return photo_pixels(load_photo(self.paths[i]), self.image_size)


def pixel_batches(paths: Sequence[str | os.PathLike], image_size: int, batch_size: int = 32,
                  num_workers: int = 2) -> Iterator[torch.Tensor]:
    """uint8 batches (B, 3, S, S) in the order of `paths`, decoded by `num_workers` processes."""
    loader = torch.utils.data.DataLoader(
        PhotoPixels(paths, image_size), batch_size=batch_size, num_workers=num_workers,
        pin_memory=torch.cuda.is_available(), prefetch_factor=4 if num_workers else None)
    yield from loader
