"""Read a grading platform's CSV export (one row per rating) and reduce it to one consensus label per photo.

Clinical exports are messy: several raters per photo, repeated rows, free-text regions, photos marked as
poor quality. Everything that is dropped is kept as a `Problem` with its reason, so a user can fix the
export instead of silently training on less (or wrong) data.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from loscat_hf.data.agreement import agreement_report
from loscat_hf.data.csvsafe import decode_export
from loscat_hf.data.score_tables import SCORE_PREFIX
from loscat_hf.errors import LoscatError, Problem
from loscat_hf.taxonomy import ParsedRegion, RegionError, Taxonomy

REQUIRED_COLUMNS = ("image", "patient_id", "region")
OPTIONAL_COLUMNS = ("rater", "visit", "quality")
# Names the packed dataset defines itself: a kept column may not shadow them.
RESERVED_COLUMNS = frozenset(REQUIRED_COLUMNS + OPTIONAL_COLUMNS + ("file_name", "label", "site", "image_id"))
EXCLUDED_QUALITY = frozenset({"exclude", "poor"})
RATING_COLUMNS = ("image", "rater", "site", "label")


@dataclass
class PhotoLabel:
    """The consensus label of one photo, plus what `prepare` needs to place it (patient, visit, metadata)."""

    image: str  # path as written in the CSV (relative to the images folder), with '/' separators
    patient_id: str
    visit: str  # "" when the CSV has no visit column/value
    site: str  # consensus 18-site name, or the class name when sides disagree / no side given
    label: str  # consensus class name
    n_ratings: int
    agreement: float  # share of the photo's valid votes that went to the winning label
    extra: dict[str, str] = field(default_factory=dict)  # the kept per-photo columns (--keep-columns)
    row: int | None = None  # first CSV data row of the photo, for messages


@dataclass
class ConsensusResult:
    """Everything `read_annotations` found: kept photos, dropped things with reasons, and agreement."""

    photos: list[PhotoLabel]
    problems: list[Problem]  # everything dropped, with why
    ratings: pd.DataFrame  # clean per-rating table (image, rater, site, label), codes included
    agreement: dict  # agreement_report(...) output
    n_rows: int  # data rows read
    # Kept but suspicious (e.g. "conflicting_extra": one photo with two skin_tone values); nothing dropped.
    warnings: list[Problem] = field(default_factory=list)
    # CSV columns neither loscat-hf defines nor the user kept: left out of everything written (allow-list).
    dropped_columns: list[str] = field(default_factory=list)
    kept_columns: list[str] = field(default_factory=list)  # normalised names of the kept extra columns

    def problem_counts(self) -> dict[str, int]:
        """Problems per kind, for a one-line console summary."""
        return dict(Counter(p.kind for p in self.problems))


class _Rating(NamedTuple):
    row: int
    image: str
    patient_id: str
    rater: str
    site: str  # site name, or the non-site code
    vote: str  # class name, or the non-site code


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


def _read_csv(path: Path) -> pd.DataFrame:
    """Read all cells as text; turn every way this can fail into a LoscatError the user can act on."""
    if not path.exists():
        raise LoscatError(f"annotation file {path} does not exist")
    if path.is_dir():
        raise LoscatError(f"annotation file {path} is a folder; pass the CSV file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LoscatError(f"cannot read annotation file {path}: {exc.strerror}") from None
    text = decode_export(raw, path, "annotation file")
    if not text.strip():
        raise LoscatError(f"annotation file {path} is empty; expected a header with {list(REQUIRED_COLUMNS)}")
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
        raise LoscatError(f"annotation file {path} is empty") from None
    except (pd.errors.ParserWarning, pd.errors.ParserError, ValueError) as exc:
        detail = _long_row(text, sep) or str(exc).strip()
        raise LoscatError(f"annotation file {path} is not a valid CSV file: {detail}") from None
    # Index = the row a spreadsheet shows (header = row 1, blank rows counted), then blank rows dropped:
    # every message's row number is where the user finds the row in Excel.
    frame.index = range(2, len(frame) + 2)
    return frame[frame.apply(lambda col: col.str.strip() != "").any(axis=1)]  # column-wise: no per-row Python


def _long_row(text: str, sep: str) -> str | None:
    """Name the first row that has more fields than the header (as a spreadsheet numbers it), for the error."""
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


def _map_columns(frame: pd.DataFrame, path: Path) -> dict[str, str]:
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
                f"annotation file {path} has two columns that both mean {name!r}: "
                f"{mapping[name]!r} and {column!r}"
            )
        mapping[name] = column
    missing = [c for c in REQUIRED_COLUMNS if c not in mapping]
    if missing:
        raise LoscatError(
            f"annotation file {path} lacks required column(s) {missing}. Found columns: "
            f"{[str(c) for c in frame.columns]}. Required: {list(REQUIRED_COLUMNS)} (any case/spacing); "
            f"optional: {list(OPTIONAL_COLUMNS)} and any per-photo columns such as skin_tone"
        )
    return mapping


def read_annotations(csv_path: str | Path, taxonomy: Taxonomy,
                     keep_columns: str | Sequence[str] | None = ()) -> ConsensusResult:
    """Read the rating CSV and return consensus labels, dropped rows/photos with reasons, and agreement.

    Columns are an allow-list: besides the ones loscat-hf defines (image, patient_id, region, rater, visit,
    quality) only `keep_columns` (e.g. skin_tone) are carried per photo; every other column is dropped and
    named in `dropped_columns`, so a PatientName or Geburtsdatum column never reaches the dataset.

    Rows: quality 'exclude'/'poor' -> dropped; empty image/patient_id/region -> dropped; unknown region
    spelling -> dropped (reason lists valid names). Without a rater column (or with an empty rater cell)
    each row is its own anonymous rater 'row<N>'. Per photo and rater: a repeated identical region counts
    once; different regions from one rater are contradictory, so all of that rater's ratings of the photo
    are dropped. A photo labelled for two patients is excluded (a mix-up would leak across the split).
    Consensus: majority vote over classes and non-site codes; a winning code or a tie excludes the photo.
    """
    path = Path(csv_path)
    frame = _read_csv(path)
    if frame.empty:
        raise LoscatError(f"annotation file {path} has a header but no data rows")
    columns = _map_columns(frame, path)
    source = str(path)
    n_rows = len(frame)
    row_numbers = frame.index.tolist()  # spreadsheet rows
    has_rater = "rater" in columns
    kept_columns = _kept_columns(keep_columns, columns, path)
    extra_names = (["visit"] if "visit" in columns else []) + kept_columns
    dropped_columns = [str(columns[n]) for n in columns if n not in RESERVED_COLUMNS and n not in kept_columns]

    def column(name: str) -> list[str]:
        if name not in columns:
            return [""] * n_rows
        return [str(v).strip() for v in frame[columns[name]].tolist()]

    images = [normalise_image_path(v) for v in column("image")]
    patients, regions = column("patient_id"), column("region")
    raters, qualities = column("rater"), column("quality")
    extras_cols = {name: column(name) for name in extra_names}  # includes visit

    problems: list[Problem] = []
    warnings: list[Problem] = []
    parsed_cache: dict[str, ParsedRegion | str] = {}
    first_row: dict[str, int] = {}
    extra_values: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    valid: list[_Rating] = []

    for i in range(n_rows):
        row = row_numbers[i]
        image = images[i]
        if image:
            first_row.setdefault(image, row)
            for name, values in extras_cols.items():
                if values[i]:
                    extra_values[image][name].append(values[i])
        if qualities[i].lower() in EXCLUDED_QUALITY:
            problems.append(Problem("quality_excluded", source, f"quality is {qualities[i]!r}", row))
            continue
        empty = [n for n, v in (("image", image), ("patient_id", patients[i]), ("region", regions[i])) if not v]
        if empty:
            problems.append(Problem("missing_value", source, f"empty {', '.join(empty)}", row))
            continue
        text = regions[i]
        if text not in parsed_cache:
            try:
                parsed_cache[text] = taxonomy.parse(text)
            except RegionError as exc:
                parsed_cache[text] = str(exc)
        parsed = parsed_cache[text]
        if isinstance(parsed, str):
            problems.append(Problem("unknown_region", source, parsed, row))
            continue
        site = parsed.code or parsed.site or ""
        vote = parsed.code or parsed.label or ""
        rater = raters[i] if has_rater and raters[i] else f"row{row}"
        valid.append(_Rating(row, image, patients[i], rater, site, vote))

    by_image: dict[str, list[_Rating]] = defaultdict(list)
    for rating in valid:
        by_image[rating.image].append(rating)

    kept: list[_Rating] = []
    photo_patient: dict[str, str] = {}
    for image, group in by_image.items():
        ids = list(dict.fromkeys(r.patient_id for r in group))
        if len(ids) > 1:
            problems.append(Problem(
                "two_patients", image,
                f"image is labelled for patients {' and '.join(map(repr, ids))}; photo excluded "
                f"(fix the patient_id in rows {', '.join(str(r.row) for r in group)})",
                group[0].row,
            ))
            continue
        photo_patient[image] = ids[0]
        kept.extend(_one_rating_per_rater(image, group, source, problems))

    ratings = pd.DataFrame(
        [(r.image, r.rater, r.site, r.vote) for r in kept], columns=list(RATING_COLUMNS), dtype=str
    )
    by_image_kept: dict[str, list[_Rating]] = defaultdict(list)
    for rating in kept:
        by_image_kept[rating.image].append(rating)

    photos: list[PhotoLabel] = []
    for image in sorted(by_image_kept, key=first_row.__getitem__):
        group = by_image_kept[image]
        extra = _photo_extras(image, extra_values.get(image, {}), warnings, first_row[image])
        visit = extra.pop("visit", "")
        outcome = _consensus(group, taxonomy)
        if isinstance(outcome, Problem):
            problems.append(Problem(outcome.kind, image, outcome.reason, first_row[image]))
            continue
        site, label, agreement = outcome
        photos.append(PhotoLabel(
            image=image, patient_id=photo_patient[image], visit=visit, site=site, label=label,
            n_ratings=len(group), agreement=agreement, extra=extra, row=first_row[image],
        ))

    report = agreement_report(ratings, taxonomy.classes, pairwise=has_rater)
    return ConsensusResult(
        photos=photos, problems=problems, ratings=ratings, agreement=report, n_rows=n_rows, warnings=warnings,
        dropped_columns=dropped_columns, kept_columns=kept_columns,
    )


def parse_keep_columns(text: str | Sequence[str] | None) -> list[str]:
    """'skin_tone, Fitzpatrick' (or a list) -> normalised names ['skin_tone', 'fitzpatrick']."""
    if not text:
        return []
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in str(t).split(",")]
    return list(dict.fromkeys(normalise_column(p) for p in parts if p.strip()))


def _kept_columns(keep_columns: str | Sequence[str] | None, columns: dict[str, str], path: Path) -> list[str]:
    """The user's --keep-columns, checked against the CSV: a typo must not silently keep nothing."""
    wanted = parse_keep_columns(keep_columns)
    reserved = [c for c in wanted if c in RESERVED_COLUMNS or c.startswith(SCORE_PREFIX)]
    if reserved:
        raise LoscatError(
            f"--keep-columns {', '.join(reserved)}: loscat-hf writes these columns itself (score_* come from "
            "--scores); keep only extra per-photo columns such as skin_tone"
        )
    missing = [c for c in wanted if c not in columns]
    if missing:
        extra = [str(columns[n]) for n in columns if n not in RESERVED_COLUMNS]
        raise LoscatError(
            f"--keep-columns {', '.join(missing)}: no such column in {path} (its extra columns: "
            f"{', '.join(extra) or 'none'})"
        )
    return wanted


def _one_rating_per_rater(image: str, group: list[_Rating], source: str, problems: list[Problem]) -> list[_Rating]:
    """Keep one rating per rater: identical repeats are duplicates, different regions cancel each other."""
    by_rater: dict[str, list[_Rating]] = defaultdict(list)
    for rating in group:
        by_rater[rating.rater].append(rating)
    kept = []
    for rater, ratings in by_rater.items():
        if len({r.site for r in ratings}) > 1:
            given = ", ".join(f"{r.site} (row {r.row})" for r in ratings)
            for r in ratings:
                problems.append(Problem(
                    "conflicting_rating", source,
                    f"rater {rater!r} gave {image} different regions: {given}; all of them dropped", r.row,
                ))
            continue
        kept.append(ratings[0])
        for r in ratings[1:]:
            problems.append(Problem(
                "duplicate_row", source,
                f"repeats row {ratings[0].row} (same image {image}, rater {rater!r} and region {r.site})", r.row,
            ))
    return kept


def _photo_extras(image: str, values: dict[str, list[str]], warnings: list[Problem], row: int) -> dict[str, str]:
    """First non-empty value per column; several different values are kept as a warning, not dropped."""
    extra = {}
    for name, seen in values.items():
        extra[name] = seen[0]
        distinct = list(dict.fromkeys(seen))
        if len(distinct) > 1:
            warnings.append(Problem(
                "conflicting_extra", image,
                f"column {name!r} has values {distinct} for this photo; kept {seen[0]!r}", row,
            ))
    return extra


def _consensus(group: list[_Rating], taxonomy: Taxonomy) -> tuple[str, str, float] | Problem:
    """Majority vote over classes and non-site codes -> (site, label, agreement), or why there is none.

    The site comes from the sided votes for the winning class: unsided votes ('arm') say nothing about
    the side, so they do not outvote 'left_arm'; if sided votes tie (left vs right) or none exist, the
    site is the class name. Midline classes have site == class.
    """
    votes = Counter(r.vote for r in group)
    ranked = votes.most_common()
    top = ranked[0][1]
    tied = [v for v, n in ranked if n == top]
    if len(tied) > 1:
        listed = ", ".join(f"{v} ({top})" for v in tied)
        return Problem("tie", "", f"majority vote tied between {listed} of {len(group)} votes; photo excluded")
    winner = tied[0]
    if winner not in taxonomy.classes:
        return Problem(
            f"non_site:{winner}", "", f"consensus is the non-site code {winner!r} ({top} of {len(group)} votes)"
        )
    sided = Counter(r.site for r in group if r.vote == winner and r.site != winner)
    site = winner
    if sided:
        (best, n_best), *rest = sided.most_common()
        if not rest or rest[0][1] < n_best:
            site = best
    return site, winner, top / len(group)
