"""A multi-region model's evaluation: scikit-learn's multi-label metrics at the saved per-class thresholds,
the error co-occurrence and per-class calibration plots, predictions CSVs naming several regions, thresholds
refitted by `calibrate`, and the single-label path kept for single-label models (on their one-region photos).
"""

import csv
import json
import logging

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, hamming_loss

from loscat_hf.cli import main
from loscat_hf.errors import LoscatError
from loscat_hf.evaluation.metrics import compute_metrics_fn, multi_label_report, write_multi_label_report
from loscat_hf.evaluation.metrics.multi_label import binary_ece, binary_reliability, error_cooccurrence
from loscat_hf.taxonomy import load_taxonomy

TAX = load_taxonomy()
CLASSES = list(TAX.classes)
K = len(CLASSES)
MULTI = "multi_label_classification"
# cells naming one or two sites; lower_back never appears (a class without a positive photo)
REGIONS = ["Left thigh; Left leg", "head", "Right arm; Right forearm", "chest; abdomen", "left hand",
           "neck; head", "foot", "upper back"]


def _random(seed=0, n=80, absent=(11,)):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, K)) < 0.25).astype(int)
    y[:, list(absent)] = 0
    scores = np.clip(0.45 * y + rng.random((n, K)) * 0.6, 0, 1)
    return y, scores


def test_report_equals_sklearn_multi_label_metrics():
    y, scores = _random()
    thresholds = np.linspace(0.3, 0.7, K)
    pred = (scores >= thresholds).astype(int)
    r = multi_label_report(y, pred, scores, CLASSES, thresholds=thresholds, neighbours=TAX.are_neighbours)
    assert r["multi_label"] and r["n"] == 80
    assert [row["f1"] for row in r["per_class"]] == pytest.approx(f1_score(y, pred, average=None,
                                                                            zero_division=0))
    assert r["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert r["exact_match"] == r["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert r["hamming_loss"] == pytest.approx(hamming_loss(y, pred))
    has = y.any(axis=0)
    assert not has.all()  # foot has no positive: left out of the mAP, as sklearn would warn about it
    assert r["mean_average_precision"] == pytest.approx(average_precision_score(y[:, has], scores[:, has],
                                                                                average="macro"))
    assert r["per_class"][11]["average_precision"] is None and r["per_class"][11]["support"] == 0
    assert [row["threshold"] for row in r["per_class"]] == pytest.approx(thresholds)
    assert r["false_negatives"] == int((y & (1 - pred)).sum())
    assert r["false_positives"] == int(((1 - y) & pred).sum())
    json.dumps(r)
    # per subgroup value: exact match (as accuracy, which the card reads) and macro-F1 of its photos
    tones = np.array(["I", "V"] * 40)
    sub = multi_label_report(y, pred, scores, CLASSES, subgroups={"skin_tone": list(tones)})["subgroups"]
    dark = tones == "V"
    assert sub["skin_tone"]["values"]["V"]["accuracy"] == pytest.approx(accuracy_score(y[dark], pred[dark]))
    assert sub["skin_tone"]["values"]["V"]["macro_f1"] == pytest.approx(
        f1_score(y[dark], pred[dark], average="macro", zero_division=0))
    assert sub["skin_tone"]["macro_f1_gap"] is not None


def test_per_class_calibration_and_error_cooccurrence_by_hand():
    # three photos scored 0.9 for one class, two of which show it; one scored 0.1 that does not
    bins = binary_reliability(np.array([0.9, 0.9, 0.9, 0.1]), np.array([1, 1, 0, 0]), n_bins=10)
    assert sum(b["count"] for b in bins) == 4
    assert binary_ece(bins) == pytest.approx(0.75 * abs(2 / 3 - 0.9) + 0.25 * 0.1)
    truth = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]])
    pred = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1]])
    co = error_cooccurrence(truth, pred)
    # photo 1: class 1 missed, class 2 added beside classes 0 and 1; photo 2: class 0 missed, class 1 added
    assert co.tolist() == [[1, 1, 1], [0, 1, 1], [0, 0, 0]]


def test_trainer_metrics_multi_label():
    from types import SimpleNamespace as EvalPrediction  # what compute_metrics reads of transformers' one

    y, scores = _random(seed=1)
    logits = np.log(scores + 1e-6) - np.log1p(-scores + 1e-6)
    m = compute_metrics_fn(CLASSES, multi_label=True)(EvalPrediction(predictions=logits,
                                                                    label_ids=y.astype(np.float32)))
    probs = 1 / (1 + np.exp(-logits))
    half = (probs >= 0.5).astype(int)
    assert m["macro_f1_at_0_5"] == pytest.approx(f1_score(y, half, average="macro", zero_division=0))
    # the checkpoint metric: at each class's best threshold on these photos (what train will record)
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    best = [max(f1_score(y[:, c], probs[:, c] >= t, zero_division=0) for t in grid) if y[:, c].any() else
            f1_score(y[:, c], probs[:, c] >= 0.5, zero_division=0) for c in range(K)]
    assert m["macro_f1"] == pytest.approx(np.mean(best)) and m["macro_f1"] >= m["macro_f1_at_0_5"]
    from loscat_hf.model.thresholds import fit_thresholds

    fitted = np.asarray(list(fit_thresholds(probs, y, CLASSES)[0].values()))
    pred = (probs >= fitted).astype(int)
    assert m["exact_match"] == m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(y, pred))
    # the Trainer may hand over (logits, ...) tuples
    fn = compute_metrics_fn(CLASSES, multi_label=True)
    assert fn(EvalPrediction(predictions=(logits,), label_ids=y))["macro_f1"] == m["macro_f1"]


def test_report_files_and_plots_named_in_the_report(tmp_path):
    import matplotlib.pyplot as plt

    (tmp_path / "confusion_matrix.png").write_bytes(b"an earlier single-label report's plot")
    y, scores = _random(seed=2)
    pred = (scores >= 0.5).astype(int)
    r = multi_label_report(y, pred, scores, CLASSES, thresholds=[0.5] * K, neighbours=TAX.are_neighbours)
    paths = write_multi_label_report(r, tmp_path, CLASSES, neighbours=TAX.are_neighbours)
    assert set(r["plots"]) == {"per_class_f1", "error_cooccurrence", "reliability_per_class"}
    for name in r["plots"].values():
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(tmp_path / name) as im:
            assert min(im.size) > 500
    assert json.loads(paths["metrics"].read_text())["plots"] == r["plots"]
    assert not (tmp_path / "confusion_matrix.png").exists()
    assert "exact match" in paths["per_class_md"].read_text()
    assert plt.get_fignums() == []
    r = multi_label_report(y, pred, None, CLASSES)  # predictions without scores: no mAP, no calibration
    assert r["mean_average_precision"] is None and r["ece"] is None and r["reliability_per_class"] is None


# --- a packed multi-region dataset and tiny models ---------------------------------------------------------

@pytest.fixture(scope="module")
def multi_dataset(tmp_path_factory):
    """60 + 60 photos of 30 patients, half of them showing two regions; no lower_back photo."""
    from loscat_hf import prepare

    root = tmp_path_factory.mktemp("multi")
    rows = ["image,patient_id,region,rater,visit"]
    for p in range(30):
        for k in range(4):
            path = root / "images" / f"pt{p}" / f"photo_{k}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 24), ((p * 37) % 256, (k * 60) % 256, 120)).save(path, "JPEG")
            rows += [f'pt{p}/photo_{k}.jpg,P{p},"{REGIONS[(p + k) % len(REGIONS)]}",{r},v{k}' for r in "AB"]
    (root / "ratings.csv").write_text("\n".join(rows) + "\n")
    prepare(annotations=root / "ratings.csv", images=root / "images", out=root / "ds", val_fraction=0.5,
            num_workers=1, progress=False)
    return root / "ds"


def _write_thresholds(model_dir, values, **how):
    from loscat_hf.model.folder import config_json, record_thresholds

    data = config_json(model_dir)
    record_thresholds(data, values, **how)
    (model_dir / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True))


def _multi_model(d, threshold=0.5):
    save_tiny_model(d, seed=5, problem_type=MULTI)
    _write_thresholds(d, {c: threshold for c in CLASSES}, by="train", split="validation", n=60)
    return d


@pytest.fixture(scope="module")
def multi_model(tmp_path_factory):
    return _multi_model(tmp_path_factory.mktemp("mlmodel") / "m", threshold=0.5)


def test_evaluate_split_with_thresholds_matches_sklearn(multi_dataset, multi_model, tmp_path):
    from loscat_hf.data.dataset import MULTI_LABEL, load_packed_dataset
    from loscat_hf.evaluation.split_eval import evaluate_split, split_outputs
    from loscat_hf.model.folder import read_model_folder
    from loscat_hf.model.thresholds import sigmoid

    split = load_packed_dataset(str(multi_dataset), TAX, problem_type=MULTI_LABEL)["validation"]
    logits = split_outputs(str(multi_model), split).logits
    thresholds = [0.3 + 0.02 * i for i in range(K)]
    report = evaluate_split(logits, split, TAX, tmp_path, temperature=1.5, thresholds=thresholds)
    y = np.asarray(split["labels"]).astype(int)
    scores = sigmoid(logits, 1.5)
    pred = (scores >= np.array(thresholds)).astype(int)
    assert report["split_size"] == 60 and report["n_photos_several_regions"] > 10
    assert {"macro_f1", "accuracy", "exact_match"} <= set(report)
    assert report["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert report["exact_match"] == pytest.approx(accuracy_score(y, pred))
    assert report["hamming_loss"] == pytest.approx(hamming_loss(y, pred))
    has = y.any(0)
    assert report["mean_average_precision"] == pytest.approx(
        average_precision_score(y[:, has], scores[:, has], average="macro"))
    assert (tmp_path / "error_cooccurrence.png").is_file()
    assert (tmp_path / "reliability_per_class.png").is_file()
    assert read_model_folder(multi_model).thresholds == (0.5,) * K


def test_evaluate_picks_the_multi_label_path_from_the_model_folder(multi_dataset, multi_model, tmp_path,
                                                                    capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(multi_model), "--dataset", str(multi_dataset),
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "multi-region" in text and "exact match" in text and "mAP" in text
    report = json.loads((out / "metrics.json").read_text())
    assert report["multi_label"] and report["n"] == 60 and report["thresholds"] == [0.5] * K
    assert not (out / "confusion_matrix.png").exists()
    for name in report["plots"].values():
        assert (out / name).is_file()


def test_single_label_model_on_a_multi_region_dataset_uses_its_one_region_photos(multi_dataset, tmp_path,
                                                                                  caplog):
    from loscat_hf.data.dataset import read_split_metadata
    from loscat_hf.evaluation.split_eval import evaluate

    model = save_tiny_model(tmp_path / "single", seed=2)
    rows = read_split_metadata(multi_dataset / "validation")
    one = sum(1 for r in rows if r["label"] is not None)
    assert 0 < one < len(rows)
    with caplog.at_level(logging.INFO, logger="loscat_hf"):
        result = evaluate(str(model), str(multi_dataset), str(tmp_path / "eval"))
    assert result.report["n"] == one and "balanced_accuracy" in result.report
    assert "multi_label" not in result.report
    assert f"{len(rows) - one} photos showing several regions were left out" in caplog.text
    assert (tmp_path / "eval" / "confusion_matrix.png").is_file()


def test_calibrate_refits_the_thresholds_and_records_how(multi_dataset, tmp_path, capsys):
    from loscat_hf.evaluation.calibrate import calibrate
    from loscat_hf.model.folder import read_model_folder

    model = _multi_model(tmp_path / "m", threshold=0.3)
    weights = (model / "model.safetensors").read_bytes()
    result = calibrate(str(model), str(multi_dataset), split="validation")
    folder = read_model_folder(model)
    record = folder.threshold_record
    assert record["by"] == "calibrate" and record["split"] == "validation" and record["n"] == 60
    assert "lower_back" in record["kept_for"] and result.kept == record["kept_for"]
    thresholds = dict(zip(folder.labels, folder.thresholds, strict=True))
    assert thresholds["lower_back"] == pytest.approx(0.3)  # no photo of it: its threshold is kept
    assert thresholds == pytest.approx(result.thresholds)
    assert result.macro_f1_after >= result.macro_f1_before  # F1-maximising per class, on the same photos
    assert folder.temperature == 1.0 and (model / "model.safetensors").read_bytes() == weights
    assert main(["calibrate", "--model", str(model), "--dataset", str(multi_dataset)]) == 0
    assert "per-class thresholds" in capsys.readouterr().out


def test_ensemble_of_multi_region_models_is_refused(multi_dataset, multi_model, tmp_path, capsys):
    from loscat_hf.evaluation.ensemble import evaluate_ensemble

    with pytest.raises(LoscatError, match="multi-region") as info:
        evaluate_ensemble([str(multi_model), str(multi_model)], str(multi_dataset), str(tmp_path / "e"))
    assert info.value.params == ("models",)
    assert main(["evaluate-ensemble", "--models", str(multi_model), str(multi_model), "--dataset",
                 str(multi_dataset), "--out", str(tmp_path / "e")]) == 2
    assert "multi-region" in capsys.readouterr().err


# --- predictions CSVs naming several regions ---------------------------------------------------------------

def _csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


PRED_HEADER = ["image", "region", "probability", "top1", "top1_prob", "top2", "top2_prob", "top3",
               "top3_prob", "regions", "regions_probability", "needs_review", "status", "error"]


def _pred(image, regions, scores):
    """A multi-region model's predict row: `regions` most probable first, top-3 sigmoid scores."""
    top = sorted(scores.items(), key=lambda t: -t[1])[:3]
    return [image, top[0][0], f"{top[0][1]:.4f}", *[v for c, p in top for v in (c, f"{p:.4f}")],
            ";".join(regions), ";".join(f"{scores[c]:.4f}" for c in regions), "false", "ok", ""]


def test_predictions_with_regions_against_multi_region_truth(tmp_path):
    truth = _csv(tmp_path / "truth.csv", ["image", "region"], [
        ["a.jpg", "Left thigh; Left leg"], ["b.jpg", "head"], ["c.jpg", "chest; abdomen"],
        ["d.jpg", "Right forearm"], ["e.jpg", "unclear"]])
    preds = _csv(tmp_path / "preds.csv", PRED_HEADER, [
        _pred("a.jpg", ["thigh", "leg"], {"thigh": 0.9, "leg": 0.8, "foot": 0.3}),
        _pred("b.jpg", ["head", "neck"], {"head": 0.95, "neck": 0.6, "chest": 0.1}),
        _pred("c.jpg", ["chest"], {"chest": 0.7, "abdomen": 0.4, "arm": 0.2}),
        _pred("d.jpg", [], {"forearm": 0.3, "hand": 0.2, "arm": 0.1}),  # no class passed its threshold
        _pred("e.jpg", ["head"], {"head": 0.9, "neck": 0.2, "chest": 0.1})])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "reliability_per_class.png").write_bytes(b"an earlier report's")
    r = evaluate_predictions_report(preds, truth, tmp_path / "out")
    y = np.zeros((4, K), int)
    p = np.zeros((4, K), int)
    for i, (t, q) in enumerate([(("thigh", "leg"), ("thigh", "leg")), (("head",), ("head", "neck")),
                                (("chest", "abdomen"), ("chest",)), (("forearm",), ())]):
        y[i, [CLASSES.index(c) for c in t]] = 1
        p[i, [CLASSES.index(c) for c in q]] = 1
    assert r["multi_label"] and r["n_scored"] == 4 and r["n_excluded_non_site"] == 1
    assert r["macro_f1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    assert r["exact_match"] == pytest.approx(accuracy_score(y, p)) == pytest.approx(0.25)
    assert r["hamming_loss"] == pytest.approx(hamming_loss(y, p))
    assert r["mean_average_precision"] is None and "not reported" in r["probabilities"]
    assert r["n_photos_no_region_predicted"] == 1
    assert (tmp_path / "out" / "error_cooccurrence.png").is_file()
    assert not (tmp_path / "out" / "reliability_per_class.png").exists()  # no scores for every class
    assert "a.jpg" not in (tmp_path / "out" / "metrics.json").read_text()


def test_single_region_csvs_with_a_regions_column_keep_the_single_label_report(tmp_path):
    truth = _csv(tmp_path / "truth.csv", ["image", "region"], [["a.jpg", "head"], ["b.jpg", "left hand"]])
    preds = _csv(tmp_path / "preds.csv", PRED_HEADER, [
        _pred("a.jpg", ["head"], {"head": 0.7, "neck": 0.2, "chest": 0.05}),
        _pred("b.jpg", ["forearm"], {"forearm": 0.6, "hand": 0.3, "arm": 0.05})])
    r = evaluate_predictions_report(preds, truth, tmp_path / "out")
    assert "multi_label" not in r and r["accuracy"] == 0.5 and "balanced_accuracy" in r
    assert (tmp_path / "out" / "confusion_matrix.png").is_file()


def evaluate_predictions_report(preds, truth, out):
    from loscat_hf.evaluation.predictions import evaluate_predictions

    result = evaluate_predictions(preds, truth, out)
    assert str(out) in result.summary()
    return result.report


# --- a single-region model on a multi-region dataset: the photos left out are counted -----------------------

def _left_out(dataset):
    """(photos of the validation split, those showing several regions)."""
    from loscat_hf.data.dataset import read_split_metadata

    rows = read_split_metadata(dataset / "validation")
    several = sum(1 for r in rows if r["label"] is None)
    assert 0 < several < len(rows)
    return len(rows), several


LEFT_OUT = ("photos showing several regions left out: a single-region model is scored on the single-region "
            "photos")


def test_evaluate_reports_the_photos_a_single_region_model_left_out(multi_dataset, tmp_path, capsys):
    total, several = _left_out(multi_dataset)
    model = save_tiny_model(tmp_path / "single", seed=2)
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model), "--dataset", str(multi_dataset), "--out", str(out)]) == 0
    assert f"{several} {LEFT_OUT}" in capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    assert report["n_left_out_several_regions"] == several and report["n"] == total - several
    assert f"{several} photos showing several regions left out" in (out / "per_class.md").read_text()


def test_nothing_is_said_left_out_where_nothing_is(multi_dataset, multi_model, tiny_dataset, tmp_path):
    """A multi-region model scores every photo; a single-region dataset has none to leave out: their reports
    and summaries are as they were."""
    from loscat_hf.evaluation.split_eval import evaluate

    single = save_tiny_model(tmp_path / "s", seed=2)
    for model, dataset in ((multi_model, multi_dataset), (single, tiny_dataset)):
        result = evaluate(str(model), str(dataset), str(tmp_path / "eval"))
        assert "n_left_out_several_regions" not in result.report and "left out" not in result.summary()
        assert "left out" not in (tmp_path / "eval" / "per_class.md").read_text()


def test_calibrate_says_how_many_photos_a_single_region_model_left_out(multi_dataset, tmp_path, monkeypatch):
    import loscat_hf.evaluation.calibrate as cal

    total, several = _left_out(multi_dataset)
    monkeypatch.setattr(cal, "MIN_PHOTOS", 10)  # the fixture's validation split is small
    result = cal.calibrate(str(save_tiny_model(tmp_path / "single", seed=2)), str(multi_dataset))
    assert result.n == total - several and result.left_out == several
    assert f"{several} {LEFT_OUT}." in result.summary()
    monkeypatch.setattr(cal, "MIN_PHOTOS", total)  # enough photos in the split, too few showing one region
    with pytest.raises(LoscatError, match=f"{total - several} photos showing one region \\({several} showing "
                                          "several left out\\)"):
        cal.calibrate(str(save_tiny_model(tmp_path / "single2", seed=2)), str(multi_dataset))


def test_calibrate_on_a_single_region_dataset_says_nothing_left_out(tiny_dataset, tmp_path, monkeypatch):
    import loscat_hf.evaluation.calibrate as cal

    monkeypatch.setattr(cal, "MIN_PHOTOS", 10)
    result = cal.calibrate(str(save_tiny_model(tmp_path / "single", seed=2)), str(tiny_dataset))
    assert result.left_out is None and "left out" not in result.summary()


def test_the_card_of_an_evaluated_multi_region_model_shows_its_own_metrics(multi_dataset, multi_model,
                                                                            tmp_path):
    """evaluate's metrics.json, as the card reads it: the multi-region table and model-index, no accuracy."""
    import shutil

    from loscat_hf.model.card import model_card

    model = tmp_path / "m"
    shutil.copytree(multi_model, model)
    assert main(["evaluate", "--model", str(model), "--dataset", str(multi_dataset), "--out",
                 str(model / "eval_validation")]) == 0
    report = json.loads((model / "eval_validation" / "metrics.json").read_text())
    card = model_card(model, "org/multi")
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"f1": round(report["macro_f1"], 4), "exact_match": round(report["exact_match"], 4),
                       "hamming_loss": round(report["hamming_loss"], 4),
                       "mean_average_precision": round(report["mean_average_precision"], 4)}
    row = (f"| validation | {report['n']} | {report['n_photos_several_regions']} | "
           f"{report['macro_f1']:.3f} | {report['exact_match']:.3f} | {report['hamming_loss']:.3f} | "
           f"{report['mean_average_precision']:.3f} | {report['ece']:.3f} |")
    assert row in card.text
