"""Evaluation metrics of the region classifier: one report for people, a flat dict for the Trainer.

The headline numbers come from the local `evaluate` module `loscat_classification` (next to this file,
loaded by path so nothing is fetched from the Hub). On top of it the report adds what matters for
LoSCAT photos: calibration (ECE, NLL), how many errors are between anatomical neighbours (forearm vs
hand is a far smaller mistake than head vs foot), the most frequent confusions, and per-subgroup
accuracy with the largest gap, e.g. across skin tones. `evaluate` is imported lazily (6-8 s).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loscat_hf.evaluation.metrics.common import (
    N_BINS,
    MetricsInputError,
    subgroup_gaps,
    subgroup_markdown,
    subgroup_reports,
    top_off_diagonal,
)
from loscat_hf.evaluation.metrics.common import fmt as _fmt
from loscat_hf.evaluation.metrics.common import json_default as _json_default
from loscat_hf.evaluation.metrics.common import subgroup_value as _subgroup_value
from loscat_hf.model.calibration import (
    apply_temperature,
    ece_from_bins,
    negative_log_likelihood,
    reliability_bins,
)

if TYPE_CHECKING:
    import evaluate
    import pandas as pd


METRIC_DIR = Path(__file__).resolve().parent / "loscat_classification"
MULTI_LABEL_ONLY = ("error_cooccurrence.png", "reliability_per_class.png")  # multi_label.py's own plots


@lru_cache(maxsize=1)
def load_classification_metric() -> evaluate.EvaluationModule:
    """The local `loscat_classification` evaluate module, loaded once by path (works offline).

    `keep_in_memory=True`: no Arrow cache files, so concurrent runs and read-only caches cannot clash.
    Pass `num_labels` to `compute()` to fix the label set.
    """
    import evaluate

    return evaluate.load(str(METRIC_DIR), keep_in_memory=True)


def _compute(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> dict:
    return load_classification_metric().compute(
        predictions=[int(v) for v in y_pred], references=[int(v) for v in y_true], num_labels=num_labels
    )


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _subgroup_report(values: Sequence, y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray | None,
                     num_labels: int, min_n: int) -> dict:
    keys = np.array([_subgroup_value(v) for v in values], dtype=object)
    per_value: dict[str, dict] = {}
    for value in sorted(set(keys.tolist())):
        mask = keys == value
        m = _compute(y_true[mask], y_pred[mask], num_labels)
        per_value[value] = {
            "n": int(mask.sum()),
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "ece": None if probs is None else _finite_or_none(
                ece_from_bins(reliability_bins(probs[mask], y_true[mask], N_BINS))),
        }
    return subgroup_gaps(per_value, min_n)


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    probs: np.ndarray | None,
    class_names: Sequence[str],
    neighbours: Callable[[str, str], bool] | None = None,
    subgroups: Mapping[str, Sequence] | None = None,
    temperature: float | None = None,
    subgroup_min_n: int = 10,
) -> dict:
    """Everything `loscat-hf evaluate` reports about one split, as a JSON-serialisable dict.

    `probs` are the probabilities the predictions came from, already temperature-scaled: `temperature`
    is only recorded; `probs=None` (predictions without probabilities) gives ece, nll and reliability None
    instead of invented numbers. `neighbours(a, b)` (e.g. `Taxonomy.are_neighbours`) tells which confusions
    are between adjacent body regions. `subgroups` maps a column (e.g. "skin_tone") to one value per sample;
    gaps between values are computed over values with at least `subgroup_min_n` samples.
    macro_f1 averages over classes present in y_true or y_pred (scikit-learn's default); per_class lists
    every class (F1 0.0, support 0 for an absent one).
    """
    names = [str(c) for c in class_names]
    k = len(names)
    yt = np.asarray(y_true, dtype=np.int64).reshape(-1)
    yp = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    p = None if probs is None else np.asarray(probs, dtype=np.float64)
    n = len(yt)
    if n == 0:
        raise MetricsInputError("nothing to evaluate: the split has no samples")
    if len(yp) != n:
        raise MetricsInputError(f"{n} labels but {len(yp)} predictions")
    if p is not None and p.shape != (n, k):
        raise MetricsInputError(f"probabilities have shape {p.shape}, expected ({n}, {k}) for {k} classes")
    for what, arr in (("labels", yt), ("predictions", yp)):
        if arr.min() < 0 or arr.max() >= k:
            raise MetricsInputError(f"{what} must be class ids 0..{k - 1}, "
                                    f"got {int(arr.min())}..{int(arr.max())}")

    m = _compute(yt, yp, k)
    cm = np.asarray(m["confusion_matrix"], dtype=np.int64)
    bins = None if p is None else reliability_bins(p, yt, N_BINS)
    wrong = yt != yp
    errors = int(wrong.sum())
    top = top_off_diagonal(cm, names, "pred", neighbours)

    report: dict[str, Any] = {
        "n": n,
        "num_classes": k,
        "classes": names,
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "balanced_accuracy": m["balanced_accuracy"],
        "ece": None if bins is None else ece_from_bins(bins),
        "nll": None if p is None else negative_log_likelihood(p, yt),
        "temperature": None if temperature is None else float(temperature),
        "errors": errors,
        "per_class": [
            {"class": names[i], "precision": m["precision"][i], "recall": m["recall"][i], "f1": m["f1"][i],
             "support": m["support"][i]}
            for i in range(k)
        ],
        "confusion_matrix": cm.tolist(),
        "top_confusions": top,
        "reliability": bins,
    }
    if neighbours is not None:
        pairs = [(i, j) for i in range(k) for j in range(k) if i != j and neighbours(names[i], names[j])]
        neighbour_errors = int(sum(cm[i, j] for i, j in pairs))
        report["neighbour_errors"] = neighbour_errors
        # 0.0 rather than undefined when there is no error at all: nothing to attribute.
        report["neighbour_error_share"] = neighbour_errors / errors if errors else 0.0
        unordered = {tuple(sorted((names[i], names[j]))) for i, j in pairs}
        report["neighbour_pairs"] = [list(t) for t in sorted(unordered)]
    if subgroups:
        report["subgroups"] = subgroup_reports(subgroups, n,
            lambda values: _subgroup_report(values, yt, yp, p, k, subgroup_min_n))
    return report


def compute_metrics_fn(class_names: Sequence[str],
                       multi_label: bool = False) -> Callable[[Any], dict[str, float]]:
    """A `compute_metrics` for the HF Trainer: flat scalars accuracy, macro_f1, balanced_accuracy, ece, nll.

    The Trainer prefixes them with "eval_"; use `metric_for_best_model="macro_f1"` (classes are imbalanced,
    so accuracy would reward predicting the common regions). `multi_label`: a multi-region model's logits
    and multi-hot label_ids (`multi_label.trainer_metrics`); macro_f1 and exact_match (= accuracy) at
    per-class thresholds fitted on these same validation photos, as the checkpoint would be saved with them
    (a fixed 0.5 scores every young checkpoint 0), with macro_f1_at_0_5, hamming_loss and
    mean_average_precision beside them.
    """
    num_labels = len(class_names)
    if multi_label:
        from loscat_hf.evaluation.metrics.multi_label import trainer_metrics

        return lambda eval_pred: trainer_metrics(eval_pred.predictions, eval_pred.label_ids, num_labels)

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        logits = eval_pred.predictions
        labels = eval_pred.label_ids
        logits = logits[0] if isinstance(logits, (tuple, list)) else logits
        labels = labels[0] if isinstance(labels, (tuple, list)) else labels
        logits = np.asarray(logits, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        probs = apply_temperature(logits)
        preds = probs.argmax(axis=1)
        m = _compute(labels, preds, num_labels)
        return {
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "balanced_accuracy": m["balanced_accuracy"],
            "ece": ece_from_bins(reliability_bins(probs, labels, N_BINS)),
            "nll": negative_log_likelihood(probs, labels),
        }

    return compute_metrics


def per_class_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per class: support, precision, recall, F1 and the class it is most often mistaken for."""
    import pandas as pd

    names = [row["class"] for row in report["per_class"]]
    cm = np.asarray(report["confusion_matrix"], dtype=np.int64)
    rows = []
    for i, row in enumerate(report["per_class"]):
        off = cm[i].copy()
        off[i] = 0
        j = int(off.argmax())
        rows.append({
            "class": row["class"], "support": int(row["support"]), "precision": row["precision"],
            "recall": row["recall"], "f1": row["f1"],
            "most_confused_with": names[j] if off[j] > 0 else "",
            "confused_count": int(off[j]),
        })
    return pd.DataFrame(rows, columns=["class", "support", "precision", "recall", "f1",
                                       "most_confused_with", "confused_count"])


def _markdown(report: Mapping[str, Any], table: pd.DataFrame) -> str:
    lines = [
        f"**n = {report['n']}** · accuracy {_fmt(report['accuracy'])} · "
        f"macro-F1 {_fmt(report['macro_f1'])} · "
        f"balanced accuracy {_fmt(report['balanced_accuracy'])} · ECE {_fmt(report['ece'])} · "
        f"NLL {_fmt(report['nll'])}"
        + (f" · {_fmt(report['neighbour_error_share'], pct=True)} of {report['errors']} errors between "
           "anatomical neighbours" if "neighbour_error_share" in report
           else f" · {report['errors']} errors")
        + (f" · {report['n_left_out_several_regions']} photos showing several regions left out (scored on "
           "the single-region photos)" if report.get("n_left_out_several_regions") else ""),
        "",
        "| class | support | precision | recall | F1 | most confused with |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in table.to_dict("records"):
        confused = f"{r['most_confused_with']} ({r['confused_count']})" if r["confused_count"] else ""
        lines.append(f"| {r['class']} | {r['support']} | {r['precision']:.3f} | {r['recall']:.3f} "
                     f"| {r['f1']:.3f} | {confused} |")
    lines += subgroup_markdown(report.get("subgroups"))
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out_dir: str | Path,
                 class_names: Sequence[str]) -> dict[str, Path]:
    """Write metrics.json, per_class.csv, per_class.md and the confusion-matrix, per-class-F1 and reliability
    PNGs.

    Neighbour cells are outlined in the confusion matrix when the report has `neighbour_pairs`.
    Returns {name: path} of the files written.
    """
    from loscat_hf.viz.plots import _plot_reliability_bins, plot_confusion_matrix, plot_per_class_f1

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in MULTI_LABEL_ONLY:  # a multi-region report's plots must not stay beside this one
        (out / name).unlink(missing_ok=True)
    names = list(class_names)
    paths = {
        "metrics": out / "metrics.json",
        "per_class_csv": out / "per_class.csv",
        "per_class_md": out / "per_class.md",
        "confusion_matrix": out / "confusion_matrix.png",
        "per_class_f1": out / "per_class_f1.png",
    }
    paths["metrics"].write_text(json.dumps(report, indent=2, default=_json_default), encoding="utf-8")
    table = per_class_table(report)
    table.to_csv(paths["per_class_csv"], index=False, float_format="%.4f")
    paths["per_class_md"].write_text(_markdown(report, table), encoding="utf-8")
    pairs = {frozenset(p) for p in report.get("neighbour_pairs") or []}
    plot_confusion_matrix(
        np.asarray(report["confusion_matrix"]), names, paths["confusion_matrix"], normalize=True,
        title=f"Confusion matrix (n={report['n']}, macro-F1 {report['macro_f1']:.3f})",
        neighbours=(lambda a, b: frozenset((a, b)) in pairs) if pairs else None,
    )
    plot_per_class_f1(report["per_class"], paths["per_class_f1"], macro_f1=report["macro_f1"])
    if report.get("reliability"):
        paths["reliability"] = _plot_reliability_bins(report["reliability"], out / "reliability.png")
    return paths
