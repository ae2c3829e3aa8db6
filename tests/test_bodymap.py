"""The body map draws each region where it says it does, as a PNG file or an image of the size asked for."""


import numpy as np
import pytest
from PIL import Image

from loscat_hf.errors import LoscatError
from loscat_hf.taxonomy import load_taxonomy
from loscat_hf.viz.bodymap import REGIONS, body_map_figure, body_map_image, plot_body_map, region_polygons


def _pixels_at(fig, region):
    """RGB pixel at the centroid of each polygon of `region` on the drawn figure."""
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    ax = fig.axes[0]
    h = rgb.shape[0]
    out = []
    for poly in region_polygons()[region]:
        cx, cy = np.mean(poly, axis=0)
        px, py = ax.transData.transform((cx, cy))
        out.append(rgb[int(h - py), int(px)].astype(int))
    return out


def test_regions_match_taxonomy_classes():
    assert set(REGIONS) == set(load_taxonomy().classes)
    polys = region_polygons()
    assert len(polys["chest"]) == 1 and len(polys["upper_back"]) == 1  # one view each
    assert len(polys["head"]) == 2 and len(polys["hand"]) == 4  # both views; limbs on both sides


def test_highlight_changes_only_its_polygon():
    plain = body_map_figure()
    lit = body_map_figure(highlight="chest")
    assert not np.array_equal(_pixels_at(plain, "chest")[0], _pixels_at(lit, "chest")[0])
    np.testing.assert_array_equal(_pixels_at(plain, "abdomen")[0], _pixels_at(lit, "abdomen")[0])
    for a, b in zip(_pixels_at(plain, "hand"), _pixels_at(lit, "hand"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_values_shade_regions_by_value():
    fig = body_map_figure({"thigh": 10.0, "leg": 1.0}, cmap="Reds")
    thigh, leg, head = _pixels_at(fig, "thigh")[0], _pixels_at(fig, "leg")[0], _pixels_at(fig, "head")[0]
    assert thigh.sum() < leg.sum()  # darker red for the larger value
    assert head[0] == head[1] == head[2]  # no value: neutral grey, not "zero"
    assert len(fig.axes) == 2  # colorbar


def test_png_written_and_image_has_the_size_asked_for(tmp_path):
    """(Its speed is a benchmark's business, not a unit test's: a shared CI machine made a time limit here
    fail by chance.)"""
    p = plot_body_map({"head": 3, "foot": 1}, tmp_path / "sub" / "map.png", title="t", highlight="foot")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(p) as im:
        assert min(im.size) > 500
    img = body_map_image({"hand": 2.0}, highlight="hand", title="hand 93%", size=(480, 400))
    assert img.mode == "RGB" and img.size == (480, 400)


@pytest.mark.parametrize("kwargs", [{"values": {"tail": 1.0}}, {"highlight": "left_hand"}])
def test_unknown_region_raises(kwargs):
    with pytest.raises(LoscatError, match="unknown body-map region"):
        body_map_figure(**kwargs)
