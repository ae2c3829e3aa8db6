"""`predict --resume`: rows of an earlier run are kept only when the same model and the same settings wrote
them, and only while each row is still a possible answer about a file of this input.

Every run records, beside its output, what decides its answers: `<out>.run.json` (owner-only, like the
output: it names the model folder) holds the model's weights fingerprint and its folder record (labels,
temperature, decoding, a multi-region model's thresholds) and the settings that change answers (tta, the
review thresholds, the numerics: fp32 / bf16 / int8, top-k, the columns). It is written at the start of a
run, once the partial file holds every row kept, and completed with the finished output's sha256 at the
end. `--resume` then refuses, in one line, an earlier output whose record is missing or differs, or an output
changed since it was written. One difference is taken in: a single-region model's output of a loscat-hf that
wrote no `regions` columns; its kept rows get `regions` = `region` (what predict writes for such a model
today) and the run rewrites them under today's header. A multi-region model's regions cannot be rebuilt from
its top-k: there the missing columns are named and refused. Then it re-validates every kept row (a region
among the model's labels, probabilities in [0, 1], the review flag and `regions` its scores give, under a
multi-region model's per-class thresholds, a known status, a file this input still lists), refusing the first
bad one by its row number.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from loscat_hf.defaults import REGIONS_COLUMN as REGIONS
from loscat_hf.defaults import REGIONS_PROB_COLUMN as REGIONS_PROB
from loscat_hf.errors import LoscatError
from loscat_hf.io.atomic import atomic_file
from loscat_hf.io.csvsafe import read_cell
from loscat_hf.io.hashing import file_sha256
from loscat_hf.io.images import PROBLEM_KINDS
from loscat_hf.model.folder import MULTI_LABEL, ModelFolder
from loscat_hf.taxonomy import split_set

RECORD_SUFFIX = ".run.json"
RECORD_VERSION = 1
AGAIN = "run without resume=True to predict every photo again, or choose another out"


def record_path(out: Path) -> Path:
    return out.with_name(out.name + RECORD_SUFFIX)


def numerics(predictor) -> str:
    """The arithmetic that computes the answers: int8 and bf16 change them; fp32 on torch or ONNX Runtime
    gives the same answers (within the exactness threshold, 1e-3 in probability)."""
    if predictor.precision in ("int8", "bf16"):
        return predictor.precision
    device = getattr(getattr(predictor, "device", None), "type", "")
    if predictor.backend == "torch" and predictor.precision == "auto" and device == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"  # autocast_for's rule
    return "fp32"


def weights_identity(predictor) -> str | None:
    """The predictor's weights: the fingerprint of its model folder's weights files (hashed once already
    where the cached graph runs), else a hash of the loaded weights; None when neither is there."""
    if getattr(predictor, "weights_sha256", None):
        return predictor.weights_sha256
    if predictor.folder.name:
        from loscat_hf.infer.backends.onnx_cache import local_model_folder
        from loscat_hf.model.weights import weights_fingerprint

        folder = local_model_folder(predictor.folder.name)
        if folder is not None and (found := weights_fingerprint(folder)):
            return found
    model = getattr(predictor, "model", None)
    if model is None:
        return None
    import torch  # loaded already: the predictor holds a torch model

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return "loaded:" + digest.hexdigest()


def run_record(predictor, model: str, *, tta: bool, top_k: int, columns: Sequence[str]) -> dict[str, Any]:
    """What decides this run's answers, as JSON types (a record read back compares equal)."""
    record = {
        "version": RECORD_VERSION,
        "model": model,  # for people only: the same weights in a moved folder give the same answers
        "weights_sha256": weights_identity(predictor),
        "model_record": predictor.folder.to_dict(),
        "settings": {"tta": bool(tta), "min_confidence": float(predictor.min_confidence),
                     "min_margin": float(predictor.min_margin), "temperature": float(predictor.temperature),
                     "numerics": numerics(predictor), "top_k": int(top_k), "columns": list(columns)},
        "output_sha256": None,
    }
    return json.loads(json.dumps(record))


def write_record(out: Path, record: dict[str, Any], output_sha256: str | None = None) -> None:
    """Owner-only and atomic: a reader sees the old record or the new one."""
    with atomic_file(record_path(out), private=True) as tmp:
        tmp.write_text(json.dumps({**record, "output_sha256": output_sha256}, indent=2), encoding="utf-8")


def _answering(record: Any) -> dict:
    """A model record as it decides answers: fields an older record lacks take today's defaults (a record
    written before multi-region models has no thresholds: a single-region model's are ()), and any
    problem_type other than multi-label reads as single-label, as prediction reads it."""
    if not isinstance(record, dict):
        return {}
    try:
        record = ModelFolder.from_dict(record).to_dict()
    except (TypeError, KeyError, ValueError):
        return record  # not a record this loscat-hf can read: compared as it is, and so refused
    return record | {"problem_type": record.get("problem_type") if record.get("problem_type") == MULTI_LABEL
                     else None}


def _differences(old: dict, new: dict) -> list[str]:
    what = []
    if old.get("weights_sha256") != new["weights_sha256"]:
        what.append("the model's weights")
    record_old, record_new = _answering(old.get("model_record")), _answering(new["model_record"])
    what += [f"the model's {k}" for k in sorted(set(record_old) | set(record_new))
             if record_old.get(k) != record_new.get(k)]
    then, now = old.get("settings") or {}, new["settings"]
    for k in sorted(set(then) | set(now)):
        if then.get(k) == now.get(k):
            continue
        if k == "columns" and isinstance(then.get(k), list):  # name the columns, not two long lists
            lacks = [c for c in now[k] if c not in then[k]]
            extra = [c for c in then[k] if c not in now[k]]
            what.append("the columns: " + "; ".join(
                [*([f"it has no {', '.join(lacks)} column (written by an older loscat-hf)"] if lacks else []),
                 *([f"it has {', '.join(extra)}, which this loscat-hf does not write"] if extra else [])]
                or ["in another order"]))
        else:
            what.append(f"{k} {then.get(k)} then, {now.get(k)} now")
    return what


Rows = list[tuple[Path, int, dict[str, str]]]  # (file, spreadsheet row number, row)


def _older_columns(old: dict, record: dict) -> list[str] | None:
    """The columns of an earlier single-region model's output that lacks only `regions` and
    `regions_probability` (a loscat-hf from before them): its rows can be given them; None otherwise (the
    same columns, other ones, or a multi-region model, whose regions its top-k cannot rebuild)."""
    then, now = (old.get("settings") or {}).get("columns"), record["settings"]["columns"]
    if record["model_record"].get("problem_type") == MULTI_LABEL or then == now:
        return None
    return then if then == [c for c in now if c not in (REGIONS, REGIONS_PROB)] else None


def _with_regions(rows: Rows) -> Rows:
    """A single-region model's rows as predict writes them today: its `regions` is its one region (an error
    row's are empty, as its region is)."""
    return [(path, number, row | {REGIONS: row["region"], REGIONS_PROB: row["probability"]})
            for path, number, row in rows]


def earlier_rows(out: Path, parts: Sequence[Path], record: dict[str, Any]) -> Rows:
    """The rows `--resume` may keep, from an output and the partial files (`parts`: one per process of the
    run that wrote them) of a run with this `record`; raises LoscatError naming what differs otherwise. An
    output written before its record's run started (the record has no output hash yet: that run began afresh
    or copied every kept row into its partial file) is not read."""
    files = [p for p in (out, *parts) if p.is_file()]
    if not files:
        return []
    where = record_path(out)
    try:
        old = json.loads(where.read_text(encoding="utf-8"))
        if not isinstance(old, dict) or old.get("version") != RECORD_VERSION:
            raise ValueError("not a run record of this loscat-hf")
    except (OSError, ValueError):
        raise LoscatError(f"resume: {files[0]} has no record of the model and settings that wrote it "
                          f"({where} is missing or unreadable); {AGAIN}", param=("resume", "out")) from None
    older = _older_columns(old, record)  # the one difference taken in: rows get their regions below
    columns = older or record["settings"]["columns"]
    if differs := _differences(old, record | {"settings": record["settings"] | {"columns": columns}}):
        raise LoscatError(f"resume: {files[0]} was written by another model or with other settings "
                          f"({'; '.join(differs)}); {AGAIN}", param=("resume", "out"))
    rows: Rows = []
    if out.is_file() and old.get("output_sha256") is not None:
        if file_sha256(out) != old["output_sha256"]:
            raise LoscatError(f"resume: {out} changed since loscat-hf wrote it (its sha256 is not the one "
                              f"recorded in {where}); {AGAIN}", param=("resume", "out"))
        rows += _read(out, columns)
    for part in parts:
        rows += _read(part, columns)
    return rows if older is None else _with_regions(rows)


def run_id(out: Path) -> str | None:
    """The id the first process of a run wrote into its record: every process of a multi-process run must
    read the same one (the same `--out`, on a filesystem they share)."""
    try:
        return json.loads(record_path(out).read_text(encoding="utf-8")).get("run")
    except (OSError, ValueError, AttributeError):
        return None


def _read(path: Path, columns: Sequence[str]) -> Rows:
    """(file, spreadsheet row number, row) for each row, cells as they were before `safe_cell`."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise LoscatError(f"resume: {path} has no {', '.join(missing)} column; {AGAIN}",
                                  param=("resume", "out"))
            return [(path, number, {c: read_cell(row.get(c) or "") for c in columns})
                    for number, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LoscatError(f"resume: cannot read {path} ({exc}); move it away or run without resume=True",
                          param="resume") from None


def _probability(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None


# probabilities are written with 4 decimals: a flag within this of a threshold may have gone either way
ROUNDING = 2e-4


def _review_problem(row: dict[str, str], top_k: int, min_confidence: float, min_margin: float) -> str | None:
    """The top-k probabilities are in descending order and `needs_review` is what this run's thresholds give
    them (rows written with other thresholds are refused before: this catches edited rows)."""
    probs = [float(row[f"top{k}_prob"]) for k in range(1, top_k + 1) if row[f"top{k}_prob"]]
    if any(a < b for a, b in zip(probs, probs[1:], strict=False)):
        return "the top-k probabilities are not in descending order"
    margin = probs[0] - probs[1] if len(probs) > 1 else 1.0
    if abs(probs[0] - min_confidence) < ROUNDING or abs(margin - min_margin) < ROUNDING:
        return None
    expected = probs[0] < min_confidence or margin < min_margin
    if row["needs_review"] != str(expected).lower():
        return (f"needs_review {row['needs_review']} does not follow from top1_prob {probs[0]:.4f} and the "
                f"top-2 margin {margin:.4f} at min_confidence {min_confidence:g}, min_margin {min_margin:g}")
    return None


def _regions_problem(row: dict[str, str], labels: Collection[str], top_k: int,
                     thresholds: Mapping[str, float]) -> str | None:
    """`regions` are model labels with a score each, most probable first: a single-region model's one region;
    a multi-region model's classes at or above their thresholds, every top-k class that passes among them."""
    names, texts = split_set(row[REGIONS]), split_set(row[REGIONS_PROB])
    if bad := next((n for n in names if n not in labels), None):
        return f"regions names {bad!r}, not one of the model's labels"
    if len(set(names)) < len(names) or len(texts) != len(names):
        return f"regions {row[REGIONS]!r} and regions_probability {row[REGIONS_PROB]!r} do not pair up"
    scores = [_probability(t) for t in texts]
    if None in scores:
        return f"regions_probability {row[REGIONS_PROB]!r} is not numbers from 0 to 1"
    if any(a < b for a, b in zip(scores, scores[1:], strict=False)):
        return "the regions are not in descending order of their scores"
    if not thresholds:
        return None if names == [row["region"]] else f"regions {row[REGIONS]!r} is not the region"
    given = dict(zip(names, scores, strict=True))
    if low := next((n for n in names if given[n] < thresholds[n] - ROUNDING), None):
        return f"region {low} scores {given[low]:.4f}, below its threshold {thresholds[low]:g}"
    for k in range(1, top_k + 1):
        label, prob = row[f"top{k}"], _probability(row[f"top{k}_prob"])
        if label and prob is not None and (label in given) != (prob >= thresholds[label]) \
                and abs(prob - thresholds[label]) >= ROUNDING:
            return (f"top{k} {label} scores {prob:.4f} at threshold {thresholds[label]:g} but is "
                    f"{'not ' * (label not in given)}among the regions")
    return None


def _multi_review_problem(row: dict[str, str], top_k: int, thresholds: Mapping[str, float],
                          min_margin: float) -> str | None:
    """A multi-region row asks for review when no class passes or a score lies within `min_margin` of its
    threshold: the row shows only its top-k and regions, so a flag set for an unseen class is accepted, one
    that the scores shown call for must be set."""
    shown = {row[f"top{k}"]: float(row[f"top{k}_prob"]) for k in range(1, top_k + 1) if row[f"top{k}"]}
    shown |= dict(zip(split_set(row[REGIONS]), map(float, split_set(row[REGIONS_PROB])), strict=True))
    near = [c for c, p in shown.items() if abs(p - thresholds[c]) < min_margin - ROUNDING]
    if row["needs_review"] == "false" and (near or not split_set(row[REGIONS])):
        why = f"{near[0]} scores within {min_margin:g} of its threshold" if near else "no region passes"
        return f"needs_review false, but {why}"
    return None


def row_problem(row: dict[str, str], labels: Collection[str], listed: Collection[str],
                top_k: int, min_confidence: float, min_margin: float,
                thresholds: Mapping[str, float] | None = None) -> str | None:
    """Why a kept row is not a possible answer of this model about a file of this input; None when it is.
    `thresholds` ({class: t}): a multi-region model's, whose review rule is per class."""
    thresholds = thresholds or {}
    image, status = row["image"], row["status"]
    if image not in listed:
        return f"{image!r} is not a file of this input (moved, removed, or outside it)"
    if status == "ok":
        if row["region"] not in labels:
            return f"region {row['region']!r} is not one of the model's labels"
        if row["needs_review"] not in ("true", "false"):
            return f"needs_review {row['needs_review']!r} is neither true nor false"
        if _probability(row["probability"]) is None:
            return f"probability {row['probability']!r} is not a number from 0 to 1"
        for k in range(1, top_k + 1):
            label, prob = row[f"top{k}"], row[f"top{k}_prob"]
            if label and label not in labels:
                return f"top{k} {label!r} is not one of the model's labels"
            if (label or prob) and _probability(prob) is None:
                return f"top{k}_prob {prob!r} is not a number from 0 to 1"
        if (row["top1"], row["top1_prob"]) != (row["region"], row["probability"]):
            return "region and probability are not top1 and top1_prob"
        if (problem := _regions_problem(row, labels, top_k, thresholds)) is not None:
            return problem
        if thresholds:
            return _multi_review_problem(row, top_k, thresholds, min_margin)
        return _review_problem(row, top_k, min_confidence, min_margin)
    if status not in PROBLEM_KINDS:
        return f"status {status!r} is not ok nor one of {', '.join(PROBLEM_KINDS)}"
    filled = [c for c in ("region", "probability", "needs_review", "top1", REGIONS, REGIONS_PROB) if row[c]]
    return f"an error row ({status}) with a {filled[0]}" if filled else None


def check_rows(rows: Rows, labels: Collection[str], listed: Collection[str], top_k: int,
               min_confidence: float, min_margin: float, thresholds: Sequence[float] = ()) -> None:
    """Refuse the first kept row that is not a possible answer, by its file and row number. `thresholds`: a
    multi-region model's, one per label (`ModelFolder.thresholds`)."""
    labels = list(labels)
    by_class = dict(zip(labels, thresholds, strict=True)) if thresholds else {}
    labels, listed = set(labels), set(listed)
    for path, number, row in rows:
        if (problem := row_problem(row, labels, listed, top_k, min_confidence, min_margin,
                                   by_class)) is not None:
            raise LoscatError(f"resume: {path}, row {number}: {problem}; {AGAIN}", param=("resume", "out"))
