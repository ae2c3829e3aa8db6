import json
import textwrap

import pytest

from loscat_hf.data.consensus import PhotoLabel, read_annotations
from loscat_hf.errors import LoscatError
from loscat_hf.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy()


def _csv(tmp_path, text, name="labels.csv"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def _kinds(result):
    return sorted(p.kind for p in result.problems)


def _photo(result, image) -> PhotoLabel:
    return next(p for p in result.photos if p.image == image)


def test_consensus_one_two_three_raters(tax, tmp_path):
    path = _csv(tmp_path, """
        image,patient_id,region,rater
        one.jpg,P1,Rt. Forearm,A
        two.jpg,P1,left thigh,A
        two.jpg,P1,LEFT_THIGH,B
        three.jpg,P2,upper arm,A
        three.jpg,P2,L arm,B
        three.jpg,P2,forearm,C
        """)
    result = read_annotations(path, tax)
    assert result.n_rows == 6 and result.problems == []
    one, two, three = result.photos
    assert (one.image, one.patient_id, one.site, one.label, one.n_ratings, one.agreement) == (
        "one.jpg", "P1", "right_forearm", "forearm", 1, 1.0)
    assert (two.site, two.label, two.n_ratings, two.agreement) == ("left_thigh", "thigh", 2, 1.0)
    # 'upper arm' gives no side, so the one sided vote decides the site
    assert (three.site, three.label, three.n_ratings) == ("left_arm", "arm", 3)
    assert three.agreement == pytest.approx(2 / 3)
    assert one.visit == "" and one.extra == {}
    assert list(result.ratings.columns) == ["image", "rater", "site", "label"]
    assert len(result.ratings) == 6


def test_site_falls_back_to_class_when_sides_disagree_or_are_missing(tax, tmp_path):
    path = _csv(tmp_path, """
        image,patient_id,region,rater
        a.jpg,P1,left leg,A
        a.jpg,P1,right leg,B
        b.jpg,P1,hand,A
        b.jpg,P1,hand,B
        c.jpg,P1,left foot,A
        c.jpg,P1,left foot,B
        c.jpg,P1,right foot,C
        d.jpg,P1,face,A
        """)
    result = read_annotations(path, tax)
    sites = {p.image: (p.site, p.label) for p in result.photos}
    assert sites == {"a.jpg": ("leg", "leg"), "b.jpg": ("hand", "hand"),
                     "c.jpg": ("left_foot", "foot"), "d.jpg": ("head", "head")}


def test_tie_is_excluded_and_lists_tied_labels(tax, tmp_path):
    path = _csv(tmp_path, """
        image,patient_id,region,rater
        t.jpg,P1,arm,A
        t.jpg,P1,forearm,B
        u.jpg,P1,chest,A
        u.jpg,P1,unclear,B
        ok.jpg,P1,chest,A
        """)
    result = read_annotations(path, tax)
    assert [p.image for p in result.photos] == ["ok.jpg"]
    ties = {p.source: p for p in result.problems}
    assert _kinds(result) == ["tie", "tie"]
    assert "arm" in ties["t.jpg"].reason and "forearm" in ties["t.jpg"].reason
    assert ties["t.jpg"].row == 2 and ties["u.jpg"].row == 4  # spreadsheet rows: header = 1
    assert "unclear" in ties["u.jpg"].reason  # a code is a vote
    # ties are disagreements: their ratings stay in the agreement table
    assert set(result.ratings["image"]) == {"t.jpg", "u.jpg", "ok.jpg"}
    assert result.agreement["percent_agreement"] == 0.0


def test_non_site_code_wins(tax, tmp_path):
    path = _csv(tmp_path, """
        image,patient_id,region,rater
        x.jpg,P1,Not Gradable,A
        x.jpg,P1,ungradable,B
        x.jpg,P1,chest,C
        y.jpg,P1,multiple sites,A
        """)
    result = read_annotations(path, tax)
    assert result.photos == []
    assert _kinds(result) == ["non_site:multiple", "non_site:not_gradable"]
    assert result.agreement["n_ratings"] == 1  # codes are left out of agreement


def test_row_level_problem_kinds(tax, tmp_path):
    path = _csv(tmp_path, """
        image,patient_id,region,rater,quality
        a.jpg,P1,elbowish,A,
        ,P1,chest,A,
        b.jpg,,chest,A,
        b.jpg,P1,,B,
        c.jpg,P1,chest,A,Exclude
        c.jpg,P1,chest,B,POOR
        c.jpg,P1,chest,C,good
        d.jpg,P1,left arm,A,
        d.jpg,P1,L arm,A,
        e.jpg,P1,left arm,A,
        e.jpg,P1,right arm,A,
        e.jpg,P1,right arm,B,
        """)
    result = read_annotations(path, tax)
    by_row = {p.row: p for p in result.problems}
    assert by_row[2].kind == "unknown_region"  # spreadsheet rows: the header is row 1
    assert "elbowish" in by_row[2].reason and "Valid sites" in by_row[2].reason
    assert [by_row[r].kind for r in (3, 4, 5)] == ["missing_value"] * 3
    assert "image" in by_row[3].reason and "patient_id" in by_row[4].reason and "region" in by_row[5].reason
    assert by_row[6].kind == by_row[7].kind == "quality_excluded"
    assert by_row[10].kind == "duplicate_row" and "9" in by_row[10].reason  # 'L arm' == 'left arm'
    assert by_row[11].kind == by_row[12].kind == "conflicting_rating"
    assert "left_arm" in by_row[11].reason and "right_arm" in by_row[11].reason
    assert set(by_row) == {2, 3, 4, 5, 6, 7, 10, 11, 12}
    assert all(p.source == str(path) for p in result.problems)
    labels = {p.image: (p.site, p.n_ratings) for p in result.photos}
    # c.jpg keeps the good-quality rating; e.jpg keeps only rater B
    assert labels == {"c.jpg": ("chest", 1), "d.jpg": ("left_arm", 1), "e.jpg": ("right_arm", 1)}


def test_two_patients_excludes_photo(tax, tmp_path):
    path = _csv(tmp_path, """
        image,patient_id,region,rater
        m.jpg,P1,chest,A
        m.jpg,P9,chest,B
        n.jpg,P2,chest,A
        """)
    result = read_annotations(path, tax)
    (problem,) = result.problems
    assert problem.kind == "two_patients" and problem.source == "m.jpg" and problem.row == 2
    assert "P1" in problem.reason and "P9" in problem.reason
    assert [p.image for p in result.photos] == ["n.jpg"]
    assert "m.jpg" not in set(result.ratings["image"])


def test_no_rater_column_makes_each_row_a_rater(tax, tmp_path):
    path = _csv(tmp_path, """
        image,patient_id,region
        a.jpg,P1,chest
        a.jpg,P1,chest
        a.jpg,P1,abdomen
        """)
    result = read_annotations(path, tax)
    (photo,) = result.photos
    assert (photo.label, photo.n_ratings) == ("chest", 3)
    assert list(result.ratings["rater"]) == ["row2", "row3", "row4"]
    assert result.problems == []
    assert result.agreement["pairs"] == []  # anonymous raters: no meaningful pairs
    # chest 2, abdomen 1: P = (4 + 1 - 3) / 6 = 1/3, Pe = 4/9 + 1/9 = 5/9, kappa = (1/3 - 5/9) / (4/9) = -0.5
    assert result.agreement["fleiss_kappa"] == pytest.approx(-0.5)


def test_extra_columns_visit_and_tolerant_headers(tax, tmp_path):
    path = _csv(tmp_path, """
        " Image ",Patient ID,REGION, Rater ,Visit,Skin Tone,camera,
        photos\\p1\\a.jpg, P1 ,chest,A,v2,,
        ./photos/p1/a.jpg,P1,chest,B,,III,Canon,
        photos//p1/a.jpg,P1,chest,C,,IV,,
        b.jpg,P2,neck,A,,,,
        """)
    result = read_annotations(path, tax, keep_columns=["skin_tone", "Camera"])
    a, b = result.photos
    assert a.image == "photos/p1/a.jpg" and a.patient_id == "P1" and a.n_ratings == 3
    assert a.visit == "v2"
    assert a.extra == {"skin_tone": "III", "camera": "Canon"}
    assert b.extra == {} and b.visit == ""
    (warning,) = result.warnings
    assert warning.kind == "conflicting_extra" and "III" in warning.reason and "IV" in warning.reason
    assert result.problems == []


def test_semicolon_separated_with_bom(tax, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffimage;patient_id;region\na.jpg;P1;Brust\nb.jpg;P2;thorax\n".encode())
    result = read_annotations(path, tax)
    assert [p.label for p in result.photos] == ["chest"]
    assert _kinds(result) == ["unknown_region"] and result.problems[0].row == 2


def test_result_is_serialisable(tax, tmp_path):
    path = _csv(tmp_path, """
        image,patient_id,region,rater
        a.jpg,P1,chest,A
        a.jpg,P1,abdomen,B
        a.jpg,P1,chest,C
        """)
    result = read_annotations(path, tax)
    json.dumps(result.agreement)
    json.dumps([p.to_dict() for p in result.problems])
    assert result.agreement["most_confused"] == [{"labels": ["chest", "abdomen"], "count": 2}]
    assert result.problem_counts() == {}


@pytest.mark.parametrize("content,match", [
    (None, "does not exist"),
    (b"", "empty"),
    (b"   \n\n", "empty"),
    (b"image,patient_id,region\n", "no data rows"),
    (b"image,region\na.jpg,chest\n",
     r"lacks required column.*patient_id.*Found columns.*'image', 'region'.*Required"),
    (b"PK\x03\x04\x14\x00\x06\x00", "Excel"),
    (b"\x00\x01\x02binary", "not a text CSV"),
    (b"image,patient_id,region\na.jpg,P1,chest,x\n", "row 2 has 4 fields but the header .row 1."),
    (b"image,patient_id,region\na.jpg,P1,chest\nb.jpg,P2,chest,extra,fields\n", "row 3 has 5 fields"),
    (b"image,Image,patient_id,region\na,b,P1,chest\n", "two columns"),
])
def test_unusable_files_raise_loscat_error(tax, tmp_path, content, match):
    path = tmp_path / "labels.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LoscatError, match=match):
        read_annotations(path, tax)


def test_folder_instead_of_file(tax, tmp_path):
    with pytest.raises(LoscatError, match="folder"):
        read_annotations(tmp_path, tax)


def test_columns_are_an_allow_list(tax, tmp_path):
    path = _csv(tmp_path, """
        image,patient_id,region,visit,skin_tone,PatientName,DateOfBirth,Geburtsdatum,\
MedicalRecordNumber,OriginalFileName
        a.jpg,P1,chest,v1,III,Jane Roe,2015-01-02,02.01.2015,MRN123,IMG_Jane.jpg
        """)
    result = read_annotations(path, tax)
    assert result.photos[0].extra == {} and result.photos[0].visit == "v1"
    assert result.dropped_columns == ["skin_tone", "PatientName", "DateOfBirth", "Geburtsdatum",
                                      "MedicalRecordNumber", "OriginalFileName"]
    kept = read_annotations(path, tax, keep_columns="Skin Tone")
    assert kept.photos[0].extra == {"skin_tone": "III"} and "skin_tone" not in kept.dropped_columns
    with pytest.raises(LoscatError, match="^keep_columns fitzpatrick: no such column.*skin_tone"):
        read_annotations(path, tax, keep_columns="skin_tone,fitzpatrick")
    with pytest.raises(LoscatError, match="^keep_columns patient_id: loscat-hf writes"):
        read_annotations(path, tax, keep_columns="patient_id")


def test_photo_remembers_its_first_csv_row(tax, tmp_path):
    path = tmp_path / "rows.csv"  # a blank line counts: it is a row in a spreadsheet too
    path.write_text("image,patient_id,region,rater\na.jpg,P1,chest,A\n\nb.jpg,P2,neck,A\nb.jpg,P2,neck,B\n")
    assert [(p.image, p.row) for p in read_annotations(path, tax).photos] == [("a.jpg", 2), ("b.jpg", 4)]


def test_utf16_export_is_read(tax, tmp_path):
    path = tmp_path / "unicode.csv"
    path.write_bytes("image\tpatient_id\tregion\na.jpg\tP1\tchest\n".encode("utf-16"))
    assert [p.label for p in read_annotations(path, tax).photos] == ["chest"]
    bare = tmp_path / "bare.csv"
    bare.write_bytes("image,patient_id,region\na.jpg,P1,chest\n".encode("utf-16-le"))
    with pytest.raises(LoscatError, match="UTF-16 without a byte-order mark.*save it as CSV UTF-8"):
        read_annotations(bare, tax)
