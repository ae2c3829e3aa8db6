"""The packed dataset: its layout, its schema and every reader of it (training, evaluation, link, Hub).

`prepare` writes it (packing.py); everything else reads it through here, so the layout is stated once:

    DIR/<split>/metadata.parquet + DIR/<split>/<image_id>.jpg   (train, validation, test)
    DIR/README.md, DIR/prepare_report.json, DIR/LICENSE.md       (public card, report and terms)
    DIR/private/{id_map,codes,problems}.csv, details.json        (NEVER published)
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from loscat_hf.data.score_tables import COMPONENTS, SCORE_PREFIX, score_column, scores_from_row
from loscat_hf.data.splits import SPLIT_ORDER
from loscat_hf.errors import LoscatError
from loscat_hf.io.csvsafe import read_cell
from loscat_hf.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

METADATA_COLUMNS = ("file_name", "label", "site", "patient_id", "visit", "image_id")

METADATA_NAME = "metadata.parquet"  # per split; written by prepare

LEGACY_METADATA_NAME = "metadata.csv"  # per split; read too (hand-made datasets, older prepare)

REPORT_NAME = "prepare_report.json"

CARD_NAME = "README.md"

LICENSE_NAME = "LICENSE.md"  # the terms of use the card's `license_link` points to: published with it

PRIVATE_DIR = "private"  # never uploaded, never quoted: maps back to people and original files

ID_MAP_NAME = "id_map.csv"

CODES_NAME = "codes.csv"

PROBLEMS_NAME = "problems.csv"

DETAILS_NAME = "details.json"

PRIVATE_FILES = (ID_MAP_NAME, CODES_NAME, PROBLEMS_NAME, DETAILS_NAME)  # all under PRIVATE_DIR

PATIENT_PREFIX, VISIT_PREFIX = "P", "V"

PUBLIC_PHOTO = re.compile(r"[0-9a-f]{16}\.jpg")
TRAINING_SPLITS = ("train", "validation")
TARGET_COLUMN = "score_targets"


MULTI_COLUMN = "labels"  # a multi-region dataset: every photo's classes, a Sequence(ClassLabel)


def dataset_features(classes: Sequence[str], extra_columns: Sequence[str] = (), multi_region: bool = False):
    """`datasets.Features` of a packed dataset: the one schema the card declares and train/evaluate use.

    `label` is a ClassLabel in taxonomy order, score columns (score_*) float32, every other column text
    (codes and ids stay text: '007' never becomes the int 7). `multi_region` adds `labels`, every photo's
    classes as a `Sequence(ClassLabel)`; `label` is then empty (None) on a photo that shows several.
    """
    from datasets import ClassLabel, Features, Sequence, Value
    from datasets import Image as ImageFeature

    columns = {"image": ImageFeature(), "label": ClassLabel(names=list(classes))}
    if multi_region:
        columns[MULTI_COLUMN] = Sequence(ClassLabel(names=list(classes)))
    columns.update({c: Value("string") for c in METADATA_COLUMNS[2:]})
    columns.update({c: Value("float32" if c.startswith(SCORE_PREFIX) else "string") for c in extra_columns})
    return Features(columns)


def metadata_features(features):
    """The schema of `<split>/metadata.parquet`: imagefolder's `file_name` key in place of the image
    column."""
    from datasets import Features, Value

    return Features({"file_name": Value("string"), **{k: v for k, v in features.items() if k != "image"}})


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


def packed_max_side(path: str | os.PathLike) -> int | None:
    """The --max-side a dataset was packed at (its public report), or None for a hand-made dataset."""
    try:
        value = json.loads((Path(path) / REPORT_NAME).read_text(encoding="utf-8"))["parameters"]["max_side"]
        return int(value)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def report_count(value) -> int | None:
    """A count read back from a report: a non-negative int, else None (missing, a bool, text, negative)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def dataset_origin(path: str | os.PathLike) -> dict:
    """What a packed dataset's public report says its photos are, for a model's training record (and card).

    {"prepared": True, "photos", "patients", "phantom_photos" (how many are `loscat-hf demo-data` phantoms;
    None for a report of an older prepare, which did not count them), "synthetic" (every photo a phantom;
    None when not counted), "splits": {split: {"photos", "patients", "phantom_photos"}}}, rebuilt from counts
    and flags only; {"prepared": False} for a dataset without prepare_report.json (hand-made: not
    recorded)."""
    try:
        report = json.loads((Path(path) / REPORT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"prepared": False}
    if not isinstance(report, dict):
        return {"prepared": False}
    splits = report.get("splits") if isinstance(report.get("splits"), dict) else {}
    phantoms = report_count(report.get("phantom_photos"))
    synthetic = report.get("synthetic")
    return {
        "prepared": True, "photos": report_count(report.get("n_photos")),
        "patients": report_count(report.get("n_patients")),
        "phantom_photos": phantoms,
        "synthetic": synthetic if isinstance(synthetic, bool) and phantoms is not None else None,
        "splits": {s: {k: report_count(v.get(k)) for k in ("photos", "patients", "phantom_photos")}
                   for s, v in splits.items() if s in SPLIT_ORDER and isinstance(v, dict)},
    }


def split_metadata_file(split_dir: str | Path) -> Path | None:
    """A split folder's metadata file: metadata.parquet (prepare), or metadata.csv (hand-made, older
    prepare)."""
    for name in (METADATA_NAME, LEGACY_METADATA_NAME):
        if (Path(split_dir) / name).is_file():
            return Path(split_dir) / name
    return None


def read_split_metadata(split_dir: str | Path) -> list[dict]:
    """The rows of a split's metadata, `label` as its class name (and a multi-region dataset's `labels` as
    class names): the one reader of both metadata formats."""
    path = split_metadata_file(split_dir)
    if path is None:
        raise LoscatError(f"{split_dir} has no {METADATA_NAME} (nor {LEGACY_METADATA_NAME})")
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq
            from datasets import Features

            table = pq.read_table(path)
            rows = table.to_pylist()
            features = Features.from_arrow_schema(table.schema)
            label, several = features.get("label"), getattr(features.get(MULTI_COLUMN), "feature", None)
            for row in rows:
                if hasattr(label, "int2str"):
                    row["label"] = label.int2str(row["label"]) if row.get("label") is not None else None
                if hasattr(several, "int2str"):
                    row[MULTI_COLUMN] = [several.int2str(x) for x in row.get(MULTI_COLUMN) or []]
            return rows
        with open(path, newline="", encoding="utf-8") as fh:
            return [{k: read_cell(v) for k, v in row.items() if k is not None} for row in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise LoscatError(f"cannot read {path} ({exc}); "
                          "rebuild the dataset with `loscat-hf prepare --overwrite`") from None


def publishable_files(dataset_dir: str | Path) -> list[tuple[str, Path]]:
    """(path in repo, local file) of everything a push may upload: an allow-list, not a filter.

    The card, the report, the terms of use (LICENSE.md, the card's license_link), and per split its
    metadata.parquet and the <image_id>.jpg photos. private/, stray files a user put into the folder, and
    anything else are never uploaded.
    """
    out = Path(dataset_dir)
    files = [(name, out / name) for name in (CARD_NAME, REPORT_NAME, LICENSE_NAME) if (out / name).is_file()]
    for split in SPLIT_ORDER:
        folder = out / split
        if not folder.is_dir():
            continue
        if (folder / METADATA_NAME).is_file():
            files.append((f"{split}/{METADATA_NAME}", folder / METADATA_NAME))
        photos = sorted(p for p in folder.iterdir() if PUBLIC_PHOTO.fullmatch(p.name) and p.is_file()
                        and not p.is_symlink())
        files += [(f"{split}/{p.name}", p) for p in photos]
    return files


SINGLE_LABEL, MULTI_LABEL = "single_label_classification", "multi_label_classification"  # transformers'
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL)


def is_multi_region(ds_or_path) -> bool:
    """Whether a packed dataset (a loaded DatasetDict/Dataset, or its folder) has the multi-region `labels`
    column, a Sequence(ClassLabel) (training's loaded view, float targets, is not): what `train`'s problem
    type defaults to."""
    if isinstance(ds_or_path, (str, os.PathLike)):
        features = card_features(ds_or_path)
        if features is None:
            meta = split_metadata_file(Path(ds_or_path) / "train")
            if meta is None or meta.suffix != ".parquet":
                return False
            import pyarrow.parquet as pq
            from datasets import Features

            features = Features.from_arrow_schema(pq.read_schema(meta))
    else:
        features = (ds_or_path["train"] if hasattr(ds_or_path, "keys") else ds_or_path).features
    return hasattr(getattr(features.get(MULTI_COLUMN), "feature", None), "names")


def multi_hot(labels: Sequence[Sequence[int]], n_classes: int) -> np.ndarray:
    """Class-id lists -> a float32 (n, n_classes) 0/1 matrix: the BCE targets and the metrics' truth."""
    out = np.zeros((len(labels), n_classes), dtype=np.float32)
    for i, ids in enumerate(labels):
        out[i, list(ids)] = 1.0
    return out


def load_packed_dataset(path: str, taxonomy: Taxonomy, max_train: int | None = None,
                        max_eval: int | None = None, problem_type: str | None = None):
    """Load the imagefolder with plain `datasets`, typed by the features its card declares, and add integer
    `labels` in the taxonomy's order (the card's ClassLabel order may differ from a --taxonomy given now).

    `problem_type` (None: follow the dataset): SINGLE_LABEL gives each photo one int `labels`; on a
    multi-region dataset only its single-region photos are kept (as the study did; the count left out is
    logged). MULTI_LABEL gives each photo a float 0/1 vector over the taxonomy's classes (`multi_hot`: the
    BCE target), from `labels` or, on a single-region dataset, from `label`.
    """
    from datasets import load_dataset

    root = Path(path)
    train_meta = split_metadata_file(root / "train")
    if train_meta is None:
        raise LoscatError(f"{path} is not a packed dataset (no train/metadata.parquet); "
                          "run `loscat-hf prepare` first")
    features = card_features(root)
    if features is None and train_meta.suffix == ".csv":  # hand-made or older: the same schema, rebuilt
        with open(train_meta, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
        features = dataset_features(taxonomy.classes, [c for c in header if c not in METADATA_COLUMNS])
    ds = load_dataset("imagefolder", data_dir=str(root), features=features)  # parquet: its schema's features
    if "validation" not in ds or len(ds["validation"]) == 0:
        raise LoscatError(f"{path} has no validation photos; run `loscat-hf prepare --val-fraction F` again "
                          "with an F that leaves some patients for validation")
    names = ds["train"].features["label"].names
    label2id = taxonomy.label2id
    unknown = sorted(set(names) - set(label2id))
    if unknown:
        raise LoscatError(f"dataset labels {unknown} are not classes of the taxonomy {taxonomy.name}")
    several = is_multi_region(ds)
    if problem_type not in (None, *PROBLEM_TYPES):
        raise LoscatError(f"problem_type {problem_type!r} is not one of {', '.join(PROBLEM_TYPES)}",
                          param="problem_type")
    if (problem_type or (MULTI_LABEL if several else SINGLE_LABEL)) == MULTI_LABEL:
        from datasets import List, Value

        source, n = (MULTI_COLUMN if several else "label"), len(taxonomy.classes)
        ids = [label2id[c] for c in ds["train"].features[source].feature.names] if several else None

        def targets(column: list) -> dict:
            rows = ([[ids[x] for x in row] for row in column] if several
                    else [[label2id[names[x]]] for x in column])
            return {MULTI_COLUMN: multi_hot(rows, n).tolist()}

        ds = ds.map(targets, batched=True, input_columns=source)  # the labels only: no photo is decoded
        ds = ds.cast_column(MULTI_COLUMN, List(Value("float32"), length=n))
    else:
        if several:  # the single-region path: photos that show one region only
            before = {k: len(v) for k, v in ds.items()}
            ds = ds.filter(lambda labels: [x is not None for x in labels], batched=True,
                           input_columns="label").remove_columns(MULTI_COLUMN)
            left = {k: before[k] - len(v) for k, v in ds.items() if before[k] - len(v)}
            logger.info("single-region view of a multi-region dataset: left out the photos that show "
                        "several regions (%s)", ", ".join(f"{k} {n}" for k, n in left.items()) or "none")
        ds = ds.map(lambda b: {"labels": [label2id[names[x]] for x in b["label"]]}, batched=True)
    if max_train:
        ds["train"] = ds["train"].shuffle(seed=0).select(range(min(max_train, len(ds["train"]))))
    if max_eval:
        ds["validation"] = ds["validation"].select(range(min(max_eval, len(ds["validation"]))))
    return ds


def check_packed_files(path: str | os.PathLike) -> None:
    """Every photo that train/ and validation/ list exists, and validation is not empty: a one-line error
    before anything is loaded or written (datasets would drop or fail on it in the middle of the run)."""
    root = Path(path)
    if split_metadata_file(root / "train") is None:
        return  # not a packed dataset at all: load_packed_dataset says so
    for split in TRAINING_SPLITS:
        meta = split_metadata_file(root / split)
        if meta is None:
            raise LoscatError(f"{root} has no validation split ({root / split} has no metadata): "
                              "training needs one to pick the best checkpoint; re-run "
                              "`loscat-hf prepare --val-fraction F` with F above 0")
        rows = read_split_metadata(root / split)
        if not rows:
            raise LoscatError(f"{meta} lists no photos: training needs a non-empty {split} split; re-run "
                              "`loscat-hf prepare` with more patients or a larger `--val-fraction`")
        missing = [(i, row.get("file_name") or "") for i, row in enumerate(rows, start=1)
                   if not row.get("file_name") or not (meta.parent / row["file_name"]).is_file()]
        if missing:
            row, name = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise LoscatError(f"{meta} row {row} lists {name or '(no file_name)'}, which is not in "
                              f"{meta.parent}{more}; restore the photos or rebuild the dataset with "
                              "`loscat-hf prepare --overwrite`")


def dataset_fingerprint(path: str | os.PathLike) -> str:
    """sha256 over the train and validation metadata files: which photos, labels and split a run used."""
    digest = hashlib.sha256()
    for split in TRAINING_SPLITS:
        meta = split_metadata_file(Path(path) / split)
        digest.update(split.encode() + b"\0")
        if meta is not None:
            digest.update(meta.read_bytes())
    return digest.hexdigest()

SUBGROUP_EXCLUDE = {"image", "file_name", "label", "labels", "site", "patient_id", "visit", "image_id"}


def subgroup_columns(split) -> list[str]:
    """Per-photo columns worth auditing (skin tone, age band, camera): low-cardinality strings."""
    cols = []
    for col in split.column_names:
        if col in SUBGROUP_EXCLUDE or col.startswith("score_"):
            continue
        values = split.unique(col)
        if 1 < len(values) <= 12 and all(isinstance(v, str) for v in values):
            cols.append(col)
    return cols


def split_score_targets(split, components: tuple[str, ...] = tuple(COMPONENTS)) -> np.ndarray | None:
    """The rated scores of one split as an (n photos, n components) float array, NaN where missing; None when
    the split has no score_* columns (packed without `prepare --scores`)."""
    cols = [score_column(c) for c in components]
    if any(c not in split.column_names for c in cols):
        return None
    targets = _targets(split.select_columns(cols).to_dict(), components)
    return np.asarray(targets, dtype=np.float64).reshape(len(targets), len(cols))


def _targets(columns: dict[str, list], components: tuple[str, ...]) -> list[list[float]]:
    """Score_* columns (a batch or a whole split) -> one list of floats per photo, NaN where missing."""
    cols = [score_column(c) for c in components]
    rows = [dict(zip(cols, vals, strict=True)) for vals in zip(*(columns[c] for c in cols), strict=True)]
    return [scores_from_row(r, components) for r in rows]


def add_score_targets(ds, components: tuple[str, ...] = tuple(COMPONENTS)):
    """Add a float list column `score_targets` (NaN = missing) from the dataset's score_* columns."""
    missing = [score_column(c) for c in components if score_column(c) not in ds["train"].column_names]
    if missing:
        raise LoscatError(
            f"task 'scores' needs score columns ({', '.join(missing)} missing): run `loscat-hf prepare ... "
            "--scores loscat_scores.csv`", param="task"
        )
    ds = ds.map(lambda batch: {TARGET_COLUMN: _targets(batch, components)}, batched=True)
    n_scored = sum(not np.all(np.isnan(t)) for t in ds["train"][TARGET_COLUMN])
    if n_scored == 0:
        raise LoscatError("no training photo has a score: nothing for the score heads to learn")
    return ds


# what a dataset's photos are (`origin_kind`): the kinds `train` records in a model folder (`record_data`)
ORIGIN_KINDS = ("synthetic", "mixed", "clinical", "uncounted", "unprepared", "unknown")


def origin_kind(record: dict | None) -> str:
    """What a dataset's photos are, from its `data.dataset.dataset_origin` record: "synthetic" (every photo a
    `loscat-hf demo-data` phantom), "mixed", "clinical" (no phantom), "uncounted" (an older prepare did not
    count phantoms), "unprepared" (no prepare report) or "unknown" (no record). The card and `train`'s
    `record_data` both take it from here."""
    if not isinstance(record, dict):
        return "unknown"
    if record.get("prepared") is not True:
        return "unprepared"
    photos, phantoms = report_count(record.get("photos")), report_count(record.get("phantom_photos"))
    if phantoms is None or photos is None:
        return "uncounted"
    if record.get("synthetic") is True and phantoms == photos:
        return "synthetic"
    return "mixed" if phantoms else "clinical"
