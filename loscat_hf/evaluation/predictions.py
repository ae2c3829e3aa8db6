"""`evaluate_predictions()`: score any predictions CSV against a ground-truth CSV, with `evaluate`'s report.

So a clinic can compare the study's published model and a retrained one on the same labels. Predictions
formats, told apart by their header: loscat-hf `predict`'s (infer/folder.py; only status "ok" rows hold a
prediction; cells go back through `csvsafe.read_cell`) and the study's scripts/batch_inference.py
(image_path, pred_label, confidence; pred_label "ERROR" = no prediction, its error text in confidence).
The ground truth has an image column (image_path, image or file_name) and a region column (region or label)
in any spelling the taxonomy parses, study codes included; a non-site code ("unclear") excludes the photo.
Photos are matched by the exact string, then the normalised path (separators, './'), then the path resolved
against each CSV's own folder, then the last 4, 3 or 2 path components, then the bare file name, these two
only where the shorter path ends the longer one (patientA/IMG_1.jpg never meets /x/patientZ/IMG_1.jpg);
each step pairs only keys unique on both sides. A truth photo without a usable prediction is counted.

Image paths and file names can identify people: none appears in metrics.json, per_class.*, the plots or the
summary; the per-photo detail (how each photo matched, which had no usable prediction and why) is written to
OUT/private/ only (a 0700 folder of 0600 files, like a packed dataset's private/).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loscat_hf.data.annotations import normalise_column
from loscat_hf.data.dataset import DETAILS_NAME, PRIVATE_DIR
from loscat_hf.data.private import private_dir, private_open
from loscat_hf.defaults import EVALUATED_NAME
from loscat_hf.errors import LoscatError
from loscat_hf.evaluation.matching import MATCH_STEPS, match_photos
from loscat_hf.evaluation.split_eval import EvaluationResult
from loscat_hf.io.csvsafe import SafeWriter, decode_export, read_cell
from loscat_hf.taxonomy import RegionError, Taxonomy, load_taxonomy

logger = logging.getLogger(__name__)
__all__ = ["PredictionsEvaluation", "evaluate_predictions"]

LOSCAT_COLUMNS = ("image", "region", "status")  # infer/folder.py COLUMNS (evaluation does not import infer/)
LOSCAT_OK = "ok"  # folder.py's status of a row with a prediction; any other is an image problem kind
STUDY_COLUMNS = ("image_path", "pred_label", "confidence")
STUDY_ERROR = "ERROR"
TRUTH_IMAGE_COLUMNS = ("image_path", "image", "file_name")
TRUTH_REGION_COLUMNS = ("region", "label")
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


@dataclass
class _Row:
    """One CSV row: a truth photo (label or non-site code) or a prediction (label, or why there is none)."""

    row: int  # as a spreadsheet numbers it: header = row 1
    image: str  # as written
    text: str  # the region/prediction as written (private output only)
    label: int | None = None
    code: str | None = None  # truth: non-site code; prediction: why none ("error", a predict status)
    probs: dict[int, float] | None = None  # prediction: the class probabilities the CSV gives
    detail: str = ""  # error text of a failed prediction (private output only)


@dataclass
class PredictionsEvaluation(EvaluationResult):
    """`evaluate_predictions`' result: the report (metrics.json's content, with the matching counts)."""

    def summary(self) -> str:
        r = self.report
        return (f"{super().summary()}. Of {r['n_truth']} truth photos: {r['n_scored']} scored, "
                f"{r['n_unpredicted']} without a usable prediction, {r['n_excluded_non_site']} excluded "
                f"(non-site truth); {r['n_predictions_without_truth']} predictions have no truth. "
                f"Per-photo detail (private): {self.out_dir / PRIVATE_DIR / MATCHING_NAME}")


def _read_table(path: Path, what: str) -> tuple[list[str], list[str], list[tuple[int, dict[str, str]]]]:
    """(original header, normalised header, [(spreadsheet row, {normalised column: cell})]); blank rows
    skipped."""
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise LoscatError(f"{what} {path} {problem}; pass the CSV file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LoscatError(f"cannot read {what} {path}: {exc.strerror}") from None
    text = decode_export(raw, path, what).lstrip()
    if not text:
        raise LoscatError(f"{what} {path} is empty")
    sep = max((",", ";", "\t"), key=text.splitlines()[0].count)  # European Excel writes ';'
    try:
        records = list(csv.reader(io.StringIO(text), delimiter=sep))
    except csv.Error as exc:
        raise LoscatError(f"{what} {path} is not a valid CSV file: {exc}") from None
    header = [h.strip() for h in records[0]]
    names = [normalise_column(h) for h in header]
    rows = []
    for number, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) > len(header):
            raise LoscatError(f"{what} {path}, row {number} has {len(record)} fields but the header "
                              f"(row 1) has {len(header)} (a separator inside a value must be quoted)")
        cells: dict[str, str] = {}
        for name, cell in zip(names, record, strict=False):
            cells.setdefault(name, cell.strip())
        rows.append((number, cells))
    return header, names, rows


class _Parser:
    """Region strings -> class ids through the taxonomy, cached; errors name the CSV and the row."""

    def __init__(self, taxonomy: Taxonomy, path: Path, what: str) -> None:
        self.tax, self.path, self.what = taxonomy, path, what
        self.ids = taxonomy.label2id
        self.cache: dict[str, tuple[int | None, str | None]] = {}

    def error(self, row: int, reason: str) -> LoscatError:
        return LoscatError(f"{self.what} {self.path}, row {row}: {reason}")

    def parse(self, text: str, row: int) -> tuple[int | None, str | None]:
        """(class id, None) for a site, (None, code) for a non-site code."""
        if text not in self.cache:
            try:
                parsed = self.tax.parse(text)
            except RegionError as exc:
                raise self.error(row, str(exc)) from None
            self.cache[text] = (None, parsed.code) if parsed.code else (self.ids[parsed.label], None)
        return self.cache[text]

    def label(self, text: str, row: int) -> int:
        """A predicted class: a non-site code is no prediction of a class."""
        label, code = self.parse(text, row)
        if label is None:
            raise self.error(row, f"{text!r} is the non-site code {code!r}, not a predicted class")
        return label

    def probability(self, text: str, row: int, column: str) -> float | None:
        if not text:
            return None
        try:
            p = float(text)
        except ValueError:
            p = math.nan
        if not (math.isfinite(p) and -1e-6 <= p <= 1 + 1e-6):
            raise self.error(row, f"{column} {text!r} is not a probability between 0 and 1")
        return min(max(p, 0.0), 1.0)


def _dedupe(rows: list[_Row], parser: _Parser) -> list[_Row]:
    """One row per image string: a repeated identical row is dropped, a contradicting one refused."""
    first: dict[str, _Row] = {}
    for r in rows:
        seen = first.setdefault(r.image, r)
        if seen is not r and (seen.label, seen.code) != (r.label, r.code):
            raise parser.error(r.row, f"names the same photo as row {seen.row} with a different region; "
                                      "keep one")
    return list(first.values())


def _read_predictions(path: Path, tax: Taxonomy) -> tuple[str, list[_Row]]:
    header, names, rows = _read_table(path, "predictions CSV")
    parser = _Parser(tax, path, "predictions CSV")
    tops: list[int] = []
    if all(c in names for c in LOSCAT_COLUMNS):
        fmt = "loscat-hf"
        tops = sorted(int(m.group(1)) for n in names if (m := re.fullmatch(r"top(\d+)", n)))
    elif all(c in names for c in STUDY_COLUMNS):
        fmt = "study"
    else:
        raise LoscatError(f"predictions CSV {path} has columns {header}: neither loscat-hf predict's "
                          f"({', '.join(LOSCAT_COLUMNS)}, ...) nor the study's batch_inference.py "
                          f"({', '.join(STUDY_COLUMNS)})")
    out = []
    for number, cells in rows:
        if fmt == "loscat-hf":
            cells = {k: read_cell(v) for k, v in cells.items()}
            image, text, status = cells["image"], cells["region"], cells["status"]
        else:
            image, text = cells["image_path"], cells["pred_label"]
            status = "error" if text.upper() == STUDY_ERROR else LOSCAT_OK
        if not image:
            raise parser.error(number, "empty image")
        if status != LOSCAT_OK:
            detail = cells.get("error", "") if fmt == "loscat-hf" else cells.get("confidence", "")
            # a status is an image problem kind; anything else (a hand-edited cell) must not reach
            # metrics.json
            code = status if re.fullmatch(r"[a-z0-9_]{1,40}", status) else "other_status"
            out.append(_Row(number, image, text, code=code, detail=detail))
            continue
        label = parser.label(text, number)
        probs: dict[int, float] = {}
        if fmt == "study":
            p = parser.probability(cells["confidence"], number, "confidence")
            if p is not None:
                probs[label] = p
        else:
            for k in tops:
                top, p = cells.get(f"top{k}", ""), parser.probability(cells.get(f"top{k}_prob", ""), number,
                                                                      f"top{k}_prob")
                if top and p is not None:
                    probs.setdefault(parser.label(top, number), p)
            p = parser.probability(cells.get("probability", ""), number, "probability")
            if label not in probs and p is not None:
                probs[label] = p
        out.append(_Row(number, image, text, label=label, probs=probs if label in probs else None))
    return fmt, _dedupe(out, parser)


def _read_truth(path: Path, tax: Taxonomy) -> tuple[dict[str, str], list[_Row]]:
    header, names, rows = _read_table(path, "ground-truth CSV")
    parser = _Parser(tax, path, "ground-truth CSV")
    image_col = next((c for c in TRUTH_IMAGE_COLUMNS if c in names), None)
    region_col = next((c for c in TRUTH_REGION_COLUMNS if c in names), None)
    if image_col is None or region_col is None:
        raise LoscatError(f"ground-truth CSV {path} needs an image column ({', '.join(TRUTH_IMAGE_COLUMNS)}) "
                          f"and a region column ({', '.join(TRUTH_REGION_COLUMNS)}); it has {header}")
    out = []
    for number, cells in rows:
        image, text = cells.get(image_col, ""), cells.get(region_col, "")
        if not image:
            raise parser.error(number, "empty image")
        label, code = parser.parse(text, number)
        out.append(_Row(number, image, text, label=label, code=code))
    if not out:
        raise LoscatError(f"ground-truth CSV {path} has a header but no data rows")
    columns = {"image": header[names.index(image_col)], "region": header[names.index(region_col)]}
    return columns, _dedupe(out, parser)


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


def _write_private(out: Path, truth: list[_Row], preds: list[_Row], matched: dict[int, tuple[int, str]],
                   classes: tuple[str, ...], details: dict) -> Path:
    """OUT/private/matching.csv: every truth photo and every prediction without truth, with the outcome."""
    folder = private_dir(out / PRIVATE_DIR, exist_ok=True)
    path = folder / MATCHING_NAME
    with private_open(path) as fh:
        writer = SafeWriter(fh)
        writer.writerow(["outcome", "reason", "match", "truth_row", "image", "truth", "truth_class",
                         "prediction_row", "predicted_image", "prediction", "predicted_class", "correct",
                         "detail"])
        for i, t in enumerate(truth):
            j, how = matched.get(i, (None, ""))
            p = preds[j] if j is not None else None
            outcome, reason = _outcome(t, p)
            writer.writerow([outcome, reason, how, t.row, t.image, t.text,
                             "" if t.label is None else classes[t.label], "" if p is None else p.row,
                             "" if p is None else p.image, "" if p is None else p.text,
                             "" if p is None or p.label is None else classes[p.label],
                             "" if outcome != "scored" else str(t.label == p.label).lower(),
                             "" if p is None else p.detail])
        used = {j for j, _ in matched.values()}
        for j, p in enumerate(preds):
            if j not in used:
                writer.writerow(["prediction_without_truth", p.code or "", "", "", "", "", "", p.row, p.image,
                                 p.text, "" if p.label is None else classes[p.label], "", p.detail])
    with private_open(folder / DETAILS_NAME) as fh:
        fh.write(json.dumps(details, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


def _outcome(t: _Row, p: _Row | None) -> tuple[str, str]:
    if t.code is not None:
        return "excluded_non_site", t.code
    if p is None:
        return "unpredicted", "no_prediction"
    if p.label is None:
        return "unpredicted", p.code or "no_prediction"
    return "scored", ""


def evaluate_predictions(predictions: str | os.PathLike, truth: str | os.PathLike, out: str | os.PathLike,
                         taxonomy: str | os.PathLike | Taxonomy | None = None) -> PredictionsEvaluation:
    """Score a predictions CSV (loscat-hf predict's or the study's) against a ground-truth CSV; write `out`.

    `out` gets evaluate's report (metrics.json with the matching counts n_truth, n_scored, n_unpredicted,
    n_excluded_non_site, n_predictions_without_truth; per_class.csv/md; confusion matrix, per-class F1 and,
    where the CSV has probabilities, reliability plots) and private/ with the per-photo detail.
    """
    from loscat_hf.evaluation.metrics import classification_report, write_report

    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    pred_path, truth_path, out = Path(predictions), Path(truth), Path(out)
    fmt, preds = _read_predictions(pred_path, tax)
    truth_columns, rows = _read_truth(truth_path, tax)
    logger.info("predictions: %s format, %d rows; ground truth: %d photos (columns %s)", fmt, len(preds),
                len(rows), ", ".join(truth_columns.values()))
    if out.exists() and not out.is_dir():
        raise LoscatError(f"out {out} is a file; give a folder for the report", param="out")
    out.mkdir(parents=True, exist_ok=True)
    matched = match_photos([r.image for r in rows], [r.image for r in preds], truth_path.parent,
                           pred_path.parent)
    details = {"predictions": str(pred_path.resolve()), "truth": str(truth_path.resolve()),
               "predictions_format": fmt, "truth_columns": truth_columns}
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
    y_true = [rows[i].label for i in scored]
    hits = [preds[matched[i][0]] for i in scored]
    y_pred = [p.label for p in hits]
    k = len(tax.classes)
    has_probs = all(p.probs for p in hits)
    probs = np.stack([_probability_row(p.probs, p.label, k) for p in hits]) if has_probs else None
    report = classification_report(y_true, y_pred, probs, list(tax.classes), neighbours=tax.are_neighbours)
    n_site = counts["n_scored"] + counts["n_unpredicted"]
    report.update(counts)
    report.update({
        "coverage": counts["n_scored"] / n_site,
        "accuracy_unpredicted_as_wrong": (report["accuracy"] * counts["n_scored"]) / n_site,
        "predictions_format": fmt,
        "probabilities": PROBABILITY_NOTES[fmt if has_probs else None],
    })
    if probs is None:
        (out / "reliability.png").unlink(missing_ok=True)  # an earlier run's plot would no longer be true
    from loscat_hf.evaluation.score_report import clear

    clear(out)  # a model's score report, and its record, must not sit beside a predictions CSV's report
    (out / EVALUATED_NAME).unlink(missing_ok=True)
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
