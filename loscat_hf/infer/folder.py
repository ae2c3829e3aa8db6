"""`loscat-hf predict`: label a whole photo archive (folder or CSV) into one predictions CSV.

Every file gets exactly one row: a prediction, or the reason it could not be read (`status` is the
`ImageProblemError` kind), so a corrupt photo never stops a night-long run. A prediction names its top
region and top-k, and `regions`: every region the photo shows (a multi-region model's classes at or above
their thresholds, a single-region model's one region), so the same columns serve both. Rows are appended to
`<out>.partial` and flushed after each batch; `resume=True` skips photos already in the output or the
partial file, once `resume.py` has checked that the same model and settings wrote them (`<out>.run.json`)
and that each is still a possible answer. The final CSV appears atomically (temp file next to it +
os.replace). Where it goes is checked before the model loads or any photo runs. Cells go through `csvsafe`
(a file named `=x.jpg` cannot become a spreadsheet formula), and resume reads them back with
`csvsafe.read_cell`. A file name that is not valid UTF-8 (Linux allows any bytes) is written with its odd
bytes as `\\xNN`: the photo still gets its answer, and the CSV stays UTF-8.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loscat_hf.data.private import private_open
from loscat_hf.defaults import REGIONS_COLUMN as REGIONS
from loscat_hf.defaults import REGIONS_PROB_COLUMN as REGIONS_PROB
from loscat_hf.errors import LoscatError
from loscat_hf.io.atomic import atomic_file
from loscat_hf.io.csvsafe import SafeDictWriter, read_cell
from loscat_hf.taxonomy import split_set

if TYPE_CHECKING:
    from loscat_hf.model.folder import Decoding

TOP_K = 3
# REGIONS, REGIONS_PROB (defaults.py): every region the photo shows (';'-joined, most probable first) and
# their scores in the same order: a single-region model's one region, a multi-region model's classes at or
# above their thresholds
COLUMNS = ["image", "region", "probability",
           *[c for k in range(1, TOP_K + 1) for c in (f"top{k}", f"top{k}_prob")],
           REGIONS, REGIONS_PROB, "needs_review", "status", "error"]


@dataclass
class PredictSummary:
    """What a run did: rows by status, how many need a person's look, where the CSV is, and whether the
    probabilities (and so the review flags) are calibrated. A multi-region model's run also counts the
    photos that show several regions and those where no class passed its threshold; what decides its regions
    and flags is its per-class thresholds (`thresholds_fitted`), not a temperature."""

    out: Path
    total: int
    resumed: int
    by_status: dict[str, int] = field(default_factory=dict)
    needs_review: int = 0
    calibrated: bool = False
    model: str = "MODEL"
    multi_label: bool = False
    several_regions: int = 0
    no_region: int = 0
    thresholds_fitted: bool = False
    main: bool = True  # False: another process of a multi-process run (its shard only; the first merged)

    def __str__(self) -> str:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items()))
        shown = (f"{self.several_regions} show several regions, {self.no_region} no region above its "
                 "threshold; " if self.multi_label else "")
        text = (f"{self.total} photos ({statuses}); {shown}{self.needs_review} predictions need review; "
                f"{self.resumed} rows kept from an earlier run. Predictions: {self.out}")
        if self.multi_label and not self.thresholds_fitted:
            text += ("\nThe model has no fitted per-class thresholds (0.5 for every class): its regions and "
                     "review flags are not tuned; run `loscat-hf calibrate "
                     f"--model {self.model} --dataset DATASET` on your own labelled photos to fit them.")
        elif not self.calibrated and not self.multi_label:
            text += ("\nThe model is uncalibrated (no temperature fitted on labelled photos): its "
                     "probabilities and the review flags are not calibrated; run `loscat-hf calibrate "
                     f"--model {self.model} --dataset DATASET` on your own labelled photos.")
        return text


def list_inputs(images: str | os.PathLike, exclude: Sequence[Path] = ()) -> list[tuple[str, Path]]:
    """(row key, file path) for a folder (recursive, every non-hidden file) or a CSV with an `image` column.

    Folder keys are paths relative to the folder; CSV keys are the values as written (relative to the CSV's
    folder, or absolute). Every file is listed, not only image extensions: a stray PDF becomes an error row.
    """
    from loscat_hf.io.images import folder_files, printable_name

    root = Path(images)
    if root.is_dir():
        items = [(printable_name(key), path) for key, path in folder_files(root, exclude)]
        if not items:
            raise LoscatError(f"no files in {root}", param="images")
        if len({key for key, _ in items}) < len(items):  # only odd bytes written as \xNN can collide
            twice = Counter(key for key, _ in items).most_common(1)[0][0]
            raise LoscatError(f"images {root}: two files are both named {twice!r} once their non-UTF-8 bytes "
                              "are written as \\xNN; rename one of them", param="images")
        return items
    if root.is_file():
        try:
            with open(root, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                if "image" not in (reader.fieldnames or []):
                    raise LoscatError(f"{root} has no 'image' column (columns: {reader.fieldnames})",
                                      param="images")
                keys = [(row.get("image") or "").strip() for row in reader]
        except UnicodeDecodeError:
            raise LoscatError(f"{root} is neither a folder nor a UTF-8 CSV with an 'image' column",
                              param="images") from None
        keys = list(dict.fromkeys(k for k in keys if k))  # drop blanks and duplicates, keep order
        if not keys:
            raise LoscatError(f"{root} lists no images", param="images")
        return [(k, Path(k) if Path(k).is_absolute() else root.parent / k) for k in keys]
    raise LoscatError(f"images '{root}' does not exist", param="images")


def _decode(item: tuple[str, Path], decoding: Decoding) -> dict[str, Any]:
    """One photo -> {"image", "pixels" (uint8 3xSxS numpy)} or {"image", "status", "error"}; never raises,
    so a worker survives any file. Decoding is the predictor's own (`answers.decode` with its model's
    record)."""
    from loscat_hf.infer.answers import decode
    from loscat_hf.io.images import ImageProblemError, printable_name

    key, path = item
    try:
        return {"image": key, "pixels": decode(path, decoding)}
    except ImageProblemError as exc:
        return {"image": key, "status": exc.kind, "error": printable_name(exc.reason)}
    except Exception as exc:  # noqa: BLE001 - one odd file must not end the run
        return {"image": key, "status": "unreadable",
                "error": printable_name(f"{type(exc).__name__}: {exc}")}


def _ignore_sigint() -> None:
    """Decoding workers leave Ctrl-C to the main process (which stops the pool): one message, not one per
    worker."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def decoded_batches(items: list[tuple[str, Path]], predictor, batch_size: int,
                    num_workers: int) -> Iterator[list[dict[str, Any]]]:
    """Decoded records in input order, `batch_size` at a time, from `num_workers` processes (0 = here).

    A spawned process pool (no fork of a parent that already runs torch or ONNX Runtime threads; a worker that
    dies raises BrokenProcessPool instead of hanging), not a torch DataLoader: predict's fast start never
    imports torch. At most `2 * batch_size + num_workers` decoded photos wait in memory."""
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    decode = partial(_decode, decoding=predictor.decoding)
    if num_workers < 1 or len(items) < 2:
        for start in range(0, len(items), batch_size):
            yield [decode(item) for item in items[start:start + batch_size]]
        return
    pool = ProcessPoolExecutor(max_workers=min(num_workers, len(items)), mp_context=mp.get_context("spawn"),
                               initializer=_ignore_sigint)
    pending: deque = deque()
    todo = iter(items)
    try:
        batch: list[dict[str, Any]] = []
        while True:
            while len(pending) < 2 * batch_size + num_workers:  # bounded read-ahead: memory stays flat
                item = next(todo, None)
                if item is None:
                    break
                pending.append(pool.submit(decode, item))
            if not pending:
                break
            batch.append(pending.popleft().result())
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of an earlier output or partial file, cells as they were before `safe_cell` (the keys match)."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [{k: read_cell(v or "") for k, v in row.items() if k is not None}
                    for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LoscatError(f"resume: cannot read {path} ({exc}); move it away or run without resume=True",
                          param="resume") from None
    return [row for row in rows if row.get("image") and row.get("status")]


def check_output_path(out: Path) -> None:
    """Refuse an output that cannot be written, before any work: a folder, or a parent that is a file or
    read-only (found only after every photo had run, before)."""
    partial = out.with_name(out.name + ".partial")
    for path in (out, partial, out.with_name(out.name + ".run.json")):
        if path.is_dir():
            raise LoscatError(f"out {path} is a folder; give a file name for the predictions CSV, "
                              f"e.g. {path / 'predictions.csv'}", param="out")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:  # the folder that will hold the new folders
        parent = parent.parent
    if not parent.is_dir():
        raise LoscatError(f"out {out}: {parent} is a file, not a folder; choose another out", param="out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LoscatError(f"out {out}: cannot write in {parent} (permission denied); choose another out",
                          param="out")


def _prediction_row(key: str, pred) -> dict[str, Any]:
    row: dict[str, Any] = {"image": key, "region": pred.label, "probability": f"{pred.probability:.4f}",
                           "needs_review": str(pred.needs_review).lower(), "status": "ok", "error": ""}
    for k in range(TOP_K):
        label, prob = pred.top[k] if k < len(pred.top) else ("", None)
        row[f"top{k + 1}"] = label
        row[f"top{k + 1}_prob"] = "" if prob is None else f"{prob:.4f}"
    row[REGIONS], row[REGIONS_PROB] = pred.region_cells()
    return row


def row_top(row: dict[str, str]) -> list[tuple[str, float]]:
    """A prediction row's top-k as (class, probability), the inverse of `_prediction_row`; [] for an error
    row."""
    if row.get("status") != "ok":
        return []
    return [(row[f"top{k}"], float(row[f"top{k}_prob"])) for k in range(1, TOP_K + 1) if row.get(f"top{k}")]


def row_regions(row: dict[str, str]) -> list[tuple[str, float]]:
    """A prediction row's regions as (class, score), most probable first, the inverse of `_prediction_row`;
    [] for an error row or a photo where no class passed its threshold."""
    if row.get("status") != "ok":
        return []
    return list(zip(split_set(row.get(REGIONS)), map(float, split_set(row.get(REGIONS_PROB))), strict=True))


def predict_folder(model, images: str | os.PathLike, out: str | os.PathLike, *, batch_size: int = 32,
                   num_workers: int = 0, device: str | None = None, precision: str = "auto",
                   backend: str = "auto", min_confidence: float | None = None,
                   min_margin: float | None = None, tta: bool = False, resume: bool = False,
                   progress: bool = True) -> PredictSummary:
    """Predict every photo of a folder or CSV into `out` (one row per file); returns a PredictSummary.

    `model`: a model folder, a Hub id, or a ready predictor (then device/precision/backend/thresholds are its
    own). Without `resume`, an earlier output or partial file is replaced. With it, their rows are kept only
    when this model and these settings wrote them, each row still a possible answer (`infer.resume`). Under
    `accelerate launch` with several processes each labels its shard and the first merges one CSV
    (`infer.shards`); the others return a summary of their shard (`PredictSummary.main` False).
    """
    from loscat_hf.infer import resume as runs
    from loscat_hf.infer import shards
    from loscat_hf.infer.load import load_predictor

    if batch_size < 1:
        raise LoscatError("batch_size must be at least 1", param="batch_size")
    out = Path(out)
    partial = shards.part_path(out, 0)
    procs = shards.launched()
    with procs.together():  # a node that cannot see the photos or out stops every process
        check_output_path(out)
        items = list_inputs(images, exclude=(out, partial, runs.record_path(out), *shards.other_parts(out)))
    procs.check_same("files", shards.digest([key for key, _ in items]), "images")
    device = procs.device(device)
    with procs.main_first():  # a download or a graph export happens once
        predictor = load_predictor(model, device=device, precision=precision, backend=backend,
                                   min_confidence=min_confidence, min_margin=min_margin)
    name = str(model) if isinstance(model, (str, os.PathLike)) else predictor.folder.name or "MODEL"
    record = runs.run_record(predictor, name, tta=tta, top_k=TOP_K, columns=COLUMNS)
    # one record vouches for every part: a process whose answers would differ (no GPU, no bf16) is refused
    procs.check_same("settings (model, device, numerics)",
                     shards.digest([json.dumps(record, sort_keys=True)]), "device",
                     hint="give every process the same kind of device")

    done: dict[str, dict[str, str]] = {}
    with procs.together():  # refused before anything is written: the earlier files stay as they are
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LoscatError(f"out {out}: cannot create {out.parent} ({exc.strerror})",
                              param="out") from None
        if resume:
            earlier = runs.earlier_rows(out, [partial, *shards.other_parts(out)], record)
            runs.check_rows(earlier, predictor.labels, [key for key, _ in items], TOP_K,
                            predictor.min_confidence, predictor.min_margin, predictor.folder.thresholds)
            done = {row["image"]: row for _, _, row in earlier}
    # (together() is a barrier: every process has read the earlier files before the first rewrites them)
    todo = [item for item in items if item[0] not in done]
    mine = shards.shard(todo, batch_size, procs.index, procs.count)
    rows = _label(out, procs, predictor, done, record, mine, batch_size=batch_size, num_workers=num_workers,
                  tta=tta, progress=progress)
    procs.wait()  # every part is complete
    if not procs.main:
        return _summary(list(rows.values()), out, 0, predictor, name, main=False)
    others = shards.other_parts(out)
    for part in others:
        rows.update((row["image"], row) for row in read_rows(part))
    if missing := [key for key, _ in items if key not in rows]:
        raise LoscatError(f"out {out}: {len(missing)} photo(s) have no row (first: {missing[0]}): with "
                          "several nodes, out must be on a filesystem they all share; the parts are kept, "
                          "run again with resume=True", param="out")
    ordered = [rows[key] for key, _ in items]  # resume kept only rows of listed files
    _write_output(out, ordered, record, [partial, *others])
    return _summary(ordered, out, len(done), predictor, name)


def _label(out: Path, procs, predictor, done: dict[str, dict[str, str]], record: dict[str, Any],
           items: list[tuple[str, Path]], *, batch_size: int, num_workers: int, tta: bool,
           progress: bool) -> dict[str, dict[str, Any]]:
    """Label this process's `items` into its part file; returns its rows (the first process's: the kept
    rows too). The first process starts the run: its part gets the kept rows, older parts go, the run record
    is written; only then do the other processes create their parts."""
    from tqdm.auto import tqdm

    from loscat_hf.infer import resume as runs
    from loscat_hf.infer import shards

    rows: dict[str, dict[str, Any]] = dict(done) if procs.main else {}
    with contextlib.ExitStack() as stack:
        with procs.together():  # also the barrier: the others create their parts only after this
            if procs.main:
                f, writer = _open_part(stack, out, 0)
                writer.writerows(done.values())
                f.flush()
                os.fsync(f.fileno())
                for stale in shards.other_parts(out):  # their kept rows are in the first part now
                    stale.unlink()
                # the parts now hold every row kept: from here on the record vouches for the parts only
                runs.write_record(out, record | {"run": uuid.uuid4().hex})
        with procs.together():
            if not procs.main:
                f, writer = _open_part(stack, out, procs.index)
        procs.check_same("run record", runs.run_id(out), "out")
        desc = "predicting" if procs.count == 1 else f"predicting (process 0 of {procs.count}, its shard)"
        bar = tqdm(total=len(items), desc=desc, unit="photo",
                   disable=not progress or not items or not procs.main)
        # closing(): an exception or Ctrl-C shuts the decoding pool down at once, not at garbage collection
        with contextlib.closing(decoded_batches(items, predictor, batch_size, num_workers)) as batches:
            for records in batches:
                ok = [r for r in records if "pixels" in r]
                preds = []
                if ok:
                    logits = predictor.logits(np.stack([r["pixels"] for r in ok]), tta=tta)
                    preds = predictor.from_logits(logits, top_k=TOP_K)
                by_key = {r["image"]: p for r, p in zip(ok, preds, strict=True)}
                for r in records:
                    if r["image"] in by_key:
                        row = _prediction_row(r["image"], by_key[r["image"]])
                    else:
                        row = {c: "" for c in COLUMNS} | {"image": r["image"], "status": r["status"],
                                                          "error": r["error"]}
                    rows[r["image"]] = row
                    writer.writerow(row)
                f.flush()
                os.fsync(f.fileno())  # a killed run loses at most the batch in flight
                bar.update(len(records))
        bar.close()
    return rows


def _open_part(stack: contextlib.ExitStack, out: Path, index: int):
    """This process's part file, owner-only like the final file (rows name photo files, which may name
    patients), with its header written."""
    from loscat_hf.infer import shards

    part = shards.part_path(out, index)
    try:
        f = stack.enter_context(private_open(part))
    except OSError as exc:
        raise LoscatError(f"out {out}: cannot write {part} ({exc.strerror})", param="out") from None
    writer = SafeDictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    return f, writer


def _write_output(out: Path, ordered: list[dict[str, Any]], record: dict[str, Any],
                  parts: Sequence[Path]) -> None:
    """The CSV atomically, then its hash in the run record, then the parts go."""
    from loscat_hf.infer import resume as runs
    from loscat_hf.io.hashing import file_sha256

    with atomic_file(out, private=True) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = SafeDictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(ordered)
    runs.write_record(out, record, output_sha256=file_sha256(out))
    for part in parts:
        part.unlink(missing_ok=True)


def _summary(ordered: list[dict[str, Any]], out: Path, resumed: int, predictor, name: str,
             main: bool = True) -> PredictSummary:
    status = Counter(r["status"] for r in ordered)
    answered = [r for r in ordered if r["status"] == "ok"]
    review = sum(1 for r in answered if r["needs_review"] == "true")
    shown = Counter(min(len(split_set(r[REGIONS])), 2) for r in answered)
    return PredictSummary(out=out, total=len(ordered), resumed=resumed, by_status=dict(status),
                          needs_review=review, calibrated=predictor.folder.calibrated, model=name,
                          multi_label=predictor.folder.multi_label, several_regions=shown[2],
                          no_region=shown[0], thresholds_fitted=predictor.folder.threshold_record is not None,
                          main=main)
