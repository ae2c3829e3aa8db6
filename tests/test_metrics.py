"""Metrics: the local evaluate module (offline, by path) agrees with scikit-learn; the report adds
neighbour errors, calibration and subgroup gaps; write_report leaves a complete report folder."""

import json
import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from loscat_hf.evaluation.metrics import (
    METRIC_DIR,
    MetricsInputError,
    classification_report,
    compute_metrics_fn,
    load_classification_metric,
    per_class_table,
    write_report,
)

NAMES = ["a", "b", "c", "d", "e"]


@pytest.fixture(scope="module")
def fixed():
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 4, 80)  # class "e" never occurs: its row must still be there
    y_pred = np.where(rng.random(80) < 0.6, y_true, rng.integers(0, 5, 80))
    logits = rng.normal(0, 1, (80, 5))
    logits[np.arange(80), y_pred] += 3.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y_true, probs.argmax(1), probs


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_module_loads_offline_by_path_and_matches_sklearn(fixed):
    import os

    import evaluate

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    y_true, y_pred, _ = fixed
    for path in (METRIC_DIR, METRIC_DIR / "loscat_classification.py"):
        metric = evaluate.load(str(path), num_labels=5, keep_in_memory=True)
        out = metric.compute(predictions=y_pred.tolist(), references=y_true.tolist())
        assert out["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
        assert out["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
        assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
        assert out["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=range(5)).tolist()
        assert len(out["confusion_matrix"]) == 5 and sum(out["confusion_matrix"][4]) == 0
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(5), zero_division=0)
        assert out["precision"] == pytest.approx(p.tolist())
        assert out["recall"] == pytest.approx(r.tolist())
        assert out["f1"] == pytest.approx(f.tolist())
        assert out["support"] == s.tolist()
    # num_labels can also come with compute(), and the cached module is reused
    assert load_classification_metric() is load_classification_metric()
    out = load_classification_metric().compute(predictions=[0, 1], references=[0, 0], num_labels=3)
    assert out["confusion_matrix"] == [[1, 1, 0], [0, 0, 0], [0, 0, 0]]


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_report_matches_sklearn_and_is_json(fixed):
    y_true, y_pred, probs = fixed
    rep = classification_report(y_true, y_pred, probs, NAMES, temperature=1.7)
    assert rep["n"] == 80 and rep["errors"] == int((y_true != y_pred).sum())
    assert rep["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert rep["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert rep["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert rep["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=range(5)).tolist()
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(5), zero_division=0)
    assert [row["class"] for row in rep["per_class"]] == NAMES
    assert [row["f1"] for row in rep["per_class"]] == pytest.approx(f.tolist())
    assert [row["precision"] for row in rep["per_class"]] == pytest.approx(p.tolist())
    assert [row["recall"] for row in rep["per_class"]] == pytest.approx(r.tolist())
    assert [row["support"] for row in rep["per_class"]] == s.tolist()
    nll = -np.mean(np.log(probs[np.arange(80), y_true]))
    assert rep["nll"] == pytest.approx(nll)
    assert 0.0 <= rep["ece"] <= 1.0 and rep["temperature"] == 1.7
    assert "neighbour_error_share" not in rep and "subgroups" not in rep
    counts = [t["count"] for t in rep["top_confusions"]]
    assert counts == sorted(counts, reverse=True) and len(counts) <= 10
    json.dumps(rep, allow_nan=False)  # strict JSON: no numpy types, no NaN


def test_neighbour_share_and_top_confusions_hand_built():
    names = ["head", "neck", "hand", "forearm"]
    pairs = {frozenset(("head", "neck")), frozenset(("hand", "forearm"))}

    def nb(a, b):
        return frozenset((a, b)) in pairs

    y_true = [0, 0, 0, 1, 2, 3, 3, 3]
    # errors: head->neck x2, neck->head, hand->forearm (near); forearm->head (far)
    y_pred = [1, 1, 0, 0, 3, 0, 3, 3]
    probs = np.full((8, 4), 0.1)
    probs[np.arange(8), y_pred] = 0.7
    rep = classification_report(y_true, y_pred, probs, names, neighbours=nb)
    assert rep["errors"] == 5 and rep["neighbour_errors"] == 4
    assert rep["neighbour_error_share"] == pytest.approx(0.8)
    assert rep["top_confusions"][0] == {"true": "head", "pred": "neck", "count": 2, "neighbours": True}
    assert {"true": "forearm", "pred": "head", "count": 1, "neighbours": False} in rep["top_confusions"]
    assert rep["neighbour_pairs"] == [["forearm", "hand"], ["head", "neck"]]
    perfect = classification_report([0, 1], [0, 1], np.eye(4)[:2] * 0.9 + 0.025, names, neighbours=nb)
    assert perfect["errors"] == 0 and perfect["neighbour_error_share"] == 0.0


def test_subgroups_report_a_known_gap():
    rng = np.random.default_rng(0)
    y_true = np.tile(np.arange(4), 11)[:43]
    # light 90 %, dark 50 %, rare 0 %
    correct = np.r_[np.arange(20) < 18, np.arange(20) < 10, np.zeros(3, bool)]
    tone = ["light"] * 20 + ["dark"] * 20 + ["rare"] * 3
    rng.shuffle(correct[:20]), rng.shuffle(correct[20:40])
    y_pred = np.where(correct, y_true, (y_true + 1) % 4)
    probs = np.full((43, 4), 0.1)
    probs[np.arange(43), y_pred] = 0.7
    rep = classification_report(y_true, y_pred, probs, list("abcd"), subgroups={"skin_tone": tone})
    sub = rep["subgroups"]["skin_tone"]
    assert {k: v["n"] for k, v in sub["values"].items()} == {"dark": 20, "light": 20, "rare": 3}
    assert sub["values"]["light"]["accuracy"] == pytest.approx(0.9)
    assert sub["values"]["dark"]["accuracy"] == pytest.approx(0.5)
    assert sub["values"]["rare"]["accuracy"] == 0.0
    assert sub["accuracy_gap"] == pytest.approx(0.4)  # "rare" (n=3 < 10) is left out of the gap
    assert sub["accuracy_gap_between"] == {"worst": "dark", "best": "light"}
    assert sub["macro_f1_gap"] > 0.2
    assert sub["values"]["dark"]["ece"] == pytest.approx(0.2)  # confidence 0.7, accuracy 0.5
    with pytest.raises(MetricsInputError, match="skin_tone"):
        classification_report(y_true, y_pred, probs, list("abcd"), subgroups={"skin_tone": tone[:-1]})


def test_compute_metrics_fn_takes_tuple_predictions(fixed):
    from transformers import EvalPrediction

    y_true, y_pred, probs = fixed
    logits = np.log(probs)
    fn = compute_metrics_fn(NAMES)
    out = fn(EvalPrediction(predictions=(logits, np.zeros((80, 3))), label_ids=y_true))
    assert set(out) == {"accuracy", "macro_f1", "balanced_accuracy", "ece", "nll"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    assert out["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert fn(EvalPrediction(predictions=logits, label_ids=y_true)) == out


def test_bad_inputs_are_named():
    probs = np.full((3, 3), 1 / 3)
    with pytest.raises(MetricsInputError, match="shape"):
        classification_report([0, 1, 2], [0, 1, 2], probs[:, :2], ["a", "b", "c"])
    with pytest.raises(MetricsInputError, match="class ids"):
        classification_report([0, 1, 5], [0, 1, 2], probs, ["a", "b", "c"])
    with pytest.raises(MetricsInputError, match="no samples"):
        classification_report([], [], np.zeros((0, 3)), ["a", "b", "c"])


def test_write_report_files(fixed, tmp_path):
    y_true, y_pred, probs = fixed
    rep = classification_report(y_true, y_pred, probs, NAMES, neighbours=lambda a, b: {a, b} == {"a", "b"},
                                subgroups={"site": ["x", "y"] * 40})
    paths = write_report(rep, tmp_path / "eval", NAMES)
    assert set(paths) >= {"metrics", "per_class_csv", "per_class_md", "confusion_matrix", "per_class_f1"}
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0
    for key in ("confusion_matrix", "per_class_f1", "reliability"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["metrics"].read_text())["macro_f1"] == pytest.approx(rep["macro_f1"])
    md = paths["per_class_md"].read_text()
    assert "| class | support | precision | recall | F1 | most confused with |" in md and "| e | 0 |" in md
    table = per_class_table(rep)
    assert list(table["class"]) == NAMES and table["support"].sum() == 80
    import pandas as pd

    assert pd.read_csv(paths["per_class_csv"])["f1"].tolist() == pytest.approx(table["f1"].tolist(), abs=1e-4)
