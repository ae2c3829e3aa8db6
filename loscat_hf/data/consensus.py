"""One consensus label per photo from the raters' ratings, and how much the raters agreed.

Reading the export is annotations.py's job; this module decides: one rating per rater, majority vote, the
side of the winning class, exclusions with their reasons, and the agreement report.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from loscat_hf.data.agreement import agreement_report
from loscat_hf.data.annotations import RATING_COLUMNS, Rating, RatingsExport, read_ratings
from loscat_hf.errors import Problem
from loscat_hf.taxonomy import SET_SEPARATOR, Taxonomy


@dataclass
class PhotoLabel:
    """The consensus label of one photo, plus what `prepare` needs to place it (patient, visit, metadata)."""

    image: str  # path as written in the CSV (relative to the images folder), with '/' separators
    patient_id: str
    visit: str  # "" when the CSV has no visit column/value
    site: str  # consensus 18-site name, or the class name when sides disagree / no side given
    label: str  # consensus class name; a photo showing several: its classes ';'-joined (taxonomy order)
    n_ratings: int
    agreement: float  # share of the photo's raters whose answer is the consensus (the same set of classes)
    extra: dict[str, str] = field(default_factory=dict)  # the kept per-photo columns (--keep-columns)
    row: int | None = None  # first CSV data row of the photo, for messages

    @property
    def labels(self) -> tuple[str, ...]:
        """The photo's classes: one, or several for a photo that shows several regions."""
        return tuple(self.label.split(SET_SEPARATOR))


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
    superseded: int = 0  # answers a rater later changed (`loscat-hf label`'s CSV): the latest counts

    def problem_counts(self) -> dict[str, int]:
        """Problems per kind, for a one-line console summary."""
        return dict(Counter(p.kind for p in self.problems))


def build_consensus(export: RatingsExport, taxonomy: Taxonomy) -> ConsensusResult:
    """One label per photo from the export's ratings: one rating per rater, majority vote, agreement.

    A photo labelled for two patients is excluded (a mix-up would leak across the split). Per photo and rater:
    a repeated identical region counts once; different regions from one rater contradict each other, so all of
    that rater's ratings of the photo are dropped. Majority vote over classes and non-site codes; a winning
    code or a tie excludes the photo.
    """
    problems = list(export.problems)
    warnings: list[Problem] = []
    first_row, extra_values, source = export.first_row, export.extra_values, export.source
    by_image: dict[str, list[Rating]] = defaultdict(list)
    for rating in export.ratings:
        by_image[rating.image].append(rating)

    kept: list[Rating] = []
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
    by_image_kept: dict[str, list[Rating]] = defaultdict(list)
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

    report = agreement_report(ratings, taxonomy.classes, pairwise=export.has_rater)
    return ConsensusResult(
        photos=photos, problems=problems, ratings=ratings, agreement=report, n_rows=export.n_rows,
        warnings=warnings, dropped_columns=export.dropped_columns, kept_columns=export.kept_columns,
        superseded=export.superseded,
    )


def read_annotations(csv_path: str | Path, taxonomy: Taxonomy,
                     keep_columns: str | Sequence[str] | None = ()) -> ConsensusResult:
    """Read the rating CSV (annotations.read_ratings) and reduce it to consensus labels (build_consensus)."""
    return build_consensus(read_ratings(csv_path, taxonomy, keep_columns), taxonomy)


def _one_rating_per_rater(image: str, group: list[Rating], source: str,
                          problems: list[Problem]) -> list[Rating]:
    """Keep one rating per rater: identical repeats are duplicates, different regions cancel each other."""
    by_rater: dict[str, list[Rating]] = defaultdict(list)
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
                f"repeats row {ratings[0].row} (same image {image}, rater {rater!r} and region {r.site})",
                r.row,
            ))
    return kept


def _photo_extras(image: str, values: dict[str, list[str]], warnings: list[Problem],
                  row: int) -> dict[str, str]:
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


def _consensus(group: list[Rating], taxonomy: Taxonomy) -> tuple[str, str, float] | Problem:
    """Majority vote over classes and non-site codes -> (site, label, agreement), or why there is none.

    The site comes from the sided votes for the winning class: unsided votes ('arm') say nothing about
    the side, so they do not outvote 'left_arm'; if sided votes tie (left vs right) or none exist, the
    site is the class name. Midline classes have site == class.
    """
    if any(SET_SEPARATOR in r.vote for r in group):
        return _set_consensus(group, taxonomy)
    votes = Counter(r.vote for r in group)
    ranked = votes.most_common()
    top = ranked[0][1]
    tied = [v for v, n in ranked if n == top]
    if len(tied) > 1:
        listed = ", ".join(f"{v} ({top})" for v in tied)
        return Problem("tie", "",
                       f"majority vote tied between {listed} of {len(group)} votes; photo excluded")
    winner = tied[0]
    if winner not in taxonomy.classes:
        return Problem(
            f"non_site:{winner}", "",
            f"consensus is the non-site code {winner!r} ({top} of {len(group)} votes)",
        )
    return _side(winner, [r.site for r in group if r.vote == winner]), winner, top / len(group)


def _side(label: str, sites: list[str]) -> str:
    """The site of a consensus class: the most common sided site among the votes for it, unless sided votes
    tie or none exist (then the class name)."""
    sided = Counter(s for s in sites if s != label)
    if sided:
        (best, n_best), *rest = sided.most_common()
        if not rest or rest[0][1] < n_best:
            return best
    return label


def _set_consensus(group: list[Rating], taxonomy: Taxonomy) -> tuple[str, str, float] | Problem:
    """A set of classes for a photo some rater gave several regions: per class, majority of raters.

    A class is in the set when at least half of the photo's raters name it, provided at least one class is
    named by more than half (else no majority: excluded). At least half, not more than half: a rater who
    marks only the thigh of a thigh-and-leg photo more often missed the leg than saw it absent, and with two
    raters a strict majority would drop every photo on which they differ by one site. A non-site code held by
    more than half of the raters excludes the photo, as in the single-region vote. The side of each class
    comes from its sided votes (`_side`); agreement is the share of raters whose set is the consensus."""
    n = len(group)
    codes = Counter(r.vote for r in group if r.vote.split(SET_SEPARATOR)[0] not in taxonomy.classes)
    if codes and codes.most_common(1)[0][1] * 2 > n:
        code, count = codes.most_common(1)[0]
        return Problem(f"non_site:{code}", "",
                       f"consensus is the non-site code {code!r} ({count} of {n} votes)")
    named = Counter(c for r in group for c in set(r.vote.split(SET_SEPARATOR)) if c in taxonomy.classes)
    if not any(k * 2 > n for k in named.values()):
        listed = ", ".join(f"{c} ({k})" for c, k in named.most_common())
        return Problem("no_majority", "", f"no region named by more than half of the {n} raters ({listed}); "
                                          "photo excluded")
    chosen = [c for c in taxonomy.classes if named[c] * 2 >= n]
    site_of = taxonomy.to_class
    sites = [_side(c, [s for r in group for s in r.site.split(SET_SEPARATOR) if site_of(s) == c])
             for c in chosen]
    label = taxonomy.join(chosen)
    agreement = sum(r.vote == label for r in group) / n
    return taxonomy.join(sites), label, agreement
