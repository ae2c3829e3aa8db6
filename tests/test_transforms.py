import random

import numpy as np
import pytest
import torch
from PIL import Image

from loscat_hf.model.build import image_processor
from loscat_hf.model.transforms import (
    AugmentConfig,
    ImageTransform,
    collate,
    device_augment,
    normalise,
    random_resized_crop,
)


@pytest.fixture
def photo():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))


def test_eval_path_matches_the_saved_image_processor(photo):
    """Training's eval, prediction and a plain `pipeline` must see the same pixels."""
    proc = image_processor(48)
    ref = proc(images=photo, return_tensors="pt")["pixel_values"]
    batch = collate([{"pixel_values": v, "labels": 0}
                     for v in ImageTransform(48, train=False)({"image": [photo]})["pixel_values"]])
    assert batch["pixel_values"].dtype == torch.uint8
    mine = normalise(batch["pixel_values"], torch.tensor(proc.image_mean), torch.tensor(proc.image_std))
    assert torch.allclose(mine, ref, atol=1e-5)


def test_training_transform_makes_varied_crops_of_the_right_size(photo):
    t = ImageTransform(32, train=True)
    outs = t({"image": [photo] * 4, "labels": [1, 2, 3, 4]})
    assert outs["labels"] == [1, 2, 3, 4]
    assert all(o.shape == (3, 32, 32) and o.dtype == torch.uint8 for o in outs["pixel_values"])
    assert len({o.numpy().tobytes() for o in outs["pixel_values"]}) == 4
    crop = random_resized_crop(photo.convert("L"), 32, AugmentConfig(), random.Random(0))
    assert crop.mode == "RGB" and crop.size == (32, 32)


def test_device_augment_is_identity_at_zero_strength_and_varies_otherwise():
    x = torch.rand(4, 3, 16, 16)
    off = AugmentConfig(max_rotation=0, brightness=0, contrast=0, saturation=0, hflip=0)
    assert torch.allclose(device_augment(x.clone(), off), x, atol=1e-6)
    flip_only = AugmentConfig(max_rotation=0, brightness=0, contrast=0, saturation=0, hflip=1.0)
    assert torch.allclose(device_augment(x.clone(), flip_only), x.flip(-1), atol=1e-6)
    y = device_augment(x.clone(), AugmentConfig(), torch.Generator().manual_seed(0))
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1 and not torch.allclose(y, x)
