"""Model cards: the card `train` saves beside a model and `push` publishes (`model_card`), and the card
`convert-timm` writes beside a converted checkpoint (`converted_card`).

A card is built from an allow-list of what the model folder holds: config.json, train_summary.json's recipe,
data counts, data origin (SYNTHETIC or not, from the dataset's report) and phases, and the evaluation
reports' metrics. Never a path, a file name or a patient code; what the record does not hold, the card calls
not recorded.
"""

from __future__ import annotations

import functools
import json
import logging
from importlib import resources
from pathlib import Path

from loscat_hf.data.dataset import origin_kind, report_count
from loscat_hf.defaults import CONFUSION_MATRIX, EVALUATED_NAME, MIN_MARGIN, SCORE_REPORT_NAME
from loscat_hf.errors import LoscatError
from loscat_hf.model import folder as model_folder
from loscat_hf.model.published import calibration_shown, thresholds_shown
from loscat_hf.model.study import STUDY_CODE_REPO, STUDY_WEIGHTS_REPO

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"  # the Hub's name for a model card
PLACEHOLDER_REPO = "PATH_OR_REPO"  # the card saved at training time: `push` fills in the repo id
PLACEHOLDER_NAME = "loscat-region-model"  # ... and the name (never the folder's: a path may name a patient)
TAGS = ["image-classification", "vision", "vit", "dermatology", "localized-scleroderma", "morphea", "loscat",
        "medical"]
# what the card shows of train_summary.json's hyperparameters, in this order, with readable names
_SHOWN = {"recipe": "recipe", "epochs": "epochs", "max_steps": "optimizer steps",
          "batch_size": "batch size (all devices)", "optimizer": "optimizer",
          "lr_scheduler": "learning-rate schedule", "warmup_steps": "warm-up",
          "weight_decay": "weight decay", "layer_decay": "layer-wise learning-rate decay",
          "label_smoothing": "label smoothing", "sampler": "sampler", "precision": "precision",
          "seed": "seed"}


def card_template() -> str:
    """The model-card template: `model_card.md` of the repo, shipped in the wheel as
    loscat_hf/resources/model_card.md."""
    return resources.files("loscat_hf").joinpath("resources/model_card.md").read_text(encoding="utf-8")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LoscatError(f"cannot read {path}: {exc}") from None


def _report(folder: Path) -> dict | None:
    """An evaluation report folder's numbers for the card (metrics.json; the split from evaluated.json)."""
    path = folder / "metrics.json"
    if not path.is_file():
        return None
    metrics = _read_json(path)
    missing = [k for k in ("macro_f1", "accuracy") if k not in metrics]
    if missing:
        raise LoscatError(f"{path} lacks {missing}: re-run `loscat-hf evaluate`")
    evaluated = folder / EVALUATED_NAME
    split = _read_json(evaluated).get("split", "validation") if evaluated.is_file() else "validation"
    gaps = []
    for column, sub in (metrics.get("subgroups") or {}).items():
        between = sub.get("macro_f1_gap_between") or {}
        one_group = bool(between) and between.get("worst") == between.get("best")  # nothing to compare
        if sub.get("macro_f1_gap") is None or one_group:
            continue
        values = sub.get("values") or {}
        gaps.append(dict(column=column, gap=sub["macro_f1_gap"], min_n=sub.get("min_n_for_gap"),
                         worst=between.get("worst"), best=between.get("best"),
                         worst_n=(values.get(between.get("worst")) or {}).get("n"),
                         best_n=(values.get(between.get("best")) or {}).get("n"),
                         accuracy_gap=sub.get("accuracy_gap")))
    report = dict(split=split, n=metrics.get("n", metrics.get("split_size")),
                  macro_f1=float(metrics["macro_f1"]), accuracy=float(metrics["accuracy"]),
                  balanced_accuracy=metrics.get("balanced_accuracy"), ece=metrics.get("ece"),
                  subgroup_gaps=gaps, scores=_score_rows(folder / SCORE_REPORT_NAME),
                  multi_label=bool(metrics.get("multi_label")),
                  left_out=_number(metrics.get("n_left_out_several_regions")))
    if report["multi_label"]:  # its `accuracy` is exact match, its `ece` the mean of per-class binary ECEs
        report.update({k: _number(metrics.get(k)) for k in (*_MULTI_METRICS, "n_photos_several_regions")})
    return report


# a multi-region report's model-index entries: (metrics.json key, metric type, name the Hub shows); the types
# are free text to the Hub: f1 and exact_match are ids of hf.co/metrics, the other two say what they are
_MULTI_METRICS = {"macro_f1": ("f1", "macro-F1"), "exact_match": ("exact_match", "exact match"),
                  "hamming_loss": ("hamming_loss", "Hamming loss"),
                  "mean_average_precision": ("mean_average_precision", "mean average precision")}


def _eval_results(r: dict, common: dict) -> list:
    """One report's model-index entries: a single-region report's macro-F1 and accuracy; a multi-region
    report's macro-F1, exact match, Hamming loss and mean average precision (each where it was measured),
    never exact match published as accuracy."""
    from huggingface_hub import EvalResult

    if not r["multi_label"]:
        return [EvalResult(metric_type="f1", metric_name="macro-F1", metric_config="macro",
                           metric_value=round(r["macro_f1"], 4), **common),
                EvalResult(metric_type="accuracy", metric_name="accuracy",
                           metric_value=round(r["accuracy"], 4), **common)]
    return [EvalResult(metric_type=kind, metric_name=name, metric_value=round(r[key], 4),
                       **({"metric_config": "macro"} if kind == "f1" else {}), **common)
            for key, (kind, name) in _MULTI_METRICS.items() if r.get(key) is not None]


def _score_rows(path: Path) -> dict | None:
    """A score report's numbers for the card (score_report.py's scores_report.json): per component and per
    visit total, n, MAE, RMSE, Pearson, quadratic kappa and ICC(2,1); None = no score report in the folder."""
    if not path.is_file():
        return None
    report = _read_json(path)
    keys = ("n", "mae", "rmse", "pearson", "qwk", "icc_2_1")
    rows = [dict(name=c, **{k: _number(m.get(k)) for k in keys})
            for c, m in (report.get("components") or {}).items()]
    totals = report.get("visit_totals") or {}
    visits = [dict(name=name, **{k: _number(totals[key].get(k)) for k in keys})
              for key, name in (("mlossi", "mLoSSI per visit"), ("losdi", "LoSDI per visit"))
              if key in totals]
    if not rows + visits:
        return None
    return {"n_photos": report.get("n_photos"), "n_rated": report.get("n_photos_rated"),
            "rows": rows + visits, "visits": bool(visits)}


def _number(value):
    """A finite number, or None (JSON NaN, a missing key): the card prints "-" for None."""
    return value if isinstance(value, int | float) and value == value and abs(value) != float("inf") else None


def evaluation_reports(model_dir: str | Path, extra: list[str | Path] = ()) -> list[dict]:
    """The reports a card shows, one per split (later ones win): `eval/` (written by train for this model),
    then every folder inside the model folder that `loscat-hf evaluate` wrote (it leaves an evaluated.json),
    then the `extra` report folders. An evaluate report of other weights (a stale report left from an earlier
    run, another model's) is skipped with a warning when found inside the folder, and refused when named."""
    from loscat_hf.model.weights import weights_fingerprint

    model_dir = Path(model_dir)
    # hashed once, and only if a report needs it
    own = functools.cache(lambda: weights_fingerprint(model_dir))
    found = sorted(p.parent for p in model_dir.glob(f"*/{EVALUATED_NAME}") if p.parent.name != "eval")
    by_split: dict[str, dict] = {}
    for folder, named in [(model_dir / "eval", False), *((f, False) for f in found),
                          *((Path(f), True) for f in extra)]:
        if named and not (folder / "metrics.json").is_file():
            raise LoscatError(f"{folder} holds no evaluation report (metrics.json): run `loscat-hf evaluate "
                              f"--out {folder}` first")
        evaluated = folder / EVALUATED_NAME
        if evaluated.is_file() or named:
            measured = _read_json(evaluated).get("weights_sha256") if evaluated.is_file() else None
            if measured is None or measured != own():
                why = (f"{folder} is not a report of {model_dir}'s weights (its evaluated.json "
                       f"{'records other weights' if measured else 'records no weights fingerprint'}); run "
                       f"`loscat-hf evaluate --model {model_dir} ... --out {folder}` again")
                if named:
                    raise LoscatError(why)
                logger.warning("model card: skipping %s", why)
                continue
        report = _report(folder)
        if report:
            by_split[report["split"]] = report
    order = {"train": 0, "validation": 1, "test": 2}
    return sorted(by_split.values(), key=lambda r: (order.get(r["split"], 3), r["split"]))


def model_card(model_dir: str | Path, repo_id: str | None = None, dataset_id: str | None = None,
               reports: list[str | Path] = ()):
    """The filled-in `huggingface_hub.ModelCard` (YAML metadata with model-index + text) of a model folder.

    `repo_id` None: the card train saves beside the model (loading code says PATH_OR_REPO); `reports`: extra
    `loscat-hf evaluate --out` folders (e.g. the test split) besides those inside the model folder."""
    from huggingface_hub import ModelCard, ModelCardData

    model_dir = Path(model_dir)
    config = _read_json(model_dir / model_folder.CONFIG_NAME)
    classes = [config["id2label"][k] for k in sorted(config.get("id2label", {}), key=int)]
    source = model_folder.source(config)
    start = start_of(config)
    summary_path = model_dir / "train_summary.json"
    summary = _read_json(summary_path) if summary_path.is_file() else {}
    evaluations = evaluation_reports(model_dir, list(reports))
    origin = training_origin(summary, start, fine_tuned=bool(model_folder.run_record(config)))
    ds_type, ds_name = ((dataset_id, dataset_id) if dataset_id
                        else _DATASET_NAMES.get(origin["kind"], _DATASET_NAMES["unknown"]))
    eval_results = []
    for r in evaluations:
        common = dict(task_type="image-classification", task_name="LoSCAT body region", dataset_type=ds_type,
                      dataset_name=ds_name, dataset_split=r["split"])
        eval_results += _eval_results(r, common)
    name = repo_id.split("/")[-1] if repo_id else PLACEHOLDER_NAME
    data = ModelCardData(
        license=None if source else "apache-2.0",  # converted weights keep their authors' licence
        library_name="transformers", pipeline_tag="image-classification", tags=TAGS,
        base_model=start["hub_id"], datasets=[dataset_id] if dataset_id else None,
        metrics=_metric_ids(evaluations), model_name=name, eval_results=eval_results or None,
    )
    hparams = summary.get("hyperparameters") or {}
    return ModelCard.from_template(
        data, template_str=card_template(), model_name=name, repo_id=repo_id or PLACEHOLDER_REPO,
        start=start, classes=", ".join(classes), num_classes=len(classes),
        image_size=config.get("image_size", "?"), evaluations=evaluations,
        has_confusion_matrix=(model_dir / CONFUSION_MATRIX).is_file(),
        temperature=model_folder.temperature(config), dataset_id=dataset_id, source=source,
        fine_tuned=bool(model_folder.run_record(config)),  # written by `train` into every model it saves
        hyperparameters=[(label, _shown(key, hparams[key])) for key, label in _SHOWN.items()
                         if hparams.get(key) is not None],
        learning_rates=hparams.get("learning_rates"),
        augmentation=_augmentation(hparams["augmentation"]) if "augmentation" in hparams else None,
        phases=summary.get("phases"), data_counts=_count_table(summary.get("data"), classes),
        hardware=summary.get("hardware"), has_summary=bool(summary),
        score_components=", ".join(model_folder.score_components(config)) or None,
        runtime_min=round(summary["train_runtime_s"] / 60, 1) if summary.get("train_runtime_s") else None,
        warnings=summary.get("warnings"), code_repo=STUDY_CODE_REPO, weights_repo=STUDY_WEIGHTS_REPO,
        origin=origin, calibrated=model_folder.calibrated(config),
        calibration=calibration_shown(model_folder.calibration(config)),
        **_multi_label(config, classes),
    )


def _metric_ids(evaluations: list[dict]) -> list[str]:
    """The card's `metrics` list: hf.co/metrics ids of what its reports measure (a multi-region report:
    macro-F1 and exact match; its Hamming loss and mAP have no id there)."""
    kinds = {r["multi_label"] for r in evaluations} or {False}
    return ["f1", *(["accuracy"] if False in kinds else []), *(["exact_match"] if True in kinds else [])]


def _multi_label(config: dict, classes: list[str]) -> dict:
    """What the card says of a multi-region model: per-class sigmoid scores, each against its threshold (the
    ones prediction uses, 0.5 where none is recorded), and how they were fitted (allowed values only)."""
    multi = config.get("problem_type") == model_folder.MULTI_LABEL
    shown = thresholds_shown(model_folder.thresholds(config), classes) if multi else None
    values = model_folder.threshold_values(config, classes)
    return dict(multi_label=multi, thresholds=shown, review_margin=MIN_MARGIN,
                threshold_rows=list(zip(classes, values, strict=True)) if multi else [],
                unrecorded=[c for c in classes if c not in shown["values"]] if shown else [])


# the model-index's dataset (type, name) when `push --dataset` names none: what the training record says
_DATASET_NAMES = {
    "synthetic": ("loscat-hf-demo-data", "SYNTHETIC phantoms (loscat-hf demo-data)"),
    "mixed": ("loscat-photos-with-phantoms", "LoSCAT clinical photos with SYNTHETIC phantoms (private)"),
    "clinical": ("loscat-clinical-photos", "LoSCAT clinical photos (private)"),
    "unknown": ("loscat-photos", "LoSCAT photos"),  # also converted weights, and records without a count
}


def training_origin(summary: dict, start: dict, fine_tuned: bool) -> dict:
    """What the card may say the weights were trained on, from the training record only (train_summary.json's
    `data_origin`, written by `train` from the dataset's prepare_report.json; counts and flags, never a name).

    kind: `origin_kind`'s, or "authors" (converted weights not trained since: their authors' data)."""
    if start.get("kind") in ("study", "converted") and not fine_tuned:
        return {"kind": "authors"}
    record = summary.get("data_origin") if isinstance(summary, dict) else None
    kind = origin_kind(record)
    if kind in ("unknown", "unprepared"):
        return {"kind": kind}
    photos, patients, phantoms = (report_count(record.get(k))
                                  for k in ("photos", "patients", "phantom_photos"))
    splits = record.get("splits") if isinstance(record.get("splits"), dict) else {}
    per_split = []
    for split in ("train", "validation", "test"):
        counts = splits.get(split) if isinstance(splits.get(split), dict) else {}
        n, p = report_count(counts.get("photos")), report_count(counts.get("patients"))
        if n is not None and p is not None:
            per_split.append(f"{split} {n} photos of {p} patients")
    return {"kind": kind, "photos": photos, "patients": patients, "phantoms": phantoms,
            "splits": ", ".join(per_split)}


def start_of(config: dict) -> dict:
    """Where a model's weights started, for the card: kind "scratch" (a preset), "hub" (fine-tuned from a Hub
    model), "study" (the study's converted weights), "folder" (a local folder of unrecorded origin) or
    "unknown" (no record: another trainer, an older loscat-hf); `hub_id` is the card's `base_model` (None when
    there is no Hub model to name), `via_folder` when a local folder came in between."""
    source = model_folder.source(config)
    record = model_folder.base_record(config)
    via_folder = False
    while (isinstance(record, dict) and record.get("kind") == "folder" and not record.get("id")
           and record.get("from")):
        record, via_folder = record["from"], True
    if isinstance(record, dict) and record.get("kind") == "folder" and record.get("id"):
        record, via_folder = {"kind": "hub", "id": record["id"]}, True
    out = dict(kind="unknown", hub_id=None, preset=None, via_folder=via_folder)
    # converted by convert-timm (and maybe fine-tuned since): the study's weights, or credited ones
    if source:
        out.update(kind="study" if source.get("study") else "converted",
                   hub_id=source.get("weights_repo") if source.get("study") else None)
    elif isinstance(record, dict) and record.get("kind") == "scratch":
        out.update(kind="scratch", preset=record.get("preset"))
    elif isinstance(record, dict) and record.get("kind") == "hub":
        out.update(kind="hub", hub_id=record.get("id"))
    elif isinstance(record, dict) and record.get("kind") == "folder":
        out.update(kind="folder")
    elif model_folder.preset(config):  # a preset saved without training, or by an older loscat-hf
        out.update(kind="scratch", preset=model_folder.preset(config))
    return out


def _shown(key: str, value):
    if key == "warmup_steps":
        return f"{value:g} of all steps" if 0 < value < 1 else f"{int(value)} steps"
    return f"{value:g}" if isinstance(value, float) else value


def _augmentation(aug: dict | None) -> str:
    if not aug:
        return "none"
    crop, rotation, flip, jitter = (aug.get(k) or 0
                                    for k in ("crop_scale", "max_rotation", "hflip", "color_jitter"))
    parts = [f"random crop keeping at least {crop:g} of the area" if 0 < crop < 1 else None,
             f"rotation up to {rotation:g} degrees" if rotation else None,
             f"horizontal flip with probability {flip:g}" if flip else None,
             f"brightness, contrast and saturation jitter {jitter:g}" if jitter else None]
    return ", ".join(p for p in parts if p) or "none"


def _count_table(data: dict | None, classes: list[str]) -> dict | None:
    """{"splits": [...], "rows": [(class, [n per split])], "totals": [...]} from train_summary.json's data,
    the classes in the model's output order."""
    if not data:
        return None
    splits = ([s for s in ("train", "validation", "test") if s in data]
              + sorted(set(data) - {"train", "validation", "test"}))
    seen = {c for s in splits for c in data[s].get("per_class", {})}
    rows = [(c, [data[s].get("per_class", {}).get(c, 0) for s in splits])
            for c in [*classes, *sorted(seen - set(classes))] if c in seen]
    return {"splits": splits, "rows": rows, "totals": [data[s].get("n") for s in splits]}


def converted_card(config, processor, source: str, arch: str, codes: list[str], study: bool):
    """A `huggingface_hub.ModelCard` (YAML metadata + text) crediting the study for a converted checkpoint."""
    from huggingface_hub import ModelCard, ModelCardData

    classes = [config.id2label[i] for i in range(config.num_labels)]
    data = ModelCardData(
        library_name="transformers", pipeline_tag="image-classification",
        tags=[*TAGS, "timm-converted"],
        base_model=STUDY_WEIGHTS_REPO if study else None,
    )
    template = (resources.files("loscat_hf").joinpath("resources/converted_card.md")
                .read_text(encoding="utf-8"))
    return ModelCard.from_template(
        data, template_str=template, source=source, arch=arch, classes=", ".join(classes),
        num_classes=len(classes), study=study, image_size=config.image_size, code_repo=STUDY_CODE_REPO,
        weights_repo=STUDY_WEIGHTS_REPO,
        mapping=", ".join(f"{c} -> {name}" for c, name in zip(codes, classes, strict=True)),
        resample={2: "bilinear", 3: "bicubic"}.get(int(processor.resample),
                                                   f"PIL filter {processor.resample}"),
        mean=tuple(processor.image_mean), std=tuple(processor.image_std),
    )
