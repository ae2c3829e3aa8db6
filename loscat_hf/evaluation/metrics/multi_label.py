"""Metrics of a multi-region model: every photo has a set of regions, every class is scored on its own.

A multi-region model answers with per-class sigmoid scores and per-class thresholds, so the single-label
report (one true class, a confusion matrix, softmax calibration) does not apply. This report gives, with
scikit-learn's multi-label definitions on the 0/1 indicator matrices: per-class precision/recall/F1/support
at the thresholds, macro-F1 over every class (an absent class counts 0, as `f1_score(average="macro")`),
exact match (every region of the photo right: `accuracy_score` on indicator matrices; also `accuracy`, so
readers of the single-label report keep working), Hamming loss, mean average precision over the classes
with a positive photo (threshold-free, from the scores), and each class's calibration: its score read as the
probability that the photo shows the class. What a clinician looks at next is which errors come together:
`error_cooccurrence` counts, per true region, the photos where it was missed (diagonal) and where another
region was added that the photo does not show (off the diagonal).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loscat_hf.evaluation.metrics.common import (
    N_BINS,
    MetricsInputError,
    fmt,
    json_default,
    subgroup_gaps,
    subgroup_markdown,
    subgroup_reports,
    subgroup_value,
    top_off_diagonal,
)

PLOTS = {"per_class_f1": "per_class_f1.png", "error_cooccurrence": "error_cooccurrence.png",
         "reliability_per_class": "reliability_per_class.png"}
SINGLE_LABEL_ONLY = ("confusion_matrix.png", "reliability.png")  # the single-label report's own plots
COOCCURRENCE = ("rows: a region the photo shows (n photos); diagonal: photos where the model missed it; "
                "off the diagonal: photos where the model added the column's region, which the photo does "
                "not show")


def indicator_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """The threshold metrics of scikit-learn on 0/1 indicator matrices (every class a column): per-class
    precision/recall/f1/support, macro_f1, micro_f1, exact_match, hamming_loss."""
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, average=None,
                                                                     zero_division=0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support,
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0.0)),
            "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0.0)),
            "exact_match": float(accuracy_score(y_true, y_pred)),
            "hamming_loss": float(hamming_loss(y_true, y_pred))}


def _average_precision(y_true: np.ndarray, scores: np.ndarray) -> tuple[float | None, list[float | None]]:
    """(macro AP over the classes with a positive photo, per-class AP or None for a class without one)."""
    from sklearn.metrics import average_precision_score

    has = y_true.any(axis=0)
    per: list[float | None] = [None] * y_true.shape[1]
    if not has.any():
        return None, per
    for c in np.flatnonzero(has):
        per[c] = float(average_precision_score(y_true[:, c], scores[:, c]))
    return float(average_precision_score(y_true[:, has], scores[:, has], average="macro")), per


def binary_reliability(scores: np.ndarray, truth: np.ndarray, n_bins: int = N_BINS) -> list[dict]:
    """One class's score as the probability that a photo shows it: equal-width bins (lower, upper] over the
    score (the first also holds 0), each with its count, mean score and share of photos showing the class
    (None when empty), so "0.8" can be checked against how often such photos show the region."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(truth, dtype=bool)
    idx = np.clip(np.ceil(s * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = idx == b
        count = int(mask.sum())
        bins.append({"lower": b / n_bins, "upper": (b + 1) / n_bins, "count": count,
                     "score": float(s[mask].mean()) if count else None,
                     "positive_rate": float(y[mask].mean()) if count else None})
    return bins


def binary_ece(bins: Sequence[Mapping[str, Any]]) -> float | None:
    """Sum over bins of (share of photos) * |share showing the class - mean score|; None without photos."""
    total = sum(b["count"] for b in bins)
    if not total:
        return None
    return float(sum(b["count"] / total * abs(b["positive_rate"] - b["score"]) for b in bins if b["count"]))


def error_cooccurrence(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(C, C) counts: [a, a] photos showing a where a was missed; [a, b] photos showing a (and not b) where
    b was predicted."""
    t, p = y_true.astype(np.int64), y_pred.astype(np.int64)
    added = p * (1 - t)
    out = t.T @ added  # [a, b]: photos with a true and b added; [a, a] is 0 (a cannot be both)
    out[np.diag_indices_from(out)] = (t * (1 - p)).sum(axis=0)
    return out


def _check(y_true: Any, y_pred: Any, scores: Any, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    s = None if scores is None else np.asarray(scores, dtype=np.float64)
    if yt.ndim != 2 or yt.shape[1] != k or len(yt) == 0:
        raise MetricsInputError(f"labels have shape {yt.shape}, expected (n > 0, {k}): one 0/1 column per "
                                "class")
    for what, arr in (("labels", yt), ("predictions", yp), ("scores", s)):
        if arr is not None and arr.shape != yt.shape:
            raise MetricsInputError(f"{what} have shape {arr.shape}, expected {yt.shape}")
    for what, arr in (("labels", yt), ("predictions", yp)):
        if not np.isin(arr, (0.0, 1.0)).all():
            raise MetricsInputError(f"{what} must be 0/1 per class (multi-hot)")
    if s is not None and not (np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()):
        raise MetricsInputError("scores must be per-class probabilities in 0..1")
    return yt.astype(np.int64), yp.astype(np.int64), s


def _subgroup(values: Sequence, yt: np.ndarray, yp: np.ndarray, s: np.ndarray | None, min_n: int) -> dict:
    keys = np.array([subgroup_value(v) for v in values], dtype=object)
    per_value: dict[str, dict] = {}
    for value in sorted(set(keys.tolist())):
        mask = keys == value
        m = indicator_metrics(yt[mask], yp[mask])
        eces = [] if s is None else [binary_ece(binary_reliability(s[mask, c], yt[mask, c]))
                                     for c in range(yt.shape[1])]
        per_value[value] = {"n": int(mask.sum()), "accuracy": m["exact_match"],
                            "exact_match": m["exact_match"], "macro_f1": m["macro_f1"],
                            "ece": float(np.mean(eces)) if eces else None}
    return subgroup_gaps(per_value, min_n)


def multi_label_report(
    y_true: Any, y_pred: Any, scores: np.ndarray | None, class_names: Sequence[str],
    thresholds: Sequence[float] | None = None, neighbours: Callable[[str, str], bool] | None = None,
    subgroups: Mapping[str, Sequence] | None = None, temperature: float | None = None,
    subgroup_min_n: int = 10,
) -> dict:
    """Everything `evaluate` reports about a multi-region model on one split, as a JSON-serialisable dict.

    `y_true`, `y_pred`: (n, C) 0/1 (the photo shows / the model shows each class); `scores` the sigmoid
    scores the predictions came from (None: predictions without scores, so no mAP or calibration);
    `thresholds` are only recorded. `neighbours(a, b)` tells which added regions lie next to a true one.
    """
    names = [str(c) for c in class_names]
    k = len(names)
    yt, yp, s = _check(y_true, y_pred, scores, k)
    n = len(yt)
    m = indicator_metrics(yt, yp)
    mean_ap, ap = (None, [None] * k) if s is None else _average_precision(yt, s)
    bins = None if s is None else [binary_reliability(s[:, c], yt[:, c]) for c in range(k)]
    ece = None if bins is None else [binary_ece(b) for b in bins]
    co = error_cooccurrence(yt, yp)
    top = top_off_diagonal(co, names, "added", neighbours)
    thr = None if thresholds is None else [float(t) for t in thresholds]
    report: dict[str, Any] = {
        "multi_label": True, "n": n, "num_classes": k, "classes": names,
        "accuracy": m["exact_match"], "exact_match": m["exact_match"], "macro_f1": m["macro_f1"],
        "micro_f1": m["micro_f1"], "hamming_loss": m["hamming_loss"], "mean_average_precision": mean_ap,
        "ece": None if ece is None else float(np.mean(ece)),
        "temperature": None if temperature is None else float(temperature), "thresholds": thr,
        "false_negatives": int((yt * (1 - yp)).sum()), "false_positives": int(((1 - yt) * yp).sum()),
        "regions_per_photo": {"true": float(yt.sum(1).mean()), "predicted": float(yp.sum(1).mean())},
        "n_photos_several_regions": int((yt.sum(1) > 1).sum()),
        "n_photos_no_region_predicted": int((yp.sum(1) == 0).sum()),
        "classes_absent": [names[c] for c in range(k) if not (yt[:, c].any() or yp[:, c].any())],
        "per_class": [
            {"class": names[c], "precision": float(m["precision"][c]), "recall": float(m["recall"][c]),
             "f1": float(m["f1"][c]), "support": int(m["support"][c]), "predicted": int(yp[:, c].sum()),
             "threshold": None if thr is None else thr[c], "average_precision": ap[c],
             "ece": None if ece is None else ece[c]}
            for c in range(k)],
        "error_cooccurrence": co.tolist(), "error_cooccurrence_reads": COOCCURRENCE,
        "top_added": top,
        "reliability_per_class": None if bins is None else dict(zip(names, bins, strict=True)),
    }
    if neighbours is not None:
        # an added region beside a true one (thigh+leg photo, "knee" added) is a near miss, not a gross error
        fp_near = sum(1 for r, c in zip(*np.nonzero((1 - yt) * yp), strict=True)
                      if any(neighbours(names[c], names[a]) for a in np.flatnonzero(yt[r])))
        report["added_next_to_a_true_region"] = fp_near
        report["added_next_to_a_true_region_share"] = fp_near / report["false_positives"] \
            if report["false_positives"] else 0.0
    if subgroups:
        report["subgroups"] = subgroup_reports(subgroups, n,
                                               lambda values: _subgroup(values, yt, yp, s, subgroup_min_n))
    return report


def trainer_metrics(logits: Any, label_ids: Any, num_labels: int) -> dict[str, float]:
    """The Trainer's flat scalars for a multi-region model. `macro_f1` (the best-checkpoint metric) and
    `exact_match` (= accuracy) are at per-class thresholds fitted on these same photos: `train` fits the saved
    model's thresholds on the validation split the Trainer evaluates, so this is the macro-F1 the checkpoint
    would be saved with. At a fixed 0.5 a young model's sigmoids all sit below the line and every early
    checkpoint scores 0, so the first one would win. `macro_f1_at_0_5`, hamming_loss and
    mean_average_precision (threshold-free; when a class has a positive) beside it."""
    from loscat_hf.model.thresholds import fit_thresholds, shown, sigmoid

    logits = logits[0] if isinstance(logits, (tuple, list)) else logits
    label_ids = label_ids[0] if isinstance(label_ids, (tuple, list)) else label_ids
    s = sigmoid(np.asarray(logits, dtype=np.float64).reshape(-1, num_labels))
    yt = (np.asarray(label_ids, dtype=np.float64).reshape(-1, num_labels) > 0.5).astype(np.int64)
    fitted = list(fit_thresholds(s, yt, [str(i) for i in range(num_labels)])[0].values())
    m = indicator_metrics(yt, shown(s, fitted).astype(np.int64))
    half = indicator_metrics(yt, (s >= 0.5).astype(np.int64))
    out = {"macro_f1": m["macro_f1"], "exact_match": m["exact_match"], "accuracy": m["exact_match"],
           "micro_f1": m["micro_f1"], "hamming_loss": m["hamming_loss"], "macro_f1_at_0_5": half["macro_f1"]}
    mean_ap = _average_precision(yt, s)[0]
    if mean_ap is not None:
        out["mean_average_precision"] = mean_ap
    return out


def _markdown(report: Mapping[str, Any]) -> str:
    lines = [
        f"**n = {report['n']}** photos ({report['n_photos_several_regions']} showing several regions) · "
        f"macro-F1 {fmt(report['macro_f1'])} · exact match {fmt(report['exact_match'])} · "
        f"mAP {fmt(report['mean_average_precision'])} · Hamming loss {fmt(report['hamming_loss'])} · "
        f"mean per-class ECE {fmt(report['ece'])} · regions per photo "
        f"{report['regions_per_photo']['true']:.2f} true, {report['regions_per_photo']['predicted']:.2f} "
        f"predicted · {report['n_photos_no_region_predicted']} photos with no region predicted",
        "",
        "| class | support | predicted | threshold | precision | recall | F1 | AP | ECE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["per_class"]:
        lines.append(f"| {r['class']} | {r['support']} | {r['predicted']} | {fmt(r['threshold'])} "
                     f"| {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} "
                     f"| {fmt(r['average_precision'])} | {fmt(r['ece'])} |")
    if report["top_added"]:
        lines += ["", "Regions most often added to a photo that does not show them:", ""]
        lines += [f"- {r['added']} on photos of {r['true']}: {r['count']}"
                  + (" (neighbours)" if r.get("neighbours") else "") for r in report["top_added"]]
    lines += subgroup_markdown(report.get("subgroups"), "exact match")
    return "\n".join(lines) + "\n"


def write_multi_label_report(report: dict, out_dir: str | Path, class_names: Sequence[str],
                             neighbours: Callable[[str, str], bool] | None = None) -> dict[str, Path]:
    """Write metrics.json, per_class.csv/.md, per_class_f1.png, error_cooccurrence.png (neighbour cells
    outlined with `neighbours`) and, with scores, reliability_per_class.png; the plots' file names go into
    the report (`plots`). Returns {name: path}."""
    import pandas as pd

    from loscat_hf.viz.plots import plot_error_cooccurrence, plot_per_class_f1, plot_reliability_per_class

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in SINGLE_LABEL_ONLY:  # an earlier single-label report's plots would no longer be true
        (out / name).unlink(missing_ok=True)
    plots = {k: v for k, v in PLOTS.items()
             if k != "reliability_per_class" or report["reliability_per_class"]}
    if "reliability_per_class" not in plots:
        (out / PLOTS["reliability_per_class"]).unlink(missing_ok=True)
    report["plots"] = plots
    paths = {"metrics": out / "metrics.json", "per_class_csv": out / "per_class.csv",
             "per_class_md": out / "per_class.md", **{k: out / v for k, v in plots.items()}}
    paths["metrics"].write_text(json.dumps(report, indent=2, default=json_default), encoding="utf-8")
    columns = ["class", "support", "predicted", "threshold", "precision", "recall", "f1", "average_precision",
               "ece"]
    pd.DataFrame(report["per_class"], columns=columns).to_csv(paths["per_class_csv"], index=False,
                                                              float_format="%.4f")
    paths["per_class_md"].write_text(_markdown(report), encoding="utf-8")
    plot_per_class_f1(report["per_class"], paths["per_class_f1"], macro_f1=report["macro_f1"],
                      title="F1 per region at its threshold")
    plot_error_cooccurrence(np.asarray(report["error_cooccurrence"]), list(class_names),
                            paths["error_cooccurrence"], n_true=[r["support"] for r in report["per_class"]],
                            title=f"Errors by true region (n={report['n']} photos)", neighbours=neighbours)
    if "reliability_per_class" in plots:
        plot_reliability_per_class(report["reliability_per_class"], paths["reliability_per_class"],
                                   ece={r["class"]: r["ece"] for r in report["per_class"]},
                                   thresholds={r["class"]: r["threshold"] for r in report["per_class"]
                                               if r["threshold"] is not None})
    return paths
