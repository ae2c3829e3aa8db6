"""The two CSVs `evaluate --predictions --truth` reads: a predictions CSV (loscat-hf predict's or the study's
batch_inference.py's, told apart by their header) and a ground-truth CSV, each row parsed through the taxonomy
with the CSV's name and row number in every error. `predictions.py` matches and scores them.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from loscat_hf.data.annotations import normalise_column
from loscat_hf.defaults import REGIONS_COLUMN
from loscat_hf.errors import LoscatError
from loscat_hf.io.csvsafe import decode_export, read_cell
from loscat_hf.taxonomy import RegionError, Taxonomy, split_set

LOSCAT_COLUMNS = ("image", "region", "status")  # infer/folder.py COLUMNS (evaluation does not import infer/)
LOSCAT_OK = "ok"  # folder.py's status of a row with a prediction; any other is an image problem kind
STUDY_COLUMNS = ("image_path", "pred_label", "confidence")
STUDY_ERROR = "ERROR"
TRUTH_IMAGE_COLUMNS = ("image_path", "image", "file_name")
TRUTH_REGION_COLUMNS = ("region", "label")


@dataclass
class Row:
    """One CSV row: a truth photo (label or non-site code) or a prediction (label, or why there is none)."""

    row: int  # as a spreadsheet numbers it: header = row 1
    image: str  # as written
    text: str  # the region/prediction as written (private output only)
    label: int | None = None
    code: str | None = None  # truth: non-site code; prediction: why none ("error", a predict status)
    labels: tuple[int, ...] = ()  # every class of the photo (truth) or every region shown (prediction)
    regions: tuple[int, ...] | None = None  # prediction: its `regions` cell (None: the CSV has none)
    probs: dict[int, float] | None = None  # prediction: the class probabilities the CSV gives
    detail: str = ""  # error text of a failed prediction (private output only)


def read_table(path: Path, what: str) -> tuple[list[str], list[str], list[tuple[int, dict[str, str]]]]:
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


class Parser:
    """Region strings -> class ids through the taxonomy, cached; errors name the CSV and the row."""

    def __init__(self, taxonomy: Taxonomy, path: Path, what: str) -> None:
        self.tax, self.path, self.what = taxonomy, path, what
        self.ids = taxonomy.label2id
        self.cache: dict = {}  # text -> (id, code); ('many', text) -> (ids, code)

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

    def classes(self, text: str, row: int) -> tuple[tuple[int, ...], str | None]:
        """A cell that may name several sites ('Left thigh; L leg'): (class ids in taxonomy order, None), or
        ((), code) for a non-site code."""
        key = ("many", text)
        if key not in self.cache:
            try:
                parsed = self.tax.parse_many(text)
            except RegionError as exc:
                raise self.error(row, str(exc)) from None
            codes = [p.code for p in parsed if p.code]
            ids = tuple(sorted({self.ids[p.label] for p in parsed if not p.code}))
            self.cache[key] = ((), codes[0]) if codes else (ids, None)
        return self.cache[key]

    def regions(self, text: str, row: int) -> tuple[int, ...]:
        """A predicted `regions` cell: class ids (sorted; empty when no region passed its threshold)."""
        return tuple(sorted({self.label(part, row) for part in split_set(text)}))

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


def dedupe(rows: list[Row], parser: Parser) -> list[Row]:
    """One row per image string: a repeated identical row is dropped, a contradicting one refused."""
    first: dict[str, Row] = {}
    for r in rows:
        seen = first.setdefault(r.image, r)
        if seen is not r and (seen.label, seen.code, seen.labels, seen.regions) != (r.label, r.code, r.labels,
                                                                                      r.regions):
            raise parser.error(r.row, f"names the same photo as row {seen.row} with a different region; "
                                      "keep one")
    return list(first.values())


def read_predictions(path: Path, tax: Taxonomy) -> tuple[str, list[Row]]:
    header, names, rows = read_table(path, "predictions CSV")
    parser = Parser(tax, path, "predictions CSV")
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
            shown = cells.get(REGIONS_COLUMN)
        else:
            image, text, shown = cells["image_path"], cells["pred_label"], None
            status = "error" if text.upper() == STUDY_ERROR else LOSCAT_OK
        if not image:
            raise parser.error(number, "empty image")
        if status != LOSCAT_OK:
            detail = cells.get("error", "") if fmt == "loscat-hf" else cells.get("confidence", "")
            # a status is an image problem kind; anything else (a hand-edited cell) must not reach
            # metrics.json
            code = status if re.fullmatch(r"[a-z0-9_]{1,40}", status) else "other_status"
            out.append(Row(number, image, text, code=code, detail=detail))
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
        out.append(Row(number, image, text, label=label, probs=probs if label in probs else None,
                       labels=(label,), regions=None if shown is None else parser.regions(shown, number)))
    return fmt, dedupe(out, parser)


def multi_region_model(p: Row) -> bool:
    """Whether a prediction row is a multi-region model's, in a CSV with a `regions` column: its `regions` are
    not its one top class (other classes, or none: a single-region model always writes its region there, so an
    answered row with no region passing comes from a multi-region model), or its top-k scores add up to more
    than a softmax can (per-class sigmoid scores)."""
    return p.regions is not None and p.label is not None and (
        p.regions != (p.label,) or sum((p.probs or {}).values()) > 1.01)


def read_truth(path: Path, tax: Taxonomy) -> tuple[dict[str, str], list[Row]]:
    header, names, rows = read_table(path, "ground-truth CSV")
    parser = Parser(tax, path, "ground-truth CSV")
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
        labels, code = parser.classes(text, number)
        out.append(Row(number, image, text, label=labels[0] if len(labels) == 1 else None, code=code,
                       labels=labels))
    if not out:
        raise LoscatError(f"ground-truth CSV {path} has a header but no data rows")
    columns = {"image": header[names.index(image_col)], "region": header[names.index(region_col)]}
    return columns, dedupe(out, parser)
