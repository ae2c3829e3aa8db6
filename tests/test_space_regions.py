"""The Space with a multi-region model: every region that passes its threshold, with score and threshold, on
the page, in the batch table and lit on the body map; page text that claims no more than the record holds. A
single-region model's page stays as it was."""

import csv
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image

from loscat_hf.model import folder as mf
from loscat_hf.taxonomy import load_taxonomy

CLASSES = load_taxonomy().classes
RECORD = {"by": "train", "split": "validation", "n": 83, "rule": "per-class F1 maximum", "default_for": []}
# the single-region page's texts before multi-region models existed: they must not change
SINGLE_INFO = ("# LoSCAT body region of a localized scleroderma photo\nUpload a photo: the model suggests "
               "the body region (12 side-agnostic LoSCAT classes).\n\n**Model**: `{name}`.")
SINGLE_LIMITS = ("Left and right are merged. Low-confidence answers are marked *needs review*. The "
                 "explanation map (attention rollout) shows which patches the model used, not why. Photos, "
                 "answers and the batch CSV are deleted about 10 minutes after upload; nothing is stored or "
                 "flagged. The example photos are **SYNTHETIC** phantoms, not patients.")
SINGLE_HEADER = ["file", "region", "probability", "second", "second_probability", "needs_review", "problem"]


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    Image.fromarray(np.random.RandomState(1).randint(0, 255, (240, 320, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def multi_model(tmp_path_factory) -> Path:
    """A tiny multi-label model folder (thresholds set per test with `_thresholds`)."""
    return save_tiny_model(tmp_path_factory.mktemp("multi") / "m", seed=5, problem_type=mf.MULTI_LABEL)


@pytest.fixture(scope="module")
def scores(multi_model, photo) -> dict[str, float]:
    """The model's per-class sigmoid scores on `photo`, as loscat-hf computes them."""
    from loscat_hf.infer.predictor import RegionPredictor

    pred = RegionPredictor.from_pretrained(multi_model, device="cpu", backend="torch").predict(str(photo))
    assert pred.multi_label
    return pred.probabilities


def _thresholds(folder: Path, values: dict[str, float], **how) -> str:
    config = mf.config_json(folder)
    mf.record_thresholds(config, values, **{**RECORD, **how})
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def _passing(scores: dict[str, float], chosen: set[str], gap: float = 0.2) -> dict[str, float]:
    """Thresholds that `chosen` clear and every other class misses, each `gap` away from its score."""
    return {c: round(min(max(s - gap if c in chosen else s + gap, 0.01), 0.99), 4) for c, s in scores.items()}


def _app(model: str):
    from loscat_hf.apps.space import SpaceModel

    return SpaceModel(model, precision="fp32", backend="torch")


def test_predict_returns_every_region_above_its_threshold(multi_model, scores, photo):
    chosen = set(sorted(scores, key=scores.get)[:2]) | {max(scores, key=scores.get)}  # top one, two lowest
    thresholds = _passing(scores, chosen)
    label, body, overlay, notice = _app(_thresholds(multi_model, thresholds)).predict(str(photo), False)
    assert set(label) == chosen and label == pytest.approx({c: scores[c] for c in chosen}, abs=1e-5)
    assert abs(sum(scores.values()) - 1) > 0.5  # independent scores: no distribution (12 x ~0.5 here)
    assert overlay is None and Image.open(body).size == (480, 480)
    assert "Needs review" not in notice and notice.startswith("Regions shown: ")
    for c in chosen:  # each region shown with its score and its threshold
        assert f"**{c}**" in notice
        assert f"| {c} | {int(scores[c] * 1000) / 1000:.3f} | {thresholds[c]:.3g} | yes |" in notice
    assert "need not sum to 1" in notice and "not calibrated" in notice
    assert "probabilit" not in notice.lower()


def test_review_when_none_passes_or_one_is_near(multi_model, scores, photo):
    label, _, _, notice = _app(_thresholds(multi_model, _passing(scores, set()))).predict(str(photo), False)
    assert label == {} and "**Needs review**: no region reaches its threshold" in notice
    top = max(scores, key=scores.get)
    assert f"| {top} |" in notice and "| no |" in notice and "| yes |" not in notice  # the closest, not shown
    near = _passing(scores, {top})
    near[top] = round(scores[top] - 0.03, 4)  # shown, but within the 0.1 margin
    label, _, _, notice = _app(_thresholds(multi_model, near)).predict(str(photo), False)
    assert set(label) == {top}
    assert f"**Needs review**: shown **{top}**, but {top} lies within 0.10 of its threshold" in notice


def test_batch_table_lists_the_regions_with_their_scores(multi_model, scores, photo, tmp_path):
    from loscat_hf.apps.regions import BATCH_HEADER

    chosen = set(sorted(scores, key=scores.get)[-3:])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a photo")
    table, csv_path = _app(_thresholds(multi_model, _passing(scores, chosen))).predict_batch([str(photo),
                                                                                              str(bad)])
    assert table["headers"] == BATCH_HEADER
    row, failed = table["data"]
    in_order = sorted(chosen, key=lambda c: -scores[c])  # most probable first, as predict's `regions`
    assert in_order != [c for c in CLASSES if c in chosen]  # not the taxonomy's order: the check can fail
    assert row[1] == ";".join(in_order)
    assert [float(s) for s in row[2].split(";")] == pytest.approx([scores[c] for c in in_order], abs=1e-4)
    assert row[3] == max(scores, key=scores.get) and row[5] is False and row[6] == ""
    assert failed[0] == "bad.jpg" and failed[1] == "" and failed[5] is True and failed[6]
    with open(csv_path, newline="") as fh:
        got = list(csv.DictReader(fh))
    assert [r["regions"] for r in got] == [row[1], ""] and got[0]["scores"] == row[2]


def test_body_map_lights_every_region_shown():
    from loscat_hf.errors import LoscatError
    from loscat_hf.viz.bodymap import HIGHLIGHT_COLOUR, body_map_figure, body_map_image, region_polygons

    def colours(fig, region):
        fig.canvas.draw()
        rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
        ax, h = fig.axes[0], rgb.shape[0]
        out = set()
        for poly in region_polygons()[region]:
            px, py = ax.transData.transform(np.mean(poly, axis=0))
            out.add(tuple(int(v) for v in rgb[int(h - py), int(px)]))
        return out

    lit = tuple(int(HIGHLIGHT_COLOUR[i:i + 2], 16) for i in (1, 3, 5))
    both = body_map_figure(highlight=["thigh", "leg"])
    assert colours(both, "thigh") == colours(both, "leg") == {lit}
    assert lit not in colours(both, "foot") | colours(both, "arm")
    # a str is one region, as before (not its letters), and lights the same as a one-item sequence
    one, listed = body_map_figure(highlight="leg"), body_map_figure(highlight=("leg",))
    one.canvas.draw()
    listed.canvas.draw()
    assert np.array_equal(np.asarray(one.canvas.buffer_rgba()), np.asarray(listed.canvas.buffer_rgba()))
    assert lit not in colours(one, "thigh")
    img = body_map_image(highlight=("thigh", "leg"), title="thigh, leg")
    assert img.mode == "RGB" and img.size == (480, 480)
    with pytest.raises(LoscatError, match="unknown body-map region"):
        body_map_figure(highlight=["thigh", "left_leg"])


def test_body_map_of_an_answer_lights_all_its_regions(multi_model, scores, photo):
    """The page's body map is the one drawn for the set of regions shown, not for the top one alone."""
    from loscat_hf.apps.space import _body_map

    chosen = set(sorted(scores, key=scores.get)[-2:])
    _, body, _, _ = _app(_thresholds(multi_model, _passing(scores, chosen))).predict(str(photo), False)
    assert Path(body).read_bytes() == _body_map(tuple(c for c in CLASSES if c in chosen))
    assert Path(body).read_bytes() != _body_map(max(scores, key=scores.get))


def _markdown(demo) -> dict[str, str]:
    import gradio as gr

    return {b.elem_id: b.value for b in demo.blocks.values()
            if isinstance(b, gr.Markdown) and b.elem_id and b.value}  # the notice is empty until an answer


def _label(demo):
    import gradio as gr

    return next(b for b in demo.blocks.values() if isinstance(b, gr.Label))


def test_page_says_how_to_read_the_scores_and_claims_no_more(multi_model, scores):
    from loscat_hf.apps.space import build_demo

    values = {c: 0.3 + 0.01 * i for i, c in enumerate(CLASSES)}
    demo = build_demo(_thresholds(multi_model, values, default_for=["foot"]), precision="fp32",
                      backend="torch")
    text = _markdown(demo)
    guide = text["how-to-read"]
    assert "not a distribution" in guide and "need not sum to 1" in guide
    assert "head 0.3, neck 0.31, chest 0.32" in guide and "foot 0.41" in guide  # every threshold
    assert "fitted by `loscat-hf train` on 83 labelled photos of the validation split" in guide
    assert "foot: none of those photos showed it" in guide
    assert "no region reaches its threshold, or that a score lies within 0.10 of its threshold" in guide
    assert "lists every body region" in text["model-info"]
    assert "*Needs review* marks a photo where no region reaches its threshold" in text["intended-use"]
    # uncalibrated sigmoid scores are never called probabilities, except to say they are not one
    for name, words in text.items():
        words = words.lower().replace("not the probability that the photo shows it", "")
        assert "probabilit" not in words, name
    label = _label(demo)
    assert label.num_top_classes == len(CLASSES) and "independent per-class scores" in label.label


def test_page_shows_only_allowed_threshold_records(multi_model):
    """A record is not trusted: planted values never reach the public page; no record is said so."""
    from loscat_hf.apps.page import reading_guide
    from loscat_hf.model.folder import read_model_folder

    planted = "Jane_Doe_MRN123456"
    values = {c: 0.4 for c in CLASSES} | {planted: 0.5}
    folder = read_model_folder(_thresholds(multi_model, values, by=planted, split=f"/home/{planted}",
                                           rule=planted, n=f"{planted} 40", default_for=[planted, "hand"],
                                           note=planted))
    text = reading_guide(folder, 0.1)
    assert "Jane" not in text and "MRN" not in text
    assert "The thresholds were fitted on photos (how many was not recorded)." in text
    text = reading_guide(read_model_folder(_thresholds(multi_model, values, by="calibrate", n=40,
                                                       kept_for=["foot"])), 0.1)
    assert "fitted by `loscat-hf calibrate` on 40 labelled photos of the validation split" in text
    assert "foot: none of those photos showed it, so it keeps its earlier threshold." in text
    config = mf.config_json(multi_model)
    del config[mf.THRESHOLDS_KEY]
    (multi_model / "config.json").write_text(json.dumps(config))
    text = reading_guide(read_model_folder(multi_model), 0.1)
    assert "No thresholds are recorded with this model: every region is compared with 0.5" in text


def test_single_label_page_is_unchanged(tmp_path, photo):
    from loscat_hf.apps import page
    from loscat_hf.apps.space import build_demo

    model = save_tiny_model(tmp_path / "single")
    demo = build_demo(str(model), precision="fp32", backend="torch")
    text = _markdown(demo)
    assert text["model-info"] == SINGLE_INFO.format(name="single") and "how-to-read" not in text
    assert page.LIMITS == SINGLE_LIMITS and text["intended-use"].endswith(SINGLE_LIMITS)
    label = _label(demo)
    assert label.num_top_classes == 3 and label.label == "Top-3 regions"
    app = _app(str(model))
    top, body, _, notice = app.predict(str(photo), False)
    pred = app.predictor.predict(str(photo))
    assert not pred.multi_label and len(top) == 3 and top == pytest.approx(dict(pred.top), abs=1e-6)
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    expected = ("Needs review" if pred.needs_review else f"Predicted **{pred.label}** (")
    assert expected in notice and "%, not calibrated" in notice and "| region |" not in notice
    table, _ = app.predict_batch([str(photo)])
    assert table["headers"] == SINGLE_HEADER and table["data"][0][1] == pred.label


def test_multi_region_answer_through_the_server(multi_model, scores, photo):
    """gradio shows every region shown (more than the single-label page's 3) and the notice as they are."""
    from gradio_client import Client, handle_file

    from loscat_hf.apps.space import launch

    chosen = set(sorted(scores, key=scores.get)[-4:])
    model = _thresholds(multi_model, _passing(scores, chosen))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(model, host="127.0.0.1", port=port, precision="fp32", backend="torch",
                  prevent_thread_lock=True, quiet=True)
    try:
        label, body, _, notice = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            handle_file(str(photo)), False, api_name="/predict")
    finally:
        demo.close()
    shown = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert shown == pytest.approx({c: scores[c] for c in chosen}, abs=1e-5)
    assert Image.open(body).size == (480, 480) and notice.startswith("Regions shown: ")
