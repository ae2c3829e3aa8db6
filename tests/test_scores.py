"""prepare --scores: LoSCAT components joined onto photos by patient, visit and site; bad tables refused."""

import csv

import pytest

from loscat_hf.errors import LoscatError
from loscat_hf.regions import load_taxonomy
from loscat_hf.scores import read_score_table
from tests.test_prepare import REGIONS, _prepare, _report, _study, _write

SCORE_HEADER = "patient_id,visit,site,erythema,skin_thickness,new_extension,dermal_atrophy,subcutaneous_atrophy,dyspigmentation"


def _metadata(out):
    rows = []
    for split in ("train", "validation"):
        with open(out / split / "metadata.csv", newline="", encoding="utf-8") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def test_prepare_attaches_scores_and_lists_unmatched(tmp_path, capsys):
    csv_path, images, rows = _study(tmp_path)
    _write(csv_path, rows)
    score_rows = [SCORE_HEADER]
    for p in range(8):
        for k in range(3):
            if (p, k) == (3, 1):
                continue  # this photo gets no scores
            ery = "" if (p, k) == (0, 0) else str((p + k) % 4)  # one missing value
            score_rows.append(f"P{p},v{k},{REGIONS[(p + k) % len(REGIONS)]},{ery},{p % 4},3,0,1,2")
    scores = _write(tmp_path / "scores.csv", score_rows)
    assert _prepare(csv_path, images, tmp_path / "out", scores=scores) == 0
    out = capsys.readouterr().out
    assert "scores attached to 23 of 24 photos" in out and "no scores for" in out
    meta = {(r["patient_id"], r["visit"]): r for r in _metadata(tmp_path / "out")}
    assert len(meta) == 24
    assert meta[("P0", "v0")]["score_erythema"] == ""  # missing stays missing, not 0
    assert meta[("P0", "v0")]["score_skin_thickness"] == "0"
    assert meta[("P2", "v1")]["score_erythema"] == "3" and meta[("P2", "v1")]["score_dyspigmentation"] == "2"
    assert all(v == "" for k, v in meta[("P3", "v1")].items() if k.startswith("score_"))
    report = _report(tmp_path / "out")
    assert report["parameters"]["scores_used"] == 23
    assert "score_new_extension" in report["columns"]
    assert not any("photo_3_1" in n for n in report["notes"])  # original names are redacted in the report


@pytest.mark.parametrize(("rows", "message"), [
    (["patient_id,visit,site,erythema", "P1,v0,head,2"], "lacks column"),
    ([SCORE_HEADER, "P1,v0,head,4,0,0,0,0,0"], "out of range"),
    ([SCORE_HEADER, "P1,v0,head,1,0,2,0,0,0"], "new_extension"),  # only 0 or 3
    ([SCORE_HEADER, "P1,v0,head,x,0,0,0,0,0"], "not a number"),
    ([SCORE_HEADER, "P1,v0,head,1,0,0,0,0,0", "P1,v0,Head,2,0,0,0,0,0"], "repeats row 2"),
    ([SCORE_HEADER, "P1,v0,elbowz,1,0,0,0,0,0"], "unknown region"),
])
def test_bad_score_tables_are_refused(tmp_path, rows, message):
    path = _write(tmp_path / "s.csv", rows)
    with pytest.raises(LoscatError, match=message):
        read_score_table(path, load_taxonomy())


def test_bad_table_fails_before_packing(tmp_path):
    csv_path, images, rows = _study(tmp_path, n_patients=2, per_patient=1)
    _write(csv_path, rows)
    scores = _write(tmp_path / "s.csv", [SCORE_HEADER, "P0,v0,head,9,0,0,0,0,0"])
    with pytest.raises(LoscatError, match="row 2"):
        _prepare(csv_path, images, tmp_path / "out", scores=scores)
    assert not (tmp_path / "out").exists()
