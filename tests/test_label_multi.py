"""`loscat-hf label` for photos that show several sites: toggle sites, confirm, one row of ';'-joined sites.

Session-level, like tests/test_label.py, plus the Grade and Summary screens' event functions called directly
(no server, no browser).
"""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loscat_hf.apps.labelling.log import LabelLog
from loscat_hf.apps.labelling.photos import list_photos
from loscat_hf.apps.labelling.session import LabelSession
from loscat_hf.data.consensus import read_annotations
from loscat_hf.errors import LoscatError
from loscat_hf.taxonomy import load_taxonomy


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for p in range(2):
        (tmp_path / "photos" / f"P{p}").mkdir(parents=True)
        for i in range(3):
            img = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / "photos" / f"P{p}" / f"img{i}.jpg")
    return tmp_path / "photos"


def _session(folder: Path, out: Path, **kwargs) -> LabelSession:
    return LabelSession(list_photos(folder, exclude=[out]), LabelLog(out), load_taxonomy(), **kwargs)


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _several(s: LabelSession, rater: str, sites: list[str], quality: str = "good"):
    pid = s.next_photo(rater).photo.photo_id
    for site in sites:
        s.toggle(rater, pid, site)
    return s.confirm(rater, pid, quality)


def test_several_sites_are_one_row_in_taxonomy_order(folder, tmp_path):
    out = tmp_path / "labels.csv"
    s = _session(folder, out)
    first = s.next_photo("alice")
    shown = s.toggle("alice", first.photo.photo_id, "Left Leg")  # any spelling the taxonomy knows
    assert shown.photo == first.photo and shown.toggled == ("left_leg",) and shown.progress == "0 of 6 done"
    shown = s.toggle("alice", first.photo.photo_id, "left_thigh")
    assert shown.toggled == ("left_thigh", "left_leg")  # taxonomy order, not the order pressed
    assert not out.exists()  # nothing is saved before the confirm
    after = s.confirm("alice", first.photo.photo_id, "poor")
    assert after.photo.image == "P0/img1.jpg" and after.progress == "1 of 6 done" and after.toggled == ()
    rows = _rows(out)
    assert [(r["image"], r["region"], r["quality"], r["rater"]) for r in rows] == [
        ("P0/img0.jpg", "left_thigh;left_leg", "poor", "alice")]
    # the API's /submit_label takes a set in one cell too, in any order and spelling
    s.submit("alice", after.photo.photo_id, "L leg; Left thigh", "good")
    assert _rows(out)[1]["region"] == "left_thigh;left_leg"


def test_a_single_site_writes_what_it_wrote_before(folder, tmp_path):
    out = tmp_path / "labels.csv"
    s = _session(folder, out)
    s.submit("alice", s.next_photo("alice").photo.photo_id, "Left Arm", "good")  # one key press
    s.submit("alice", s.next_photo("alice").photo.photo_id, "not gradable", "good")
    _several(s, "alice", ["right_foot"])  # several-sites mode with one site: the same single site
    s.submit("alice", s.next_photo("alice").photo.photo_id, "head; head", "good")  # a repeat counts once
    rows = _rows(out)
    assert list(rows[0]) == ["image", "patient_id", "visit", "region", "rater", "quality", "labelled_at"]
    fields = ("image", "patient_id", "visit", "region", "rater", "quality")
    assert [tuple(r[f] for f in fields) for r in rows] == [
        ("P0/img0.jpg", "P0", "", "left_arm", "alice", "good"),
        ("P0/img1.jpg", "P0", "", "not_gradable", "alice", "good"),
        ("P0/img2.jpg", "P0", "", "right_foot", "alice", "good"),
        ("P1/img0.jpg", "P1", "", "head", "alice", "good")]
    assert all(";" not in r["region"] for r in rows)


def test_toggling_a_site_twice_removes_it(folder, tmp_path):
    out = tmp_path / "labels.csv"
    s = _session(folder, out)
    pid = s.next_photo("alice").photo.photo_id
    s.toggle("alice", pid, "left_thigh")
    s.toggle("alice", pid, "left_leg")
    assert s.toggle("alice", pid, "left_thigh").toggled == ("left_leg",)
    assert s.toggle("alice", pid, "left_leg").toggled == ()
    assert s.toggled("alice") == ()
    s.toggle("alice", pid, "right_arm")
    s.toggle("alice", pid, "right_forearm")
    s.confirm("alice", pid)
    assert [r["region"] for r in _rows(out)] == ["right_arm;right_forearm"]


def test_confirm_with_nothing_toggled_is_refused(folder, tmp_path):
    out = tmp_path / "labels.csv"
    s = _session(folder, out)
    pid = s.next_photo("alice").photo.photo_id
    with pytest.raises(LoscatError, match="no site toggled for this photo.*nothing was saved"):
        s.confirm("alice", pid)
    s.toggle("alice", pid, "chest")
    s.toggle("alice", pid, "chest")  # toggled off again: nothing left
    with pytest.raises(LoscatError, match="no site toggled"):
        s.confirm("alice", pid)
    s.toggle("alice", pid, "chest")
    assert s.clear("alice").toggled == () and s.clear("alice").photo.photo_id == pid  # Esc: the photo stays
    with pytest.raises(LoscatError, match="no site toggled"):
        s.confirm("alice", pid)
    assert not out.exists()


def test_a_code_cannot_be_combined_with_sites(folder, tmp_path):
    out = tmp_path / "labels.csv"
    s = _session(folder, out)
    pid = s.next_photo("alice").photo.photo_id
    with pytest.raises(LoscatError, match="'unclear' is not a site: a code cannot be combined with sites"):
        s.toggle("alice", pid, "unclear")
    s.toggle("alice", pid, "left_thigh")
    with pytest.raises(LoscatError, match="code cannot be combined"):
        s.toggle("alice", pid, "multiple")
    assert s.toggled("alice") == ("left_thigh",)  # the refused code changed nothing
    for cell in ("unclear; left thigh", "left thigh; not gradable"):
        with pytest.raises(LoscatError, match="a code stands alone"):
            s.submit("alice", pid, cell)
    with pytest.raises(LoscatError, match="'thigh' needs a side"):
        s.submit("alice", pid, "thigh; left leg")
    with pytest.raises(LoscatError, match="one site at a time"):
        s.toggle("alice", pid, "left thigh; left leg")
    assert not out.exists()
    s.submit("alice", pid, "unclear")  # a code alone is one key press, as always
    assert [r["region"] for r in _rows(out)] == ["unclear"]


def test_toggled_sites_belong_to_the_photo_and_rater(folder, tmp_path):
    s = _session(folder, tmp_path / "labels.csv")
    pid = s.next_photo("alice").photo.photo_id
    s.toggle("alice", pid, "left_thigh")
    assert s.next_photo("bob").toggled == ()  # blind: nothing of alice's reaches bob
    with pytest.raises(LoscatError, match="ask for the next photo first"):
        s.toggle("carol", pid, "head")
    skipped = s.skip("alice", pid)  # skip, Back and a reloaded page start a photo afresh
    assert skipped.toggled == () and s.toggled("alice") == ()
    s.toggle("alice", skipped.photo.photo_id, "neck")
    assert s.back("alice").toggled == ()
    s.toggle("alice", pid, "chest")
    assert s.next_photo("alice").toggled == () and s.toggled("alice") == ()
    with pytest.raises(LoscatError, match="no longer the one being graded"):
        s.toggle("alice", skipped.photo.photo_id, "neck")  # a stale key press for another photo


def test_changing_a_set_and_the_earlier_answer_shows_the_set(folder, tmp_path):
    from loscat_hf.apps.labelling.app import LabelApp

    out = tmp_path / "labels.csv"
    s = _session(folder, out)
    _several(s, "alice", ["left_thigh", "left_leg"])
    again = s.back("alice")
    assert again.earlier == "left_thigh;left_leg"  # their own, after Back
    hint = LabelApp(s, "alice")._ui(again)[3]
    assert "Your earlier answer for this photo: **Left thigh + Left leg**" in hint
    assert s.next_photo("bob").earlier == ""  # no one else's
    s.submit("alice", again.photo.photo_id, "left_thigh")  # a later row supersedes the set
    assert [a.region for a in s.own_answers("alice")] == ["left_thigh"]
    ratings = read_annotations(out, load_taxonomy())
    assert [p.label for p in ratings.photos] == ["thigh"] and ratings.superseded == 1


def test_the_file_read_back_gives_the_set(folder, tmp_path):
    out = tmp_path / "labels.csv"
    s = _session(folder, out)
    _several(s, "alice", ["left_thigh", "left_leg"])
    _several(s, "bob", ["left_leg", "left_thigh"])
    _several(s, "alice", ["right_arm", "right_forearm"])
    s.submit("bob", s.next_photo("bob").photo.photo_id, "right_forearm")  # one of alice's two
    result = read_annotations(out, load_taxonomy())
    photos = {p.image: p for p in result.photos}
    assert photos["P0/img0.jpg"].labels == ("thigh", "leg") and photos["P0/img0.jpg"].agreement == 1.0
    assert photos["P0/img0.jpg"].site == "left_thigh;left_leg"
    # two raters: a class at least half of them name; forearm by both (more than half)
    assert photos["P0/img1.jpg"].labels == ("arm", "forearm") and photos["P0/img1.jpg"].agreement == 0.5


def test_summary_counts_sets_under_each_site_and_class(folder, tmp_path):
    from loscat_hf.apps.labelling.app import LabelApp

    out = tmp_path / "labels.csv"
    photos = list_photos(folder, exclude=[out])
    suggestions = {p.image: [("thigh", 0.5), ("leg", 0.3), ("foot", 0.2)] for p in photos}
    s = _session(folder, out, suggestions=suggestions, order="folder")
    _several(s, "alice", ["left_thigh", "left_leg"])
    _several(s, "bob", ["left_thigh", "left_leg"])
    _several(s, "alice", ["left_leg", "left_foot"])
    s.submit("bob", s.next_photo("bob").photo.photo_id, "left_leg")
    s.submit("alice", s.next_photo("alice").photo.photo_id, "head")
    summary = s.summary()
    sites = {r["answer"]: r["answers"] for r in summary["sites"]}
    assert sites == {"head": 1, "left_thigh": 2, "left_leg": 4, "left_foot": 1}  # a set: under each site
    assert summary["several_sites"] == 3
    report = summary["agreement"]
    assert report["n_photos_multi_rated"] == 2 and report["percent_agreement"] == 50.0  # the exact set
    per_class = {c["label"]: c for c in report["per_class"]}
    assert per_class["leg"]["percent_agreement"] == 100.0 and per_class["foot"]["percent_agreement"] == 50.0
    # the model's table: each class of a set, vs the model's top n (n = the set's size); 'head' vs top-1
    model = {r["class"]: (r["answers"], r["model agrees %"]) for r in summary["model"]}
    assert model == {"head": (1, 0.0), "thigh": (2, 100.0), "leg": (4, 75.0), "foot": (1, 0.0)}

    overview, _, per_site, _, per_class_table, _, _ = LabelApp(s, "alice").ui_summary()
    assert "3 answer(s) name several sites" in overview
    assert ["left_leg", 4] in per_site["data"]
    assert per_class_table["visible"] is True
    rows = {r[0]: r for r in per_class_table["value"]["data"]}
    assert rows["foot"] == ["foot", 1, "50.0", rows["foot"][3]] and set(rows) == {"thigh", "leg", "foot"}


def test_summary_without_sets_shows_no_per_class_table(folder, tmp_path):
    from loscat_hf.apps.labelling.app import LabelApp

    s = _session(folder, tmp_path / "labels.csv")
    for rater in ("alice", "bob"):
        s.submit(rater, s.next_photo(rater).photo.photo_id, "left_thigh")
    summary = s.summary()
    assert summary["several_sites"] == 0 and "per_class" not in summary["agreement"]
    overview, *_, per_class_table, _, _ = LabelApp(s, "alice").ui_summary()
    assert per_class_table["visible"] is False and "several sites" not in overview


def test_the_grade_screen_toggles_with_several_sites_on(folder, tmp_path):
    import gradio as gr

    from loscat_hf.apps.labelling.app import LabelApp

    out = tmp_path / "labels.csv"
    app = LabelApp(_session(folder, out), "alice")
    pid = app.ui_next()[1]
    photo, photo_id, progress, hint, quality, several, selection = app.ui_site("left_leg")(pid, "poor", True)
    assert several is True and "**Left leg**" in selection and "[Enter]" in selection
    assert all(isinstance(v, type(gr.skip())) for v in (photo, photo_id, progress, hint, quality))  # kept
    # sites toggled already: a key toggles even without the box (a fast second key after Shift+key)
    assert "**Left thigh + Left leg**" in app.ui_site("left_thigh")(pid, "poor", False)[6]
    with pytest.raises(gr.Error, match="code cannot be combined"):
        app.ui_site("unclear")(pid, "poor", False)
    assert app.ui_clear()[5:] == (False, "")  # Esc: dropped, several sites off
    assert app.ui_several(True)[5:] == (True, "Several sites: press the keys of the sites the photo shows, "
                                              "then [Enter].")
    app.ui_site("right_arm")(pid, "good", True)
    app.ui_site("right_forearm")(pid, "good", True)
    app.ui_several(False)  # unticking the box drops them too
    with pytest.raises(gr.Error, match="no site toggled"):
        app.ui_confirm(pid, "good")
    app.ui_site("left_thigh")(pid, "poor", True)
    app.ui_site("left_leg")(pid, "poor", True)
    nxt = app.ui_confirm(pid, "poor")
    assert nxt[1] != pid and nxt[4:] == ("good", False, "")  # next photo: quality good, several off
    single = app.ui_site("head")(nxt[1], "good", False)  # without several sites: one key press saves
    assert single[1] not in (pid, nxt[1])
    assert [(r["region"], r["quality"]) for r in _rows(out)] == [("left_thigh;left_leg", "poor"),
                                                                ("head", "good")]


def test_the_model_feedback_names_the_set(folder, tmp_path):
    out = tmp_path / "labels.csv"
    photos = list_photos(folder, exclude=[out])
    suggestions = {p.image: [("thigh", 0.7), ("leg", 0.2), ("foot", 0.1)] for p in photos}
    s = _session(folder, out, suggestions=suggestions, order="folder")
    after = _several(s, "alice", ["left_thigh", "left_leg"])
    assert after.feedback == ("Model, for the photo you just graded (left_thigh + left_leg): "
                              "thigh 70% · leg 20% · foot 10%")


def test_a_model_that_shows_several_regions_is_shown_as_a_set(folder, tmp_path):
    """A multi-region model's predictions name its regions in a `regions` cell: the suggestion says the set
    before its top-3 (after the answer, or before it with --suggest); a single region reads as before."""
    from loscat_hf.apps.labelling.app import LabelApp
    from loscat_hf.apps.labelling.session import _suggestion

    top = [("thigh", 0.92), ("leg", 0.88), ("foot", 0.1)]
    several = _suggestion({"image": "x", "regions": "thigh;leg"}, top)
    one = _suggestion({"image": "x", "regions": "thigh"}, top)
    assert several == one == top and several.regions == ("thigh", "leg") and one.regions == ()
    assert _suggestion({"image": "x"}, top).regions == ()  # predictions written without the column
    out = tmp_path / "labels.csv"
    photos = list_photos(folder, exclude=[out])
    s = _session(folder, out, suggestions={p.image: several for p in photos}, suggest=True, order="folder")
    hint = LabelApp(s, "alice").ui_next()[3]
    assert "Model suggests (shown before you answer: `--suggest`): thigh + leg (thigh 92% · leg 88% · foot " \
           "10%)" in hint
    after = _session(folder, out, suggestions={p.image: one for p in photos}, order="folder")
    shown = after.submit("bob", after.next_photo("bob").photo.photo_id, "left_thigh")
    assert shown.feedback.endswith("(left_thigh): thigh 92% · leg 88% · foot 10%")
