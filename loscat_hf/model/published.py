"""What of a model folder's own records may be published: rebuilt from allowed values only, since a
config.json is not trusted to hold nothing else (a hand edit, an older loscat-hf). The card and the Space
state these (`calibration_shown`, `data_shown`, `thresholds_shown`, `start_allowed`), and `push`/`push-space`
upload `public_config(config.json)` instead of the file as it is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from loscat_hf.data.dataset import ORIGIN_KINDS, report_count
from loscat_hf.model import folder as model_folder

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TOKEN = re.compile(r"^[A-Za-z0-9][\w.-]{0,63}$")  # a class, task, taxonomy, arch or preset name
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHECKPOINT = re.compile(r"^checkpoint-\d+$")
RECORD_PREFIX = "loscat_"  # model/folder.py's keys

_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
# how a multi-region model's thresholds may say they were fitted: who fitted them, and the rule
# (`model/thresholds.py` `fit_thresholds`; tests/test_hub.py checks its rule is listed here)
THRESHOLD_BY = ("train", "calibrate")
THRESHOLD_RULES = ("per-class F1 maximum",)


def calibration_shown(how: dict | None) -> dict | None:
    """How a temperature was fitted, as a card or a public page may state it: rebuilt from allowed values only
    (`by` train/calibrate, a split name, counts, ECE numbers), since a config.json is not trusted to hold
    nothing else; None when nothing allowed is recorded."""
    if not isinstance(how, dict):
        return None
    out = {"by": how.get("by") if how.get("by") in ("train", "calibrate") else None,
           "split": how.get("split") if _SPLIT_NAME.match(str(how.get("split", ""))) else None,
           "n": report_count(how.get("n"))}
    for key in ("ece_before", "ece_after", "temperature_before"):
        value = how.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        out[key] = float(value) if ok and value >= 0 else None
    return out if any(v is not None for v in out.values()) else None


def _threshold(value: object) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok and 0.0 < value < 1.0 else None


def thresholds_shown(record: dict | None, labels) -> dict | None:
    """A multi-region model's thresholds record (`model_folder.thresholds`) as a card, a public page or the
    pushed config.json may state it, rebuilt from allowed values only: `values` {class: threshold in (0, 1)},
    `default_for` (no positive photo: the default) and `kept_for` (`calibrate`: the earlier threshold kept)
    [class] for the model's own `labels`, `by` (train/calibrate), a split name, `n` (a count), a known `rule`
    and `calibrate`'s macro-F1 before/after; None when no threshold is allowed."""
    if not isinstance(record, dict) or not isinstance(record.get("values"), dict):
        return None
    classes = [str(c) for c in labels if _TOKEN.match(str(c))]
    values = {c: t for c in classes if (t := _threshold(record["values"].get(c))) is not None}
    if not values:
        return None

    def named(key: str) -> list[str] | None:
        value = record.get(key)
        return [c for c in classes if c in value] if isinstance(value, list) else None

    def fraction(key: str) -> float | None:
        value = record.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok and 0.0 <= value <= 1.0 else None

    return {"values": values, "by": record.get("by") if record.get("by") in THRESHOLD_BY else None,
            "split": record.get("split") if _SPLIT_NAME.match(str(record.get("split", ""))) else None,
            "n": report_count(record.get("n")),
            "rule": record.get("rule") if record.get("rule") in THRESHOLD_RULES else None,
            "default_for": named("default_for"), "kept_for": named("kept_for"),
            "macro_f1_before": fraction("macro_f1_before"), "macro_f1_after": fraction("macro_f1_after")}


def data_shown(record: dict | None) -> dict | None:
    """What a model folder says it was last trained on (`record_data`), allowed values only: {"kind": one of
    ORIGIN_KINDS, "photos": a count or None}; None without a usable record."""
    if not isinstance(record, dict) or record.get("kind") not in ORIGIN_KINDS:
        return None
    return {"kind": record["kind"], "photos": report_count(record.get("photos"))}


def start_allowed(record: object, depth: int = 0) -> dict | None:
    """A start record rebuilt from allowed keys and values only: a folder's config.json is not trusted to hold
    nothing else (it is copied into the new model's config.json, which is published)."""
    from loscat_hf.model.build import PRESETS

    if not isinstance(record, dict) or depth > 8:
        return None
    kind = record.get("kind")
    if kind == "scratch" and record.get("preset") in PRESETS:
        return {"kind": "scratch", "preset": record["preset"]}
    if kind == "hub" and _HUB_ID.match(str(record.get("id", ""))):
        return {"kind": "hub", "id": record["id"]}
    if kind == "folder":
        out: dict = {"kind": "folder"}
        if _HUB_ID.match(str(record.get("id", ""))):
            out["id"] = record["id"]
        if inner := start_allowed(record.get("from"), depth + 1):
            out["from"] = inner
        return out
    return None


def _run_allowed(run: dict | None) -> dict | None:
    if not isinstance(run, dict):
        return None
    def token(key: str) -> str | None:
        return run.get(key) if _TOKEN.match(str(run.get(key))) else None

    classes = run.get("classes")
    ok = isinstance(classes, list) and all(_TOKEN.match(str(c)) for c in classes)
    sha = run.get("dataset_sha256")
    out = {"dataset_sha256": sha if _SHA256.match(str(sha)) else None,
           "taxonomy": token("taxonomy"), "classes": list(classes) if ok else None, "task": token("task")}
    return out if any(v is not None for v in out.values()) else None


def _source_allowed(source: dict) -> dict:
    """`model_folder.source` (which already masks a local checkpoint's name), allowed keys only."""
    from loscat_hf.model.study import STUDY_CODE_REPO, STUDY_WEIGHTS_REPO

    out = {"checkpoint": source.get("checkpoint") if isinstance(source.get("checkpoint"), str) else None,
           "sha256": source.get("sha256") if _SHA256.match(str(source.get("sha256"))) else None,
           "hub": source.get("hub") is True, "study": source.get("study") is True,
           "arch": source.get("arch") if _TOKEN.match(str(source.get("arch"))) else None,
           "labels": [str(c) for c in source.get("labels") or [] if _TOKEN.match(str(c))] or None}
    if out["study"]:
        out |= {"code": f"https://github.com/{STUDY_CODE_REPO}", "weights_repo": STUDY_WEIGHTS_REPO}
    return out


def _labels(config: Mapping) -> list[str]:
    """config.json's class names in output order (id2label's keys are JSON strings)."""
    id2label = config.get("id2label")
    if not isinstance(id2label, Mapping):
        return []
    return [str(v) for k, v in sorted(id2label.items(), key=lambda kv: (len(str(kv[0])), str(kv[0])))]


def public_config(config: Mapping) -> dict:
    """config.json as `push` uploads it: transformers' own keys as they are, and each loscat-hf record rebuilt
    through its accessor and an allow-list (an unknown `loscat_*` key is dropped). Plain transformers and
    loscat-hf read it as they read the folder."""
    from loscat_hf.data.score_tables import COMPONENTS
    from loscat_hf.model.build import PRESETS

    # transformers' keys as they are; every loscat-hf record (its keys all start so) rebuilt below
    out = {k: v for k, v in config.items() if not k.startswith(RECORD_PREFIX)}
    if model_folder.calibrated(config):
        how = calibration_shown(model_folder.calibration(config)) or {}
        model_folder.record_temperature(out, model_folder.temperature(config),
                                        **{k: v for k, v in how.items() if v is not None})
    model_folder.record_decoding(out, model_folder.decoding_mode(config), model_folder.max_side(config))
    if data := data_shown(model_folder.data_record(config)):
        model_folder.record_data(out, **data)
    run, base = _run_allowed(model_folder.run_record(config)), start_allowed(model_folder.base_record(config))
    if run or base:
        model_folder.record_run(out, run, base)
    if model_folder.preset(config) in PRESETS:
        model_folder.record_preset(out, model_folder.preset(config))
    if source := model_folder.source(config):
        model_folder.record_source(out, _source_allowed(source))
    # a multi-region model's thresholds (its `problem_type` is a transformers key: kept above)
    if shown := thresholds_shown(model_folder.thresholds(config), _labels(config)):
        values = shown.pop("values")
        model_folder.record_thresholds(out, values, **{k: v for k, v in shown.items() if v is not None})
    if components := [c for c in model_folder.score_components(config) if c in COMPONENTS]:
        model_folder.record_components(out, components)
    best = model_folder.best_checkpoint(config)
    if best and _CHECKPOINT.match(str(best)):
        model_folder.record_best_checkpoint(out, best)
    return out
