"""A model's image processor (`preprocessor_config.json`): input size, normalisation and resample filter, the
one way they are read (training, evaluation, prediction and the model folder's record all agree)."""

from __future__ import annotations

import logging
from typing import Any

from loscat_hf.errors import LoscatError

logger = logging.getLogger(__name__)

BILINEAR = 2  # PIL's filter number: google/vit-*'s default resample


def load_processor(name_or_path: str):
    """The image processor of a Hub id or folder, without needing torchvision."""
    from transformers import AutoImageProcessor

    quiet = logging.getLogger("transformers.models.auto.image_processing_auto")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the "falling back to the PIL backend" notice is expected here
    try:
        return AutoImageProcessor.from_pretrained(name_or_path)
    finally:
        quiet.setLevel(level)


def processor_size(processor) -> int:
    size = processor.size
    return int(size.get("height") or size.get("shortest_edge"))


def processor_resample(processor) -> int:
    """The PIL filter the model's preprocessor_config.json names (2 = bilinear, google/vit-*'s; 3 = bicubic,
    the study's): training, evaluation and prediction all resize with it."""
    resample = getattr(processor, "resample", None)
    return BILINEAR if resample is None else int(resample)  # 0 (nearest) is a filter too


def processor_stats(name: str, config: Any, require_processor: bool = False) -> dict[str, Any]:
    """Input size, mean, std and resample filter from preprocessor_config.json, or google/vit-*'s defaults for
    a bare folder (with a warning; refused with `require_processor`)."""
    try:
        processor = load_processor(name)
        return dict(image_size=processor_size(processor), image_mean=list(processor.image_mean),
                    image_std=list(processor.image_std), resample=processor_resample(processor))
    except (OSError, ValueError, TypeError) as exc:
        if require_processor:
            raise LoscatError(f"cannot read the image processor of model {name!r} "
                              f"({str(exc).splitlines()[0]}): its input size and normalisation would be "
                              "guessed; restore the preprocessor_config.json saved with the model") from None
        size = int(getattr(config, "image_size", 224))
        logger.warning("no image processor in %s: using %d px, bilinear, mean = std = 0.5 (google/vit-* "
                       "defaults)", name, size)
        return dict(image_size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=BILINEAR)
