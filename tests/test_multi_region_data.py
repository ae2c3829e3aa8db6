"""Photos that show several regions, from the rater's cell to the packed dataset: set parsing, the set
consensus and its agreement, the `labels` Sequence(ClassLabel) through plain `datasets`, the card's counts,
the single-region view of the same dataset, the model folder's thresholds, and privacy."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import loscat_hf
from loscat_hf.data.annotations import Rating
from loscat_hf.data.consensus import _consensus, read_annotations
from loscat_hf.data.dataset import (
    MULTI_LABEL,
    SINGLE_LABEL,
    is_multi_region,
    load_packed_dataset,
    multi_hot,
    read_split_metadata,
)
from loscat_hf.errors import LoscatError, Problem
from loscat_hf.taxonomy import RegionError, load_taxonomy

TAX = load_taxonomy()


# ----------------------------------------------------------------------------- parsing a cell


def test_a_cell_naming_several_sites_parses_to_a_set_in_taxonomy_order():
    parsed = TAX.parse_many("L leg ; Left THIGH")
    assert [p.site for p in parsed] == ["left_thigh", "left_leg"]
    assert [p.label for p in parsed] == ["thigh", "leg"]
    assert TAX.parse_many("Rt. Forearm; right forearm") == TAX.parse_many("right forearm")  # counts once
    assert [p.site for p in TAX.parse_many("thigh; left thigh")] == ["left_thigh"]  # unsided adds nothing
    assert [p.site for p in TAX.parse_many("left thigh; right thigh")] == ["left_thigh", "right_thigh"]
    assert TAX.parse_many("chest;") == (TAX.parse("chest"),)  # a trailing separator is one site


@pytest.mark.parametrize("cell", ["unclear; chest", "chest; elbow of Richard", ";"])
def test_a_bad_set_is_refused_with_the_valid_names(cell):
    with pytest.raises(RegionError, match="Valid sites"):
        TAX.parse_many(cell)


# ----------------------------------------------------------------------------- consensus


def _ratings(*answers: tuple[str, str]) -> list[Rating]:
    out = []
    for i, (site, vote) in enumerate(answers):
        out.append(Rating(i + 2, "a.jpg", "p1", f"r{i}", site, vote))
    return out


def test_set_consensus_is_per_class_at_least_half_with_one_majority():
    one_marks_both = _ratings(("left_thigh", "thigh"), ("left_thigh;left_leg", "thigh;leg"))
    assert _consensus(one_marks_both, TAX) == ("left_thigh;left_leg", "thigh;leg", 0.5)
    three = _ratings(("left_thigh", "thigh"), ("left_thigh;left_leg", "thigh;leg"), ("thigh", "thigh"))
    assert _consensus(three, TAX) == ("left_thigh", "thigh", 2 / 3)  # the leg: 1 of 3, not at least half
    no_anchor = _consensus(_ratings(("chest", "chest"), ("left_leg;left_foot", "leg;foot")), TAX)
    assert isinstance(no_anchor, Problem) and no_anchor.kind == "no_majority"
    code = _consensus(_ratings(("unclear", "unclear"), ("unclear", "unclear"), ("chest;abdomen",
                                                                                  "chest;abdomen")), TAX)
    assert isinstance(code, Problem) and code.kind == "non_site:unclear"


def test_single_region_photos_keep_the_plurality_vote():
    """No rating names several sites: the vote is today's (plurality; a tie excludes)."""
    assert _consensus(_ratings(("chest", "chest"), ("chest", "chest"), ("abdomen", "abdomen")), TAX) == (
        "chest", "chest", 2 / 3)
    assert _consensus(_ratings(("chest", "chest"), ("abdomen", "abdomen")), TAX).kind == "tie"


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["image", "patient_id", "region", "rater"], *rows])
    return path


def test_export_to_consensus_and_per_class_agreement(tmp_path):
    csv_path = _write_csv(tmp_path / "a.csv", [
        ["a.jpg", "p1", "Left thigh; left leg", "r1"], ["a.jpg", "p1", "left thigh", "r2"],
        ["b.jpg", "p1", "chest", "r1"], ["b.jpg", "p1", "chest", "r2"],
        ["c.jpg", "p2", "R arm;Rt forearm", "r1"], ["c.jpg", "p2", "right forearm ; right arm", "r2"],
    ])
    result = read_annotations(csv_path, TAX)
    labels = {p.image: p.labels for p in result.photos}
    assert labels == {"a.jpg": ("thigh", "leg"), "b.jpg": ("chest",), "c.jpg": ("arm", "forearm")}
    agreement = result.agreement
    assert agreement["n_set_ratings"] == 3
    assert agreement["percent_agreement"] == pytest.approx(200 / 3)  # b and c: the same set; a: not
    per_class = {c["label"]: c for c in agreement["per_class"]}
    assert per_class["thigh"]["percent_agreement"] == 100.0  # both raters: a shows the thigh, b and c not
    assert per_class["leg"]["percent_agreement"] == pytest.approx(200 / 3)
    assert per_class["head"]["n_photos_named"] == 0


def test_a_single_region_export_reports_agreement_as_before(tmp_path):
    csv_path = _write_csv(tmp_path / "a.csv", [["a.jpg", "p1", "chest", "r1"],
                                               ["a.jpg", "p1", "chest", "r2"]])
    assert "per_class" not in read_annotations(csv_path, TAX).agreement


# ----------------------------------------------------------------------------- packing


def _photo(path: Path, tag: int) -> None:
    img = Image.new("RGB", (64, 48), (100, 90, 80))
    img.paste(((tag * 29) % 256, (tag * 53) % 256, 200), (0, 0, 16, 16))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=95)


SINGLE = ["head", "chest", "left arm", "right leg", "abdomen", "left hand"]
SEVERAL = ["left thigh; left leg", "right arm; right forearm"]


def _export(tmp_path: Path, n_patients: int = 8, several: bool = True) -> tuple[Path, Path]:
    images, rows = tmp_path / "images", []
    for p in range(n_patients):
        for k in range(4):
            name = f"pt{p}/photo_{k}.jpg"
            _photo(images / name, p * 10 + k)
            cells = SEVERAL if several and k == 3 else SINGLE
            rows.append([name, f"MRN{p}", cells[(p + k) % len(cells)], "r1"])
    return _write_csv(tmp_path / "ratings.csv", rows), images


@pytest.fixture(scope="module")
def multi_dataset(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("multi")
    csv_path, images = _export(tmp)
    result = loscat_hf.prepare(annotations=csv_path, images=images, out=tmp / "ds", val_fraction=0.25,
                               num_workers=1, max_side=48)
    assert result.out_dir is not None
    return result.out_dir


def test_the_labels_column_reads_with_plain_datasets(multi_dataset):
    from datasets import ClassLabel, load_dataset

    ds = load_dataset("imagefolder", data_dir=str(multi_dataset))
    feature = ds["train"].features["labels"]
    assert isinstance(feature.feature, ClassLabel) and feature.feature.names == list(TAX.classes)
    rows = [r for split in ds.values() for r in split.select_columns(["label", "labels", "site"])]
    several = [r for r in rows if len(r["labels"]) > 1]
    assert len(several) == 8 and all(r["label"] is None and ";" in r["site"] for r in several)
    assert {tuple(r["labels"]) for r in several} == {(TAX.label2id["thigh"], TAX.label2id["leg"]),
                                                      (TAX.label2id["arm"], TAX.label2id["forearm"])}
    single = [r for r in rows if len(r["labels"]) == 1]
    assert len(single) == 24 and all(r["labels"] == [r["label"]] for r in single)
    meta = [r for split in ("train", "validation") for r in read_split_metadata(multi_dataset / split)]
    assert {tuple(r["labels"]) for r in meta if r["label"] is None} == {("thigh", "leg"), ("arm", "forearm")}


def test_the_card_and_report_count_photos_per_number_of_regions(multi_dataset):
    report = json.loads((multi_dataset / "prepare_report.json").read_text())
    assert report["multi_region"] is True
    assert report["regions_per_photo"] == {"1": 24, "2": 8} and report["single_region_would_drop"] == 8
    assert sum(s["photos"] for s in report["splits"].values()) == 32  # photos, not class memberships
    card = (multi_dataset / "README.md").read_text()
    assert "## Photos that show several regions" in card and "would have left out 8 of the 32" in card
    assert "class_label" in card.split("---")[1] and "labels" in card.split("---")[1]


def test_no_patient_is_in_two_splits(multi_dataset):
    patients = {s: {r["patient_id"] for r in read_split_metadata(multi_dataset / s)}
                for s in ("train", "validation")}
    assert patients["train"] and patients["validation"] and not patients["train"] & patients["validation"]


def test_the_two_views_of_a_multi_region_dataset(multi_dataset):
    assert is_multi_region(str(multi_dataset))
    multi = load_packed_dataset(str(multi_dataset), TAX)  # follows the dataset
    assert is_multi_region(multi) is False  # the loaded view: float targets, no ClassLabel sequence
    vectors = np.asarray(list(multi["train"]["labels"]) + list(multi["validation"]["labels"]))
    assert vectors.shape == (32, 12) and sorted(vectors.sum(1).tolist()).count(2.0) == 8
    single = load_packed_dataset(str(multi_dataset), TAX, problem_type=SINGLE_LABEL)
    assert len(single["train"]) + len(single["validation"]) == 24
    assert all(isinstance(x, int) for x in single["train"]["labels"])
    with pytest.raises(LoscatError, match="problem_type"):
        load_packed_dataset(str(multi_dataset), TAX, problem_type="multi")


def test_a_single_region_dataset_is_unchanged_and_can_be_read_as_sets(tmp_path):
    csv_path, images = _export(tmp_path, several=False)
    out = loscat_hf.prepare(annotations=csv_path, images=images, out=tmp_path / "ds", val_fraction=0.25,
                            num_workers=1, max_side=48).out_dir
    report = json.loads((out / "prepare_report.json").read_text())
    assert "multi_region" not in report and "labels" not in (out / "README.md").read_text().split("---")[1]
    assert not is_multi_region(str(out))
    single = load_packed_dataset(str(out), TAX)
    as_sets = load_packed_dataset(str(out), TAX, problem_type=MULTI_LABEL)
    assert np.array_equal(np.asarray(as_sets["train"]["labels"]), multi_hot(
        [[x] for x in single["train"]["labels"]], 12))
    forced = loscat_hf.prepare(annotations=csv_path, images=images, out=tmp_path / "forced",
                               val_fraction=0.25, num_workers=1, max_side=48, multi_region=True).out_dir
    assert is_multi_region(str(forced))
    assert json.loads((forced / "prepare_report.json").read_text())["single_region_would_drop"] == 0


def test_scores_stay_with_single_region_photos(tmp_path):
    csv_path, images = _export(tmp_path)
    scores = tmp_path / "scores.csv"
    with open(scores, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "visit", "site", "erythema", "skin_thickness", "new_extension",
                    "dermal_atrophy", "subcutaneous_atrophy", "dyspigmentation"])
        for p in range(8):
            for site in ("left_thigh", "left_leg", "right_arm", "right_forearm", "head", "chest"):
                w.writerow([f"MRN{p}", "", site, 1, 2, 0, 0, 1, 2])
    result = loscat_hf.prepare(annotations=csv_path, images=images, out=tmp_path / "ds", val_fraction=0.25,
                               num_workers=1, max_side=48, scores=scores)
    assert any("8 photo(s) show several regions: no score targets" in n for n in result.notes)
    rows = [r for s in ("train", "validation") for r in read_split_metadata(result.out_dir / s)]
    assert all(r["score_erythema"] is None for r in rows if r["label"] is None)
    assert any(r["score_erythema"] == 1.0 for r in rows if r["label"] is not None)


# ----------------------------------------------------------------------------- the model folder


def test_thresholds_are_saved_and_read_back(tmp_path):
    from conftest import save_tiny_model

    from loscat_hf.model import folder

    model = save_tiny_model(tmp_path / "m")
    config_path = model / "config.json"
    config = json.loads(config_path.read_text())
    config["problem_type"] = folder.MULTI_LABEL
    values = {c: 0.3 + 0.01 * i for i, c in enumerate(config["id2label"].values())}
    folder.record_thresholds(config, values, by="train", split="validation", n=7, rule="per-class F1 maximum")
    config_path.write_text(json.dumps(config))
    read = loscat_hf.read_model_folder(model)
    assert read.multi_label and read.thresholds == tuple(values.values())
    assert read.threshold_record["n"] == 7 and read.threshold_record["by"] == "train"
    assert type(read).from_dict(read.to_dict(), read.name) == read  # the ONNX cache's record keeps them
    with pytest.raises(ValueError, match="thresholds"):
        folder.record_thresholds(config, {"head": 1.0})
    del config["problem_type"]  # a single-label model: thresholds are not its answers
    config_path.write_text(json.dumps(config))
    assert loscat_hf.read_model_folder(model).thresholds == ()


def test_fitted_thresholds_maximise_each_class_f1():
    from sklearn.metrics import f1_score

    from loscat_hf.model.thresholds import fit_thresholds, needs_review_multi, regions

    rng = np.random.default_rng(0)
    truth = rng.random((200, 3)) < [0.5, 0.2, 0.0]
    probs = np.clip(truth * 0.35 + rng.random((200, 3)) * 0.6, 0, 1)
    values, how = fit_thresholds(probs, truth, ["a", "b", "c"])
    assert how["default_for"] == ["c"] and values["c"] == 0.5 and how["n"] == 200
    for i, name in enumerate("ab"):
        best = f1_score(truth[:, i], probs[:, i] >= values[name])
        assert all(best >= f1_score(truth[:, i], probs[:, i] >= t) - 1e-12
                   for t in np.arange(0.05, 0.96, 0.01))
    shown = regions(np.array([[0.9, 0.6, 0.1]]), [0.5, 0.5, 0.5], ["a", "b", "c"])
    assert shown == [[("a", 0.9), ("b", 0.6)]]
    flags = needs_review_multi(np.array([[0.9, 0.1, 0.1], [0.2, 0.1, 0.1], [0.9, 0.45, 0.1]]), [0.5] * 3, 0.1)
    assert flags.tolist() == [False, True, True]


# ----------------------------------------------------------------------------- privacy


@pytest.mark.skipif(not hasattr(__import__("os"), "symlink"), reason="symlinks")
def test_a_multi_region_dataset_publishes_nothing_identifying(tmp_path, monkeypatch, capsys):
    from fake_hub import FakeHub
    from test_privacy import _assert_clean, _clinic_export

    from loscat_hf.cli import main

    annotations, images, scores = _clinic_export(tmp_path)
    text = annotations.read_text(encoding="utf-8")
    text = text.replace(",head,", ",left thigh; left leg,", 6).replace(",chest,", ",chest; Richard Roe,", 2)
    annotations.write_text(text, encoding="utf-8")
    hub = FakeHub().install(monkeypatch)
    out = tmp_path / "dataset"
    assert main(["prepare", "--annotations", str(annotations), "--images", str(images), "--out", str(out),
                 "--val-fraction", "0.25", "--scores", str(scores), "--push-to-hub", "me/photos",
                 "--num-workers", "1"]) == 0, capsys.readouterr()
    assert json.loads((out / "prepare_report.json").read_text())["single_region_would_drop"] > 0
    uploaded = hub.repo("me/photos", "dataset")["files"]
    assert not any(name.startswith("private") for name in uploaded)
    _assert_clean(uploaded, [str(tmp_path).encode()])
    assert b"Richard Roe" in (out / "private" / "problems.csv").read_bytes()  # the bad cell, kept privately


def test_cells_that_read_as_one_site_keep_reading_so():
    """Punctuation an export put inside one site ('Thigh; left') reads as that site, as it always did; both
    sides of one class are that class, side unknown (a single-region photo, no ';' in its site)."""
    assert TAX.parse_many("Thigh; left") == (TAX.parse("left thigh"),)
    assert TAX.parse_many("unclear; unclear") == (TAX.parse("unclear"),)
    assert [p.site for p in TAX.parse_many("thigh; left arm")] == ["left_arm", "thigh"]  # by class, then site
    assert TAX.join(["thigh", "left_arm"]) == "left_arm;thigh"


def test_both_sides_of_one_class_are_one_region(tmp_path):
    csv_path = _write_csv(tmp_path / "a.csv", [["a.jpg", "p1", "Left thigh; Right thigh", "r1"],
                                               ["b.jpg", "p1", "left thigh; right thigh; left leg", "r1"]])
    photos = {p.image: p for p in read_annotations(csv_path, TAX).photos}
    assert (photos["a.jpg"].site, photos["a.jpg"].label) == ("thigh", "thigh")
    assert (photos["b.jpg"].site, photos["b.jpg"].label) == ("thigh;left_leg", "thigh;leg")


@pytest.mark.parametrize(("cell", "says"), [(";", "names no site"), ("chest; elbw", "'elbw' is not a site"),
                                            ("unclear; chest", "a code stands alone")])
def test_bad_sets_say_what_is_wrong(cell, says):
    with pytest.raises(RegionError, match=says):
        TAX.parse_many(cell)
