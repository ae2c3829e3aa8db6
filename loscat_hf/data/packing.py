"""Write labelled photos as a de-identified Hugging Face imagefolder dataset, split by patient.

Layout (what `datasets.load_dataset("imagefolder", data_dir=OUT)` and the Hub expect):

    OUT/train/metadata.parquet, OUT/train/<image_id>.jpg, ... validation/ (and test/)
    OUT/README.md             dataset card (YAML header with the features + counts, exclusions, agreement)
    OUT/prepare_report.json   counts (and how many photos are SYNTHETIC phantoms), exclusions by reason,
                              agreement, parameters, versions
    OUT/LICENSE.md            the terms the card's license_link points to
    OUT/private/              NEVER PUBLISHED: everything that maps back to people or original files
        id_map.csv            original path -> image_id, patient and visit codes, fate of every photo
        codes.csv             patient and visit codes -> the clinic's patient ids and visits
        problems.csv          every problem with its file, CSV row and full reason
        details.json          annotation file, images folder, dropped columns, warnings, notes, raters

What is published is an allow-list (`dataset.publishable_files`): the card, the report, the terms and, per
split, metadata.parquet and the <image_id>.jpg photos; nothing else in OUT is ever uploaded. Public texts are
built only from values loscat-hf defines (class names, counts, reason keys, codes), never from CSV cells or
file names, so no deny-list or redaction is needed. Photos are decoded and re-encoded (no EXIF/GPS/ICC/
comment survives) and named by an opaque id; patient ids and visits become opaque per-dataset codes. The
whole folder is built next to OUT and renamed into place at the end, so an interrupted run never leaves a
half-written dataset that a later training run could pick up.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loscat_hf.data.card import build_report, dataset_card, dataset_licence
from loscat_hf.data.cleaning import ID_LENGTH, JPEG_QUALITY, clean_photos
from loscat_hf.data.dataset import (
    CARD_NAME,
    LICENSE_NAME,
    METADATA_COLUMNS,
    METADATA_NAME,
    MULTI_COLUMN,
    PATIENT_PREFIX,
    PRIVATE_DIR,
    REPORT_NAME,
    VISIT_PREFIX,
    dataset_features,
    metadata_features,
)
from loscat_hf.data.private import draw_codes, pseudonymous_agreement, write_private
from loscat_hf.data.splits import assign_splits, split_counts_table
from loscat_hf.defaults import MAX_SIDE, SIZE_SLACK
from loscat_hf.errors import LoscatError, Problem
from loscat_hf.io.atomic import check_output_dir, commit_folder, partial_folder, write_error
from loscat_hf.io.images import DEFAULT_MAX_PIXELS
from loscat_hf.taxonomy import SET_SEPARATOR

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackItem:
    """One labelled photo to pack: where it is on disk, how the CSV names it, and its labels."""

    source: Path  # the file to read
    key: str  # the photo's path as the annotation CSV writes it (id_map.csv, problem messages)
    label: str  # class name; a photo showing several regions: its classes ';'-joined (taxonomy order)
    site: str  # site name (18 sites), or the class name when the side is unknown; ';'-joined for several
    patient_id: str
    visit: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)  # e.g. {"skin_tone": "V"}
    row: int | None = None  # first CSV data row of the photo, for messages


@dataclass(frozen=True)
class PackOptions:
    """How to pack: the split, the photo size, workers, overwrite and progress (`prepare`'s options, built
    once and passed down). Checked when built, so a bad value fails before anything is read or written."""

    val_fraction: float = 0.165
    test_fraction: float = 0.0
    seed: int = 0
    max_side: int = MAX_SIDE  # shorter side of a packed photo at most this, pixels
    max_pixels: int = DEFAULT_MAX_PIXELS  # photos with more pixels are refused (decompression bombs)
    overwrite: bool = False
    num_workers: int | None = None  # None: one per CPU
    progress: bool = True
    multi_region: bool = False  # write the `labels` column even when no photo shows several regions

    def __post_init__(self) -> None:
        if self.max_side < 1:
            raise LoscatError(f"max_side must be a positive number of pixels, got {self.max_side}",
                              param="max_side")
        if self.num_workers is not None and self.num_workers < 1:
            raise LoscatError(f"num_workers must be at least 1, got {self.num_workers}", param="num_workers")

    @property
    def workers(self) -> int:
        return self.num_workers if self.num_workers is not None else (os.cpu_count() or 1)

    def report_parameters(self) -> dict[str, Any]:
        """The options as prepare_report.json records them (publishable values only)."""
        return {"val_fraction": self.val_fraction, "test_fraction": self.test_fraction, "seed": self.seed,
                "max_side": self.max_side, "size_slack": SIZE_SLACK, "max_pixels": self.max_pixels,
                "jpeg_quality": JPEG_QUALITY}


@dataclass
class PackResult:
    """What was written: per-split counts, all problems (given + found), warnings, and the report dict."""

    out_dir: Path | None  # None when nothing usable remained and nothing was written
    n_photos: int
    counts: dict[str, dict[str, int]]  # split -> class -> photos
    patients: dict[str, int]  # split -> patients
    problems: list[Problem]  # the problems passed in plus those found while packing
    warnings: list[str]
    report: dict
    table: str = ""  # per-class counts per split, console format

    def problem_counts(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))


# ----------------------------------------------------------------------------- helpers


def _extra_columns(items: Iterable[PackItem]) -> list[tuple[str, str]]:
    """(extra name -> output column name) for the per-photo extras the caller chose to keep."""
    names = list(dict.fromkeys(name for item in items for name in item.extra))
    return [(name, f"extra_{name}" if name in METADATA_COLUMNS else name) for name in names]


# ----------------------------------------------------------------------------- main entry


def pack_dataset(
    items: Sequence[PackItem],
    out_dir: str | Path,
    options: PackOptions | None = None,
    *,
    classes: Sequence[str],
    problems: Sequence[Problem] = (),
    warnings: Sequence[str] = (),
    agreement: Mapping | None = None,
    parameters: Mapping | None = None,
    notes: Sequence[str] = (),
    private_details: Mapping | None = None,
    id_key: bytes | None = None,
    **option_fields: Any,
) -> PackResult:
    """Decode/clean every photo in parallel, drop bad and duplicate ones, split the rest by patient, and
    write the imagefolder dataset with its card, report and private folder into `out_dir` atomically.

    `options` says how (split fractions, seed, photo size, workers, overwrite, progress); its fields may also
    be given as keywords (`val_fraction=0.25`), alone or over `options`.
    Every `item.extra` column is written: the caller decides what is kept (prepare's --keep-columns).
    `problems`, `warnings` and `notes` may quote CSV cells and file names: they go to private/ in full and
    are only counted (problems by reason) in the public report and card. `parameters` must hold only
    publishable values; `private_details` (e.g. the annotation file and images folder) go to private/.
    Photo ids are an HMAC of the file bytes under the secret `id_key` (kept in private/details.json; default:
    a new random key), and the code and rater-number orders are drawn from it: nothing about the people or
    files can be read from them without private/, and the same key gives the same dataset again.
    Returns a PackResult with out_dir None (and nothing written) when no usable photo remains.
    """
    options = PackOptions(**option_fields) if options is None else replace(options, **option_fields)
    out = check_output_dir(out_dir, options.overwrite).absolute()
    id_key = id_key or secrets.token_bytes(32)
    all_problems = list(problems)
    private_warnings = list(warnings)
    try:
        tmp = partial_folder(out)
    except OSError as exc:
        raise write_error(out, exc) from None
    try:
        staging = tmp / "_staging"
        staging.mkdir()
        image_ids, phantoms = clean_photos(items, staging, options, id_key, all_problems)

        kept, duplicates = _deduplicate(items, image_ids, all_problems)
        if not kept:
            shutil.rmtree(tmp, ignore_errors=True)
            return PackResult(
                out_dir=None, n_photos=0, counts={}, patients={}, problems=all_problems,
                warnings=private_warnings, report={},
            )

        split = assign_splits(  # the clinic's ids group the photos; only codes are written
            [items[i].label for i in kept], [items[i].patient_id for i in kept],
            val_fraction=options.val_fraction, test_fraction=options.test_fraction, seed=options.seed,
        )
        public_warnings = list(split.warnings)  # built from class names and counts only
        present = {c for i in kept for c in items[i].label.split(SET_SEPARATOR)}
        absent = [c for c in classes if c not in present]
        if absent:
            public_warnings.append(
                f"no usable photo of class(es) {', '.join(map(repr, absent))}: a model trained on this "
                "dataset cannot learn them"
            )
        split_of = dict(zip(kept, split.assignments, strict=True))
        extra_columns = _extra_columns(items[i] for i in kept)
        labels = [items[i].label for i in kept]
        regions_per_photo = Counter(len(label.split(SET_SEPARATOR)) for label in labels)
        multi_region = options.multi_region or any(n > 1 for n in regions_per_photo)
        class_order = list(classes) + sorted(present - set(classes))
        features = dataset_features(class_order, [o for _, o in extra_columns], multi_region=multi_region)
        rng = random.Random(id_key)  # secret, so the orders are unpredictable; fixed by it, so reruns agree
        patient_codes = draw_codes((items[i].patient_id for i in kept), PATIENT_PREFIX, rng)
        visit_codes = draw_codes(((items[i].patient_id, items[i].visit) for i in kept if items[i].visit),
                                 VISIT_PREFIX, rng)

        _write_splits(tmp, staging, items, kept, image_ids, split_of, extra_columns, features, patient_codes,
                      visit_codes)
        staging.rmdir()
        agreement_plain = json.loads(json.dumps(dict(agreement or {}), default=str))
        agreement_public, rater_alias = pseudonymous_agreement(agreement_plain, rng)
        write_private(
            tmp / PRIVATE_DIR, items=items, kept=kept, duplicates=duplicates, image_ids=image_ids,
            split_of=split_of, problems=all_problems, patient_codes=patient_codes, visit_codes=visit_codes,
            details={
                **dict(private_details or {}),
                "warnings": [*public_warnings, *private_warnings], "notes": list(notes),
                "raters": rater_alias, "agreement": agreement_plain,
                "image_id": {"hmac": "sha256", "key_hex": id_key.hex(), "hex_digits": ID_LENGTH},
            },
        )

        counts, patients = _split_counts(items, kept, split_of, split.split_names(), classes)
        phantom_counts = {s: sum(phantoms[i] for i in kept if split_of[i] == s) for s in counts}
        groups = [items[i].patient_id for i in kept]
        table = split_counts_table(labels, split.assignments, class_order, groups=groups)
        report = build_report(
            counts=counts, patients=patients, n_photos=len(kept), classes=class_order, problems=all_problems,
            warnings=public_warnings, agreement=agreement_public,
            parameters={**options.report_parameters(), **(parameters or {})},
            extra_columns=[o for _, o in extra_columns], phantoms=phantom_counts,
            regions_per_photo=dict(regions_per_photo) if multi_region else None,
            split_photos=Counter(split_of[i] for i in kept),
            private_counts={"warnings": len(private_warnings), "notes": len(notes),
                            "dropped_columns": len((private_details or {}).get("dropped_columns", []))},
        )
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
        card = dataset_card(
            report, split_counts_table(labels, split.assignments, class_order, groups=groups, markdown=True),
            agreement_public, features,
        )
        (tmp / CARD_NAME).write_text(card, encoding="utf-8")
        (tmp / LICENSE_NAME).write_text(dataset_licence(report), encoding="utf-8")  # the card's license_link
        commit_folder(tmp, out, options.overwrite)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(out, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackResult(
        out_dir=out, n_photos=len(kept), counts=counts, patients=patients, problems=all_problems,
        warnings=public_warnings + private_warnings, report=report, table=table,
    )


def _split_counts(items: Sequence[PackItem], kept: Sequence[int], split_of: Mapping[int, str],
                  splits: Sequence[str], classes: Sequence[str]) -> tuple[dict, dict]:
    """(split -> class -> photos, split -> patients) of the kept photos."""
    counts = {s: {c: 0 for c in classes} for s in splits}
    for i in kept:  # a photo showing several regions counts under each
        for label in items[i].label.split(SET_SEPARATOR):
            counts[split_of[i]][label] = counts[split_of[i]].get(label, 0) + 1
    patients = {s: len({items[i].patient_id for i in kept if split_of[i] == s}) for s in splits}
    return counts, patients


def _deduplicate(
    items: Sequence[PackItem], image_ids: Sequence[str | None], problems: list[Problem]
) -> tuple[list[int], dict[int, int]]:
    """Keep one of each set of byte-identical photos; if their labels or patients differ, keep none."""
    by_id: dict[str, list[int]] = {}
    for i, image_id in enumerate(image_ids):
        if image_id is not None:
            by_id.setdefault(image_id, []).append(i)
    kept: list[int] = []
    duplicates: dict[int, int] = {}  # duplicate index -> kept index
    for group in by_id.values():
        first, rest = group[0], group[1:]
        if not rest:
            kept.append(first)
            continue
        labels = {(items[i].label, items[i].patient_id) for i in group}
        if len(labels) > 1:
            described = "; ".join(f"{items[i].key}: {items[i].label} of patient {items[i].patient_id}"
                                  for i in group)
            for i in group:
                problems.append(Problem(
                    "duplicate_image", items[i].key,
                    f"byte-identical copies carry different labels or patients ({described}); all left out",
                    items[i].row,
                ))
            continue
        kept.append(first)
        for i in rest:
            duplicates[i] = first
            problems.append(Problem(
                "duplicate_image", items[i].key,
                f"byte-identical to {items[first].key} (same label and patient), which is kept", items[i].row,
            ))
    kept.sort()
    return kept, duplicates


def _write_splits(
    tmp: Path, staging: Path, items: Sequence[PackItem], kept: Sequence[int], image_ids: Sequence[str | None],
    split_of: Mapping[int, str], extra_columns: Sequence[tuple[str, str]], features,
    patient_codes: Mapping[str, str], visit_codes: Mapping[tuple[str, str], str],
) -> None:
    """Move the photos into their split folders and write each split's metadata.parquet.

    Parquet, not CSV: its schema is written, not inferred per file, so every split has one schema even when a
    column is empty in one of them (CSV inference gave `null` there and datasets refused the folder), and the
    schema carries the datasets features: `load_dataset("imagefolder", data_dir=...)` gets `label` as a
    ClassLabel. Written uncompressed: small, and every published byte stays searchable by the privacy test.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    label_id = features["label"].str2int
    multi = MULTI_COLUMN in features
    features = metadata_features(features)
    rows: dict[str, list[dict]] = {}
    for i in kept:
        item, image_id, split = items[i], image_ids[i], split_of[i]
        (tmp / split).mkdir(exist_ok=True)
        os.replace(staging / f"{image_id}.jpg", tmp / split / f"{image_id}.jpg")
        several = SET_SEPARATOR in item.label
        row = {"file_name": f"{image_id}.jpg", "label": None if several else label_id(item.label),
               **({MULTI_COLUMN: [label_id(c) for c in item.label.split(SET_SEPARATOR)]} if multi else {}),
               "site": item.site,
               "patient_id": patient_codes[item.patient_id],
               "visit": visit_codes.get((item.patient_id, item.visit)), "image_id": str(image_id)}
        for name, out_name in extra_columns:
            text = str(item.extra.get(name, "") or "").strip()
            numeric = features[out_name].dtype.startswith("float")
            row[out_name] = (float(text) if numeric else text) if text else None
        rows.setdefault(split, []).append(row)
    for split, split_rows in rows.items():
        split_rows.sort(key=lambda r: r["file_name"])  # by image id: the order says nothing about the source
        table = pa.Table.from_pylist(split_rows, schema=features.arrow_schema)
        pq.write_table(table, tmp / split / METADATA_NAME, compression="none")
    for leftover in staging.iterdir():  # duplicates' second copy, if any worker wrote one
        leftover.unlink()

