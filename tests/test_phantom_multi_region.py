"""`demo-data --multi-region`: photos of a lesion across two adjacent sites, raters naming one or both, and
an archive without the flag that is exactly what it was before the flag existed."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from loscat_hf.demo.phantom import SEVERITY_COLUMNS, generate_demo_data
from loscat_hf.demo.phantom.anatomy import _keypoints, _site_frame, _span_frame, _span_segment
from loscat_hf.demo.phantom.plan import SPAN_SHARE, _plan
from loscat_hf.taxonomy import load_taxonomy

SMALL = dict(n_patients=8, n_photos=64, image_size=(64, 48), n_unlabeled=12, seed=5)
# Class pairs a spanning photo may show, proximal first (head+neck: the taxonomy's midline pair).
PAIRS = {("thigh", "leg"), ("arm", "forearm"), ("forearm", "hand"), ("chest", "abdomen"), ("head", "neck")}

# sha256 of the CSVs and the photo specs of HASHED, computed from the generator before multi_region existed:
# without the flag, the archive (RNG draws included) must stay exactly the same.
HASHED = dict(n_patients=6, n_photos=48, image_size=(80, 64), n_unlabeled=4, seed=7)
HASH_BEFORE = "37388891b51ce745de97ad113cfc85b04ddced0a4b6aa2a9efde798e5b2a1be8"
_CSVS = ("annotations.csv", "photos_truth.csv", "loscat_scores.csv", "unlabeled_metadata.csv",
         "unlabeled_truth.csv")


def _side(site: str) -> str | None:
    return site.split("_")[0] if site.startswith(("left_", "right_")) else None


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _archive_hash(out: Path) -> str:
    h = hashlib.sha256()
    for name in _CSVS:
        h.update(name.encode())
        h.update((out / name).read_bytes())
    a = HASHED
    specs = _plan(a["n_patients"], a["n_photos"], a["n_unlabeled"], a["image_size"], a["seed"],
                  Path("ROOT"))[0]
    h.update(json.dumps(specs, sort_keys=True, default=str).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def pair_of_runs(tmp_path_factory) -> tuple[Path, Path]:
    """The same small archive without and with the flag."""
    root = tmp_path_factory.mktemp("multi")
    generate_demo_data(root / "off", num_workers=1, **SMALL)
    summary = generate_demo_data(root / "on", num_workers=1, multi_region=True, **SMALL)
    assert summary["n_spanning"] == round(SPAN_SHARE * SMALL["n_photos"])
    assert summary["n_unlabeled_spanning"] == round(SPAN_SHARE * SMALL["n_unlabeled"])
    return root / "off", root / "on"


def test_without_the_flag_nothing_changes(tmp_path):
    generate_demo_data(tmp_path / "a", num_workers=1, **HASHED)
    generate_demo_data(tmp_path / "b", num_workers=1, multi_region=False, **HASHED)
    assert _archive_hash(tmp_path / "a") == _archive_hash(tmp_path / "b") == HASH_BEFORE
    jpgs = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jpg"))
    assert jpgs and all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in jpgs)
    for name in _CSVS:
        assert ";" not in (tmp_path / "a" / name).read_text(encoding="utf-8"), name


def test_spanning_truth_names_two_adjacent_sites_on_one_side(pair_of_runs):
    _, on = pair_of_runs
    tax = load_taxonomy()
    truth = _rows(on / "photos_truth.csv")
    spanning = [r for r in truth if ";" in r["site"]]
    assert len(spanning) == round(SPAN_SHARE * SMALL["n_photos"])
    for r in spanning:
        a, b = (tax.parse(s) for s in r["site"].split(";"))
        assert (a.label, b.label) in PAIRS and r["label"] == f"{a.label};{b.label}"
        assert _side(a.site) == _side(b.site)
    scores = {(r["patient_id"], r["visit"], r["site"]) for r in _rows(on / "loscat_scores.csv")}
    assert all((r["patient_id"], r["visit"], s) in scores for r in spanning for s in r["site"].split(";"))


def test_unlabeled_photos_span_too(pair_of_runs):
    """The same share of unlabeled photos spans two sites, named like photos_truth.csv names them, scored in
    both sites; the other unlabeled photos, and the metadata, are as without the flag."""
    off, on = pair_of_runs
    tax = load_taxonomy()
    truth = _rows(on / "unlabeled_truth.csv")
    spanning = [r for r in truth if ";" in r["site"]]
    assert len(spanning) == round(SPAN_SHARE * SMALL["n_unlabeled"]) > 0
    for r in spanning:
        a, b = (tax.parse(s) for s in r["site"].split(";"))
        assert (a.label, b.label) in PAIRS and r["label"] == f"{a.label};{b.label}"
        assert _side(a.site) == _side(b.site) and a.site != b.site
        assert any(r[c] != "0" for c in SEVERITY_COLUMNS)  # a lesion runs across the border
    scores = {(r["patient_id"], r["visit"], r["site"]): r for r in _rows(on / "loscat_scores.csv")}
    for r in spanning:
        for s in r["site"].split(";"):
            assert (r["patient_id"], r["visit"], s) in scores
        # the photographed site keeps its own scores, exactly as for a labelled spanning photo
        assert any([scores[(r["patient_id"], r["visit"], s)][c] for c in SEVERITY_COLUMNS]
                   == [r[c] for c in SEVERITY_COLUMNS] for s in r["site"].split(";"))
    names = {r["image"] for r in spanning}
    assert [r for r in _rows(off / "unlabeled_truth.csv") if r["image"] not in names] == \
        [r for r in truth if r["image"] not in names]
    assert _rows(off / "unlabeled_metadata.csv") == _rows(on / "unlabeled_metadata.csv")
    n = round(SPAN_SHARE * SMALL["n_photos"])
    assert f"Multi-region ({n} labelled photos, {len(spanning)} unlabeled)" in (on / "README.md").read_text()
    for r in _rows(off / "unlabeled_truth.csv"):
        same = (off / "unlabeled" / r["image"]).read_bytes() == (on / "unlabeled" / r["image"]).read_bytes()
        assert same == (r["image"] not in names), r["image"]


def test_raters_name_one_or_both_sites(pair_of_runs):
    _, on = pair_of_runs
    tax = load_taxonomy()
    truth = {r["image"]: r for r in _rows(on / "photos_truth.csv")}
    both = single = 0
    for r in _rows(on / "annotations.csv"):
        parts = r["region"].split(";")
        pair = truth[r["image"]]["label"].split(";")
        if len(parts) == 1:
            tax.parse(parts[0])
            single += len(pair) == 2 and tax.parse(parts[0]).label in pair
            continue
        assert len(pair) == 2, r  # only a spanning photo gets a two-site cell
        parsed = [tax.parse(p) for p in parts]
        assert [p.label for p in parsed] in (pair, pair[::-1]), r
        assert parts[1].startswith(" ") and parts[0] == parts[0].strip()  # "Left thigh; L leg"
        assert _side(parsed[0].site) == _side(parsed[1].site), r
        both += 1
    assert both > single > 0


def test_other_photos_stay_as_without_the_flag(pair_of_runs):
    off, on = pair_of_runs
    spanning = {r["image"] for r in _rows(on / "photos_truth.csv") if ";" in r["site"]}
    for name in ("photos_truth.csv", "annotations.csv"):
        rows_off = [r for r in _rows(off / name) if r["image"] not in spanning]
        assert rows_off == [r for r in _rows(on / name) if r["image"] not in spanning], name
    for rel in sorted({r["image"] for r in _rows(off / "photos_truth.csv")} - spanning):
        assert (off / "images" / rel).read_bytes() == (on / "images" / rel).read_bytes(), rel
    assert all((off / "images" / rel).read_bytes() != (on / "images" / rel).read_bytes() for rel in spanning)


def test_frame_shows_both_sites_and_the_streak_crosses_their_border(tmp_path):
    specs = _plan(6, 60, 16, (64, 48), 2, tmp_path, multi_region=True)[0]
    spanning = [s for s in specs if "span" in s]
    assert {s["span"] for s in spanning} <= PAIRS and len(spanning) == 15 + 4
    assert sum("unlabeled" in Path(s["path"]).parts for s in spanning) == 4
    for spec in spanning:
        kp = _keypoints(spec["patient"]["body"])
        pair, xs = spec["span"], spec["x_sign"]
        centre, short = _span_frame(pair, kp, xs)
        for cls in pair:  # each site's own frame centre lies well inside the un-jittered span frame
            assert np.abs(_site_frame(cls, kp, xs)[0] - centre).max() < 0.4 * short
        _, t_border = _span_segment(pair, kp, xs)
        streak = spec["lesion"]["plaques"][0]
        assert streak["kind"] == "linear" and streak["t0"] + 0.1 < t_border < streak["t1"] - 0.1


def test_cli_flag_and_summary(tmp_path, capsys):
    from loscat_hf.cli.main import main

    out = tmp_path / "cli"
    argv = ["demo-data", str(out), "--patients", "3", "--photos", "16", "--image-size", "48", "36",
            "--unlabeled", "0", "--num-workers", "1", "--multi-region"]
    assert main(argv) == 0
    n = sum(";" in r["site"] for r in _rows(out / "photos_truth.csv"))
    assert n >= 1 and f"{n} photos span two adjacent sites" in capsys.readouterr().out
