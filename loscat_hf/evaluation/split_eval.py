"""`evaluate()`: metrics, per-class tables and plots of a model folder on a packed dataset split.

A single-label model gets the classification report (softmax, confusion matrix); a multi-region model
(problem_type multi_label_classification) the multi-label one (sigmoid scores at its per-class thresholds).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loscat_hf.defaults import EVALUATED_NAME, SCORE_REPORT_NAME
from loscat_hf.errors import LoscatError
from loscat_hf.model.calibration import apply_temperature

logger = logging.getLogger(__name__)


def evaluate_split(logits: np.ndarray, split, taxonomy, out_dir: str | Path, temperature: float = 1.0,
                   subgroups: list[str] | None = None, thresholds: Sequence[float] | None = None,
                   left_out: int | None = None) -> dict:
    """Write metrics.json, per-class CSV/Markdown, confusion matrix and per-class F1 plots; return the
    report. `left_out`: photos showing several regions that a single-label split of a multi-region dataset
    left out (`left_out_several_regions`), recorded as `n_left_out_several_regions`.

    With `thresholds` (a multi-region model's, one per class; `read_model_folder(m).thresholds`) or multi-hot
    `labels` (`load_packed_dataset(..., problem_type=MULTI_LABEL)`), the multi-label report instead: classes
    shown where sigmoid(logits / T) >= their threshold (0.5 where none is given); the report has macro_f1,
    exact_match and accuracy (= exact_match) as the single-label one has macro_f1 and accuracy."""
    from loscat_hf.evaluation.metrics import classification_report, write_report

    labels = np.asarray(split["labels"])
    groups = {col: list(split[col]) for col in (subgroups or [])}
    if (thresholds is not None and len(thresholds) > 0) or labels.ndim == 2:
        return _evaluate_multi_label(logits, labels, taxonomy, out_dir, temperature, groups, thresholds)
    probs = apply_temperature(logits, temperature)
    report = classification_report(labels, probs.argmax(1), probs, list(taxonomy.classes),
                                   neighbours=taxonomy.are_neighbours, subgroups=groups or None,
                                   temperature=temperature)
    report["split_size"] = len(labels)
    if left_out is not None:  # a multi-region dataset: these numbers cover only its single-region photos
        report["n_left_out_several_regions"] = int(left_out)
    write_report(report, Path(out_dir), list(taxonomy.classes))
    return report


def _evaluate_multi_label(logits: np.ndarray, labels: np.ndarray, taxonomy, out_dir: str | Path,
                          temperature: float, groups: dict, thresholds: Sequence[float] | None) -> dict:
    from loscat_hf.evaluation.metrics import multi_label_report, write_multi_label_report
    from loscat_hf.model.thresholds import DEFAULT_THRESHOLD, shown, sigmoid

    classes = list(taxonomy.classes)
    if labels.ndim != 2 or labels.shape[1] != len(classes):
        raise LoscatError(f"a multi-region evaluation needs multi-hot labels (n, {len(classes)}), got shape "
                          f"{labels.shape}: load the dataset with load_packed_dataset(..., "
                          "problem_type=MULTI_LABEL)", param="split")
    given = thresholds is not None and len(thresholds) > 0
    thr = list(thresholds) if given else [DEFAULT_THRESHOLD] * len(classes)
    if len(thr) != len(classes):
        raise LoscatError(f"thresholds has {len(thr)} values for {len(classes)} classes",
                          param="thresholds")
    scores = sigmoid(logits, temperature)
    report = multi_label_report(labels > 0.5, shown(scores, thr), scores, classes, thresholds=thr,
                                neighbours=taxonomy.are_neighbours, subgroups=groups or None,
                                temperature=temperature)
    report["split_size"] = len(labels)
    write_multi_label_report(report, Path(out_dir), classes, neighbours=taxonomy.are_neighbours)
    return report


@dataclass
class SplitOutputs:
    """A saved model's raw outputs over a split: region logits, and score predictions for a score model."""

    logits: np.ndarray  # (n, classes), before temperature
    scores: np.ndarray | None  # (n, components) in LoSCAT points, or None for a region-only model
    components: tuple[str, ...]
    temperature: float


def split_outputs(model_dir: str, split, batch_size: int = 64, num_workers: int = 0,
                  device: str | None = None, bf16: bool | None = None,
                  desc: str = "evaluating") -> SplitOutputs:
    """Run a saved model (region-only or with score heads) over a split through training's eval transform:
    the one model-over-a-split loop (evaluate, evaluate-ensemble, calibrate)."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForImageClassification

    from loscat_hf.model.folder import FULL, read_model_folder
    from loscat_hf.model.inference import LogitRunner
    from loscat_hf.model.score_heads import ViTWithScores
    from loscat_hf.model.transforms import ImageTransform, collate

    record = read_model_folder(model_dir, require_processor=True)
    if record.decoding.mode == FULL:
        logger.warning(
            "%s decodes whole photos (a converted study checkpoint: one resize of the full photo), but a "
            "packed dataset holds photos already shrunk to at most its --max-side: these numbers are "
            "measured on inputs slightly unlike the ones `predict` gives it (pack at a larger --max-side to "
            "come closer)", model_dir)
    components = record.components
    model = (ViTWithScores if components else AutoModelForImageClassification).from_pretrained(model_dir)
    runner = LogitRunner(model, record.image_mean, record.image_std, device=device, bf16=bf16)
    data = split.select_columns(["image"]).with_transform(
        ImageTransform(record.image_size, train=False, resample=record.decoding.resample))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=collate)
    logits, scores = [], []
    for batch in tqdm(loader, desc=desc, unit="batch"):
        out = runner.outputs(batch["pixel_values"])
        logits.append(out.logits.float().cpu().numpy())
        if components:
            scores.append(out.score_preds.float().cpu().numpy())
    return SplitOutputs(
        logits=np.concatenate(logits) if logits else np.zeros((0, len(record.labels)), dtype=np.float32),
        scores=np.concatenate(scores) if scores else None, components=components,
        temperature=record.temperature)


@dataclass
class EvaluationResult:
    """A model's report on one split (metrics.json's content) and where the report and plots are."""

    split: str
    report: dict
    out_dir: Path
    scores: dict | None = None  # scores_report.json's content, for a model with score heads

    @property
    def macro_f1(self) -> float:
        return self.report["macro_f1"]

    def summary(self) -> str:
        r = self.report
        ece = "n/a" if r.get("ece") is None else f"{r['ece']:.3f}"  # None: predictions without probabilities
        if r.get("multi_label"):
            text = _multi_label_summary(self.split, r, ece, self.out_dir)
        else:
            text = (f"{self.split}: macro-F1 {r['macro_f1']:.3f}, accuracy {r['accuracy']:.3f}, "
                    f"balanced accuracy {r['balanced_accuracy']:.3f}, ECE {ece} "
                    f"(n={r.get('split_size', r['n'])}); "
                    f"{r.get('neighbour_error_share', 0):.0%} of errors between anatomical neighbours. "
                    f"Report: {self.out_dir / 'metrics.json'}")
        if r.get("n_left_out_several_regions"):
            text = "\n".join([text, left_out_line(r["n_left_out_several_regions"])])
        if self.scores is None:
            return text
        from loscat_hf.evaluation.score_report import summary_lines

        return "\n".join([text, "LoSCAT scores:", *summary_lines(self.scores),
                          f"Score report: {self.out_dir / SCORE_REPORT_NAME}"])


def _multi_label_summary(split: str, r: dict, ece: str, out_dir: Path) -> str:
    m_ap = "n/a" if r.get("mean_average_precision") is None else f"{r['mean_average_precision']:.3f}"
    near = r.get("added_next_to_a_true_region_share")
    return (f"{split} (multi-region): macro-F1 {r['macro_f1']:.3f}, exact match {r['exact_match']:.3f}, "
            f"mAP {m_ap}, Hamming loss {r['hamming_loss']:.3f}, mean per-class ECE {ece} "
            f"(n={r.get('split_size', r['n'])}, {r['n_photos_several_regions']} showing several regions); "
            f"{r['false_negatives']} regions missed, {r['false_positives']} added"
            + ("" if near is None else f" ({near:.0%} of them next to a true region)")
            + f". Report: {out_dir / 'metrics.json'}")


def left_out_several_regions(dataset: str, split: str, kept: int) -> int | None:
    """How many photos of a multi-region dataset's split a single-label view (`load_packed_dataset(...,
    problem_type=SINGLE_LABEL)`, `kept` photos) left out: those showing several regions. None for a
    single-region dataset, where nothing is left out and the report stays as it was."""
    from loscat_hf.data.dataset import is_multi_region, read_split_metadata

    if not is_multi_region(dataset):
        return None
    return len(read_split_metadata(Path(dataset) / split)) - kept


def left_out_line(n: int) -> str:
    """The summary's line for photos left out: a single-region model's numbers cover fewer photos than a
    multi-region model's on the same split."""
    return (f"{n} photos showing several regions left out: a single-region model is scored on the "
            "single-region photos")


def _note_left_out(model: str, split: str, kept: int, left_out: int) -> None:
    """The same count in the log, for callers of `evaluate` that read no summary."""
    logger.info("%s is a single-label model: evaluated on the %d photos of the %s split that show one "
                "region; %d photos showing several regions were left out (a multi-region model is evaluated "
                "on all)", model, kept, split, left_out)


def evaluate(model: str, dataset: str, out: str, split: str = "validation", taxonomy: str | None = None,
             batch_size: int = 64, num_workers: int = 0, scores_table: str | None = None) -> EvaluationResult:
    """Run a model folder (or Hub id) over a split of a packed dataset and write its report into `out`.

    A model with score heads (`train --task scores`) also gets the score report (score_report.py) on the
    split's rated scores, and with `scores_table` (the clinic's LoSCAT table) the per-visit mLoSSI/LoSDI."""
    from loscat_hf.data.dataset import (
        MULTI_LABEL,
        SINGLE_LABEL,
        load_packed_dataset,
        split_score_targets,
        subgroup_columns,
    )
    from loscat_hf.evaluation.score_report import (
        check_table_meets_split,
        clear,
        clinical_visits,
        read_table_for,
        score_report,
        split_clinic_keys,
    )
    from loscat_hf.model.folder import load_config, threshold_values
    from loscat_hf.taxonomy import load_taxonomy

    tax = load_taxonomy(taxonomy)
    config = load_config(model)
    if [config.id2label[i] for i in range(config.num_labels)] != list(tax.classes):
        raise LoscatError(f"model {model} predicts {list(config.id2label.values())}, "
                          f"not the taxonomy's classes {list(tax.classes)}")
    thresholds = threshold_values(config, list(tax.classes))  # () for a single-label model
    table = read_table_for(scores_table, [model], tax) if scores_table else None
    ds = load_packed_dataset(dataset, tax, problem_type=MULTI_LABEL if thresholds else SINGLE_LABEL)
    if split not in ds:
        raise LoscatError(f"dataset {dataset} has no split {split!r} (it has {', '.join(ds)})")
    left_out = None if thresholds else left_out_several_regions(dataset, split, len(ds[split]))
    if left_out is not None:
        _note_left_out(model, split, len(ds[split]), left_out)
    keys = None
    if table is not None:
        keys = split_clinic_keys(ds[split], dataset)
        check_table_meets_split(keys, table, Path(scores_table).name)
    # the old record must not vouch for a half-written report
    (Path(out) / EVALUATED_NAME).unlink(missing_ok=True)
    outputs = split_outputs(model, ds[split], batch_size=batch_size, num_workers=num_workers)
    report = evaluate_split(outputs.logits, ds[split], tax, out, temperature=outputs.temperature,
                            subgroups=subgroup_columns(ds[split]), thresholds=thresholds or None,
                            left_out=left_out)
    scores = None
    if outputs.scores is not None:
        visits = None if table is None else clinical_visits(outputs.scores, outputs.components, ds[split],
                                                            keys, table, tax.sites)
        scores = score_report(outputs.scores, split_score_targets(ds[split], outputs.components),
                              outputs.components, out, split, visits=visits)
    else:
        clear(out)  # an earlier score model's report must not stay beside this one
    from loscat_hf.model.weights import weights_fingerprint

    record = {"model": model, "dataset": dataset, "split": split,
              "weights_sha256": weights_fingerprint(model)}
    (Path(out) / EVALUATED_NAME).write_text(json.dumps(record))
    return EvaluationResult(split=split, report=report, out_dir=Path(out), scores=scores)
