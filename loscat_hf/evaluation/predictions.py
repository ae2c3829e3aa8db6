"""`evaluate_predictions()`: score any predictions CSV against a ground-truth CSV, with `evaluate`'s report.

So a clinic can compare the study's published model and a retrained one on the same labels. Predictions
formats, told apart by their header: loscat-hf `predict`'s (infer/folder.py; only status "ok" rows hold a
prediction; cells go back through `csvsafe.read_cell`) and the study's scripts/batch_inference.py
(image_path, pred_label, confidence; pred_label "ERROR" = no prediction, its error text in confidence).
The ground truth has an image column (image_path, image or file_name) and a region column (region or label)
in any spelling the taxonomy parses, study codes included; a non-site code ("unclear") excludes the photo.
A truth cell may name several regions (';'-joined) and loscat-hf predict's CSV of a multi-region model has a
`regions` column (';'-joined, most probable first): when a truth photo shows several classes or a `regions`
cell differs from its `region`, the photos are scored with the multi-label report (multi_label.py) instead.
Photos are matched by the exact string, then the normalised path (separators, './'), then the path resolved
against each CSV's own folder, then the last 4, 3 or 2 path components, then the bare file name, these two
only where the shorter path ends the longer one (patientA/IMG_1.jpg never meets /x/patientZ/IMG_1.jpg);
each step pairs only keys unique on both sides. A truth photo without a usable prediction is counted.

Image paths and file names can identify people: none appears in metrics.json, per_class.*, the plots or the
summary; the per-photo detail (how each photo matched, which had no usable prediction and why) is written to
OUT/private/ only (a 0700 folder of 0600 files, like a packed dataset's private/).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loscat_hf.data.dataset import DETAILS_NAME, PRIVATE_DIR
from loscat_hf.data.private import private_dir, private_open
from loscat_hf.defaults import EVALUATED_NAME
from loscat_hf.errors import LoscatError
from loscat_hf.evaluation.matching import MATCH_STEPS, match_photos
from loscat_hf.evaluation.prediction_csv import Row, multi_region_model, read_predictions, read_truth
from loscat_hf.evaluation.split_eval import EvaluationResult
from loscat_hf.io.csvsafe import SafeWriter
from loscat_hf.taxonomy import SET_SEPARATOR, Taxonomy, load_taxonomy

logger = logging.getLogger(__name__)
__all__ = ["PredictionsEvaluation", "evaluate_predictions"]

MATCHING_NAME = "matching.csv"  # under OUT/private/
PROBABILITY_NOTES = {
    "loscat-hf": "top-k probabilities from loscat-hf predict's CSV; the remaining probability mass is spread "
                 "evenly over the other classes (ECE and the reliability diagram use the top-1 probability "
                 "as written; NLL is approximate where the true class is outside the top k)",
    "study": "the predicted class's confidence from the study's CSV; the remaining probability mass is "
             "spread evenly over the other classes (ECE and the reliability diagram use the confidence as "
             "written; NLL is approximate for wrong predictions)",
    None: "none: not every scored photo has a probability, so calibration (ECE, NLL, reliability) is not "
          "reported",
}
MULTI_PROBABILITY_NOTES = {
    True: "a score for every class on every scored photo: mean average precision and per-class calibration "
          "are reported",
    False: "not a score for every class on every scored photo (loscat-hf predict writes the top-k scores), "
           "so mean average precision and per-class calibration are not reported; F1, exact match and "
           "Hamming loss need only the predicted regions",
}


@dataclass
class PredictionsEvaluation(EvaluationResult):
    """`evaluate_predictions`' result: the report (metrics.json's content, with the matching counts)."""

    def summary(self) -> str:
        r = self.report
        return (f"{super().summary()}. Of {r['n_truth']} truth photos: {r['n_scored']} scored, "
                f"{r['n_unpredicted']} without a usable prediction, {r['n_excluded_non_site']} excluded "
                f"(non-site truth); {r['n_predictions_without_truth']} predictions have no truth. "
                f"Per-photo detail (private): {self.out_dir / PRIVATE_DIR / MATCHING_NAME}")


def _probability_row(known: dict[int, float], pred: int, k: int) -> np.ndarray:
    """The CSV's probabilities, the rest of the mass spread evenly; the predicted class stays the unique top
    (4-decimal rounding can tie or invert it), so the reliability bins score the prediction that was made."""
    row = np.zeros(k)
    for j, p in known.items():
        row[j] = p
    total = row.sum()
    if total > 1:
        row /= total
    others = [j for j in range(k) if j not in known]
    if others:
        row[others] = max(0.0, 1.0 - row.sum()) / len(others)
    row[pred] = max(row[pred], 1e-12)
    rest = np.arange(k) != pred
    row[rest] = np.minimum(row[rest], row[pred] * (1 - 1e-9))
    return row / row.sum()


def _write_private(out: Path, truth: list[Row], preds: list[Row], matched: dict[int, tuple[int, str]],
                   classes: tuple[str, ...], details: dict) -> Path:
    """OUT/private/matching.csv: every truth photo and every prediction without truth, with the outcome."""
    folder = private_dir(out / PRIVATE_DIR, exist_ok=True)
    path = folder / MATCHING_NAME
    with private_open(path) as fh:
        writer = SafeWriter(fh)
        writer.writerow(["outcome", "reason", "match", "truth_row", "image", "truth", "truth_class",
                         "prediction_row", "predicted_image", "prediction", "predicted_class", "correct",
                         "detail"])
        def names(r: Row) -> str:  # one class, or a multi-region photo's classes ';'-joined
            return "" if r.label is None and r.code is not None else SET_SEPARATOR.join(
                classes[i] for i in r.labels)

        for i, t in enumerate(truth):
            j, how = matched.get(i, (None, ""))
            p = preds[j] if j is not None else None
            outcome, reason = _outcome(t, p)
            writer.writerow([outcome, reason, how, t.row, t.image, t.text, names(t),
                             "" if p is None else p.row, "" if p is None else p.image,
                             "" if p is None else p.text, "" if p is None else names(p),
                             "" if outcome != "scored" else str(t.labels == p.labels).lower(),
                             "" if p is None else p.detail])
        used = {j for j, _ in matched.values()}
        for j, p in enumerate(preds):
            if j not in used:
                writer.writerow(["prediction_without_truth", p.code or "", "", "", "", "", "", p.row, p.image,
                                 p.text, names(p), "", p.detail])
    with private_open(folder / DETAILS_NAME) as fh:
        fh.write(json.dumps(details, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


def _outcome(t: Row, p: Row | None) -> tuple[str, str]:
    if t.code is not None:
        return "excluded_non_site", t.code
    if p is None:
        return "unpredicted", "no_prediction"
    if p.label is None:
        return "unpredicted", p.code or "no_prediction"
    return "scored", ""


def _multi_label(truth: list[Row], hits: list[Row], tax: Taxonomy) -> tuple[dict, bool]:
    """The multi-label report of the scored photos: sets of regions; scores only where the CSV gives one for
    every class on every photo (mAP and calibration need them all)."""
    from loscat_hf.data.dataset import multi_hot
    from loscat_hf.evaluation.metrics import multi_label_report

    k = len(tax.classes)
    complete = all(p.probs is not None and len(p.probs) == k for p in hits)
    scores = np.array([[p.probs[j] for j in range(k)] for p in hits]) if complete else None
    truth_hot, pred_hot = multi_hot([t.labels for t in truth], k), multi_hot([p.labels for p in hits], k)
    report = multi_label_report(truth_hot, pred_hot, scores, list(tax.classes), neighbours=tax.are_neighbours)
    return report, complete


def evaluate_predictions(predictions: str | os.PathLike, truth: str | os.PathLike, out: str | os.PathLike,
                         taxonomy: str | os.PathLike | Taxonomy | None = None) -> PredictionsEvaluation:
    """Score a predictions CSV (loscat-hf predict's or the study's) against a ground-truth CSV; write `out`.

    `out` gets evaluate's report (metrics.json with the matching counts n_truth, n_scored, n_unpredicted,
    n_excluded_non_site, n_predictions_without_truth; per_class.csv/md; confusion matrix, per-class F1 and,
    where the CSV has probabilities, reliability plots) and private/ with the per-photo detail. Truth photos
    showing several regions, or a multi-region model's `regions`, get the multi-label report instead.
    """
    from loscat_hf.evaluation.metrics import classification_report, write_multi_label_report, write_report

    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    pred_path, truth_path, out = Path(predictions), Path(truth), Path(out)
    fmt, preds = read_predictions(pred_path, tax)
    truth_columns, rows = read_truth(truth_path, tax)
    logger.info("predictions: %s format, %d rows; ground truth: %d photos (columns %s)", fmt, len(preds),
                len(rows), ", ".join(truth_columns.values()))
    if out.exists() and not out.is_dir():
        raise LoscatError(f"out {out} is a file; give a folder for the report", param="out")
    out.mkdir(parents=True, exist_ok=True)
    matched = match_photos([r.image for r in rows], [r.image for r in preds], truth_path.parent,
                           pred_path.parent)
    details = {"predictions": str(pred_path.resolve()), "truth": str(truth_path.resolve()),
               "predictions_format": fmt, "truth_columns": truth_columns}
    # several regions on a truth photo, or a multi-region model's predictions: the multi-label report, each
    # prediction its `regions` (none when no class passed its threshold)
    multi = any(len(t.labels) > 1 for t in rows) or any(multi_region_model(p) for p in preds)
    for p in preds if multi else ():
        if p.label is not None and p.regions is not None:
            p.labels = p.regions
    private = _write_private(out, rows, preds, matched, tax.classes, details)

    outcomes = [_outcome(t, preds[matched[i][0]] if i in matched else None) for i, t in enumerate(rows)]
    scored = [i for i, (o, _) in enumerate(outcomes) if o == "scored"]
    counts = {
        "n_truth": len(rows),
        "n_scored": len(scored),
        "n_unpredicted": sum(o == "unpredicted" for o, _ in outcomes),
        "n_excluded_non_site": sum(o == "excluded_non_site" for o, _ in outcomes),
        "n_predictions": len(preds),
        "n_predictions_without_truth": len(preds) - len(matched),
        "unpredicted_by_reason": dict(sorted(Counter(r for o, r in outcomes if o == "unpredicted").items())),
        "excluded_by_code": dict(sorted(Counter(r for o, r in outcomes if o == "excluded_non_site").items())),
        "matched_by": {step: sum(how == step for _, how in matched.values()) for step in MATCH_STEPS},
    }
    if not scored:
        raise LoscatError(f"none of the {len(rows)} ground-truth photos has a usable prediction "
                          f"({counts['n_unpredicted']} unpredicted: {counts['unpredicted_by_reason']}, "
                          f"{counts['n_excluded_non_site']} non-site); check that both CSVs name the photos "
                          f"the same way. Per-photo detail: {private}")
    hits = [preds[matched[i][0]] for i in scored]
    k = len(tax.classes)
    if multi:
        report, has_probs = _multi_label([rows[i] for i in scored], hits, tax)
        note = MULTI_PROBABILITY_NOTES[has_probs]
    else:
        y_true = [rows[i].label for i in scored]
        y_pred = [p.label for p in hits]
        has_probs = all(p.probs for p in hits)
        probs = np.stack([_probability_row(p.probs, p.label, k) for p in hits]) if has_probs else None
        report = classification_report(y_true, y_pred, probs, list(tax.classes),
                                       neighbours=tax.are_neighbours)
        note = PROBABILITY_NOTES[fmt if has_probs else None]
    n_site = counts["n_scored"] + counts["n_unpredicted"]
    report.update(counts)
    report.update({
        "coverage": counts["n_scored"] / n_site,
        "accuracy_unpredicted_as_wrong": (report["accuracy"] * counts["n_scored"]) / n_site,
        "predictions_format": fmt,
        "probabilities": note,
    })
    if not has_probs:
        (out / "reliability.png").unlink(missing_ok=True)  # an earlier run's plot would no longer be true
    from loscat_hf.evaluation.score_report import clear

    clear(out)  # a model's score report, and its record, must not sit beside a predictions CSV's report
    (out / EVALUATED_NAME).unlink(missing_ok=True)
    if multi:
        paths = write_multi_label_report(report, out, list(tax.classes), neighbours=tax.are_neighbours)
    else:
        paths = write_report(report, out, list(tax.classes))
    def listing(d: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"

    with open(paths["per_class_md"], "a", encoding="utf-8") as fh:
        fh.write(f"\nScored {counts['n_scored']} of {counts['n_truth']} ground-truth photos; without a "
                 f"usable prediction {counts['n_unpredicted']} ({listing(counts['unpredicted_by_reason'])}); "
                 f"non-site truth {counts['n_excluded_non_site']} ({listing(counts['excluded_by_code'])}); "
                 f"predictions without ground truth {counts['n_predictions_without_truth']}. Matched by: "
                 f"{listing(counts['matched_by'])}.\n\nProbabilities: {report['probabilities']}.\n")
    return PredictionsEvaluation(split="predictions", report=report, out_dir=out)
