"""A multi-region model's answer as the Space shows it: every region whose score reaches its threshold, with
score and threshold side by side, the review notice, and the batch table's row.

Such a model scores each class on its own (sigmoid, `model/thresholds.py`): the scores need not sum to 1, so
the page never presents them as one distribution, and calls them scores, not probabilities. A single-region
model's answer is shown by `apps/space.py` as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loscat_hf.infer.answers import PhotoPredictor, RegionPrediction

# the batch table's and CSV's columns: the same places as the single-region table's (needs_review, problem)
BATCH_HEADER = ["file", "regions", "scores", "top", "top_score", "needs_review", "problem"]
EXPLAINED = ("Independent per-class sigmoid scores{raw}: they need not sum to 1, and a region is shown when "
             "its score reaches its own threshold.")


def lit(pred: RegionPrediction, labels: Sequence[str]) -> tuple[str, ...]:
    """The regions shown, in the model's class order (the taxonomy's): what the body map lights."""
    passed = {c for c, _ in pred.regions}
    return tuple(c for c in labels if c in passed)


def notice(pred: RegionPrediction, predictor: PhotoPredictor) -> str:
    """The regions shown, or why a person should look (none passes, or a score sits near its threshold),
    over a table of the regions that decide it: score, threshold, shown or not."""
    labels, margin = predictor.labels, predictor.min_margin
    threshold = dict(zip(labels, predictor.folder.thresholds, strict=True))
    score = pred.probabilities
    passed = lit(pred, labels)
    near = [c for c in labels if abs(score[c] - threshold[c]) < margin]
    close = ", ".join(near) if len(near) <= 3 else f"{len(near)} regions"
    rows = set(passed) | set(near) | ({c for c, _ in pred.top} if not passed else set())
    names = ", ".join(f"**{c}**" for c in sorted(passed, key=lambda c: -score[c]))
    if not passed:
        head = "⚠️ **Needs review**: no region reaches its threshold. Please check by eye."
    elif pred.needs_review:
        head = (f"⚠️ **Needs review**: shown {names}, but {close} lie{'s' if len(near) == 1 else ''} within "
                f"{margin:.2f} of {'its' if len(near) == 1 else 'their'} threshold. Please check by eye.")
    else:
        head = f"Regions shown: {names}."
    table = ["| region | score | threshold | shown |", "|---|---|---|---|"]
    table += [f"| {c} | {_cut(score[c])} | {threshold[c]:.3g} | {'yes' if c in passed else 'no'} |"
              for c in sorted(rows, key=lambda c: -score[c])]
    raw = "" if predictor.folder.calibrated else ", not calibrated"
    return "\n\n".join([head, "\n".join(table), EXPLAINED.format(raw=raw)])


def _cut(score: float) -> str:
    """A score to 3 decimals, cut rather than rounded: 0.4996 below a 0.5 threshold must not read 0.500."""
    return f"{math.floor(score * 1000 + 1e-9) / 1000:.3f}"


def batch_row(name: str, pred: RegionPrediction) -> list[Any]:
    """One photo's row under BATCH_HEADER: the regions shown ';'-joined most probable first and their scores
    in the same order, as predict's `regions` and `regions_probability` are, and the highest-scoring class
    (also when none passes). `labels` is not needed: the order is the prediction's."""
    return [name, *pred.region_cells(), pred.label, round(pred.probability, 4), pred.needs_review, ""]
