"""prepare --scores: LoSCAT components joined onto photos by patient, visit and site; bad tables refused."""

import json

import pytest

from loscat_hf.data.dataset import read_split_metadata
from loscat_hf.data.private import read_codes
from loscat_hf.data.score_tables import read_score_table
from loscat_hf.errors import LoscatError
from loscat_hf.taxonomy import load_taxonomy
from tests.test_prepare import REGIONS, _prepare, _report, _study, _write

SCORE_HEADER = ("patient_id,visit,site,erythema,skin_thickness,new_extension,dermal_atrophy,"
                "subcutaneous_atrophy,dyspigmentation")


def _metadata(out):
    rows = []
    for split in ("train", "validation"):
        rows += read_split_metadata(out / split)
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
    visits = read_codes(tmp_path / "out")["visit"]  # the packed data holds codes; the map stays private
    meta = {visits[r["visit"]]: r for r in _metadata(tmp_path / "out")}
    assert len(meta) == 24
    assert meta[("P0", "v0")]["score_erythema"] is None  # missing stays missing, not 0
    assert meta[("P0", "v0")]["score_skin_thickness"] == 0.0  # a real 0 stays 0
    assert meta[("P2", "v1")]["score_erythema"] == 3.0 and meta[("P2", "v1")]["score_dyspigmentation"] == 2.0
    assert all(v is None for k, v in meta[("P3", "v1")].items() if k.startswith("score_"))
    report = _report(tmp_path / "out")
    assert report["parameters"]["scores_used"] == 23
    assert "score_new_extension" in report["columns"]
    assert "photo_3_1" not in json.dumps(report)  # original names stay in private/
    assert "photo_3_1" in (tmp_path / "out" / "private" / "details.json").read_text()


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


def test_every_bad_row_is_named_in_one_error(tmp_path):
    # row 2 fine, 3 out of range, 4 not a number, 5 repeats row 2 (another spelling of the site), 6 negative
    path = _write(tmp_path / "s.csv", [
        SCORE_HEADER, "P1,v0,head,1,0,0,0,0,0", "P1,v0,chest,9,0,0,0,0,0", "P2,v0,head,1,n/a,0,0,0,0",
        "P1,v0,HEAD,1,0,0,0,0,0", "P3,v0,head,-1,0,100,0,0,0",
    ])
    with pytest.raises(LoscatError) as err:
        read_score_table(path, load_taxonomy())
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    for part in ("row 3: erythema '9' is out of range", "row 4: skin_thickness 'n/a' is not a number",
                 "row 5: repeats row 2", "row 6: erythema '-1'", "row 6: new_extension '100'"):
        assert part in msg, part
    assert "row 2:" not in msg


def test_long_lists_of_bad_rows_are_cut(tmp_path):
    path = _write(tmp_path / "s.csv", [SCORE_HEADER, *(f"P{i},v0,head,7,0,0,0,0,0" for i in range(25))])
    with pytest.raises(LoscatError, match=r"25 bad row\(s\).*row 11:.*; and 15 more") as err:
        read_score_table(path, load_taxonomy())
    assert "row 12:" not in str(err.value)


def test_row_numbers_are_spreadsheet_rows(tmp_path):
    # a blank line and a quoted two-line cell still count as the rows a spreadsheet shows
    path = _write(tmp_path / "s.csv", [SCORE_HEADER, "P1,v0,head,1,0,0,0,0,0,,", "",
                                       '"P2\nx",v0,head,1,0,0,0,0,0', "P3,v0,head,5,0,0,0,0,0",
                                       "P4,v0,head,1,0,0,0,0,0,oops"])
    with pytest.raises(LoscatError,
                       match=r"2 bad row.*row 5: erythema '5'.*row 6: 10 cells but the header has 9") as err:
        read_score_table(path, load_taxonomy())
    assert "row 2:" not in str(err.value)  # trailing empty cells, as Excel writes them, are not an error


def test_missing_cells_stay_missing_and_totals_leave_them_out(tmp_path):
    from loscat_hf.data.score_tables import LOSDI, MLOSSI, total

    path = _write(tmp_path / "s.csv", [SCORE_HEADER, "P1,v0,head,,2,3,,,", "P1,v0,chest,1,1,0,0,0,0"])
    table = read_score_table(path, load_taxonomy())
    head = table.rows[("P1", "v0", "head")]
    assert head["erythema"] is None and head["skin_thickness"] == 2.0
    assert total(head, MLOSSI) == (5.0, 1)  # erythema left out, counted
    assert total(head, LOSDI) == (None, 3)  # every component missing: the total is missing, not 0
    assert table.missing_cells() == {"erythema": 1, "skin_thickness": 0, "new_extension": 0,
                                     "dermal_atrophy": 1, "subcutaneous_atrophy": 1, "dyspigmentation": 1}
    assert [r.row for r in table.records] == [2, 3]


def test_excel_exports_are_read(tmp_path):
    # cp1252 (Excel on Windows), ';' (European Excel) and UTF-16 ("Unicode text") tables all read
    rows = ["patient_id;visit;site;erythema;skin_thickness;new_extension;dermal_atrophy;subcutaneous_atrophy;"
            "dyspigmentation", "P\u00e9;v0;head;1;0;0;0;0;0"]
    for name, encoding in (("cp.csv", "cp1252"), ("u16.csv", "utf-16")):
        path = tmp_path / name
        path.write_bytes("\r\n".join(rows).encode(encoding))
        assert list(read_score_table(path, load_taxonomy()).rows) == [("P\u00e9", "v0", "head")]


def test_unknown_sites_refused_or_listed(tmp_path):
    path = _write(tmp_path / "s.csv", [SCORE_HEADER, "P1,v0,tail,1,0,0,0,0,0", "P1,v0,head,1,0,0,0,0,0"])
    with pytest.raises(LoscatError, match="row 2: unknown region 'tail'"):
        read_score_table(path, load_taxonomy())
    table = read_score_table(path, load_taxonomy(), unknown_sites="list")
    assert [(r.row, r.site_text, r.site) for r in table.unknown_sites] == [(2, "tail", None)]
    assert list(table.rows) == [("P1", "v0", "head")]
