"""The pieces `train --task scores` adds to the region training in training.py.

Why separate: training.py stays the region recipe; this module only supplies score targets, the trainer's
joint loss (region cross-entropy + masked score MSE) and the score part of the validation report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from loscat_hf.data.score_tables import COMPONENTS, score_column, scores_from_row
from loscat_hf.errors import LoscatError
from loscat_hf.model.score_heads import clip_scores
from loscat_hf.model.transforms import ImageTransform
from loscat_hf.train.training import RegionTrainer

TARGET_COLUMN = "score_targets"


def add_score_targets(ds, components: tuple[str, ...] = tuple(COMPONENTS)):
    """Add a float list column `score_targets` (NaN = missing) from the dataset's score_* columns."""
    missing = [score_column(c) for c in components if score_column(c) not in ds["train"].column_names]
    if missing:
        raise LoscatError(
            f"--task scores needs score columns ({', '.join(missing)} missing): run `loscat-hf prepare ... "
            "--scores loscat_scores.csv`"
        )
    cols = [score_column(c) for c in components]

    def _targets(batch):
        rows = [dict(zip(cols, vals, strict=True)) for vals in zip(*(batch[c] for c in cols), strict=True)]
        return {TARGET_COLUMN: [scores_from_row(r, components) for r in rows]}

    ds = ds.map(_targets, batched=True)
    n_scored = sum(not np.all(np.isnan(t)) for t in ds["train"][TARGET_COLUMN])
    if n_scored == 0:
        raise LoscatError("no training photo has a score: nothing for the score heads to learn")
    return ds


class ScoreTransform(ImageTransform):
    """ImageTransform that also passes the score targets through to the collator."""

    def __call__(self, batch: dict) -> dict:
        result = super().__call__(batch)
        if TARGET_COLUMN in batch:
            result[TARGET_COLUMN] = batch[TARGET_COLUMN]
        return result


class ScoreTrainer(RegionTrainer):
    """RegionTrainer whose loss is the model's joint loss (label smoothing applied inside the model)."""

    def __init__(self, *args, score_weight: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.score_weight = score_weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs, smoothing=float(self.args.label_smoothing_factor),
                        score_weight=self.score_weight)
        return (outputs.loss, outputs) if return_outputs else outputs.loss


def score_evaluation(score_preds: np.ndarray, split, components: tuple[str, ...], out_dir: Path) -> dict:
    """Per-component agreement on a split; writes scores_report.json and returns it."""
    from loscat_hf.evaluation.score_metrics import component_report

    preds = clip_scores(score_preds, components)
    true = np.asarray(split[TARGET_COLUMN], dtype=np.float64)
    report = {"components": component_report(preds, true, components)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scores_report.json").write_text(json.dumps(report, indent=2))
    return report
