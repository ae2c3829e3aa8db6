"""Write labelled photos as a de-identified Hugging Face imagefolder dataset, split by patient.

Layout (what `datasets.load_dataset("imagefolder", data_dir=OUT)` and the Hub expect):

    OUT/train/metadata.parquet, OUT/train/<image_id>.jpg, ... validation/ (and test/)
    OUT/README.md             dataset card (YAML header with the features + counts, exclusions, agreement)
    OUT/prepare_report.json   counts, exclusions by reason, agreement, parameters, versions
    OUT/private/              NEVER PUBLISHED: everything that maps back to people or original files
        id_map.csv            original path -> image_id, patient and visit codes, fate of every photo
        codes.csv             patient and visit codes -> the clinic's patient ids and visits
        problems.csv          every problem with its file, CSV row and full reason
        details.json          annotation file, images folder, dropped columns, warnings, notes, raters

What is published is an allow-list (`publishable_files`): the card, the report and, per split,
metadata.parquet and the <image_id>.jpg photos; nothing else in OUT is ever uploaded. Public texts are built
only from values loscat-hf defines (class names, counts, reason keys, codes), never from CSV cells or
file names, so no deny-list or redaction is needed. Photos are decoded and re-encoded (no EXIF/GPS/ICC/
comment survives) and named by an opaque id; patient ids and visits become opaque per-dataset codes. The
whole folder is built next to OUT and renamed into place at the end, so an interrupted run never leaves a
half-written dataset that a later training run could pick up.
"""

from __future__ import annotations

import copy
import csv
import errno
import hashlib
import hmac
import json
import logging
import os
import platform
import random
import re
import secrets
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
from loscat_hf.data.csvsafe import SafeWriter, read_cell
from loscat_hf.data.images import (
    DEFAULT_MAX_PIXELS,
    ImageProblemError,
    open_image,
    read_image_bytes,
    save_clean_jpeg,
)
from loscat_hf.data.score_tables import SCORE_PREFIX
from loscat_hf.data.splits import SPLIT_ORDER, assign_splits, split_counts_table
from loscat_hf.errors import LoscatError, Problem

logger = logging.getLogger(__name__)

METADATA_COLUMNS = ("file_name", "label", "site", "patient_id", "visit", "image_id")
METADATA_NAME = "metadata.parquet"  # per split; written by prepare
LEGACY_METADATA_NAME = "metadata.csv"  # per split; read too (hand-made datasets, older prepare)
REPORT_NAME = "prepare_report.json"
CARD_NAME = "README.md"
PRIVATE_DIR = "private"  # never uploaded, never quoted: maps back to people and original files
ID_MAP_NAME = "id_map.csv"
CODES_NAME = "codes.csv"
PROBLEMS_NAME = "problems.csv"
DETAILS_NAME = "details.json"
PRIVATE_FILES = (ID_MAP_NAME, CODES_NAME, PROBLEMS_NAME, DETAILS_NAME)  # all under PRIVATE_DIR
PATIENT_PREFIX, VISIT_PREFIX = "P", "V"
_PUBLIC_PHOTO = re.compile(r"[0-9a-f]{16}\.jpg")
JPEG_QUALITY = 95
# Packed photos may come out up to 15% under max_side when a JPEG's DCT-scaled decode lands there: it
# halves the time per photo, and training resizes to the model's input size anyway.
SIZE_SLACK = 0.15
ID_LENGTH = 16  # hex chars of HMAC-SHA256: 64 bits, no collision in any realistic photo collection

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


def _process_one(task: tuple[int, str, str, int, int, bytes]) -> tuple[int, str | None, str | None, str | None]:
    """Worker: read, hash, decode and re-encode one photo -> (index, image_id, problem kind, reason).

    Disk-full and other write errors are not the photo's fault: they propagate and stop the run.
    """
    index, source, staging, max_side, max_pixels, id_key = task
    try:
        data, _ = read_image_bytes(source)
        # keyed: a plain hash would let anyone holding a copy of a photo confirm that its child is in the
        # dataset; identical files still get one id (duplicates are found by it)
        image_id = hmac.new(id_key, data, hashlib.sha256).hexdigest()[:ID_LENGTH]
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


def _extra_columns(items: Iterable[PackItem]) -> list[tuple[str, str]]:
    """(extra name -> output column name) for the per-photo extras the caller chose to keep."""
    names = list(dict.fromkeys(name for item in items for name in item.extra))
    return [(name, f"extra_{name}" if name in METADATA_COLUMNS else name) for name in names]


def _codes(values: Iterable, prefix: str, rng: random.Random) -> dict:
    """Opaque per-dataset codes ('P017') for identifying values (MRNs, visit dates), in random order.

    The order is drawn by `rng`, seeded with the dataset's secret key, so a code says nothing about the value
    it replaces (not even its rank); the map back lives in private/codes.csv only.
    """
    order = sorted({v for v in values if v})
    rng.shuffle(order)
    width = max(3, len(str(len(order))))
    return {value: f"{prefix}{i + 1:0{width}d}" for i, value in enumerate(order)}


def _pseudonymous_agreement(agreement: Mapping, rng: random.Random) -> tuple[dict, dict[str, str]]:
    """A copy of the agreement report with rater names replaced by 'rater 1', 'rater 2', ...; and the name map."""
    report = copy.deepcopy(dict(agreement))
    pairs = report.get("pairs", [])
    names = sorted({p[k] for p in pairs for k in ("rater_a", "rater_b")})
    rng.shuffle(names)  # numbered in random order: not even the names' order shows
    number = {name: i + 1 for i, name in enumerate(names)}
    for pair in pairs:  # the statistics are symmetric: lower number first
        pair["rater_a"], pair["rater_b"] = sorted((number[pair["rater_a"]], number[pair["rater_b"]]))
    pairs.sort(key=lambda p: (p["rater_a"], p["rater_b"]))
    for pair in pairs:
        pair["rater_a"], pair["rater_b"] = f"rater {pair['rater_a']}", f"rater {pair['rater_b']}"
    return report, {name: f"rater {n}" for name, n in number.items()}


def _private_open(path: Path, mode: str = "w"):
    """A file readable by its owner only (0600): the private folder holds what maps back to people."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, mode, newline="", encoding="utf-8")


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Delete `.OUT.partial-<pid>-*` and `.OUT.old-<pid>-*` folders that a killed prepare left behind (their
    process is gone). They hold decoded patient photos and private/; nothing else would ever remove them.
    A folder of another name, or of a prepare still running, is left alone.
    """
    removed = []
    for folder in out.parent.glob(f".{out.name}.*-*"):
        match = re.fullmatch(rf"\.{re.escape(out.name)}\.(?:partial|old)-(\d+)-[0-9a-f]{{8}}", folder.name)
        if not match or not folder.is_dir():
            continue
        if int(match.group(1)) != os.getpid() and _pid_alive(int(match.group(1))):
            continue  # another prepare into the same OUT is running now
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        logger.info("removed %d unfinished folder(s) of an interrupted prepare next to %s", len(removed), out)
    return removed


def _write_error(out: Path, exc: OSError) -> LoscatError:
    """A disk problem while writing OUT, as one line the user can act on."""
    hints = {
        errno.ENOSPC: "the disk is full: free space or choose another --out",
        errno.EROFS: "the file system is read-only: choose another --out",
        errno.EACCES: "permission denied: choose a folder you can write to as --out",
        errno.EPERM: "permission denied: choose a folder you can write to as --out",
        getattr(errno, "EDQUOT", -1): "the disk quota is exceeded: free space or choose another --out",
    }
    what = hints.get(exc.errno, f"{exc.strerror or exc}: check the disk, or choose another --out")
    return LoscatError(f"cannot write the dataset {out}: {what}; nothing was written")


def _commit(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished folder into place; an old OUT is removed only after the new one is there."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(tmp, out)
        return
    if not overwrite:
        raise LoscatError(f"output folder {out} appeared while packing; pass --overwrite to replace it")
    old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
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
    private_details: Mapping | None = None,
    id_key: bytes | None = None,
    progress: bool = True,
) -> PackResult:
    """Decode/clean every photo in parallel, drop bad and duplicate ones, split the rest by patient, and
    write the imagefolder dataset with its card, report and private folder into `out_dir` atomically.

    Every `item.extra` column is written: the caller decides what is kept (prepare's --keep-columns).
    `problems`, `warnings` and `notes` may quote CSV cells and file names: they go to private/ in full and
    are only counted (problems by reason) in the public report and card. `parameters` must hold only
    publishable values; `private_details` (e.g. the annotation file and images folder) go to private/.
    Photo ids are an HMAC of the file bytes under the secret `id_key` (kept in private/details.json; default:
    a new random key), and the code and rater-number orders are drawn from it: nothing about the people or
    files can be read from them without private/, and the same key gives the same dataset again.
    Returns a PackResult with out_dir None (and nothing written) when no usable photo remains.
    """
    out = check_output_dir(out_dir, overwrite).absolute()
    id_key = id_key or secrets.token_bytes(32)
    if max_side < 1:
        raise LoscatError(f"max_side must be a positive number of pixels, got {max_side}")
    workers = max(1, num_workers if num_workers is not None else (os.cpu_count() or 1))
    all_problems = list(problems)
    private_warnings = list(warnings)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(out)
        tmp.mkdir()
    except OSError as exc:
        raise _write_error(out, exc) from None
    try:
        staging = tmp / "_staging"
        staging.mkdir()
        tasks = [(i, str(item.source), str(staging), max_side, max_pixels, id_key) for i, item in enumerate(items)]
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
                warnings=private_warnings, report={},
            )

        split = assign_splits(  # the clinic's ids group the photos; only codes are written
            [items[i].label for i in kept], [items[i].patient_id for i in kept],
            val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
        )
        public_warnings = list(split.warnings)  # built from class names and counts only
        present = {items[i].label for i in kept}
        absent = [c for c in classes if c not in present]
        if absent:
            public_warnings.append(
                f"no usable photo of class(es) {', '.join(map(repr, absent))}: a model trained on this "
                "dataset cannot learn them"
            )
        split_of = dict(zip(kept, split.assignments, strict=True))
        extra_columns = _extra_columns(items[i] for i in kept)
        labels = [items[i].label for i in kept]
        class_order = list(classes) + sorted(set(labels) - set(classes))
        features = dataset_features(class_order, [o for _, o in extra_columns])
        rng = random.Random(id_key)  # secret, so the orders are unpredictable; fixed by it, so reruns agree
        patient_codes = _codes((items[i].patient_id for i in kept), PATIENT_PREFIX, rng)
        visit_codes = _codes(((items[i].patient_id, items[i].visit) for i in kept if items[i].visit), VISIT_PREFIX,
                             rng)

        _write_splits(tmp, staging, items, kept, image_ids, split_of, extra_columns, features, patient_codes,
                      visit_codes)
        staging.rmdir()
        agreement_plain = json.loads(json.dumps(dict(agreement or {}), default=str))
        agreement_public, rater_alias = _pseudonymous_agreement(agreement_plain, rng)
        _write_private(
            tmp / PRIVATE_DIR, items=items, kept=kept, duplicates=duplicates, image_ids=image_ids,
            split_of=split_of, problems=all_problems, patient_codes=patient_codes, visit_codes=visit_codes,
            details={
                **dict(private_details or {}),
                "warnings": [*public_warnings, *private_warnings], "notes": list(notes),
                "raters": rater_alias, "agreement": agreement_plain,
                "image_id": {"hmac": "sha256", "key_hex": id_key.hex(), "hex_digits": ID_LENGTH},
            },
        )

        groups = [items[i].patient_id for i in kept]
        splits_present = split.split_names()
        counts = {s: {c: 0 for c in classes} for s in splits_present}
        for i in kept:
            counts[split_of[i]][items[i].label] = counts[split_of[i]].get(items[i].label, 0) + 1
        patients = {s: len({items[i].patient_id for i in kept if split_of[i] == s}) for s in splits_present}
        table = split_counts_table(labels, split.assignments, class_order, groups=groups)
        report = _report(
            counts=counts, patients=patients, n_photos=len(kept), classes=class_order, problems=all_problems,
            warnings=public_warnings, agreement=agreement_public,
            parameters={
                "val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed,
                "max_side": max_side, "size_slack": SIZE_SLACK, "max_pixels": max_pixels,
                "jpeg_quality": JPEG_QUALITY,
                **(parameters or {}),
            },
            extra_columns=[o for _, o in extra_columns],
            private_counts={"warnings": len(private_warnings), "notes": len(notes),
                            "dropped_columns": len((private_details or {}).get("dropped_columns", []))},
        )
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        card = _dataset_card(
            report, split_counts_table(labels, split.assignments, class_order, groups=groups, markdown=True),
            agreement_public, features,
        )
        (tmp / CARD_NAME).write_text(card, encoding="utf-8")
        _commit(tmp, out, overwrite)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(out, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackResult(
        out_dir=out, n_photos=len(kept), counts=counts, patients=patients, problems=all_problems,
        warnings=public_warnings + private_warnings, report=report, table=table,
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


def metadata_features(features):
    """The schema of `<split>/metadata.parquet`: imagefolder's `file_name` key in place of the image column."""
    from datasets import Features, Value

    return Features({"file_name": Value("string"), **{k: v for k, v in features.items() if k != "image"}})


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
    features = metadata_features(features)
    rows: dict[str, list[dict]] = {}
    for i in kept:
        item, image_id, split = items[i], image_ids[i], split_of[i]
        (tmp / split).mkdir(exist_ok=True)
        os.replace(staging / f"{image_id}.jpg", tmp / split / f"{image_id}.jpg")
        row = {"file_name": f"{image_id}.jpg", "label": label_id(item.label), "site": item.site,
               "patient_id": patient_codes[item.patient_id],
               "visit": visit_codes.get((item.patient_id, item.visit)), "image_id": str(image_id)}
        for name, out_name in extra_columns:
            text = str(item.extra.get(name, "") or "").strip()
            row[out_name] = (float(text) if features[out_name].dtype.startswith("float") else text) if text else None
        rows.setdefault(split, []).append(row)
    for split, split_rows in rows.items():
        split_rows.sort(key=lambda r: r["file_name"])  # by image id: the order says nothing about the source
        table = pa.Table.from_pylist(split_rows, schema=features.arrow_schema)
        pq.write_table(table, tmp / split / METADATA_NAME, compression="none")
    for leftover in staging.iterdir():  # duplicates' second copy, if any worker wrote one
        leftover.unlink()


def split_metadata_file(split_dir: str | Path) -> Path | None:
    """A split folder's metadata file: metadata.parquet (prepare), or metadata.csv (hand-made, older prepare)."""
    for name in (METADATA_NAME, LEGACY_METADATA_NAME):
        if (Path(split_dir) / name).is_file():
            return Path(split_dir) / name
    return None


def read_split_metadata(split_dir: str | Path) -> list[dict]:
    """The rows of a split's metadata, `label` as its class name: the one reader of both metadata formats."""
    path = split_metadata_file(split_dir)
    if path is None:
        raise LoscatError(f"{split_dir} has no {METADATA_NAME} (nor {LEGACY_METADATA_NAME})")
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq
            from datasets import Features

            table = pq.read_table(path)
            rows = table.to_pylist()
            label = Features.from_arrow_schema(table.schema).get("label")
            if hasattr(label, "int2str"):
                for row in rows:
                    row["label"] = label.int2str(row["label"]) if row.get("label") is not None else None
            return rows
        with open(path, newline="", encoding="utf-8") as fh:
            return [{k: read_cell(v) for k, v in row.items() if k is not None} for row in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise LoscatError(f"cannot read {path} ({exc}); rebuild the dataset with `loscat-hf prepare --overwrite`"
                          ) from None


def _write_private(
    folder: Path, *, items: Sequence[PackItem], kept: Sequence[int], duplicates: Mapping[int, int],
    image_ids: Sequence[str | None], split_of: Mapping[int, str], problems: Sequence[Problem],
    patient_codes: Mapping[str, str], visit_codes: Mapping[tuple[str, str], str], details: Mapping,
) -> None:
    """private/: the ledger of every photo, the code map, every problem in full, and the run's details."""
    folder.mkdir(mode=0o700)
    folder.chmod(0o700)  # mkdir's mode is reduced by the umask, never widened; be exact
    by_key = {item.key: item for item in items}

    def codes_of(item: PackItem | None) -> list[str]:
        if item is None:
            return ["", "", "", ""]
        return [item.patient_id, patient_codes.get(item.patient_id, ""), item.visit,
                visit_codes.get((item.patient_id, item.visit), "")]

    with _private_open(folder / ID_MAP_NAME) as fh:
        writer = SafeWriter(fh)
        writer.writerow(["original_path", "image_id", "patient_id", "patient_code", "visit", "visit_code", "split",
                         "status", "csv_row", "reason"])
        for i in kept:
            item = items[i]
            writer.writerow([item.key, image_ids[i], *codes_of(item), split_of[i], "kept", item.row or "", ""])
        done = {items[i].key for i in duplicates}
        for i, first in duplicates.items():
            item = items[i]
            writer.writerow([item.key, image_ids[first], *codes_of(item), "", "duplicate_image", item.row or "",
                             f"byte-identical to {items[first].key}"])
        for p in problems:
            if p.kind == "duplicate_image" and p.source in done:
                continue
            item = by_key.get(p.source)
            is_photo = item is not None or not p.source.lower().endswith((".csv", ".tsv", ".txt"))
            writer.writerow([p.source if is_photo else "", "", *codes_of(item), "", p.kind, p.row or "",
                             p.reason if is_photo else f"{p.source}: {p.reason}"])
    with _private_open(folder / CODES_NAME) as fh:
        writer = SafeWriter(fh)
        writer.writerow(["kind", "code", "patient_id", "visit"])
        writer.writerows(sorted(["patient", code, pid, ""] for pid, code in patient_codes.items()))
        writer.writerows(sorted(["visit", code, pid, visit] for (pid, visit), code in visit_codes.items()))
    with _private_open(folder / PROBLEMS_NAME) as fh:
        writer = SafeWriter(fh)
        writer.writerow(["kind", "source", "csv_row", "reason"])
        writer.writerows([p.kind, p.source, p.row or "", p.reason] for p in problems)
    with _private_open(folder / DETAILS_NAME) as fh:
        fh.write(json.dumps(dict(details), indent=2, ensure_ascii=False, default=str) + "\n")


def read_codes(dataset_dir: str | Path) -> dict[str, dict]:
    """The private code map of a packed dataset: {"patient": {code: patient_id}, "visit": {code: (patient_id,
    visit)}}; empty maps when private/ is absent (a dataset downloaded from the Hub has none, by design).

    For the clinic's own joins of a packed dataset with its score tables (link, evaluate-ensemble --scores).
    """
    path = Path(dataset_dir) / PRIVATE_DIR / CODES_NAME
    out: dict[str, dict] = {"patient": {}, "visit": {}}
    if not path.is_file():
        return out
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            kind, code = row["kind"], read_cell(row["code"])
            pid, visit = read_cell(row["patient_id"]), read_cell(row["visit"])
            out.setdefault(kind, {})[code] = pid if kind == "patient" else (pid, visit)
    return out


def clinic_ids(dataset_dir: str | Path, patients: Sequence[str], visits: Sequence[str]) -> tuple[list[str], list[str]]:
    """Packed patient/visit codes -> the clinic's own ids, through private/codes.csv (local use only).

    Without the private map (a dataset from the Hub) the codes are returned unchanged and a warning says
    that they will not match the clinic's score tables.
    """
    codes = read_codes(dataset_dir)
    if not codes["patient"]:
        logger.warning("%s has no %s/%s: its patient ids are opaque codes and will not match a clinic's score "
                       "table; run on the dataset folder that prepare wrote", dataset_dir, PRIVATE_DIR, CODES_NAME)
        return list(patients), list(visits)
    out_p = [codes["patient"].get(p, p) for p in patients]
    out_v = [codes["visit"][v][1] if v in codes["visit"] else v for v in visits]
    return out_p, out_v


def _report(
    *, counts: dict, patients: dict, n_photos: int, classes: Sequence[str], problems: Sequence[Problem],
    warnings: Sequence[str], agreement: Mapping, parameters: Mapping, extra_columns: Sequence[str],
    private_counts: Mapping[str, int],
) -> dict:
    """The publishable report: an allow-list of counts, class names, reason keys and parameters."""
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
        # reasons only: each problem with its file, CSV row and full message is in private/problems.csv
        "exclusions": {"total": len(problems), "by_reason": by_reason},
        "warnings": list(warnings),
        "private": {"folder": PRIVATE_DIR, "files": list(PRIVATE_FILES), **dict(private_counts)},
        "agreement": dict(agreement),
        "columns": list(METADATA_COLUMNS) + list(extra_columns),
        "parameters": dict(parameters),
        "versions": _versions(),
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


def _reason_text(kind: str) -> str:
    if kind.startswith("non_site:"):
        return f"raters' consensus is the non-site code `{kind.split(':', 1)[1]}`"
    return _REASON_TEXT.get(kind, kind.replace("_", " "))


def _dataset_card(report: dict, table_md: str, agreement: Mapping | None, features) -> str:
    """The dataset card, built from the public report only (so it can quote nothing private)."""
    import yaml

    splits = list(report["splits"])
    yaml_features = features._to_yaml_list()
    header = {
        "pretty_name": "LoSCAT body-region photos (loscat-hf)",
        "license": "other",
        "license_name": "private-clinical-data",
        "task_categories": ["image-classification"],
        "tags": ["medical", "dermatology", "localized-scleroderma", "morphea", "loscat", "body-region"],
        "size_categories": [_size_category(report["n_photos"])],
        # the schema in one place: `load_dataset(DIR or repo id)` reads it from `configs` (ClassLabel labels,
        # float scores, text codes, one schema in every split); `dataset_info` is what the Hub shows
        "dataset_info": {"features": yaml_features},
        "configs": [{
            "config_name": "default",
            "data_files": [{"split": s, "path": f"{s}/*"} for s in splits],
            "features": copy.deepcopy(yaml_features),  # a copy: no YAML anchor/alias in the card header
        }],
    }
    params = report["parameters"]
    private = report["private"]
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "",
        "# LoSCAT body-region photos", "",
        "Clinical photographs of localized scleroderma, each labelled with the LoSCAT body region it shows "
        f"({len(report['classes'])} classes, sides folded; `site` keeps the side). Built by `loscat-hf prepare` "
        f"{report['versions'].get('loscat_hf', '')} on {report['created_utc']}: {report['n_photos']} photos of "
        f"{report['n_patients']} patients.", "",
        "**Private clinical data.** Keep the repository private unless the photos are cleared for release.", "",
        "## Structure", "",
        "Hugging Face `imagefolder`: one folder per split, each with a `metadata.parquet` giving per photo: "
        + ", ".join(f"`{c}`" for c in report["columns"]) + ". The features are declared in this card's "
        "header and in each metadata file's schema, so loading the folder (or the Hub repo) gives `label` as a "
        "`ClassLabel` in taxonomy order and the same schema in every split (a missing value is `None`):",
        "", "```python", "from datasets import load_dataset",
        'ds = load_dataset("path/to/dataset")  # or the Hub repo id',
        'ds = load_dataset("imagefolder", data_dir="path/to/dataset")  # the same', "```", "",
        "## Counts per class and split", "", table_md, "",
        "## Exclusions", "",
    ]
    by_reason = report["exclusions"]["by_reason"]
    if by_reason:
        lines += ["| reason | count | meaning |", "|---|---:|---|"]
        lines += [f"| `{k}` | {n} | {_reason_text(k)} |" for k, n in by_reason.items()]
        lines += ["", "Whoever prepared the data holds the list of excluded photos; it is not published."]
    else:
        lines.append("Nothing was excluded.")
    lines += ["", "## Rater agreement", "", _agreement_text(agreement), ""]
    lines += [
        "## De-identification", "",
        "- Every photo was decoded and re-encoded as JPEG (quality 95): EXIF (camera, dates, GPS), XMP, IPTC, "
        "ICC profiles, PNG text and comments are gone; EXIF orientation was applied to the pixels, colour "
        "converted to sRGB.",
        f"- Photos were downscaled so the shorter side is at most {params.get('max_side')} pixels (at least "
        f"{round((1 - SIZE_SLACK) * params.get('max_side', 0))} unless the original was smaller).",
        "- File names are opaque ids (a keyed hash of the original file; the key is not published).",
        f"- `patient_id` and `visit` are opaque codes drawn for this dataset (`{PATIENT_PREFIX}001`, "
        f"`{VISIT_PREFIX}001`, in random order); photos of one patient share a code. The map back to the "
        "clinic's ids and the original files stays with whoever prepared the data and is never uploaded.",
        "- Only the columns loscat-hf defines"
        + (", and " + ", ".join(f"`{c}`" for c in report["columns"][len(METADATA_COLUMNS):])
           + " (kept on purpose)" if len(report["columns"]) > len(METADATA_COLUMNS) else "")
        + f", are published; {private['dropped_columns']} other column(s) of the annotation export were left "
        "out.",
        "- Rater names are replaced by `rater 1`, `rater 2`, ...",
        "- The pixels themselves can still identify a person (faces, tattoos, jewellery): review before sharing.",
        "", "## Splits by patient", "",
        f"All photos of one patient are in the same split (no patient is in two splits). Splits come from "
        f"scikit-learn's `StratifiedGroupKFold` (stratified by class, grouped by patient; see the warnings for "
        f"a split too small to stratify), seed "
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
        from loscat_hf.data.agreement import format_agreement

        return "```\n" + format_agreement(dict(agreement)) + "\n```"
    except Exception:  # noqa: BLE001 - the card must be written even if the summary format changes
        return "```json\n" + json.dumps(dict(agreement), indent=2, default=str) + "\n```"


def dataset_features(classes: Sequence[str], extra_columns: Sequence[str] = ()):
    """`datasets.Features` of a packed dataset: the one schema the card declares and train/evaluate use.

    `label` is a ClassLabel in taxonomy order, score columns (score_*) float32, every other column text
    (codes and ids stay text: '007' never becomes the int 7).
    """
    from datasets import ClassLabel, Features, Value
    from datasets import Image as ImageFeature

    columns = {"image": ImageFeature(), "label": ClassLabel(names=list(classes))}
    columns.update({c: Value("string") for c in METADATA_COLUMNS[2:]})
    columns.update({c: Value("float32" if c.startswith(SCORE_PREFIX) else "string") for c in extra_columns})
    return Features(columns)


def card_features(dataset_dir: str | Path):
    """The features a packed dataset's card declares, or None for a dataset without them (older prepare)."""
    from datasets import Features
    from huggingface_hub import DatasetCard

    card = Path(dataset_dir) / CARD_NAME
    if not card.is_file():
        return None
    try:
        data = DatasetCard.load(card).data.to_dict()
        return Features._from_yaml_list(data["dataset_info"]["features"])
    except Exception:  # noqa: BLE001 - a hand-edited or foreign card: fall back to the caller's default
        logger.warning("%s declares no readable dataset_info.features; using the default schema", card)
        return None


def publishable_files(dataset_dir: str | Path) -> list[tuple[str, Path]]:
    """(path in repo, local file) of everything a push may upload: an allow-list, not a filter.

    The card, the report, and per split its metadata.parquet and the <image_id>.jpg photos. private/, stray
    files a user put into the folder, and anything else are never uploaded.
    """
    out = Path(dataset_dir)
    files = [(name, out / name) for name in (CARD_NAME, REPORT_NAME) if (out / name).is_file()]
    for split in SPLIT_ORDER:
        folder = out / split
        if not folder.is_dir():
            continue
        if (folder / METADATA_NAME).is_file():
            files.append((f"{split}/{METADATA_NAME}", folder / METADATA_NAME))
        photos = sorted(p for p in folder.iterdir() if _PUBLIC_PHOTO.fullmatch(p.name) and p.is_file()
                        and not p.is_symlink())
        files += [(f"{split}/{p.name}", p) for p in photos]
    return files


def push_dataset_to_hub(out_dir: str | Path, repo_id: str, private: bool = True) -> str:
    """Make a Hub dataset repo hold exactly a packed dataset's `publishable_files`; returns its URL.

    One commit adds those files and deletes every other file of the repo (a file an earlier push left, e.g.
    a split this dataset no longer has), so the repo's current files are the allow-list; earlier revisions
    stay in the repo's git history. A dataset from an older prepare (raw patient ids, no private/) is refused.
    Uses the token from `hf auth login` / HF_TOKEN; the token is never printed.
    """
    out = Path(out_dir)
    if not (out / CARD_NAME).is_file() or not (out / "train").is_dir():
        raise LoscatError(f"{out} is not a dataset written by `loscat-hf prepare` (no README.md or train/)")
    if not (out / PRIVATE_DIR).is_dir() or not (out / "train" / METADATA_NAME).is_file():
        raise LoscatError(f"{out} was written by an older loscat-hf (patient ids not coded, no {PRIVATE_DIR}/): "
                          "rebuild it with `loscat-hf prepare --overwrite` before pushing")
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    files = publishable_files(out)
    keep = {name for name, _ in files} | {".gitattributes"}
    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        stale = [f for f in api.list_repo_files(repo_id, repo_type="dataset") if f not in keep]
        api.create_commit(
            repo_id=repo_id, repo_type="dataset", commit_message="Upload dataset prepared by loscat-hf",
            operations=[CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files]
            + [CommitOperationDelete(path_in_repo=name) for name in stale],
        )
    except Exception as exc:  # noqa: BLE001 - network/auth errors become one readable line
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        message = re.sub(r"hf_[A-Za-z0-9]{6,}", "hf_***", message)  # some errors echo the token
        raise LoscatError(
            f"could not push {out} to the Hub dataset repo {repo_id!r}: {message} "
            "(log in with `hf auth login` or set HF_TOKEN)"
        ) from None
    if stale:
        logger.info("deleted %d file(s) outside the allow-list from %s", len(stale), repo_id)
    return str(url)
