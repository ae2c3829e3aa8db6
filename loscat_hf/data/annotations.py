"""Read a grading platform's CSV export (one row per rating) into valid ratings; consensus.py decides.

Clinical exports are messy: several raters per photo, repeated rows, free-text regions, photos marked as
poor quality. Everything that is dropped is kept as a `Problem` with its reason, so a user can fix the
export instead of silently training on less (or wrong) data.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from loscat_hf.data.score_tables import SCORE_PREFIX
from loscat_hf.errors import LoscatError, Problem
from loscat_hf.io.csvsafe import decode_export, read_cell
from loscat_hf.taxonomy import ParsedRegion, RegionError, Taxonomy

REQUIRED_COLUMNS = ("image", "patient_id", "region")
OPTIONAL_COLUMNS = ("rater", "visit", "quality", "labelled_at")  # labelled_at: `loscat-hf label` writes it
# Names the packed dataset defines itself: a kept column may not shadow them.
RESERVED_COLUMNS = frozenset(REQUIRED_COLUMNS + OPTIONAL_COLUMNS + ("file_name", "label", "site", "image_id"))
EXCLUDED_QUALITY = frozenset({"exclude", "poor"})
RATING_COLUMNS = ("image", "rater", "site", "label")


class Rating(NamedTuple):
    """One valid rating: a CSV row whose region parsed (site name or non-site code)."""

    row: int
    image: str
    patient_id: str
    rater: str
    site: str  # site name, or the non-site code; several sites ';'-joined (taxonomy order)
    vote: str  # class name, or the non-site code; several classes ';'-joined (taxonomy order)


@dataclass
class RatingsExport:
    """What the export holds, before any consensus: valid ratings, dropped rows, per-photo kept columns."""

    ratings: list[Rating]
    problems: list[Problem]  # rows dropped while reading, with why
    first_row: dict[str, int]  # image -> first spreadsheet row naming it
    extra_values: dict[str, dict[str, list[str]]]  # image -> column -> values seen (visit, kept columns)
    n_rows: int
    has_rater: bool
    dropped_columns: list[str] = field(default_factory=list)  # columns left out (allow-list)
    kept_columns: list[str] = field(default_factory=list)
    source: str = ""
    superseded: int = 0  # answers replaced by the same rater's later answer (exports with labelled_at)


def normalise_column(name: str) -> str:
    """'Patient ID ' -> 'patient_id': exports differ in case, spaces and separators, not in meaning."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


def normalise_image_path(path: str) -> str:
    """Forward slashes, no './' prefix or doubled separators: the same photo must get the same key."""
    text = str(path).strip().replace("\\", "/")
    text = re.sub(r"/{2,}", "/", text)
    while text.startswith("./"):
        text = text[2:]
    return text


def read_export(path: Path, what: str = "annotation file",
                required: Sequence[str] = REQUIRED_COLUMNS) -> pd.DataFrame:
    """Read all cells of a clinic's CSV as text, indexed by spreadsheet row; every failure is a LoscatError
    naming `what` (the annotation export, `loscat-hf label --patients`)."""
    if not path.exists():
        raise LoscatError(f"{what} {path} does not exist")
    if path.is_dir():
        raise LoscatError(f"{what} {path} is a folder; pass the CSV file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LoscatError(f"cannot read {what} {path}: {exc.strerror}") from None
    text = decode_export(raw, path, what)
    if not text.strip():
        raise LoscatError(f"{what} {path} is empty; expected a header with {list(required)}")
    header = text.lstrip().splitlines()[0]
    sep = max((",", ";", "\t"), key=header.count)  # European Excel uses ';'
    try:
        with warnings.catch_warnings():
            # index_col=False + warning as error: pandas would otherwise silently turn surplus fields
            # into an index and shift every column of the file.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False,
                index_col=False,
            )
    except pd.errors.EmptyDataError:
        raise LoscatError(f"{what} {path} is empty") from None
    except (pd.errors.ParserWarning, pd.errors.ParserError, ValueError) as exc:
        detail = _long_row(text, sep) or str(exc).strip()
        raise LoscatError(f"{what} {path} is not a valid CSV file: {detail}") from None
    # Index = the row a spreadsheet shows (header = row 1, blank rows counted), then blank rows dropped:
    # every message's row number is where the user finds the row in Excel.
    frame.index = range(2, len(frame) + 2)
    return frame[frame.apply(lambda col: col.str.strip() != "").any(axis=1)]  # column-wise: no per-row Python


def column_cells(frame: pd.DataFrame, columns: dict[str, str], name: str) -> list[str]:
    """A column's cells (normalised name, as `map_columns` maps it), trimmed, with csvsafe's apostrophe undone
    (a file loscat-hf wrote reads back as written); empty cells for a column the CSV lacks."""
    if name not in columns:
        return [""] * len(frame)
    return [read_cell(str(v).strip()) for v in frame[columns[name]].tolist()]


def _long_row(text: str, sep: str) -> str | None:
    """Name the first row that has more fields than the header (as a spreadsheet numbers it), for the
    error."""
    try:
        rows = csv.reader(io.StringIO(text.lstrip()), delimiter=sep)
        header = next(rows, [])
        for number, row in enumerate(rows, start=2):
            if len(row) > len(header):
                return (f"row {number} has {len(row)} fields but the header (row 1) has {len(header)} "
                        "(a separator inside a value must be quoted)")
    except csv.Error:
        pass
    return None


def map_columns(frame: pd.DataFrame, path: Path, what: str = "annotation file",
                required: Sequence[str] = REQUIRED_COLUMNS) -> dict[str, str]:
    """Normalised name -> the CSV's own column name; drop unnamed empty columns (trailing commas)."""
    mapping: dict[str, str] = {}
    for column in frame.columns:
        name = normalise_column(column)
        if str(column).startswith("Unnamed:") and not frame[column].str.strip().any():
            continue
        if not name:
            name = f"column_{len(mapping) + 1}"
        if name in mapping:
            raise LoscatError(
                f"{what} {path} has two columns that both mean {name!r}: {mapping[name]!r} and {column!r}"
            )
        mapping[name] = column
    missing = [c for c in required if c not in mapping]
    if missing:
        optional = (f"; optional: {list(OPTIONAL_COLUMNS)} and any per-photo columns such as skin_tone"
                    if required == REQUIRED_COLUMNS else "")
        raise LoscatError(
            f"{what} {path} lacks required column(s) {missing}. Found columns: "
            f"{[str(c) for c in frame.columns]}. Required: {list(required)} (any case/spacing){optional}"
        )
    return mapping


def read_ratings(csv_path: str | Path, taxonomy: Taxonomy,
                 keep_columns: str | Sequence[str] | None = ()) -> RatingsExport:
    """Read the rating CSV into valid ratings, dropped rows with reasons, and each photo's kept columns.

    Columns are an allow-list: besides the ones loscat-hf defines (image, patient_id, region, rater, visit,
    quality) only `keep_columns` (e.g. skin_tone) are carried per photo; every other column is dropped and
    named in `dropped_columns`, so a PatientName or Geburtsdatum column never reaches the dataset.

    Rows: quality 'exclude'/'poor' -> dropped; empty image/patient_id/region -> dropped; unknown region
    spelling -> dropped (reason lists valid names). A region cell may name several sites separated by ';'
    (a lesion spanning thigh and leg): one rating of that set (`Taxonomy.parse_many`).
    Without a rater column (or with an empty rater cell) each
    row is its own anonymous rater 'row<N>'. With a `labelled_at` column (`loscat-hf label`'s CSV) a rater's
    later answer for a photo replaces their earlier ones (`superseded_rows`; counted in `superseded`).
    Otherwise, per photo and rater: a repeated identical region counts once; different regions from one rater
    are contradictory, so all of that rater's ratings of the photo are dropped (by consensus.py, which also
    excludes a photo labelled for two patients).
    """
    path = Path(csv_path)
    frame = read_export(path)
    if frame.empty:
        raise LoscatError(f"annotation file {path} has a header but no data rows")
    columns = map_columns(frame, path)
    source = str(path)
    n_rows = len(frame)
    row_numbers = frame.index.tolist()  # spreadsheet rows
    has_rater = "rater" in columns
    kept_columns = _kept_columns(keep_columns, columns, path)
    extra_names = (["visit"] if "visit" in columns else []) + kept_columns
    dropped_columns = [str(columns[n]) for n in columns
                       if n not in RESERVED_COLUMNS and n not in kept_columns]

    def column(name: str) -> list[str]:
        return column_cells(frame, columns, name)

    images = [normalise_image_path(v) for v in column("image")]
    patients, regions = column("patient_id"), column("region")
    raters, qualities = column("rater"), column("quality")
    extras_cols = {name: column(name) for name in extra_names}  # includes visit
    superseded = (superseded_rows([(im, r) if im and r else None
                                   for im, r in zip(images, raters, strict=True)],
                                  column("labelled_at")) if has_rater and "labelled_at" in columns else set())

    problems: list[Problem] = []
    parsed_cache: dict[str, tuple[ParsedRegion, ...] | str] = {}
    first_row: dict[str, int] = {}
    extra_values: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    valid: list[Rating] = []

    for i in range(n_rows):
        row = row_numbers[i]
        image = images[i]
        if image:
            first_row.setdefault(image, row)
            for name, values in extras_cols.items():
                if values[i]:
                    extra_values[image][name].append(values[i])
        if i in superseded:
            continue
        if qualities[i].lower() in EXCLUDED_QUALITY:
            problems.append(Problem("quality_excluded", source, f"quality is {qualities[i]!r}", row))
            continue
        empty = [n for n, v in (("image", image), ("patient_id", patients[i]), ("region", regions[i]))
                 if not v]
        if empty:
            problems.append(Problem("missing_value", source, f"empty {', '.join(empty)}", row))
            continue
        text = regions[i]
        if text not in parsed_cache:
            try:
                parsed_cache[text] = taxonomy.parse_many(text)
            except RegionError as exc:
                parsed_cache[text] = str(exc)
        parsed = parsed_cache[text]
        if isinstance(parsed, str):
            problems.append(Problem("unknown_region", source, parsed, row))
            continue
        if len(parsed) == 1:
            site = parsed[0].code or parsed[0].site or ""
            vote = parsed[0].code or parsed[0].label or ""
        elif len({p.label for p in parsed}) == 1:  # 'Left thigh; Right thigh': one region, side unknown
            site = vote = parsed[0].label or ""
        else:  # several regions ('Left thigh; Left leg'): one rating of a set
            site = taxonomy.join(p.site for p in parsed)
            vote = taxonomy.join(p.label for p in parsed)
        rater = raters[i] if has_rater and raters[i] else f"row{row}"
        valid.append(Rating(row, image, patients[i], rater, site, vote))
    return RatingsExport(
        ratings=valid, problems=problems, first_row=first_row,
        extra_values={k: dict(v) for k, v in extra_values.items()}, n_rows=n_rows, has_rater=has_rater,
        dropped_columns=dropped_columns, kept_columns=kept_columns, source=source, superseded=len(superseded))


def superseded_rows(keys: Sequence[tuple[str, str] | None], times: Sequence[str]) -> set[int]:
    """Positions of answers that a later answer replaces: all but the latest per key ((image, rater); None:
    never replaced). `loscat-hf label` never rewrites its CSV, so a changed answer is a new row.

    Latest by `labelled_at` when every answer of the key has a readable ISO 8601 time; else by position (in a
    file the labelling app wrote, file order is the order of the answers; a spreadsheet that re-saved the file
    may have rewritten the times as `27/11/2026 10:05`, which is not read as a time)."""
    stamps = pd.to_datetime(pd.Series(list(times), dtype=str), utc=True, errors="coerce", format="ISO8601")
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        if key is not None:
            groups[key].append(i)
    replaced: set[int] = set()
    for members in groups.values():
        if len(members) > 1:
            timed = not any(pd.isna(stamps[i]) for i in members)
            keep = max(members, key=lambda i: (stamps[i], i)) if timed else members[-1]
            replaced.update(m for m in members if m != keep)
    return replaced


def parse_keep_columns(text: str | Sequence[str] | None) -> list[str]:
    """'skin_tone, Fitzpatrick' (or a list) -> normalised names ['skin_tone', 'fitzpatrick']."""
    if not text:
        return []
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in str(t).split(",")]
    return list(dict.fromkeys(normalise_column(p) for p in parts if p.strip()))


def _kept_columns(keep_columns: str | Sequence[str] | None, columns: dict[str, str], path: Path) -> list[str]:
    """The user's keep_columns, checked against the CSV: a typo must not silently keep nothing."""
    wanted = parse_keep_columns(keep_columns)
    reserved = [c for c in wanted if c in RESERVED_COLUMNS or c.startswith(SCORE_PREFIX)]
    if reserved:
        raise LoscatError(
            f"keep_columns {', '.join(reserved)}: loscat-hf writes these columns itself "
            "(score_* come from the scores table); keep only extra per-photo columns such as skin_tone",
            param="keep_columns"
        )
    missing = [c for c in wanted if c not in columns]
    if missing:
        extra = [str(columns[n]) for n in columns if n not in RESERVED_COLUMNS]
        raise LoscatError(
            f"keep_columns {', '.join(missing)}: no such column in {path} (its extra columns: "
            f"{', '.join(extra) or 'none'})", param="keep_columns"
        )
    return wanted






