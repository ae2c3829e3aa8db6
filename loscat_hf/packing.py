"""Write labelled photos as a de-identified Hugging Face imagefolder dataset, split by patient.

Layout (what `datasets.load_dataset("imagefolder", data_dir=OUT)` and the Hub expect):

    OUT/train/metadata.csv, OUT/train/<image_id>.jpg, ... validation/ (and test/)
    OUT/README.md             dataset card (YAML header + counts, exclusions, agreement, de-identification)
    OUT/prepare_report.json   counts, exclusions with reasons, agreement, parameters, versions
    OUT/id_map.csv            PRIVATE: original path -> image_id, patient, fate of every photo; never pushed

Photos are decoded and re-encoded (no EXIF/GPS/ICC/comment survives), named by an opaque id, and the
whole folder is built next to OUT and renamed into place at the end, so an interrupted run never leaves
a half-written dataset that a later training run could pick up.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

from loscat_hf import __version__
from loscat_hf.errors import LoscatError, Problem
from loscat_hf.images import (
    DEFAULT_MAX_PIXELS,
    ImageProblemError,
    open_image,
    read_image_bytes,
    save_clean_jpeg,
)
from loscat_hf.splits import SPLIT_ORDER, assign_splits, split_counts_table

METADATA_COLUMNS = ("file_name", "label", "site", "patient_id", "visit", "image_id")
ID_MAP_NAME = "id_map.csv"
REPORT_NAME = "prepare_report.json"
PRIVATE_FILES = (ID_MAP_NAME,)  # never uploaded: the only file that names the original photos
JPEG_QUALITY = 95
# Packed photos may come out up to 15% under max_side when a JPEG's DCT-scaled decode lands there: it
# halves the time per photo, and training resizes to the model's input size anyway.
SIZE_SLACK = 0.15
ID_LENGTH = 16  # hex chars of sha256: 64 bits, no collision in any realistic photo collection

# Extra per-photo columns whose name suggests they could identify a person or name the original file;
# they are left out of the dataset (and reported) rather than published by accident.
_IDENTIFYING_COLUMN = re.compile(
    r"(^|_)(name|names|firstname|lastname|surname|initials|dob|birth|birthdate|birthday|date|datetime|"
    r"mrn|nhs|ssn|address|postcode|zip|email|mail|phone|tel|mobile|insurance|file|filename|path|"
    r"filepath|original|url|note|notes|comment|comments|freetext|text|gps|location)($|_)"
)
_IMAGE_FILE = re.compile(r"[^\s'\"(),;]+\.(?:jpe?g|png|tiff?|bmp|gif|webp|heic|heif|avif|dng)\b", re.IGNORECASE)


@dataclass(frozen=True)
class PackItem:
    """One labelled photo to pack: where it is on disk, how the CSV names it, and its labels."""

    source: Path  # the file to read
    key: str  # the photo's path as the annotation CSV writes it (id_map.csv, problem messages)
    label: str  # class name
    site: str  # site name (18 sites), or the class name when the side is unknown
    patient_id: str
    visit: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)  # e.g. {"skin_tone": "V"}
    row: int | None = None  # first CSV data row of the photo, for messages


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


# ----------------------------------------------------------------------------- workers


def _process_one(task: tuple[int, str, str, int, int]) -> tuple[int, str | None, str | None, str | None]:
    """Worker: read, hash, decode and re-encode one photo -> (index, image_id, problem kind, reason).

    Disk-full and other write errors are not the photo's fault: they propagate and stop the run.
    """
    index, source, staging, max_side, max_pixels = task
    try:
        data, _ = read_image_bytes(source)
        image_id = hashlib.sha256(data).hexdigest()[:ID_LENGTH]
        img = open_image(data, max_side=max_side, max_pixels=max_pixels, size_slack=SIZE_SLACK)
    except ImageProblemError as exc:
        return index, None, exc.kind, exc.reason
    except Exception as exc:  # noqa: BLE001 - a decoder bug on one odd file must not stop 2,000 others
        return index, None, "unreadable", f"cannot decode the image: {type(exc).__name__}: {exc}"
    target = os.path.join(staging, f"{image_id}.jpg")
    if not os.path.exists(target):  # a byte-identical copy already wrote it
        part = f"{target}.{os.getpid()}.{index}.part"
        save_clean_jpeg(img, part, quality=JPEG_QUALITY)
        os.replace(part, target)
    return index, image_id, None, None


def _run_tasks(
    tasks: list[tuple[int, str, str, int, int]], num_workers: int, progress: bool
) -> Iterator[tuple[int, str | None, str | None, str | None]]:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), unit="photo", desc="packing photos", disable=not progress, file=sys.stderr)
    try:
        if num_workers <= 1 or len(tasks) < 4:
            for task in tasks:
                yield _process_one(task)
                bar.update()
            return
        import multiprocessing

        # spawn: no fork of a parent that may hold threads (tqdm monitor, BLAS); costs ~0.3 s per worker
        executor = ProcessPoolExecutor(max_workers=num_workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            chunksize = max(1, min(16, len(tasks) // (num_workers * 8)))
            for result in executor.map(_process_one, tasks, chunksize=chunksize):
                yield result
                bar.update()
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


# ----------------------------------------------------------------------------- helpers


def _versions() -> dict[str, str]:
    out = {"loscat_hf": __version__, "python": platform.python_version()}
    for dist in ("pillow", "numpy", "scikit-learn", "datasets", "huggingface-hub"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def _extra_columns(items: Iterable[PackItem]) -> tuple[list[tuple[str, str]], list[str]]:
    """(CSV column name -> output column name) for per-photo extras, and the names left out as identifying."""
    names = list(dict.fromkeys(name for item in items for name in item.extra))
    keep, dropped = [], []
    for name in names:
        if _IDENTIFYING_COLUMN.search(name.lower()):
            dropped.append(name)
            continue
        keep.append((name, f"extra_{name}" if name in METADATA_COLUMNS else name))
    return keep, dropped


class _Redactor:
    """Replaces original photo paths/names in text that leaves the private id map (reports, card)."""

    def __init__(self, keys: Iterable[str]):
        names = set()
        for key in keys:
            if key:
                names.add(key)
                names.add(key.replace("/", os.sep))
                names.add(Path(key).name)
        self._names = sorted((n for n in names if n), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for name in self._names:
            if name in text:
                text = text.replace(name, "<photo>")
        return _IMAGE_FILE.sub("<photo>", text)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M"


def check_output_dir(out_dir: str | Path, overwrite: bool) -> Path:
    """Fail early (before minutes of packing) if OUT exists and may not be replaced."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LoscatError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise LoscatError(f"output folder {out} already exists; pass --overwrite to replace it")
    return out


def _commit(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished folder into place; an old OUT is removed only after the new one is there."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(tmp, out)
        return
    if not overwrite:
        raise LoscatError(f"output folder {out} appeared while packing; pass --overwrite to replace it")
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- main entry


def pack_dataset(
    items: Sequence[PackItem],
    out_dir: str | Path,
    *,
    classes: Sequence[str],
    val_fraction: float = 0.165,
    test_fraction: float = 0.0,
    seed: int = 0,
    max_side: int = 512,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    num_workers: int | None = None,
    problems: Sequence[Problem] = (),
    warnings: Sequence[str] = (),
    agreement: Mapping | None = None,
    parameters: Mapping | None = None,
    notes: Sequence[str] = (),
    progress: bool = True,
) -> PackResult:
    """Decode/clean every photo in parallel, drop bad and duplicate ones, split the rest by patient, and
    write the imagefolder dataset with its card, report and private id map into `out_dir` atomically.

    `problems`/`warnings` found earlier (e.g. while reading annotations) are carried into the report.
    Returns a PackResult with out_dir None (and nothing written) when no usable photo remains.
    """
    out = check_output_dir(out_dir, overwrite).absolute()
    if max_side < 1:
        raise LoscatError(f"max_side must be a positive number of pixels, got {max_side}")
    workers = max(1, num_workers if num_workers is not None else (os.cpu_count() or 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    all_problems = list(problems)
    all_warnings = list(warnings)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        staging = tmp / "_staging"
        staging.mkdir()
        tasks = [(i, str(item.source), str(staging), max_side, max_pixels) for i, item in enumerate(items)]
        image_ids: list[str | None] = [None] * len(items)
        for index, image_id, kind, reason in _run_tasks(tasks, workers, progress):
            if image_id is None:
                item = items[index]
                all_problems.append(Problem(kind or "unreadable", item.key, reason or "", item.row))
            image_ids[index] = image_id

        kept, duplicates = _deduplicate(items, image_ids, all_problems)
        if not kept:
            shutil.rmtree(tmp, ignore_errors=True)
            return PackResult(
                out_dir=None, n_photos=0, counts={}, patients={}, problems=all_problems,
                warnings=all_warnings, report={},
            )

        split = assign_splits(
            [items[i].label for i in kept], [items[i].patient_id for i in kept],
            val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
        )
        all_warnings.extend(split.warnings)
        present = {items[i].label for i in kept}
        absent = [c for c in classes if c not in present]
        if absent:
            all_warnings.append(
                f"no usable photo of class(es) {', '.join(map(repr, absent))}: a model trained on this "
                "dataset cannot learn them"
            )
        split_of = dict(zip(kept, split.assignments, strict=True))
        extra_columns, dropped = _extra_columns(items[i] for i in kept)
        if dropped:
            all_warnings.append(
                f"column(s) {', '.join(map(repr, dropped))} left out of the dataset: the name suggests they "
                f"could identify a person or the original file (they stay in the annotation CSV)"
            )

        _write_splits(tmp, staging, items, kept, image_ids, split_of, extra_columns)
        staging.rmdir()
        _write_id_map(tmp / ID_MAP_NAME, items, kept, duplicates, image_ids, split_of, all_problems)

        labels = [items[i].label for i in kept]
        groups = [items[i].patient_id for i in kept]
        splits_present = split.split_names()
        counts = {s: {c: 0 for c in classes} for s in splits_present}
        for i in kept:
            counts[split_of[i]][items[i].label] = counts[split_of[i]].get(items[i].label, 0) + 1
        patients = {s: len({items[i].patient_id for i in kept if split_of[i] == s}) for s in splits_present}
        class_order = list(classes) + sorted(set(labels) - set(classes))
        table = split_counts_table(labels, split.assignments, class_order, groups=groups)
        redact = _Redactor([item.key for item in items] + [p.source for p in all_problems])
        report = _report(
            counts=counts, patients=patients, n_photos=len(kept), classes=class_order,
            problems=all_problems, warnings=all_warnings, agreement=agreement, redact=redact,
            parameters={
                "val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed,
                "max_side": max_side, "size_slack": SIZE_SLACK, "max_pixels": max_pixels,
                "jpeg_quality": JPEG_QUALITY,
                **(parameters or {}),
            },
            notes=notes, extra_columns=[o for _, o in extra_columns], dropped_columns=dropped,
        )
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        card = _dataset_card(
            report, split_counts_table(labels, split.assignments, class_order, groups=groups, markdown=True),
            agreement,
        )
        (tmp / "README.md").write_text(card, encoding="utf-8")
        _commit(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackResult(
        out_dir=out, n_photos=len(kept), counts=counts, patients=patients, problems=all_problems,
        warnings=all_warnings, report=report, table=table,
    )


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
            described = "; ".join(f"{items[i].key}: {items[i].label} of patient {items[i].patient_id}" for i in group)
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
    split_of: Mapping[int, str], extra_columns: Sequence[tuple[str, str]],
) -> None:
    rows: dict[str, list[list[str]]] = {}
    for i in kept:
        item, image_id, split = items[i], image_ids[i], split_of[i]
        (tmp / split).mkdir(exist_ok=True)
        os.replace(staging / f"{image_id}.jpg", tmp / split / f"{image_id}.jpg")
        rows.setdefault(split, []).append(
            [f"{image_id}.jpg", item.label, item.site, item.patient_id, item.visit, str(image_id)]
            + [str(item.extra.get(name, "")) for name, _ in extra_columns]
        )
    header = list(METADATA_COLUMNS) + [out_name for _, out_name in extra_columns]
    for split, split_rows in rows.items():
        with open(tmp / split / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(sorted(split_rows))  # by image id: the CSV order says nothing about the source
    for leftover in staging.iterdir():  # duplicates' second copy, if any worker wrote one
        leftover.unlink()


def _write_id_map(
    path: Path, items: Sequence[PackItem], kept: Sequence[int], duplicates: Mapping[int, int],
    image_ids: Sequence[str | None], split_of: Mapping[int, str], problems: Sequence[Problem],
) -> None:
    """The private ledger: every photo of the CSV and what became of it, with the original path."""
    patient_of = {item.key: item.patient_id for item in items}
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["original_path", "image_id", "patient_id", "split", "status", "csv_row", "reason"])
        for i in kept:
            item = items[i]
            writer.writerow([item.key, image_ids[i], item.patient_id, split_of[i], "kept", item.row or "", ""])
        done = {items[i].key for i in duplicates}
        for i, first in duplicates.items():
            item = items[i]
            writer.writerow([
                item.key, image_ids[first], item.patient_id, "", "duplicate_image", item.row or "",
                f"byte-identical to {items[first].key}",
            ])
        for p in problems:
            if p.kind == "duplicate_image" and p.source in done:
                continue
            is_photo = p.source in patient_of or not p.source.lower().endswith((".csv", ".tsv", ".txt"))
            writer.writerow([
                p.source if is_photo else "", "", patient_of.get(p.source, ""), "", p.kind,
                p.row or "", p.reason if is_photo else f"{p.source}: {p.reason}",
            ])


def _report(
    *, counts: dict, patients: dict, n_photos: int, classes: Sequence[str], problems: Sequence[Problem],
    warnings: Sequence[str], agreement: Mapping | None, redact: _Redactor, parameters: Mapping,
    notes: Sequence[str], extra_columns: Sequence[str], dropped_columns: Sequence[str],
) -> dict:
    by_reason = dict(sorted(Counter(p.kind for p in problems).items(), key=lambda kv: (-kv[1], kv[0])))
    return {
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "n_photos": n_photos,
        "n_patients": sum(patients.values()),
        "classes": list(classes),
        "splits": {
            s: {"photos": sum(counts[s].values()), "patients": patients[s], "per_class": counts[s]}
            for s in SPLIT_ORDER if s in counts
        },
        "exclusions": {
            "total": len(problems),
            "by_reason": by_reason,
            # original file names are replaced by <photo>; the private id_map.csv has them
            "problems": [
                {"kind": p.kind, "row": p.row, "source": redact(Path(p.source).name) if p.source else "",
                 "reason": redact(p.reason)}
                for p in problems
            ],
        },
        "warnings": [redact(w) for w in warnings],
        "notes": [redact(n) for n in notes],
        "agreement": json.loads(json.dumps(dict(agreement or {}), default=str)),
        "columns": list(METADATA_COLUMNS) + list(extra_columns),
        "dropped_columns": list(dropped_columns),
        "parameters": dict(parameters),
        "versions": _versions(),
        "private_files": list(PRIVATE_FILES),
    }


_REASON_TEXT = {
    "missing_image": "photo file not found",
    "zero_byte": "empty (0-byte) file",
    "not_an_image": "not an image file",
    "truncated": "incomplete (truncated) file",
    "decompression_bomb": "too many pixels (possible decompression bomb)",
    "unreadable": "file could not be read or decoded",
    "duplicate_image": "byte-identical copy of another photo",
    "outside_images_dir": "path points outside the images folder",
    "unknown_region": "region not in the taxonomy",
    "quality_excluded": "marked poor quality / exclude",
    "missing_value": "empty image, patient_id or region cell",
    "two_patients": "one photo labelled for two patients",
    "tie": "raters tied",
    "conflicting_rating": "one rater gave two regions",
    "duplicate_row": "repeated CSV row",
}


def _dataset_card(report: dict, table_md: str, agreement: Mapping | None) -> str:
    import yaml

    splits = list(report["splits"])
    header = {
        "pretty_name": "LoSCAT body-region photos (loscat-hf)",
        "license": "other",
        "license_name": "private-clinical-data",
        "task_categories": ["image-classification"],
        "tags": ["medical", "dermatology", "localized-scleroderma", "morphea", "loscat", "body-region"],
        "size_categories": [_size_category(report["n_photos"])],
        "configs": [{
            "config_name": "default",
            "data_files": [{"split": s, "path": f"{s}/*"} for s in splits],
        }],
    }
    params = report["parameters"]
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "",
        "# LoSCAT body-region photos", "",
        "Clinical photographs of localized scleroderma, each labelled with the LoSCAT body region it shows "
        f"({len(report['classes'])} classes, sides folded; `site` keeps the side). Built by `loscat-hf prepare` "
        f"{report['versions'].get('loscat_hf', '')} on {report['created_utc']}: {report['n_photos']} photos of "
        f"{report['n_patients']} patients.", "",
        "**Private clinical data.** Keep the repository private unless the photos are cleared for release.", "",
        "## Structure", "",
        "Hugging Face `imagefolder`: one folder per split, each with a `metadata.csv` giving per photo: "
        + ", ".join(f"`{c}`" for c in report["columns"]) + ". `label` is a class name (string):",
        "", "```python", "from datasets import load_dataset",
        'ds = load_dataset("imagefolder", data_dir="path/to/dataset")  # or the Hub repo id; label is a string',
        "# fixed label ids (taxonomy order) and ids kept as text ('007' stays '007'):",
        "from loscat_hf.packing import dataset_features",
        f"features = dataset_features({report['classes']!r}, {report['columns'][len(METADATA_COLUMNS):]!r})",
        'ds = load_dataset("imagefolder", data_dir="path/to/dataset", features=features)', "```", "",
        "## Counts per class and split", "", table_md, "",
        "## Exclusions", "",
    ]
    by_reason = report["exclusions"]["by_reason"]
    if by_reason:
        lines += ["| reason | count | meaning |", "|---|---:|---|"]
        lines += [f"| `{k}` | {n} | {_REASON_TEXT.get(k, k.replace('_', ' '))} |" for k, n in by_reason.items()]
        lines += ["", "Each exclusion is listed in `prepare_report.json` (file names replaced by `<photo>`)."]
    else:
        lines.append("Nothing was excluded.")
    lines += ["", "## Rater agreement", "", _agreement_text(agreement), ""]
    lines += [
        "## De-identification", "",
        "- Every photo was decoded and re-encoded as JPEG (quality 95): EXIF (camera, dates, GPS), XMP, ICC "
        "profiles and comments are gone; EXIF orientation was applied to the pixels, colour converted to sRGB.",
        f"- Photos were downscaled so the shorter side is at most {params.get('max_side')} pixels (at least "
        f"{round((1 - SIZE_SLACK) * params.get('max_side', 0))} unless the original was smaller).",
        "- File names are opaque ids (the first 16 hex digits of the SHA-256 of the original file); the map "
        "back to the original files (`id_map.csv`) stays with whoever prepared the data and is never uploaded.",
        "- `patient_id` and `visit` are copied from the annotation export: they must be study codes, not "
        "record numbers or dates.",
    ]
    if report["dropped_columns"]:
        lines.append(
            "- Left out as possibly identifying: " + ", ".join(f"`{c}`" for c in report["dropped_columns"]) + "."
        )
    lines += [
        "- The pixels themselves can still identify a person (faces, tattoos, jewellery): review before sharing.",
        "", "## Splits by patient", "",
        f"All photos of one patient are in the same split (no patient is in two splits). Splits come from "
        f"scikit-learn's `StratifiedGroupKFold` (stratified by class, grouped by patient), seed "
        f"{params.get('seed')}, validation share {params.get('val_fraction')}"
        + (f", test share {params.get('test_fraction')}" if params.get("test_fraction") else "")
        + " of the photos. Patients per split: "
        + ", ".join(f"{s} {v['patients']}" for s, v in report["splits"].items()) + ".",
    ]
    if report["warnings"]:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def _agreement_text(agreement: Mapping | None) -> str:
    if not agreement:
        return "No agreement statistics were computed."
    try:
        from loscat_hf.agreement import format_agreement

        return "```\n" + format_agreement(dict(agreement)) + "\n```"
    except Exception:  # noqa: BLE001 - the card must be written even if the summary format changes
        return "```json\n" + json.dumps(dict(agreement), indent=2, default=str) + "\n```"


def dataset_features(classes: Sequence[str], extra_columns: Sequence[str] = ()):
    """`datasets.Features` for loading a packed dataset with fixed label ids and text ids.

    Without it imagefolder infers types per split from metadata.csv: patient '007' becomes the int 7 and
    each split's `class_encode_column` numbers only the classes it happens to contain.
    Use: `load_dataset("imagefolder", data_dir=OUT, features=dataset_features(taxonomy.classes, extras))`.
    """
    from datasets import ClassLabel, Features, Value
    from datasets import Image as ImageFeature

    columns = {"image": ImageFeature(), "label": ClassLabel(names=list(classes))}
    columns.update({c: Value("string") for c in METADATA_COLUMNS[2:]})
    columns.update({c: Value("string") for c in extra_columns})
    return Features(columns)


def push_dataset_to_hub(out_dir: str | Path, repo_id: str, private: bool = True) -> str:
    """Upload a packed dataset (never id_map.csv) to a Hub dataset repo; returns the repo URL.

    Uses the token from `hf auth login` / HF_TOKEN; the token is never printed.
    """
    out = Path(out_dir)
    if not (out / "README.md").is_file() or not (out / "train").is_dir():
        raise LoscatError(f"{out} is not a dataset written by `loscat-hf prepare` (no README.md or train/)")
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(out), repo_id=repo_id, repo_type="dataset",
            ignore_patterns=list(PRIVATE_FILES), commit_message="Upload dataset prepared by loscat-hf",
        )
    except Exception as exc:  # noqa: BLE001 - network/auth errors become one readable line
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        message = re.sub(r"hf_[A-Za-z0-9]{6,}", "hf_***", message)  # some errors echo the token
        raise LoscatError(
            f"could not push {out} to the Hub dataset repo {repo_id!r}: {message} "
            "(log in with `hf auth login` or set HF_TOKEN)"
        ) from None
    return str(url)
