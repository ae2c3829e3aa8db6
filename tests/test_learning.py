"""A tiny ViT trained on SYNTHETIC phantom photos learns the region of photos of patients it never saw."""

import pytest

from loscat_hf.data.prepare import prepare
from loscat_hf.demo.phantom import generate_demo_data
from loscat_hf.training.parse import parse_train_args
from loscat_hf.training.run import train


@pytest.mark.slow
def test_tiny_model_learns_regions_on_held_out_patients(tmp_path):
    generate_demo_data(tmp_path / "demo", n_patients=40, n_photos=480, image_size=(160, 120), n_unlabeled=0,
                       seed=3, num_workers=1)
    prepared = prepare(annotations=str(tmp_path / "demo" / "annotations.csv"),
                       images=str(tmp_path / "demo" / "images"), out=str(tmp_path / "ds"), val_fraction=0.25,
                       max_side=64, seed=3, num_workers=1, progress=False)
    assert prepared.out_dir is not None
    summary = train(*parse_train_args([
        "--dataset", str(tmp_path / "ds"), "--output-dir", str(tmp_path / "model"), "--model", "tiny",
        "--image-size", "48", "--num-train-epochs", "40", "--learning-rate", "1e-3",
        "--per-device-train-batch-size", "32", "--dataloader-num-workers", "0", "--save-total-limit", "1",
        "--logging-steps", "50", "--seed", "3"]))
    # 12 classes: chance macro-F1 is about 1/12 = 0.083 on the held-out patients of the validation split.
    assert summary.macro_f1 > 0.2, summary
    # the model folder records the packing size, and prediction decodes camera photos at it
    from loscat_hf.infer.predictor import RegionPredictor

    assert RegionPredictor.from_pretrained(tmp_path / "model").decoding.max_side == 64
