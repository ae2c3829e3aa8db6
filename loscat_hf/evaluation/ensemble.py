"""`loscat-hf evaluate-ensemble`: average several trained model folders at prediction time.

Why average probabilities (after each member's own temperature) and score predictions: both are convex
losses' arguments, so the ensemble's NLL and score MSE are never worse than the members' average (Jensen),
and in practice independent seeds/splits make it better than the best member. That the ensemble beats the
best member is NOT guaranteed; the report lists every member beside the ensemble so it can be checked.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loscat_hf.errors import LoscatError
from loscat_hf.model.calibration import apply_temperature, negative_log_likelihood


@dataclass
class MemberOutput:
    """One model's outputs on a split: calibrated region probabilities and (optional) score predictions."""

    name: str
    probs: np.ndarray  # (n, classes)
    scores: np.ndarray | None  # (n, components) in LoSCAT points, or None for a region-only model
    components: tuple[str, ...] = ()


def member_outputs(model_dir: str, split, batch_size: int = 64, device: str | None = None) -> MemberOutput:
    """One saved model's calibrated probabilities (and score predictions) over a split."""
    from loscat_hf.evaluation.split_eval import split_outputs

    out = split_outputs(model_dir, split, batch_size=batch_size, device=device, bf16=False,
                        desc=f"running {Path(model_dir).name}")
    return MemberOutput(str(model_dir), apply_temperature(out.logits, out.temperature), out.scores,
                        out.components)


def combine(members: list[MemberOutput]) -> MemberOutput:
    """The ensemble: mean probabilities; mean score predictions over the members that have score heads."""
    if not members:
        raise LoscatError("an ensemble needs at least one model")
    shapes = {m.probs.shape for m in members}
    if len(shapes) > 1:
        raise LoscatError(f"members disagree on the number of photos/classes: {sorted(shapes)}")
    scored = [m for m in members if m.scores is not None]
    if len({m.components for m in scored}) > 1:
        raise LoscatError("members with score heads predict different components")
    scores = np.mean([m.scores for m in scored], axis=0) if scored else None
    return MemberOutput("ensemble", np.mean([m.probs for m in members], axis=0), scores,
                        scored[0].components if scored else ())


def evaluate_member(out: MemberOutput, labels: np.ndarray, score_targets: np.ndarray | None) -> dict:
    """Accuracy, macro-F1 and NLL of the region head; per-component score agreement when available."""
    from sklearn.metrics import f1_score

    from loscat_hf.evaluation.score_metrics import component_report
    from loscat_hf.model.score_heads import clip_scores

    pred = out.probs.argmax(1)
    report = {
        "model": out.name, "accuracy": float((pred == labels).mean()),
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=np.arange(out.probs.shape[1]),
                                   zero_division=0)),
        "nll": float(negative_log_likelihood(out.probs, labels)),
    }
    if out.scores is not None and score_targets is not None:
        preds = clip_scores(out.scores, out.components)
        report["scores"] = component_report(preds, score_targets, out.components)
        mask = ~np.isnan(score_targets)
        report["score_mse"] = float((((preds - np.nan_to_num(score_targets)) ** 2) * mask).sum()
                                    / max(mask.sum(), 1))
    return report


def _refuse_multi_label(models: list[str], dataset: str, split: str) -> None:
    """An ensemble averages softmax probabilities; a multi-region model's per-class sigmoid scores each pass
    its own thresholds, which another member's thresholds do not fit: refused, before any model runs."""
    from loscat_hf.data.dataset import MULTI_LABEL
    from loscat_hf.model.folder import load_config

    multi = [m for m in models if getattr(load_config(m), "problem_type", None) == MULTI_LABEL]
    if multi:
        what = "a multi-region model" if len(multi) == 1 else "multi-region models"
        raise LoscatError(f"models {', '.join(multi)}: {what} (per-class sigmoid scores and thresholds); "
                          "evaluate-ensemble averages single-label models' probabilities only. "
                          f"Measure each with `loscat-hf evaluate --model MODEL --dataset {dataset} --split "
                          f"{split} --out OUT`", param="models")


def evaluate_ensemble(models: list[str], dataset: str, out: str, split: str = "validation",
                          taxonomy: str | None = None, batch_size: int = 64,
                          scores_table: str | None = None) -> dict:
    """Evaluate every member and their average on a packed dataset split; write ensemble_report.json."""
    from loscat_hf.data.dataset import SINGLE_LABEL, load_packed_dataset
    from loscat_hf.evaluation.split_eval import left_out_several_regions
    from loscat_hf.taxonomy import load_taxonomy

    if len(models) < 2:
        command = ["loscat-hf", "evaluate", "--model", models[0] if models else "MODEL", "--dataset", dataset,
                   "--split", split, "--out", out, *(["--scores", scores_table] if scores_table else [])]
        raise LoscatError(f"models got {len(models)} model folder: an ensemble averages two or more. "
                          f"One model is measured, with its score report when it has score heads, by "
                          f"`{shlex.join(command)}`",
                          param="models")
    _refuse_multi_label(models, dataset, split)
    tax = load_taxonomy(taxonomy)
    # every member is single-label: on a multi-region dataset, its photos that show one region
    ds = load_packed_dataset(dataset, tax, problem_type=SINGLE_LABEL)
    if split not in ds:
        raise LoscatError(f"dataset {dataset} has no split {split!r} (it has {', '.join(ds)})")
    data = ds[split]
    left_out = left_out_several_regions(dataset, split, len(data))  # None: a single-region dataset
    table = keys = None
    if scores_table:  # refused, when bad or when a member has no score heads, before any model runs
        from loscat_hf.evaluation.score_report import (
            check_table_meets_split,
            read_table_for,
            split_clinic_keys,
        )

        table, keys = read_table_for(scores_table, models, tax), split_clinic_keys(data, dataset)
        check_table_meets_split(keys, table, Path(scores_table).name)
    members = [member_outputs(m, data, batch_size=batch_size) for m in models]
    ens = combine(members)
    targets = None
    if ens.scores is not None:
        from loscat_hf.data.dataset import split_score_targets

        targets = split_score_targets(data, ens.components)  # None: no score columns, region metrics only
    labels = np.asarray(data["labels"])
    report = {"split": split, "n": len(labels),
              **({} if left_out is None else {"n_left_out_several_regions": left_out}),
              "members": [evaluate_member(m, labels, targets) for m in members],
              "ensemble": evaluate_member(ens, labels, targets)}
    if table is not None:
        from loscat_hf.evaluation.score_report import clinical_visits

        report["visit_totals"] = clinical_visits(ens.scores, ens.components, data, keys, table,
                                                 tax.sites).report()
    Path(out).mkdir(parents=True, exist_ok=True)
    from loscat_hf.evaluation.score_report import json_safe

    (Path(out) / "ensemble_report.json").write_text(json.dumps(json_safe(report), indent=2, allow_nan=False))
    return report


def format_ensemble(report: dict) -> str:
    """The console lines of an ensemble report: the photos left out, visit totals, then each member and the
    ensemble."""
    from loscat_hf.evaluation.score_report import summary_lines
    from loscat_hf.evaluation.split_eval import left_out_line

    left_out = report.get("n_left_out_several_regions")
    lines = [left_out_line(left_out)] if left_out else []
    lines += [f"ensemble {line.strip()}"
              for line in summary_lines({"visit_totals": report.get("visit_totals")})]
    for r in [*report["members"], report["ensemble"]]:
        extra = f", score MSE {r['score_mse']:.3f}" if "score_mse" in r else ""
        lines.append(f"{r['model']}: macro-F1 {r['macro_f1']:.3f}, accuracy {r['accuracy']:.3f}, "
                     f"NLL {r['nll']:.3f}{extra}")
    return "\n".join(lines)
