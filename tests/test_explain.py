from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image

from loscat_hf.infer.explain import explain, explain_folder, rollout
from loscat_hf.infer.predictor import RegionPredictor


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(save_tiny_model(tmp_path_factory.mktemp("tiny")))


def _photos():
    rng = np.random.RandomState(0)
    noisy = Image.fromarray(rng.randint(0, 255, (200, 260, 3), dtype=np.uint8))
    half = np.zeros((200, 200, 3), np.uint8)
    half[:, :100] = 255
    return [noisy, Image.fromarray(half)]


def test_map_shape_normalised_and_image_dependent(tiny_model):
    pred = RegionPredictor.from_pretrained(tiny_model, precision="fp32")
    a, b = explain(pred, _photos())
    s = pred.image_size
    assert a.heat.shape == (s, s) and a.heat.dtype == np.float32
    assert a.heat.min() >= 0.0 and a.heat.max() <= 1.0 and a.heat.max() > 0.9
    assert np.abs(a.heat - b.heat).mean() > 0.01
    # drawn over the decoded photo at its own size (260x200), not over the S x S model input
    assert a.overlay.size == (260, 200) and a.overlay.mode == "RGB" and not a.overlay.getexif()
    assert pred.model.config._attn_implementation == "sdpa"  # eager only for the explained call
    # the explained pass gives the same logits as the plain prediction path
    plain = pred.logits(pred.explain_inputs(_photos()[0])[1][None])
    np.testing.assert_allclose(a.logits, plain[0], atol=1e-4)


def test_batch_equals_single(tiny_model):
    pred = RegionPredictor.from_pretrained(tiny_model, precision="fp32")
    both = explain(pred, _photos(), batch_size=2)
    one = explain(pred, _photos()[1])
    assert len(both) == 2 and len(one) == 1
    np.testing.assert_allclose(both[1].heat, one[0].heat, atol=1e-4)


def test_int8_explanation_of_a_photo_does_not_depend_on_its_batch(tiny_model):
    """int8 runs photos singly in predict; explanations too, so their logits match predict's exactly."""
    pred = RegionPredictor.from_pretrained(tiny_model, precision="int8")
    both = explain(pred, _photos(), batch_size=2)
    one = explain(pred, _photos()[1])
    np.testing.assert_array_equal(both[1].logits, one[0].logits)
    np.testing.assert_array_equal(both[1].heat, one[0].heat)
    np.testing.assert_allclose(both[1].logits, pred.logits(pred.explain_inputs(_photos()[1])[1][None])[0],
                               atol=1e-5)


def test_rollout_identity_attention_is_flat():
    import torch

    t = 1 + 16
    att = [torch.eye(t)[None, None].repeat(1, 2, 1, 1)] * 3
    att = [a.clone() for a in att]
    att[0][0, :, 0, 5] = 1.0  # CLS also attends patch 5 (token 5 = patch index 4)
    grid = rollout(att)
    assert grid.shape == (1, 4, 4)
    assert grid[0].reshape(-1).argmax() == 4 and grid[0].max() == pytest.approx(1.0)


def test_explain_folder_writes_overlays(tiny_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i, img in enumerate(_photos()):
        img.save(src / f"p{i}.png")
    (src / "bad.jpg").write_bytes(b"not an image")
    result = explain_folder(tiny_model, [str(src)], tmp_path / "out")
    written = result.overlays
    assert sorted(p.name for p in written) == ["p0.explain.png", "p1.explain.png"]
    assert [p.name for p, _ in result.skipped] == ["bad.jpg"]
    assert Image.open(written[0]).size[0] > 0


def test_cli_explain(tiny_model, tmp_path):
    from loscat_hf.cli import main

    _photos()[0].save(tmp_path / "a.png")
    assert main(["explain", "--model", tiny_model, "--images", str(tmp_path / "a.png"),
                 "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "a.explain.png").is_file()
    assert main(["explain", "--model", tiny_model, "--images", str(tmp_path / "missing"),
                 "--out", str(tmp_path)]) == 2


def test_a_folder_without_photos_is_refused(tiny_model, tmp_path):
    from loscat_hf.errors import LoscatError

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("not a photo")
    with pytest.raises(LoscatError, match="no photos found in .*1 file"):
        explain_folder(tiny_model, [tmp_path / "in"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_overlays_have_the_photos_size_not_the_models(tiny_model, tmp_path):
    """A 64 px model's overlay of a camera photo is drawn at the decoded photo's size (here the packing size,
    shorter side 512), readable in the Space; the S x S model input is only the map's resolution."""
    from loscat_hf.infer.explain import explain_pixels

    rng = np.random.default_rng(3)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)).save(src / "render.png")
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(src / "small.png")
    result = explain_folder(tiny_model, [str(src)], tmp_path / "out")
    sizes = {p.name: Image.open(p).size for p in result.overlays}
    assert sizes == {"render.explain.png": (683, 512), "small.explain.png": (120, 90)}
    pred = RegionPredictor.from_pretrained(tiny_model, precision="fp32")
    photo, x = pred.explain_inputs(src / "render.png")
    (with_photo,) = explain_pixels(pred, x[None], photos=[photo])
    (bare,) = explain_pixels(pred, x[None])
    s = pred.image_size
    assert s < 100 and bare.overlay.size == (s, s) and with_photo.overlay.size == photo.size
    np.testing.assert_array_equal(with_photo.heat, bare.heat)  # the same map, drawn larger


def test_photos_of_one_name_get_overlays_of_their_own(tiny_model, tmp_path):
    from loscat_hf.infer.explain import explain_folder, overlay_names

    assert overlay_names([Path("a/x.jpg"), Path("b/x.png"), Path("x-2.jpg"), Path("c/x.jpg")]) == \
        ["x.explain.png", "x-2.explain.png", "x-2-2.explain.png", "x-3.explain.png"]
    for sub, seed in (("a", 0), ("b", 1)):
        (tmp_path / "in" / sub).mkdir(parents=True)
        _photos()[seed].save(tmp_path / "in" / sub / "IMG_1.png")
    result = explain_folder(tiny_model, [tmp_path / "in"], tmp_path / "o")
    assert sorted(p.name for p in result.overlays) == ["IMG_1-2.explain.png", "IMG_1.explain.png"]
    assert all(p.is_file() for p in result.overlays)
