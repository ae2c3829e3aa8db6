"""prepare / `loscat-hf prepare`: annotation CSV + photos -> dataset, bad input reported, exit codes."""

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from loscat_hf.cli import main, prepare_command
from loscat_hf.data.dataset import read_split_metadata
from loscat_hf.errors import LoscatError

REGIONS = ["head", "left arm", "Rt. Leg", "chest", "right forearm", "abdomen"]
HEADER = "image,patient_id,region,rater,visit,quality,skin_tone"


def _photo(path: Path, tag: int) -> None:
    img = Image.new("RGB", (80, 60), (100, 90, 80))
    img.paste(((tag % 16) * 16, (tag // 16) * 32 % 256, 200), (0, 0, 20, 20))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=95)


def _study(tmp_path: Path, n_patients: int = 8, per_patient: int = 3) -> tuple[Path, Path, list[str]]:
    """Photos under images/, two raters per photo who agree; returns (csv, images dir, csv rows)."""
    images = tmp_path / "images"
    rows = [HEADER]
    for p in range(n_patients):
        for k in range(per_patient):
            rel = f"pt{p}/photo_{p}_{k}.jpg"
            _photo(images / rel, p * 10 + k)
            region = REGIONS[(p + k) % len(REGIONS)]
            for rater in ("A", "B"):
                rows.append(f"{rel},P{p},{region},{rater},v{k},ok,III")
    return tmp_path / "ratings.csv", images, rows


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _prepare(csv_path, images, out, **kw):
    kw.setdefault("val_fraction", 0.25)
    kw.setdefault("num_workers", 1)
    return prepare_command(annotations=csv_path, images=images, out=out, **kw)


def _report(out: Path) -> dict:
    return json.loads((out / "prepare_report.json").read_text())


def test_happy_path(tmp_path, capsys):
    csv_path, images, rows = _study(tmp_path)
    out = tmp_path / "out"
    assert _prepare(_write(csv_path, rows), images, out, test_fraction=0.25, keep_columns="Skin Tone") == 0
    report = _report(out)
    assert report["n_photos"] == 24 and set(report["splits"]) == {"train", "validation", "test"}
    row = read_split_metadata(out / "train")[0]
    assert row["skin_tone"] == "III" and row["label"] in {"head", "arm", "leg", "chest", "forearm", "abdomen"}
    text = capsys.readouterr().out
    assert "validation" in text and "Inter-rater agreement" in text and "Nothing was left out" in text


def test_bad_inputs_are_reported_and_rest_is_packed(tmp_path, capsys):
    csv_path, images, rows = _study(tmp_path)
    bad = images / "bad"
    bad.mkdir()
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("this is not a photo")
    good = (images / "pt0" / "photo_0_0.jpg").read_bytes()
    (bad / "cut.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "outside.jpg").write_bytes(good)
    rows += [
        "bad/zero.jpg,P1,head,A,v1,,III",
        "bad/text.jpg,P1,head,A,v1,,III",
        "bad/cut.jpg,P1,head,A,v1,,III",
        "bad/missing.jpg,P1,head,A,v1,,III",
        "../outside.jpg,P1,head,A,v1,,III",
        f"{tmp_path / 'outside.jpg'},P1,head,A,v1,,III",
        "pt1/photo_1_0.jpg,P1,elbow,C,v0,,III",  # unknown region
        rows[1],  # duplicate row
        "pt2/photo_2_0.jpg,P9,head,C,v0,,III",  # same photo for a second patient
    ]
    out = tmp_path / "out"
    assert _prepare(_write(csv_path, rows), images, out) == 0
    by_reason = _report(out)["exclusions"]["by_reason"]
    for kind, n in {"zero_byte": 1, "not_an_image": 1, "truncated": 1, "missing_image": 1,
                    "outside_images_dir": 2, "unknown_region": 1, "duplicate_row": 1,
                    "two_patients": 1}.items():
        assert by_reason.get(kind) == n, (kind, by_reason)
    assert _report(out)["n_photos"] == 23  # the two-patient photo is out
    text = capsys.readouterr().out
    assert "Left out:" in text and "[truncated] bad/cut.jpg row 52" in text
    assert "[missing_image] bad/missing.jpg row 53" in text  # file problems carry their CSV row too
    with open(out / "private" / "problems.csv", newline="") as fh:
        rows_of = {(r["kind"], r["source"]): r["csv_row"] for r in csv.DictReader(fh)}
    # spreadsheet rows (the header is row 1): the 49th data row is row 50
    assert (rows_of[("zero_byte", "bad/zero.jpg")] == "50"
            and rows_of[("outside_images_dir", "../outside.jpg")] == "54")


def test_strict_and_nothing_usable(tmp_path):
    csv_path, images, rows = _study(tmp_path)
    _write(csv_path, [*rows, "bad/missing.jpg,P1,head,A,v1,,III"])
    assert _prepare(csv_path, images, tmp_path / "out", strict=True) == 1
    assert (tmp_path / "out" / "README.md").exists()  # written, but the exit code flags the problem

    _write(csv_path, [HEADER, "gone1.jpg,P1,head,A,v1,,", "gone2.jpg,P2,neck,A,v1,,"])
    assert _prepare(csv_path, images, tmp_path / "empty") == 1
    assert not (tmp_path / "empty").exists()


def test_refuses_overwrite_and_out_containing_images(tmp_path):
    csv_path, images, rows = _study(tmp_path)
    _write(csv_path, rows)
    out = tmp_path / "out"
    assert _prepare(csv_path, images, out) == 0
    with pytest.raises(LoscatError, match="overwrite=True"):
        _prepare(csv_path, images, out)
    assert _prepare(csv_path, images, out, overwrite=True) == 0
    with pytest.raises(LoscatError, match="original photos"):
        _prepare(csv_path, images, tmp_path, overwrite=True)


def test_cli_prepare(tmp_path, capsys):
    csv_path, images, rows = _study(tmp_path)
    _write(csv_path, rows)
    args = ["prepare", "--annotations", str(csv_path), "--images", str(images),
            "--out", str(tmp_path / "out"), "--val-fraction", "0.25", "--num-workers", "1", "--seed", "3"]
    assert main(args) == 0
    assert main(args) == 2  # exists: a user error, not a traceback
    assert capsys.readouterr().err.rstrip().endswith("to replace it (--overwrite)")
    assert main([*args, "--overwrite", "--max-side", "32"]) == 0
    packed = next((tmp_path / "out" / "train").glob("*.jpg"))
    assert 27 <= min(Image.open(packed).size) <= 32  # a DCT-scaled JPEG decode may land up to 15% under


def test_same_export_gives_the_same_dataset(tmp_path):
    """Ids and codes come from a key derived from the private export: secret, yet reproducible."""
    csv_path, images, rows = _study(tmp_path)
    _write(csv_path, rows)
    assert _prepare(csv_path, images, tmp_path / "a") == 0
    assert _prepare(csv_path, images, tmp_path / "b") == 0
    for split in ("train", "validation"):
        assert read_split_metadata(tmp_path / "a" / split) == read_split_metadata(tmp_path / "b" / split)
    assert _prepare(csv_path, images, tmp_path / "c", seed=1) == 0  # another seed: another key
    ids = {r["image_id"] for s in ("train", "validation") for r in read_split_metadata(tmp_path / "a" / s)}
    assert ids.isdisjoint(r["image_id"] for s in ("train", "validation")
                          for r in read_split_metadata(tmp_path / "c" / s))
