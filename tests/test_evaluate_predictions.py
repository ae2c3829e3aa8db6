"""`loscat-hf evaluate --predictions CSV --truth CSV`: both predictions formats, truth spellings, matching,
counted non-predictions, row-numbered errors, sklearn-equal metrics, and no photo name outside
OUT/private/."""

import csv
import json
import stat

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from loscat_hf.cli import main
from loscat_hf.defaults import REGIONS_COLUMN, REGIONS_PROB_COLUMN
from loscat_hf.errors import LoscatError
from loscat_hf.evaluation.metrics import classification_report, write_report
from loscat_hf.evaluation.predictions import MATCHING_NAME, evaluate_predictions
from loscat_hf.evaluation.split_eval import EvaluationResult
from loscat_hf.infer.folder import COLUMNS
from loscat_hf.io.csvsafe import SafeDictWriter
from loscat_hf.taxonomy import load_taxonomy

CLASSES = list(load_taxonomy().classes)
PLANTED = "Jane_Doe_MRN123456"


def _write(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _loscat_csv(path, rows, columns=COLUMNS):
    """rows: (image, [(label, prob), ...] top-k) or (image, status, error) for a failed photo; a single-region
    model's, so `regions` is its region."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        # exactly as `loscat-hf predict` writes it (`columns`: as an older one did)
        w = SafeDictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            if isinstance(row[1], str):
                w.writerow({c: "" for c in COLUMNS} | {"image": row[0], "status": row[1], "error": row[2]})
                continue
            image, top = row
            out = {"image": image, "region": top[0][0], "probability": f"{top[0][1]:.4f}",
                   REGIONS_COLUMN: top[0][0], REGIONS_PROB_COLUMN: f"{top[0][1]:.4f}",
                   "needs_review": "false", "status": "ok", "error": ""}
            for k in range(3):
                out[f"top{k + 1}"] = top[k][0] if k < len(top) else ""
                out[f"top{k + 1}_prob"] = f"{top[k][1]:.4f}" if k < len(top) else ""
            w.writerow(out)
    return path


def _ece_one_bin_each(conf, correct):
    """ECE when every sample sits in its own 15-bin reliability bin."""
    return sum(abs(c - float(ok)) for c, ok in zip(conf, correct, strict=True)) / len(conf)


def test_study_format_truth_in_codes_counts_every_photo(tmp_path):
    truth = _write(tmp_path / "truth.csv", ["image_path", "region"], [
        ["imgs/a.jpg", "SCFA"], ["imgs/b.jpg", "HND"], ["imgs/c.jpg", "UBCK"], ["imgs/d.jpg", "FT"],
        ["imgs/e.jpg", "THI"], ["imgs/f.jpg", "unclear"], ["imgs/g.jpg", "LEG"]])
    preds = _write(tmp_path / "preds.csv", ["image_path", "pred_label", "confidence"], [
        ["imgs/a.jpg", "SCFA", "0.950000"], ["imgs/b.jpg", "FRM", "0.600000"],
        ["imgs/c.jpg", "UBCK", "0.300000"],
        ["imgs/d.jpg", "ERROR", "cannot identify image file 'imgs/d.jpg'"],  # an error row: no prediction
        ["imgs/f.jpg", "HND", "0.700000"], ["imgs/g.jpg", "LEG", "0.820000"],
        ["imgs/zz.jpg", "ARM", "0.500000"]])  # imgs/e.jpg has no row at all; zz has no truth
    result = evaluate_predictions(preds, truth, tmp_path / "out")
    r = result.report
    assert isinstance(result, EvaluationResult)
    assert (r["n_truth"], r["n_scored"], r["n_unpredicted"], r["n_excluded_non_site"]) == (7, 4, 2, 1)
    assert r["n_predictions_without_truth"] == 1 and r["n"] == 4
    assert r["unpredicted_by_reason"] == {"error": 1, "no_prediction": 1}
    assert r["excluded_by_code"] == {"unclear": 1}
    assert r["predictions_format"] == "study"
    assert (r["coverage"] == pytest.approx(4 / 6)
            and r["accuracy_unpredicted_as_wrong"] == pytest.approx(3 / 6))
    y_true = ["head", "hand", "upper_back", "leg"]
    y_pred = ["head", "forearm", "upper_back", "leg"]
    assert r["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert r["accuracy"] == pytest.approx(0.75)
    # the confidence is the predicted class's probability: ECE is exact, not invented
    assert r["ece"] == pytest.approx(_ece_one_bin_each([0.95, 0.6, 0.3, 0.82], [1, 0, 1, 1]))
    assert (tmp_path / "out" / "reliability.png").is_file()
    summary = result.summary()
    assert ("7 truth photos" in summary and "2 without a usable prediction" in summary
            and "1 excluded" in summary)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["n_unpredicted"] == 2 and saved["n_truth"] == 7
    rows = list(csv.DictReader(open(tmp_path / "out" / "private" / MATCHING_NAME, encoding="utf-8")))
    outcome = {row["image"] or row["predicted_image"]: row["outcome"] for row in rows}
    assert outcome["imgs/d.jpg"] == "unpredicted" and outcome["imgs/e.jpg"] == "unpredicted"
    assert (outcome["imgs/zz.jpg"] == "prediction_without_truth"
            and outcome["imgs/f.jpg"] == "excluded_non_site")


def test_loscat_format_truth_in_sided_site_names(tmp_path):
    truth = _write(tmp_path / "truth.csv", ["image", "region"], [
        ["=odd.jpg", "Left forearm"], ["p1/b.jpg", "right hand"], ["p2/c.jpg", "upper back"],
        ["p2/d.jpg", "LEFT_THIGH"], ["p2/broken.jpg", "Rt. Foot"]])
    preds = _loscat_csv(tmp_path / "preds.csv", [
        # "=odd.jpg" is written as "'=odd.jpg" (csvsafe) and must be read back through read_cell to match
        ("=odd.jpg", [("forearm", 0.8), ("hand", 0.15), ("arm", 0.03)]),
        ("p1/b.jpg", [("forearm", 0.55), ("hand", 0.40), ("arm", 0.01)]),
        ("p2/c.jpg", [("upper_back", 0.9), ("lower_back", 0.05), ("neck", 0.01)]),
        ("p2/d.jpg", [("thigh", 0.7), ("leg", 0.2), ("abdomen", 0.05)]),
        ("p2/broken.jpg", "truncated", "file ends early"),
    ])
    assert "'=odd.jpg" in preds.read_text()
    r = evaluate_predictions(preds, truth, tmp_path / "out").report
    assert r["predictions_format"] == "loscat-hf"
    assert (r["n_truth"], r["n_scored"], r["n_unpredicted"]) == (5, 4, 1)
    assert r["unpredicted_by_reason"] == {"truncated": 1} and r["matched_by"]["exact"] == 5
    assert r["accuracy"] == pytest.approx(0.75)
    assert r["ece"] == pytest.approx(_ece_one_bin_each([0.8, 0.55, 0.9, 0.7], [1, 0, 1, 1]))
    # top-3 as written, the rest spread evenly: the true class "hand" of the wrong prediction had 0.40
    p_true = [0.8, 0.40, 0.9, 0.7]
    assert r["nll"] == pytest.approx(-np.mean(np.log(p_true)), rel=1e-6)
    assert "spread evenly" in r["probabilities"]
    assert "spread evenly" in (tmp_path / "out" / "per_class.md").read_text()


def test_an_answered_row_without_regions_is_a_multi_region_models(tmp_path):
    """A single-region model writes its region in `regions` on every answered row: one empty `regions` cell
    (no class passed its threshold) makes the CSV a multi-region model's, scored as sets, even when every
    other row names its one region and the top-k scores sum to at most 1. Without the column, the CSV
    predicts its one region per photo."""
    truth = _write(tmp_path / "truth.csv", ["image", "region"],
                   [["a.jpg", "head"], ["b.jpg", "chest"], ["c.jpg", "left thigh"]])
    rows = [("a.jpg", [("head", 0.7), ("neck", 0.2), ("chest", 0.05)]),
            ("b.jpg", [("chest", 0.6), ("abdomen", 0.3), ("neck", 0.05)]),
            ("c.jpg", [("thigh", 0.4), ("leg", 0.3), ("foot", 0.2)])]
    single = evaluate_predictions(_loscat_csv(tmp_path / "single.csv", rows), truth, tmp_path / "s").report
    assert "multi_label" not in single and single["accuracy"] == 1.0
    preds = _loscat_csv(tmp_path / "preds.csv", rows)
    text = preds.read_text().replace("thigh,0.4000,false", ",,false")  # c.jpg: no region passed
    assert text != preds.read_text()
    preds.write_text(text)
    multi = evaluate_predictions(preds, truth, tmp_path / "m").report
    assert multi["multi_label"] and multi["n_photos_no_region_predicted"] == 1
    assert multi["exact_match"] == pytest.approx(2 / 3)
    older = [c for c in COLUMNS if c not in (REGIONS_COLUMN, REGIONS_PROB_COLUMN)]
    without = evaluate_predictions(_loscat_csv(tmp_path / "old.csv", rows, columns=older), truth,
                                   tmp_path / "o").report
    assert "multi_label" not in without and without["accuracy"] == 1.0


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_macro_f1_equals_sklearn_on_a_hand_made_example(tmp_path):
    truth_labels = ["head", "head", "neck", "chest", "chest", "abdomen", "arm", "hand", "hand", "foot"]
    pred_labels = ["head", "neck", "neck", "chest", "abdomen", "abdomen", "forearm", "hand", "forearm",
                   "foot"]
    truth = _write(tmp_path / "t.csv", ["file_name", "label"],
                   [[f"{i}.jpg", t] for i, t in enumerate(truth_labels)])
    preds = _write(tmp_path / "p.csv", ["image_path", "pred_label", "confidence"],
                   [[f"{i}.jpg", p, "0.9"] for i, p in enumerate(pred_labels)])
    r = evaluate_predictions(preds, truth, tmp_path / "out").report
    assert r["macro_f1"] == pytest.approx(f1_score(truth_labels, pred_labels, average="macro"))
    assert r["accuracy"] == pytest.approx(accuracy_score(truth_labels, pred_labels))
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth_labels, pred_labels))
    assert r["errors"] == 4


def test_unknown_labels_are_refused_with_the_row_number(tmp_path):
    preds = _write(tmp_path / "p.csv", ["image_path", "pred_label", "confidence"], [["a.jpg", "HND", "0.9"]])
    truth = tmp_path / "t.csv"
    truth.write_text("image_path,region\na.jpg,HND\n\nb.jpg,Lft forarm\n", encoding="utf-8")  # blank row 3
    with pytest.raises(LoscatError, match=r"t\.csv, row 4: unknown region 'Lft forarm'") as exc:
        evaluate_predictions(preds, truth, tmp_path / "out")
    assert "\n" not in str(exc.value)
    truth.write_text("image_path,region\na.jpg,HND\n", encoding="utf-8")
    bad = _write(tmp_path / "bad.csv", ["image_path", "pred_label", "confidence"],
                 [["a.jpg", "HND", "0.9"], ["b.jpg", "ELBOW", "0.8"]])
    with pytest.raises(LoscatError, match=r"bad\.csv, row 3: unknown region 'ELBOW'"):
        evaluate_predictions(bad, truth, tmp_path / "out")
    pct = _write(tmp_path / "pct.csv", ["image_path", "pred_label", "confidence"], [["a.jpg", "HND", "91.5"]])
    with pytest.raises(LoscatError, match=r"row 2: confidence '91.5' is not a probability"):
        evaluate_predictions(pct, truth, tmp_path / "out")
    other = _write(tmp_path / "other.csv", ["file", "class"], [["a.jpg", "hand"]])
    with pytest.raises(LoscatError, match="neither loscat-hf predict's"):
        evaluate_predictions(other, truth, tmp_path / "out")
    blank = _write(tmp_path / "blank.csv", ["image_path", "region"], [["a.jpg", "hand"], ["", "foot"]])
    with pytest.raises(LoscatError, match=r"blank\.csv, row 3: empty image"):
        evaluate_predictions(preds, blank, tmp_path / "out")
    clash = _write(tmp_path / "clash.csv", ["image", "region"], [["a.jpg", "hand"], ["a.jpg", "foot"]])
    with pytest.raises(LoscatError, match="row 3: names the same photo as row 2"):
        evaluate_predictions(preds, clash, tmp_path / "out")


def test_paths_match_normalised_resolved_by_path_tail_and_unique_basename_only(tmp_path):
    truth = _write(tmp_path / "gt" / "truth.csv", ["image_path", "region"], [
        ["./photos/a.jpg", "head"],  # normalised: same string without './', other separators
        ["photos/b.jpg", "neck"],  # resolved: ../gt/photos/b.jpg from the predictions CSV's folder
        ["c.jpg", "chest"],  # basename: unique on both sides, and a bare name ends any path
        ["patientA/IMG_0009.jpg", "hand"],  # same name in another patient's folder: never paired
        # path_tail: folder + name
        ["/archive/P1/IMG_0001.jpg", "hand"], ["/archive/P2/IMG_0001.jpg", "foot"],
        ["x/same.jpg", "arm"], ["y/same.jpg", "leg"],  # basename not unique in the truth: never guessed
        ["z/dup.jpg", "foot"]])  # basename not unique in the predictions: never guessed
    preds = _write(tmp_path / "run" / "preds.csv", ["image_path", "pred_label", "confidence"], [
        [r"photos\a.jpg", "head", "0.9"], ["../gt/photos/b.jpg", "neck", "0.9"],
        ["/elsewhere/c.jpg", "chest", "0.9"], ["/mnt/same.jpg", "ARM", "0.9"],
        ["/data/patientZ/IMG_0009.jpg", "HND", "0.9"],
        ["P2/IMG_0001.jpg", "FT", "0.9"], ["P1/IMG_0001.jpg", "HND", "0.9"],
        ["/m/1/dup.jpg", "FT", "0.9"], ["/m/2/dup.jpg", "FT", "0.9"]])
    r = evaluate_predictions(preds, truth, tmp_path / "out").report
    assert r["matched_by"] == {"exact": 0, "normalised": 1, "resolved": 1, "path_tail": 2, "basename": 1}
    assert (r["n_scored"], r["n_unpredicted"], r["n_predictions_without_truth"]) == (5, 4, 4)
    assert r["accuracy"] == 1.0  # P1 and P2 paired the right way round
    assert r["unpredicted_by_reason"] == {"no_prediction": 4}


def test_no_photo_name_outside_private(tmp_path, capsys):
    name = f"{PLANTED}.jpg"
    truth = _write(tmp_path / "truth.csv", ["image_path", "region"], [
        [f"clinic/{name}", "Left forearm"], ["clinic/other.jpg", "HND"], [f"clinic/{PLANTED}_2.jpg", "FT"],
        [f"clinic/{PLANTED}_3.jpg", "unclear"]])
    preds = _write(tmp_path / "preds.csv", ["image_path", "pred_label", "confidence"], [
        [f"/data/clinic/{name}", "FRM", "0.9"], ["clinic/other.jpg", "FRM", "0.7"],
        [f"clinic/{PLANTED}_2.jpg", "ERROR", f"cannot identify image file 'clinic/{PLANTED}_2.jpg'"],
        [f"clinic/{PLANTED}_4.jpg", "HND", "0.6"]])
    out = tmp_path / "out"
    assert main(["evaluate", "--predictions", str(preds), "--truth", str(truth), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert PLANTED not in captured.out and PLANTED not in captured.err
    public = [p for p in out.rglob("*") if p.is_file() and "private" not in p.relative_to(out).parts]
    assert {p.name for p in public} >= {"metrics.json", "per_class.csv", "per_class.md",
                                        "confusion_matrix.png", "per_class_f1.png", "reliability.png"}
    for path in public:
        data = path.read_bytes()
        assert PLANTED.encode() not in data and b"clinic" not in data, path
    private = out / "private"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    for path in private.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert PLANTED in (private / MATCHING_NAME).read_text(encoding="utf-8")  # the detail is kept, privately


def test_no_probabilities_means_no_calibration(tmp_path):
    truth = _write(tmp_path / "t.csv", ["image", "region"], [["a.jpg", "head"], ["b.jpg", "hand"]])
    preds = _write(tmp_path / "p.csv", ["image_path", "pred_label", "confidence"],
                   [["a.jpg", "SCFA", ""], ["b.jpg", "FRM", ""]])
    out = tmp_path / "out"
    out.mkdir()
    (out / "reliability.png").write_bytes(b"stale plot of an earlier run")
    result = evaluate_predictions(preds, truth, out)
    r = result.report
    assert r["ece"] is None and r["nll"] is None and r["reliability"] is None
    assert r["probabilities"].startswith("none")
    assert not (out / "reliability.png").exists() and (out / "confusion_matrix.png").is_file()
    assert "ECE n/a" in result.summary()
    assert json.loads((out / "metrics.json").read_text())["ece"] is None
    assert "ECE – · NLL –" in (out / "per_class.md").read_text().splitlines()[0]


def test_report_without_probabilities_and_model_summary_unchanged(tmp_path):
    rep = classification_report([0, 1, 2, 2], [0, 1, 1, 2], None, ["a", "b", "c"])
    assert rep["ece"] is None and rep["nll"] is None and rep["reliability"] is None
    assert rep["macro_f1"] == pytest.approx(f1_score([0, 1, 2, 2], [0, 1, 1, 2], average="macro"))
    paths = write_report(rep, tmp_path, ["a", "b", "c"])
    assert "reliability" not in paths and not (tmp_path / "reliability.png").exists()
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    rep = classification_report([0, 1, 2, 2], [0, 1, 1, 2], probs, ["a", "b", "c"])
    rep["split_size"] = 4
    text = EvaluationResult(split="test", report=rep, out_dir=tmp_path).summary()
    assert f"ECE {rep['ece']:.3f} (n=4); " in text


@pytest.mark.parametrize("extra", [
    [],  # neither mode
    ["--predictions", "P"],  # --truth missing
    ["--truth", "T"],
    ["--predictions", "P", "--truth", "T", "--model", "m"],  # modes mixed
    ["--model", "m", "--truth", "T"],
    ["--model", "m"],
])
def test_cli_refuses_other_combinations(tmp_path, capsys, extra):
    assert main(["evaluate", "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("loscat-hf: error: evaluate takes either --model and --dataset [--scores], "
                   "or --predictions and --truth")


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    truth = _write(tmp_path / "t.csv", ["image_path", "region"], [["a.jpg", "elbow"]])
    preds = _write(tmp_path / "p.csv", ["image_path", "pred_label", "confidence"], [["a.jpg", "HND", "0.9"]])
    args = ["evaluate", "--predictions", str(preds), "--truth", str(truth), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("loscat-hf: error: ground-truth CSV") and "row 2" in err[-1]
    assert main(["evaluate", "--predictions", str(tmp_path / "missing.csv"), "--truth", str(truth),
                 "--out", str(tmp_path / "out")]) == 2
    truth = _write(tmp_path / "t.csv", ["image_path", "region"], [["b.jpg", "hand"]])  # nothing matches
    assert main(args) == 2
    assert "none of the 1 ground-truth photos has a usable prediction" in capsys.readouterr().err


def test_a_predictions_report_replaces_a_model_report_left_in_its_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("scores_report.json", "scores.md", "score_agreement.png", "visit_totals.png",
                 "evaluated.json"):
        (out / name).write_text("left by `evaluate --model` on a score model")
    truth = _write(tmp_path / "truth.csv", ["image_path", "region"], [["a.jpg", "SCFA"], ["b.jpg", "HND"]])
    preds = _write(tmp_path / "preds.csv", ["image_path", "pred_label", "confidence"],
                   [["a.jpg", "SCFA", "0.9"], ["b.jpg", "HND", "0.8"]])
    evaluate_predictions(preds, truth, out)
    # the model card reads evaluated.json and scores_report.json: neither may vouch for this CSV's report
    assert sorted(p.name for p in out.iterdir()
                  if p.name in {"scores_report.json", "scores.md", "evaluated.json", "score_agreement.png",
                                "visit_totals.png"}) == []


def test_cli_refuses_scores_with_predictions(tmp_path, capsys):
    assert main(["evaluate", "--predictions", "P", "--truth", "T", "--scores", "S",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--scores" in err and "--model" in err
