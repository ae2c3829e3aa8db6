"""`calibrate` on a multi-region model: refit its per-class thresholds on the clinic's own labelled photos.

A multi-region model shows a class when its sigmoid score passes that class's threshold, fitted by `train`
on its validation photos (model/thresholds.py `fit_thresholds`: per class, the threshold with the best F1).
On another clinic's photos (other cameras, other skin tones) the scores shift and a threshold fitted
elsewhere misses regions or adds them; refitting the thresholds by the same rule on the clinic's photos is
quick (one pass of the model, a grid per class), never changes a score, and is what the model's answers
actually depend on. The temperature is kept as recorded: a softmax temperature fit does not apply to
independent sigmoids. A class without a positive photo in the split keeps its threshold (nothing to fit it
on), and the record says which. Written like the temperature: config.json only, one atomic replace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ThresholdCalibrationResult:
    """Per-class thresholds refitted on labelled photos, with macro-F1, exact match and the review flags at
    the old and the new thresholds on the same photos."""

    model: str
    split: str
    n: int
    thresholds_before: dict[str, float]
    thresholds: dict[str, float]
    kept: list[str]  # classes without a positive photo here: their threshold is kept
    macro_f1_before: float
    macro_f1_after: float
    exact_match_before: float
    exact_match_after: float
    review_before: int
    review_after: int
    min_margin: float
    temperature: float = 1.0
    changed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        moved = ", ".join(f"{c} {self.thresholds_before[c]:.2f} -> {self.thresholds[c]:.2f}"
                          for c in self.changed) or "none changed"
        kept = f"; kept (no photo of them in the split): {', '.join(self.kept)}" if self.kept else ""
        return "\n".join([
            f"refitted the per-class thresholds of a multi-region model on {self.n} labelled photos of the "
            f"{self.split} split (temperature {self.temperature:.3f} kept): macro-F1 "
            f"{self.macro_f1_before:.3f} -> {self.macro_f1_after:.3f}, exact match "
            f"{self.exact_match_before:.3f} -> {self.exact_match_after:.3f} (on the photos they were fitted "
            "on: measure on another split).",
            f"thresholds: {moved}{kept}.",
            f"needs review (no region passes, or a score within {self.min_margin:g} of its threshold): "
            f"before {self.review_before} of {self.n}, after {self.review_after} of {self.n}.",
            f"Recorded in {Path(self.model) / 'config.json'}."])


def calibrate_thresholds(folder: Path, model: str, config, ds_split, split: str, labels: list[str],
                         batch_size: int, num_workers: int, min_margin: float) -> ThresholdCalibrationResult:
    """Run the model over the split (multi-hot `labels`), refit every class's threshold by `fit_thresholds`,
    and record them with `record_thresholds(..., by="calibrate", split=...)`."""
    import json

    from loscat_hf.evaluation.metrics.multi_label import indicator_metrics
    from loscat_hf.evaluation.split_eval import split_outputs
    from loscat_hf.io.atomic import write_atomic
    from loscat_hf.model.folder import CONFIG_NAME, config_json, record_thresholds, threshold_values
    from loscat_hf.model.thresholds import fit_thresholds, needs_review_multi, shown, sigmoid

    outputs = split_outputs(str(folder), ds_split, batch_size=batch_size, num_workers=num_workers,
                            desc="calibrating")
    scores = sigmoid(outputs.logits, outputs.temperature)
    truth = (np.asarray(ds_split["labels"], dtype=np.float64) > 0.5).astype(np.int64)
    before = dict(zip(labels, threshold_values(config, labels), strict=True))
    fitted, how = fit_thresholds(scores, truth, labels)
    kept = list(how.pop("default_for"))
    values = {c: (before[c] if c in kept else fitted[c]) for c in labels}
    old = indicator_metrics(truth, shown(scores, [before[c] for c in labels]).astype(np.int64))
    new = indicator_metrics(truth, shown(scores, [values[c] for c in labels]).astype(np.int64))
    result = ThresholdCalibrationResult(
        model=str(model), split=split, n=len(truth), thresholds_before=before, thresholds=values, kept=kept,
        macro_f1_before=old["macro_f1"], macro_f1_after=new["macro_f1"],
        exact_match_before=old["exact_match"], exact_match_after=new["exact_match"],
        review_before=int(needs_review_multi(scores, list(before.values()), min_margin).sum()),
        review_after=int(needs_review_multi(scores, list(values.values()), min_margin).sum()),
        min_margin=min_margin, temperature=outputs.temperature,
        changed=[c for c in labels if abs(values[c] - before[c]) > 1e-9])
    data = config_json(folder)
    record_thresholds(data, values, by="calibrate", split=split, **how, kept_for=kept,
                      macro_f1_before=round(old["macro_f1"], 4), macro_f1_after=round(new["macro_f1"], 4))
    # transformers' own layout of config.json (save_pretrained: indent 2, sorted keys)
    write_atomic(folder / CONFIG_NAME, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return result
