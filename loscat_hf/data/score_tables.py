"""The LoSCAT score table: the package's one reader and validation, and its join onto photos.

Why a module of its own: the clinical score table is keyed by patient, visit and site, not by photo; reading
it, refusing a table that would silently give wrong targets or totals, and joining it onto photos is one job.
`prepare --scores`, `link` and `evaluate-ensemble --scores` all read the table through `read_score_table`,
so they accept and refuse the same tables and agree on every number.

Rules (docs/scores.md, "Score table format"): an empty cell is missing (None), never 0, because 0 is a real
score ("no activity"); a value outside its component's levels, a non-number and a repeated (patient, visit,
site) are refused, every bad row named by its spreadsheet row number (the header is row 1). A total (mLoSSI,
LoSDI) is the sum of the components present: missing ones are left out and counted, and a total whose
components are all missing is itself missing (the convention of `score_metrics.visit_totals`).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Literal

from loscat_hf.errors import LoscatError
from loscat_hf.io.csvsafe import decode_export
from loscat_hf.taxonomy import SET_SEPARATOR, RegionError, Taxonomy

# component -> allowed values (mLoSSI: erythema, skin_thickness, new_extension; LoSDI: the last three)
COMPONENTS: dict[str, tuple[int, ...]] = {
    "erythema": (0, 1, 2, 3),
    "skin_thickness": (0, 1, 2, 3),
    "new_extension": (0, 3),
    "dermal_atrophy": (0, 1, 2, 3),
    "subcutaneous_atrophy": (0, 1, 2, 3),
    "dyspigmentation": (0, 1, 2, 3),
}
MLOSSI = ("erythema", "skin_thickness", "new_extension")  # activity
LOSDI = ("dermal_atrophy", "subcutaneous_atrophy", "dyspigmentation")  # damage
KEY_COLUMNS = ("patient_id", "visit", "site")
SCORE_COLUMNS = (*KEY_COLUMNS, *COMPONENTS)  # the table's required columns, in this order
SCORE_PREFIX = "score_"
MAX_LISTED_PROBLEMS = 10  # bad rows named in one error message; the rest are counted


def score_column(component: str) -> str:
    return SCORE_PREFIX + component


@dataclass(frozen=True)
class ScoreRow:
    """One row of the table as read: `site`/`label` are None when the taxonomy does not know the site."""

    row: int  # spreadsheet row number (header = 1)
    patient_id: str
    visit: str
    site_text: str  # as written in the table
    site: str | None
    label: str | None
    values: dict[str, float | None]

    @property
    def n_missing(self) -> int:
        return sum(v is None for v in self.values.values())


@dataclass
class ScoreTable:
    """Scores per (patient_id, visit, site); a value is None where the table leaves it empty.

    `records` are the rows with a known site in file order; `unknown_sites` the rows whose site the
    taxonomy does not know (only with `read_score_table(..., unknown_sites="list")`).
    """

    records: list[ScoreRow] = field(default_factory=list)
    unknown_sites: list[ScoreRow] = field(default_factory=list)
    components: tuple[str, ...] = tuple(COMPONENTS)

    @cached_property
    def rows(self) -> dict[tuple[str, str, str], dict[str, float | None]]:
        """(patient_id, visit, site) -> component values, derived from `records` (keys are unique)."""
        return {(r.patient_id, r.visit, r.site): r.values for r in self.records}

    def missing_cells(self) -> dict[str, int]:
        """Empty cells per component over every row read (known and unknown sites)."""
        return {c: sum(r.values[c] is None for r in (*self.records, *self.unknown_sites))
                for c in self.components}


@dataclass
class AttachResult:
    """Items with score_* extras, and which photos found no row in the table."""

    items: list
    n_matched: int
    unmatched: list[str] = field(default_factory=list)  # "image (patient, visit, site)"
    several: int = 0  # photos showing several regions: left without score targets, not looked up


def total(values: Mapping[str, float | None], components: Iterable[str]) -> tuple[float | None, int]:
    """(sum of the components present, number missing); the sum is None when every component is missing."""
    present = [values[c] for c in components if values.get(c) is not None]
    missing = sum(values.get(c) is None for c in components)
    return (float(sum(present)) if present else None), missing


def _cell(value: str, component: str) -> tuple[float | None, str | None]:
    """(value, None), or (None, why it is refused); an empty cell is missing."""
    text = (value or "").strip()
    if not text:
        return None, None
    try:
        number = float(text)
    except ValueError:
        return None, f"{component} {text!r} is not a number (leave the cell empty for a missing value)"
    if math.isnan(number) or number not in COMPONENTS[component]:
        allowed = ", ".join(str(v) for v in COMPONENTS[component])
        return None, f"{component} {text!r} is out of range (allowed: {allowed})"
    return number, None


def _records(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(lower-cased header, [(spreadsheet row number, cells)]) with blank rows skipped but counted."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LoscatError(f"cannot read score table {path}: {exc.strerror or exc}") from None
    text = decode_export(raw, path, "score table")
    lines = text.lstrip().splitlines()
    if not lines:
        raise LoscatError(f"score table {path} is empty; it needs the columns {', '.join(SCORE_COLUMNS)}")
    sep = max((",", ";", "\t"), key=lines[0].count)  # European Excel writes ';'
    try:
        table = list(csv.reader(io.StringIO(text), delimiter=sep))
    except csv.Error as exc:
        raise LoscatError(f"score table {path} is not a valid CSV file: {exc}") from None
    rows = [(i, cells) for i, cells in enumerate(table, start=1) if any(c.strip() for c in cells)]
    if not rows:
        raise LoscatError(f"score table {path} is empty; it needs the columns {', '.join(SCORE_COLUMNS)}")
    header = [c.strip().lower() for c in rows[0][1]]
    return header, rows[1:]


def _problem_message(path: Path, problems: list[tuple[int, str]]) -> str:
    problems = sorted(problems)
    listed = "; ".join(f"row {row}: {why}" for row, why in problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    rows = len({row for row, _ in problems})
    return (f"score table {path}: {rows} bad row(s) (row 1 is the header): {listed}"
            f"{f'; and {more} more' if more > 0 else ''}. "
            "Fix these rows (an empty cell means missing) and rerun")


def read_score_table(path: str | os.PathLike, taxonomy: Taxonomy,
                     unknown_sites: Literal["refuse", "list"] = "refuse") -> ScoreTable:
    """Read and validate the LoSCAT score CSV; raise one LoscatError naming every bad row.

    Sites are parsed with the taxonomy (any spelling a rater may use). A duplicate (patient, visit, site)
    is refused, because keeping either of two scores (or adding both) would silently corrupt the targets
    and totals. With unknown_sites="list" a site the taxonomy does not know is kept aside in
    `ScoreTable.unknown_sites` (`link` reports them) instead of refused; its values are still validated.
    """
    path = Path(path)
    header, records = _records(path)
    missing = [c for c in SCORE_COLUMNS if c not in header]
    if missing:
        raise LoscatError(
            f"score table {path} lacks column(s) {', '.join(missing)}; it needs {', '.join(SCORE_COLUMNS)}"
        )
    at = {c: header.index(c) for c in SCORE_COLUMNS}
    problems: list[tuple[int, str]] = []
    first_row: dict[tuple[str, str, str], int] = {}
    known: list[ScoreRow] = []
    unknown: list[ScoreRow] = []
    for row, cells in records:
        if any(c.strip() for c in cells[len(header):]):  # trailing empty cells (Excel's ',,,') are fine
            problems.append((row, f"{len(cells)} cells but the header has {len(header)} columns"))
            continue
        rec = {c: (cells[i] if i < len(cells) else "").strip() for c, i in at.items()}
        pid, visit, site_text = rec["patient_id"], rec["visit"], rec["site"]
        values: dict[str, float | None] = {}
        for c in COMPONENTS:
            values[c], why = _cell(rec[c], c)
            if why:
                problems.append((row, why))
        if not pid:
            problems.append((row, "empty patient_id"))
            continue
        try:
            parsed = taxonomy.parse(site_text)
            why = None if parsed.site is not None else f"{site_text!r} is not a site"
        except RegionError as exc:
            parsed, why = None, str(exc)
        if why:
            if unknown_sites == "list":
                unknown_key = (pid, visit, " ".join(site_text.lower().split()))
                if unknown_key in first_row:
                    problems.append((row, _repeat(first_row[unknown_key], pid, visit, site_text)))
                    continue
                first_row[unknown_key] = row
                unknown.append(ScoreRow(row, pid, visit, site_text, None, None, values))
            else:
                problems.append((row, why))
            continue
        key = (pid, visit, parsed.site)
        if key in first_row:
            problems.append((row, _repeat(first_row[key], pid, visit, parsed.site)))
            continue
        first_row[key] = row
        known.append(ScoreRow(row, pid, visit, site_text, parsed.site, parsed.label, values))
    if problems:
        raise LoscatError(_problem_message(path, problems))
    return ScoreTable(records=known, unknown_sites=unknown)


def _repeat(first: int, pid: str, visit: str, site: str) -> str:
    return (f"repeats row {first} (patient {pid}, visit {visit!r}, site {site}): "
            "keep one row per patient, visit and site")


def format_score(value: float | None) -> str:
    """A component value as written to CSVs: an integer level, or empty for missing (never 0)."""
    return "" if value is None else str(int(value))


def attach_scores(items: list, table: ScoreTable) -> AttachResult:
    """Copy each photo's scores into `extra` as score_<component> (empty string = missing).

    Photos are matched on patient_id, visit and site (the consensus 18-site name). Unmatched photos keep
    empty score cells (they still train the region head) and are listed for the user. A photo showing several
    regions keeps empty score cells too (counted in `several`): the table scores one site per row, and no
    rule says which site's scores a photo spanning two sites shows, so the score heads learn from
    single-region photos only, as before.
    """
    out, unmatched, n, several = [], [], 0, 0
    for item in items:
        spans = SET_SEPARATOR in item.label
        scores = None if spans else table.rows.get((item.patient_id, item.visit, item.site))
        several += spans
        if spans:
            values = dict.fromkeys(table.components, None)
        elif scores is None:
            unmatched.append(f"{item.key} (patient {item.patient_id}, visit {item.visit!r}, "
                             f"site {item.site})")
            values = dict.fromkeys(table.components, None)
        else:
            n += 1
            values = scores
        extra = dict(item.extra)
        extra.update({score_column(c): format_score(values[c]) for c in table.components})
        out.append(replace(item, extra=extra))
    return AttachResult(out, n, unmatched, several)


def scores_from_row(row: dict, components: tuple[str, ...] = tuple(COMPONENTS)) -> list[float]:
    """A dataset row's score_* cells as floats, NaN where missing (the loss masks NaN)."""
    values = []
    for c in components:
        text = row.get(score_column(c))
        values.append(float(text) if text not in (None, "") else float("nan"))
    return values
