import os

# Tests never reach the Hub: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# ONNX graphs exported during the run go to one throw-away cache (shared by the CLI subprocesses), not
# ~/.cache
if "LOSCAT_HF_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["LOSCAT_HF_CACHE"] = tempfile.mkdtemp(prefix="loscat-test-cache-")
    atexit.register(shutil.rmtree, os.environ["LOSCAT_HF_CACHE"], True)


import csv  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from loscat_hf.taxonomy import load_taxonomy  # noqa: E402


def _class_image(rng: np.random.Generator, k: int, size: int = 40):
    """A picture whose class shows as a colour and a stripe direction: easy to learn, cheap to make."""
    from PIL import Image

    hue = np.array([(37 * k) % 256, (91 * k + 60) % 256, (53 * k + 120) % 256], dtype=np.float32)
    img = np.tile(hue, (size, size, 1))
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = ((xx * (k % 4) + yy * (k // 4 + 1)) // 5) % 2
    img = img * (0.6 + 0.4 * stripes[..., None]) + rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_split(d: Path, split: str, samples, suffix: str = ".jpg") -> Path:
    """One split of a packed-layout dataset: (PIL image, class index, number) samples + metadata.csv."""
    classes = load_taxonomy().classes
    d.mkdir(parents=True)
    rows = []
    for img, k, i in samples:
        name = f"{split}_{k:02d}_{i:03d}{suffix}"
        img.save(d / name, **({"quality": 95} if suffix == ".jpg" else {}))
        rows.append({"file_name": name, "label": classes[k], "site": classes[k],
                     "patient_id": f"{split}-P{(k * 7 + i) % 9}", "visit": "V1",
                     "image_id": name[:-len(suffix)], "skin_tone": ["I", "III", "V"][i % 3]})
    with open(d / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return d


def write_imagefolder(root: Path, counts: dict[str, list[int]], seed: int = 0) -> Path:
    """A packed-layout dataset (metadata.csv per split) written directly, for tests of later stages."""
    rng = np.random.default_rng(seed)
    for split, per_class in counts.items():
        write_split(root / split, split, [(_class_image(rng, k), k, i) for k, n in enumerate(per_class)
                                          for i in range(n)])
    return root


def save_tiny_model(d: Path, seed: int = 0, **config) -> Path:
    """A randomly initialised tiny-preset model folder, as `save_pretrained` lays it out (no Hub needed)."""
    from loscat_hf.model.build import build_model_and_processor

    model, processor = build_model_and_processor("tiny", load_taxonomy(), seed=seed)
    for key, value in config.items():
        setattr(model.config, key, value)
    model.save_pretrained(d)
    processor.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny model folder, one per test module (a module may define its own `model_dir` instead)."""
    return save_tiny_model(tmp_path_factory.mktemp("tinymodel"), seed=3)


@pytest.fixture(scope="module")
def predictor(model_dir):
    """`model_dir` loaded as `predict` loads it (the default backend) on the CPU."""
    from loscat_hf.infer.predictor import RegionPredictor

    return RegionPredictor.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """12 classes, imbalanced train (2..13 photos per class), 3 validation photos per class."""
    root = tmp_path_factory.mktemp("tinyds")
    return write_imagefolder(root, {"train": [2 + k for k in range(12)], "validation": [3] * 12})
