"""A converted study checkpoint sees a photo as the study's own inference script shows it to the model.

The study (github caoyuanyuan-tz/LoSCAT_BodyRec, scripts/inference_predict.py) runs
`Image.open(p).convert("RGB")`, torchvision `Resize((384, 384), BICUBIC)` on the PIL image (= PIL's bicubic
resize of the whole decoded photo), `ToTensor`, ImageNet `Normalize` and timm's ViT. `study_probabilities`
below is that script, with PIL's resize for torchvision's and tests/timm_reference.py's forward pass for
timm's. Decoding as packing does (DCT-scaled, shorter side <= 512, then resized) gives other pixels and, on
camera-sized JPEGs, other probabilities. scripts/bench_study_decoding.py measures more photos and checkpoints.
"""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from timm_reference import random_timm_state, timm_forward

from loscat_hf.cli import main
from loscat_hf.model.convert import convert_timm
from loscat_hf.model.folder import DECODING_KEY, FULL, PACKED
from loscat_hf.model.study import IMAGENET_MEAN, IMAGENET_STD

SIZE, HEADS = 384, 3  # the study's input size and patch 16; tiny width (3 heads) to stay fast


def camera_like(rng: np.random.Generator, w: int, h: int, grain: float, texture: float = 0.0) -> Image.Image:
    """Smooth colour regions, hard-edged patches, fine texture (fabric, hair, a ruler's ticks: a few pixels
    per period) and sensor-like noise: what a DCT-scaled decode and a full-resolution antialiased resize turn
    into different pixels."""
    base = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
        (w, h), Image.BICUBIC), np.float32).copy()
    for _ in range(5):
        x0, y0 = int(rng.integers(0, w * 3 // 4)), int(rng.integers(0, h * 3 // 4))
        patch = (slice(y0, y0 + h // 5), slice(x0, x0 + w // 6))
        base[patch] = base[patch] * 0.5 + rng.uniform(0, 128, 3)
        if texture:
            angle, period = rng.uniform(0, np.pi), rng.uniform(4, 12) * w / 2000
            ys, xs = np.ogrid[y0:y0 + h // 5, x0:x0 + w // 6]
            wave = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * 2 * np.pi / period)
            base[patch] += texture * wave[: base[patch].shape[0], : base[patch].shape[1], None]
    if grain:
        base += rng.standard_normal((h, w, 3), dtype=np.float32) * grain
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def study_input(path) -> Image.Image:
    """The study's script up to the tensor: open, RGB, one bicubic resize of the whole photo (no EXIF)."""
    return Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC)


def study_probabilities(state, paths) -> torch.Tensor:
    """scripts/inference_predict.py: ToTensor (/255), ImageNet Normalize, timm forward, softmax."""
    x = torch.stack([torch.from_numpy(np.asarray(study_input(p), dtype=np.float32) / 255.0).permute(2, 0, 1)
                     for p in paths])
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return timm_forward(state, x, heads=HEADS).softmax(-1)


@pytest.fixture(scope="module")
def study_model(tmp_path_factory):
    """A random checkpoint of the study's geometry (12 classes, 384 px, patch 16), converted; and photos:
    camera-sized JPEGs, a render, small PNGs (none with an EXIF rotation: the study's script ignores it);
    the study script's probabilities for them."""
    d = tmp_path_factory.mktemp("study")
    state = random_timm_state(dim=192, depth=12, patch=16, image=SIZE, seed=5)
    torch.save(state, d / "checkpoint.pt")
    folder = convert_timm(str(d / "checkpoint.pt"), d / "model", arch="vit_tiny_patch16_384").out_dir
    rng = np.random.default_rng(7)
    photos = d / "photos"
    photos.mkdir()
    for i in range(3):
        camera_like(rng, 2000, 1500, grain=12, texture=70).save(photos / f"camera{i}.jpg", quality=92)
    camera_like(rng, 1024, 768, grain=0).save(photos / "render.jpg", quality=95)
    camera_like(rng, 320, 240, grain=4).save(photos / "small0.png")
    camera_like(rng, 200, 300, grain=0).save(photos / "small1.png")
    paths = sorted(photos.iterdir())
    return state, folder, paths, study_probabilities(state, paths)


def test_converted_checkpoint_records_full_decoding(study_model):
    from loscat_hf.model.folder import read_model_folder

    folder = study_model[1]
    decoding = read_model_folder(folder).decoding
    assert (decoding.mode, decoding.image_size, decoding.resample) == (FULL, SIZE, Image.BICUBIC)


def test_predictions_match_the_studys_inference_script(study_model):
    """Same model input pixels, same top-1, top-1 probability within 0.01 (in fact ~1e-6) on every kind of
    photo, through the predictor (the Space, explain) and `loscat-hf predict` (its workers' decode)."""
    from loscat_hf.infer.predictor import RegionPredictor

    _, folder, paths, want = study_model
    predictor = RegionPredictor.from_pretrained(folder, backend="torch", precision="fp32")
    for path in paths:  # what the model sees (`load`, `pixels`: the Space, explain): the study's pixels
        assert np.array_equal(predictor.pixels(predictor.load(path)),
                              np.asarray(study_input(path)).transpose(2, 0, 1)), path.name
    assert (want.max(-1).values < 0.999).all()  # not saturated: a decoding difference would show
    out = folder.parent / "pred.csv"
    assert main(["predict", "--model", str(folder), "--images", str(paths[0].parent), "--out", str(out),
                 "--backend", "torch", "--num-workers", "0"]) == 0
    rows = {r["image"]: r for r in csv.DictReader(out.open())}
    for path, ref in zip(paths, want, strict=True):
        top = int(ref.argmax())
        assert rows[path.name]["region"] == predictor.labels[top], path.name
        assert abs(float(rows[path.name]["probability"]) - float(ref[top])) < 0.01, path.name


def test_packed_decoding_is_not_the_studys(study_model, tmp_path):
    """The same folder recorded PACKED (as folders converted before the record were read): camera-sized JPEGs
    give other pixels and a top-1 probability more than 0.01 away from the study's: the record matters."""
    import shutil

    from loscat_hf.infer.predictor import RegionPredictor

    _, folder, paths, want = study_model
    packed = shutil.copytree(folder, tmp_path / "packed")
    config = json.loads((packed / "config.json").read_text())
    config[DECODING_KEY] = PACKED
    (packed / "config.json").write_text(json.dumps(config))
    predictor = RegionPredictor.from_pretrained(packed, backend="torch", precision="fp32")
    cameras = [p for p in paths if p.name.startswith("camera")]
    assert predictor.decoding.mode == PACKED
    assert not np.array_equal(predictor.pixels(predictor.load(cameras[0])),
                              np.asarray(study_input(cameras[0])).transpose(2, 0, 1))
    got = predictor.predict([str(p) for p in cameras])
    ref = [w.max().item() for p, w in zip(paths, want, strict=True) if p in cameras]
    assert max(abs(g.probability - r) for g, r in zip(got, ref, strict=True)) > 0.01


def test_full_decoding_still_turns_a_photo_upright(study_model, tmp_path):
    """EXIF orientation stays applied (the study's script ignores it; a phone photo needs it): the model sees
    the upright photo, resized once from full resolution."""
    from PIL import ImageOps

    from loscat_hf.infer.predictor import RegionPredictor

    folder = study_model[1]
    img = camera_like(np.random.default_rng(2), 900, 600, grain=6)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: display rotated 90 degrees clockwise
    img.save(tmp_path / "phone.jpg", quality=92, exif=exif)
    predictor = RegionPredictor.from_pretrained(folder, backend="torch", precision="fp32")
    upright = ImageOps.exif_transpose(Image.open(tmp_path / "phone.jpg")).convert("RGB")
    assert upright.size == (600, 900) and predictor.load(tmp_path / "phone.jpg").size == (600, 900)
    assert np.array_equal(predictor.pixels(predictor.load(tmp_path / "phone.jpg")),
                          np.asarray(upright.resize((SIZE, SIZE), Image.BICUBIC)).transpose(2, 0, 1))


def test_explain_follows_the_record_and_draws_at_the_photos_size(study_model, tmp_path):
    """`explain` answers from the study's pixels too; its overlay of a photo decoded whole is shrunk to the
    packing size (shorter side 512), not a 3-megapixel PNG and not the 384 px model input."""
    from loscat_hf.infer.explain import explain_folder
    from loscat_hf.model.folder import read_model_folder

    _, folder, paths, want = study_model
    camera = paths[0]
    result = explain_folder(str(folder), [camera], tmp_path / "out", backend="torch")
    (_, label, probability, overlay), = result.explained
    top = int(want[0].argmax())
    assert camera.name == "camera0.jpg" and label == read_model_folder(folder).labels[top]
    assert abs(probability - float(want[0, top])) < 0.01
    assert Image.open(overlay).size == (683, 512)
