"""LoSCAT score table -> per-photo score targets (`prepare --scores`).

Why a module of its own: the clinical score table is keyed by patient, visit and site, not by photo; joining
it onto photos, and refusing a table that would silently train on wrong targets, is one job.
Missing values stay missing (an empty cell in metadata.csv), never 0: 0 is a real score ("no activity").
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

import pandas as pd

from loscat_hf.errors import LoscatError
from loscat_hf.regions import RegionError, Taxonomy

# component -> allowed values (mLoSSI: erythema, skin_thickness, new_extension; LoSDI: the last three)
COMPONENTS: dict[str, tuple[int, ...]] = {
    "erythema": (0, 1, 2, 3),
    "skin_thickness": (0, 1, 2, 3),
    "new_extension": (0, 3),
    "dermal_atrophy": (0, 1, 2, 3),
    "subcutaneous_atrophy": (0, 1, 2, 3),
    "dyspigmentation": (0, 1, 2, 3),
}
MLOSSI = ("erythema", "skin_thickness", "new_extension")
LOSDI = ("dermal_atrophy", "subcutaneous_atrophy", "dyspigmentation")
KEY_COLUMNS = ("patient_id", "visit", "site")
SCORE_PREFIX = "score_"


def score_column(component: str) -> str:
    return SCORE_PREFIX + component


@dataclass
class ScoreTable:
    """Scores per (patient_id, visit, site); a value is None where the table leaves it empty."""

    rows: dict[tuple[str, str, str], dict[str, float | None]]
    components: tuple[str, ...] = tuple(COMPONENTS)


@dataclass
class AttachResult:
    """Items with score_* extras, and which photos found no row in the table."""

    items: list
    n_matched: int
    unmatched: list[str] = field(default_factory=list)  # "image (patient, visit, site)"


def _cell(value, component: str, row: int) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        raise LoscatError(f"score table row {row}: {component} {value!r} is not a number") from None
    if number not in COMPONENTS[component]:
        allowed = ", ".join(str(v) for v in COMPONENTS[component])
        raise LoscatError(f"score table row {row}: {component} {value!r} is out of range (allowed: {allowed})")
    return number


def read_score_table(path: str | os.PathLike, taxonomy: Taxonomy) -> ScoreTable:
    """Read and validate the LoSCAT score CSV; raise LoscatError naming the row of any bad value.

    Sites are parsed with the taxonomy (any spelling a rater may use); a duplicate (patient, visit, site)
    is an error, because choosing one of two conflicting scores silently would corrupt the targets.
    """
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LoscatError(f"cannot read score table {path}: {exc}") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in (*KEY_COLUMNS, *COMPONENTS) if c not in df.columns]
    if missing:
        raise LoscatError(
            f"score table {path} lacks column(s) {', '.join(missing)}; it needs "
            f"{', '.join((*KEY_COLUMNS, *COMPONENTS))}"
        )
    rows: dict[tuple[str, str, str], dict[str, float | None]] = {}
    first_row: dict[tuple[str, str, str], int] = {}
    for i, rec in enumerate(df.to_dict("records")):
        row = i + 2  # 1-based, after the header
        pid, visit = rec["patient_id"].strip(), rec["visit"].strip()
        if not pid:
            raise LoscatError(f"score table row {row}: empty patient_id")
        try:
            parsed = taxonomy.parse(rec["site"])
        except RegionError as exc:
            raise LoscatError(f"score table row {row}: {exc}") from None
        if parsed.site is None:
            raise LoscatError(f"score table row {row}: {rec['site']!r} is not a site")
        key = (pid, visit, parsed.site)
        if key in rows:
            raise LoscatError(
                f"score table row {row} repeats row {first_row[key]} (patient {pid}, visit {visit!r}, "
                f"site {parsed.site}): keep one row per patient, visit and site"
            )
        rows[key] = {c: _cell(rec[c], c, row) for c in COMPONENTS}
        first_row[key] = row
    return ScoreTable(rows)


def _fmt(value: float | None) -> str:
    return "" if value is None else str(int(value))


def attach_scores(items: list, table: ScoreTable) -> AttachResult:
    """Copy each photo's scores into `extra` as score_<component> (empty string = missing).

    Photos are matched on patient_id, visit and site (the consensus 18-site name). Unmatched photos keep
    empty score cells (they still train the region head) and are listed for the user.
    """
    out, unmatched, n = [], [], 0
    for item in items:
        scores = table.rows.get((item.patient_id, item.visit, item.site))
        if scores is None:
            unmatched.append(f"{item.key} (patient {item.patient_id}, visit {item.visit!r}, site {item.site})")
            values = dict.fromkeys(table.components, None)
        else:
            n += 1
            values = scores
        extra = dict(item.extra)
        extra.update({score_column(c): _fmt(values[c]) for c in table.components})
        out.append(replace(item, extra=extra))
    return AttachResult(out, n, unmatched)


def scores_from_row(row: dict, components: tuple[str, ...] = tuple(COMPONENTS)) -> list[float]:
    """A dataset row's score_* cells as floats, NaN where missing (the loss masks NaN)."""
    values = []
    for c in components:
        text = row.get(score_column(c))
        values.append(float(text) if text not in (None, "") else float("nan"))
    return values
