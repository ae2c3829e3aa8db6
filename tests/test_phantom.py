"""The SYNTHETIC phantom archive: deterministic, complete, parseable, and consistent with its ground truth."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from loscat_hf.demo.phantom import SEVERITY_COLUMNS, generate_demo_data, render_photo, spelling_variants
from loscat_hf.demo.phantom.jpeg import _render_and_save
from loscat_hf.demo.phantom.plan import _plan
from loscat_hf.demo.phantom.raters import _CODES
from loscat_hf.errors import LoscatError
from loscat_hf.taxonomy import load_taxonomy

SMALL = dict(n_patients=5, n_photos=40, image_size=(96, 72), n_unlabeled=4, seed=3)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("phantom") / "demo"
    return out, generate_demo_data(out, num_workers=1, **SMALL)


def test_layout_and_summary(demo):
    out, summary = demo
    for name in ("annotations.csv", "loscat_scores.csv", "photos_truth.csv", "unlabeled_metadata.csv",
                 "README.md", "SYNTHETIC"):
        assert (out / name).is_file(), name
    assert "SYNTHETIC" in (out / "README.md").read_text()
    truth = _rows(out / "photos_truth.csv")
    assert len(truth) == SMALL["n_photos"] == summary["n_photos"]
    assert len({r["patient_id"] for r in truth}) == SMALL["n_patients"]
    assert len(list((out / "unlabeled").glob("*.jpg"))) == SMALL["n_unlabeled"]
    unl = _rows(out / "unlabeled_metadata.csv")
    assert {r["patient_id"] for r in unl}.isdisjoint({r["patient_id"] for r in truth})
    for r in truth:
        path = out / "images" / r["image"]
        assert path.is_file() and path.parts[-3:-1] == (r["patient_id"], r["visit"])
        assert "MRN" in path.name  # identifying-looking on purpose: prepare must strip it
    with Image.open(out / "images" / truth[0]["image"]) as im:
        assert im.size == (96, 72) and im.format == "JPEG"


def test_every_class_present_and_imbalanced(demo):
    out, summary = demo
    classes = load_taxonomy().classes
    assert set(summary["per_class"]) == set(classes)
    assert all(n >= 1 for n in summary["per_class"].values())
    assert {r["label"] for r in _rows(out / "photos_truth.csv")} == set(classes)


def test_every_spelling_parses():
    tax = load_taxonomy()
    for site in tax.sites:
        variants = spelling_variants(site)
        assert len(variants) > 2
        for text in variants:
            parsed = tax.parse(text)
            assert parsed.site == site, (text, parsed)
    for code in _CODES:
        assert tax.parse(code).code in {"unclear", "multiple", "not_gradable"}


def test_annotations_parse_and_are_messy(demo):
    out, _ = demo
    tax = load_taxonomy()
    rows = _rows(out / "annotations.csv")
    assert list(rows[0]) == ["image", "patient_id", "visit", "region", "rater", "quality", "skin_tone"]
    for r in rows:
        tax.parse(r["region"])  # raises RegionError on an unknown spelling
        assert r["rater"] in {"R1", "R2", "R3", "R4"}
    truth = {r["image"]: r for r in _rows(out / "photos_truth.csv")}
    assert {r["image"] for r in rows} == set(truth)
    # several spellings
    assert len({r["region"] for r in rows}) > len({truth[r["image"]]["site"] for r in rows})
    agree = [tax.parse(r["region"]).label == truth[r["image"]]["label"] for r in rows]
    assert 0.7 < np.mean(agree) < 1.0  # raters mostly agree with the truth, not always
    assert all(r["skin_tone"] == truth[r["image"]]["skin_tone"] for r in rows)


def test_annotations_feed_the_consensus_reader(demo):
    from loscat_hf.data.consensus import read_annotations

    out, _ = demo
    result = read_annotations(out / "annotations.csv", load_taxonomy())
    bad = {"unknown_region", "missing_value", "two_patients", "duplicate_row", "conflicting_rating"}
    assert not bad & set(result.problem_counts())
    assert not result.warnings
    truth = {r["image"]: r["label"] for r in _rows(out / "photos_truth.csv")}
    assert len(result.photos) >= 0.7 * len(truth)
    assert np.mean([truth[p.image] == p.label for p in result.photos]) > 0.85


def test_scores_consistent_with_truth(demo):
    out, _ = demo
    scores = {(r["patient_id"], r["visit"], r["site"]): r for r in _rows(out / "loscat_scores.csv")}
    assert list(next(iter(scores.values()))) == ["patient_id", "visit", "site", *SEVERITY_COLUMNS]
    sites = set(load_taxonomy().sites)
    for r in scores.values():
        assert r["site"] in sites
        assert all(0 <= int(r[c]) <= 3 for c in SEVERITY_COLUMNS) and r["new_extension"] in {"0", "3"}
    truth = _rows(out / "photos_truth.csv") + _rows(out / "unlabeled_truth.csv")
    for t in truth:
        row = scores[(t["patient_id"], t["visit"], t["site"])]
        assert [row[c] for c in SEVERITY_COLUMNS] == [t[c] for c in SEVERITY_COLUMNS]
    assert any(all(t[c] == "0" for c in SEVERITY_COLUMNS) for t in truth)  # some photos show no lesion
    assert any(int(t["erythema"]) >= 2 for t in truth)


def test_exif_identifying_tags_and_orientation(tmp_path):
    out = tmp_path / "d"
    generate_demo_data(out, n_patients=4, n_photos=30, image_size=(80, 60), n_unlabeled=0, seed=1,
                       num_workers=1)
    truth = _rows(out / "photos_truth.csv")
    gps = oriented = 0
    for r in truth:
        with Image.open(out / "images" / r["image"]) as im:
            exif = im.getexif()
            assert "SYNTHETIC phantom" in exif[0x010E] and "MRN" in exif[0x010E]
            assert exif[0x010F] and exif[0x0110] and exif.get_ifd(0x8769)[0x9003]
            gps += bool(exif.get_ifd(0x8825))
            orientation = exif.get(0x0112, 0)
            assert orientation == int(r["orientation"])
            oriented += orientation not in (0, 1)
            upright = ImageOps.exif_transpose(im)
            assert upright.size == ((60, 80) if orientation in (6, 8) else (80, 60))
    assert 0 < gps < len(truth)
    assert oriented > 0


def test_orientation_rotates_pixels_so_transpose_is_upright(tmp_path):
    """The stored pixels are the upright render turned the other way: exif_transpose must undo it exactly."""
    root = tmp_path / "o"
    specs, *_ = _plan(4, 60, 0, (64, 48), 5, root)
    turned = [s for s in specs if s["orientation"] in (3, 6, 8)][:4]
    assert turned
    for spec in turned:
        _render_and_save(spec)
        expected = np.asarray(render_photo(spec), np.float32)
        with Image.open(spec["path"]) as im:
            got = np.asarray(ImageOps.exif_transpose(im), np.float32)
        assert got.shape == expected.shape
        assert np.abs(got - expected).mean() < 6  # JPEG loss only; a wrong turn differs by far more


def test_deterministic_across_runs_and_workers(tmp_path, demo):
    ref, _ = demo
    out = tmp_path / "again"
    generate_demo_data(out, num_workers=2, **SMALL)
    files = sorted(p.relative_to(ref) for p in ref.rglob("*") if p.is_file() and p.name != "README.md")
    assert files == sorted(p.relative_to(out) for p in out.rglob("*")
                           if p.is_file() and p.name != "README.md")
    for rel in files:
        assert (ref / rel).read_bytes() == (out / rel).read_bytes(), rel
    other = tmp_path / "other_seed"
    generate_demo_data(other, num_workers=1, **{**SMALL, "seed": 4})
    assert (other / "annotations.csv").read_bytes() != (ref / "annotations.csv").read_bytes()


def test_refuses_non_empty_output_without_overwrite(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    args = dict(n_patients=2, n_photos=12, image_size=(48, 36), n_unlabeled=0, num_workers=1)
    with pytest.raises(LoscatError, match="not empty"):
        generate_demo_data(out, **args)
    assert not (out / "images").exists()
    generate_demo_data(out, overwrite=True, **args)
    generate_demo_data(out, overwrite=True, **{**args, "n_photos": 13})
    assert (out / "notes.txt").read_text() == "keep me"  # overwrite replaces only what demo-data writes
    assert len(list((out / "images").rglob("*.jpg"))) == 13


@pytest.mark.parametrize("kwargs, param", [
    (dict(n_patients=0), "n_patients"),
    (dict(n_patients=20, n_photos=10), "n_photos"),
    (dict(n_patients=2, n_photos=5), "n_photos"),
    (dict(image_size=(10, 10)), "image_size"),
    (dict(image_size=(64,)), "image_size"),
    (dict(image_size="big"), "image_size"),
    (dict(n_unlabeled=-1), "n_unlabeled"),
    (dict(seed=-1), "seed"),
    (dict(num_workers=0), "num_workers"),
])
def test_bad_arguments(tmp_path, kwargs, param):
    """Each message starts with the Python parameter's name (the CLI puts the flag there)."""
    with pytest.raises(LoscatError, match=f"^{param} ") as caught:
        generate_demo_data(tmp_path / "d", **{"n_patients": 2, "n_photos": 12, **kwargs})
    assert caught.value.params[0] == param and "--" not in str(caught.value)
    assert not (tmp_path / "d").exists()


def test_library_prints_nothing_and_the_cli_prints_the_summary(tmp_path, capsys):
    """generate_demo_data returns its summary (a library prints nothing); `loscat-hf demo-data` prints it on
    stdout, ending with the prepare command to run next."""
    from loscat_hf.cli import main

    generate_demo_data(tmp_path / "d", n_patients=2, n_photos=12, image_size=(48, 36), n_unlabeled=0,
                       num_workers=1)
    assert capsys.readouterr().out == ""
    assert main(["demo-data", str(tmp_path / "e"), "--patients", "2", "--photos", "12",
                 "--image-size", "48", "36", "--unlabeled", "0", "--num-workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC phantom data: 12 photos of 2 patients" in out
    assert f"next: loscat-hf prepare --annotations {tmp_path / 'e' / 'annotations.csv'}" in out


def test_output_path_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(LoscatError, match="not a folder"):
        generate_demo_data(f, n_patients=2, n_photos=12)


def test_severity_changes_the_pixels():
    """Each LoSCAT component must be visible: a model can only learn scores that change the picture."""
    root = Path("/nonexistent")
    specs, *_ = _plan(6, 60, 0, (96, 72), 0, root)
    spec = next(s for s in specs if s["lesion"] is not None)
    base = np.asarray(render_photo({**spec, "severity": (0, 0, 0, 0, 0, 0)}), np.float32)
    for i, name in enumerate(SEVERITY_COLUMNS):
        sev = [0] * 6
        sev[i] = 3
        img = np.asarray(render_photo({**spec, "severity": tuple(sev)}), np.float32)
        assert np.abs(img - base).mean() > 0.15, name
