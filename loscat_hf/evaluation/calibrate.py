"""`calibrate()`: fit a model folder's temperature on a clinic's own labelled photos and record it.

A converted or foreign checkpoint answers with raw softmax probabilities, and a model trained elsewhere was
calibrated on other photos: its "93 %" and its *needs review* flag do not hold on this clinic's photos.
`calibrate` runs the model over one split of a packed dataset (the evaluation loop,
`split_eval.split_outputs`), fits one temperature (`model.calibration.fit_temperature`), reports the
expected calibration error before and after and how many photos the review thresholds flag, and writes the
temperature with how it was fitted into the folder's config.json (`model.folder.record_temperature`),
atomically; the weights are not touched. `train` records its own fit on validation through the same
`model.calibration.fit_record`. A multi-region model gets its per-class thresholds refitted instead
(calibrate_thresholds.py).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loscat_hf.defaults import MIN_CONFIDENCE, MIN_MARGIN
from loscat_hf.errors import LoscatError
from loscat_hf.evaluation.calibrate_thresholds import ThresholdCalibrationResult
from loscat_hf.model.calibration import apply_temperature, fit_record, needs_review

logger = logging.getLogger(__name__)

# A temperature fitted on fewer photos follows their noise, and an ECE over 15 confidence bins means little.
MIN_PHOTOS = 50


def review_effect(probs: np.ndarray, labels: np.ndarray, min_confidence: float = MIN_CONFIDENCE,
                  min_margin: float = MIN_MARGIN) -> dict:
    """How many photos the review thresholds flag, and how often the model is right on the flagged and on the
    unflagged ones (None where there are none)."""
    flagged = needs_review(probs, min_confidence, min_margin)
    correct = np.asarray(probs).argmax(1) == np.asarray(labels)

    def accuracy(mask: np.ndarray) -> float | None:
        return round(float(correct[mask].mean()), 4) if mask.any() else None

    return {"flagged": int(flagged.sum()), "accuracy_flagged": accuracy(flagged),
            "accuracy_unflagged": accuracy(~flagged)}


@dataclass
class CalibrationResult:
    """A fitted temperature, the ECE before and after, and the review thresholds' effect on the same
    photos."""

    model: str
    split: str
    n: int
    accuracy: float
    temperature_before: float
    temperature: float
    ece_before: float | None
    ece_after: float | None
    review_before: dict
    review_after: dict
    min_confidence: float
    min_margin: float
    left_out: int | None = None  # photos showing several regions, on a multi-region dataset (None: none)

    def summary(self) -> str:
        def ece(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f}"

        def review(r: dict) -> str:
            acc = [f"{name} {r[key]:.0%} right" for name, key in (("flagged", "accuracy_flagged"),
                                                                   ("others", "accuracy_unflagged"))
                   if r[key] is not None]
            return f"{r['flagged']} of {self.n} flagged" + (f" ({', '.join(acc)})" if acc else "")

        from loscat_hf.evaluation.split_eval import left_out_line

        return "\n".join([
            f"calibrated on {self.n} labelled photos of the {self.split} split "
            f"(accuracy {self.accuracy:.3f}): temperature {self.temperature_before:.3f} -> "
            f"{self.temperature:.3f}, ECE {ece(self.ece_before)} -> {ece(self.ece_after)}.",
            *([f"{left_out_line(self.left_out)}."] if self.left_out else []),
            f"needs review (top-1 below {self.min_confidence:g} or top two within {self.min_margin:g}): "
            f"before {review(self.review_before)}; after {review(self.review_after)}.",
            f"Recorded in {Path(self.model) / 'config.json'}."])


def _model_folder(model: str) -> Path:
    folder = Path(os.path.expanduser(model))
    if not folder.is_dir():
        raise LoscatError(f"model {model!r}: no such folder (calibrate records the temperature in a local "
                          "model folder's config.json: download or convert the model into a folder first)",
                          param="model")
    if not (folder / "config.json").is_file():
        raise LoscatError(f"model {model!r} has no config.json: not a model folder (save_pretrained or "
                          "`loscat-hf train`/`convert-timm` output)", param="model")
    return folder


def _check_split(root: Path, split: str) -> None:
    """The split exists and holds at least MIN_PHOTOS labelled photos (a packed split's photos all are)."""
    from loscat_hf.data.dataset import read_split_metadata, split_metadata_file
    from loscat_hf.data.splits import SPLIT_ORDER

    if split_metadata_file(root / "train") is None:
        return  # not a packed dataset at all: load_packed_dataset says so
    if split not in SPLIT_ORDER or split_metadata_file(root / split) is None:
        have = [s for s in SPLIT_ORDER if split_metadata_file(root / s) is not None]
        raise LoscatError(f"dataset {root} has no split {split!r} (it has {', '.join(have)})", param="split")
    n = len(read_split_metadata(root / split))
    if n < MIN_PHOTOS:
        raise LoscatError(f"the {split} split has {n} labelled photos; calibrate needs at least "
                          f"{MIN_PHOTOS}: a temperature fitted on fewer follows their noise. Label more "
                          "photos, or use a larger split", param="split")


def _write_record(folder: Path, temperature: float, how: dict) -> None:
    """Set the temperature and how it was fitted in config.json, every other key as it was; one atomic
    replace (a reader sees the old file or the new one)."""
    from loscat_hf.io.atomic import write_atomic
    from loscat_hf.model.folder import CONFIG_NAME, config_json, record_temperature

    data = config_json(folder)
    record_temperature(data, temperature, **how)
    # transformers' own layout of config.json (save_pretrained: indent 2, sorted keys)
    write_atomic(folder / CONFIG_NAME, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _check_writable(folder: Path, model: str) -> None:
    """Before the pass over the photos: config.json is replaced through a temporary file beside it."""
    if not (os.access(folder, os.W_OK) and os.access(folder / "config.json", os.W_OK)):
        raise LoscatError(f"model {model!r}: cannot write its config.json (read-only folder or file); copy "
                          "the model folder somewhere writable and calibrate the copy", param="model")


def calibrate(model: str, dataset: str, split: str = "validation", taxonomy: str | None = None,
              batch_size: int = 64, num_workers: int = 0, min_confidence: float = MIN_CONFIDENCE,
              min_margin: float = MIN_MARGIN) -> CalibrationResult | ThresholdCalibrationResult:
    """Fit `model`'s temperature on `split` of the packed `dataset` (the clinic's own labelled photos), report
    ECE and the review flags before and after, and record it in the model folder's config.json (by, split, n,
    ECE before/after: counts and a split name, never a path). Refused, with nothing written: a model that is
    not a local folder, a dataset or split that does not exist, fewer than MIN_PHOTOS photos, classes other
    than the model's. A multi-region model (problem_type multi_label_classification) keeps its temperature
    and gets its per-class thresholds refitted on the split (`calibrate_thresholds`), recorded by
    `record_thresholds(..., by="calibrate", split=...)`; a single-label model on a multi-region dataset is
    fitted on the photos showing one region."""
    from loscat_hf.data.dataset import MULTI_LABEL, SINGLE_LABEL, load_packed_dataset
    from loscat_hf.evaluation.split_eval import left_out_several_regions, split_outputs
    from loscat_hf.model.folder import load_config, temperature
    from loscat_hf.taxonomy import load_taxonomy

    folder = _model_folder(model)
    _check_writable(folder, model)
    if not Path(dataset).is_dir():
        raise LoscatError(f"dataset {dataset!r}: no such folder (a packed dataset: "
                          "`loscat-hf prepare --out`)", param="dataset")
    tax = load_taxonomy(taxonomy)
    config = load_config(str(folder))
    labels = [config.id2label[i] for i in range(config.num_labels)]
    if labels != list(tax.classes):
        raise LoscatError(f"model {model} predicts {labels}, not the dataset's classes {list(tax.classes)} "
                          f"(taxonomy {tax.name}): calibrate it on a dataset of its own classes",
                          param=("model", "dataset"))
    _check_split(Path(dataset), split)  # from the split's metadata, before any photo is loaded
    if split == "test":
        logger.warning("calibrating on the test split: its calibration error and review counts measured by "
                       "`evaluate --split test` afterwards are no longer unbiased (fit on validation, or on "
                       "photos kept out of every evaluation)")
    multi = getattr(config, "problem_type", None) == MULTI_LABEL
    ds = load_packed_dataset(dataset, tax, problem_type=MULTI_LABEL if multi else SINGLE_LABEL)
    if split not in ds:
        raise LoscatError(f"dataset {dataset} has no split {split!r} (it has {', '.join(ds)})", param="split")
    n = len(ds[split])
    left_out = None if multi else left_out_several_regions(dataset, split, n)
    if n < MIN_PHOTOS:  # a multi-region dataset's single-region photos only, for a single-label model
        raise LoscatError(f"the {split} split has {n} photos showing one region ({left_out} showing several "
                          f"left out); calibrate needs at least {MIN_PHOTOS} for a single-label model",
                          param="split")
    if multi:
        from loscat_hf.evaluation.calibrate_thresholds import calibrate_thresholds

        return calibrate_thresholds(folder, model, config, ds[split], split, labels, batch_size, num_workers,
                                    min_margin)
    before = temperature(config)
    outputs = split_outputs(str(folder), ds[split], batch_size=batch_size, num_workers=num_workers,
                            desc="calibrating")
    y = np.asarray(ds[split]["labels"], dtype=np.int64)
    fitted, how = fit_record(outputs.logits, y, before=before)
    probs_before = apply_temperature(outputs.logits, before)
    probs_after = apply_temperature(outputs.logits, fitted)
    result = CalibrationResult(
        model=str(model), split=split, n=n, accuracy=float((probs_after.argmax(1) == y).mean()),
        temperature_before=before, temperature=fitted, ece_before=how["ece_before"],
        ece_after=how["ece_after"], min_confidence=min_confidence, min_margin=min_margin,
        review_before=review_effect(probs_before, y, min_confidence, min_margin),
        review_after=review_effect(probs_after, y, min_confidence, min_margin), left_out=left_out)
    _write_record(folder, fitted, {"by": "calibrate", "split": split, **how,
                                   "temperature_before": round(before, 6)})
    return result
