"""`loscat-hf compare-backends`: how far a faster backend or precision strays from torch fp32, on your photos.

A clinic switching its archive run to int8 (or trusting the ONNX backend) should see the effect on its own
model and photos first: every photo is decoded once, run through torch fp32 (the reference) and through each
candidate, and the report gives the largest and mean probability difference, how many top-1 regions and
review flags change, and the time per photo. A multi-region model's probabilities are its per-class sigmoid
scores, and the report also counts the photos whose set of regions (classes at or above their thresholds)
changes. The report holds counts only, never file names.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from loscat_hf.defaults import COMPARE_CANDIDATES, EXACT_PROB_DIFF
from loscat_hf.errors import LoscatError

logger = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One backend + precision against the torch fp32 reference, over the same decoded photos."""

    backend: str
    precision: str
    max_prob_diff: float
    mean_prob_diff: float
    top1_changed: int
    review_changed: int
    seconds_per_photo: float
    speedup: float
    regions_changed: int = 0  # photos whose regions (a multi-region model's passing classes) differ

    @property
    def exact(self) -> bool:
        return self.max_prob_diff < EXACT_PROB_DIFF

    @property
    def name(self) -> str:
        return f"{self.backend} {self.precision}"


@dataclass
class Comparison:
    model: str
    photos: int
    unreadable: int
    reference_seconds_per_photo: float
    candidates: list[Candidate] = field(default_factory=list)
    multi_label: bool = False

    def to_dict(self) -> dict:
        out = asdict(self)
        for row, cand in zip(out["candidates"], self.candidates, strict=True):
            row["exact"] = cand.exact
        out["exact_threshold"] = EXACT_PROB_DIFF
        return out


def parse_candidate(text: str) -> tuple[str, str]:
    """'onnx:int8' -> ('onnx', 'int8'); a bare precision means the backend auto picks."""
    from loscat_hf.defaults import BACKENDS, PRECISIONS

    backend, _, precision = text.partition(":") if ":" in text else ("auto", "", text)
    if backend not in BACKENDS or precision not in PRECISIONS:
        raise LoscatError(f"candidate {text!r}: give BACKEND:PRECISION with a backend in "
                          f"{', '.join(BACKENDS)} and a precision in {', '.join(PRECISIONS)}, e.g. onnx:int8")
    return backend, precision


def _sample(items: list, limit: int | None) -> list:
    """At most `limit` items spread evenly over the list (folders are sorted: every part of the archive)."""
    if not limit or len(items) <= limit:
        return items
    return ([items[round(i * (len(items) - 1) / (limit - 1))] for i in range(limit)] if limit > 1
            else items[:1])


def _timed_logits(predictor, pixels: list[np.ndarray], batch_size: int) -> tuple[np.ndarray, float]:
    predictor.logits(pixels[0][None])  # warm-up: first-call allocations are not a per-photo cost
    t0 = time.perf_counter()
    out = [predictor.logits(np.stack(pixels[i:i + batch_size])) for i in range(0, len(pixels), batch_size)]
    return np.concatenate(out), (time.perf_counter() - t0) / len(pixels)


def compare_backends(model: str, images: str | os.PathLike, candidates=COMPARE_CANDIDATES,
                     limit: int | None = 200, batch_size: int = 8, progress: bool = True) -> Comparison:
    """Decode up to `limit` photos of a folder or CSV once; torch fp32 and each candidate label them."""
    from tqdm.auto import tqdm

    from loscat_hf.infer.folder import list_inputs
    from loscat_hf.infer.load import load_predictor
    from loscat_hf.io.images import ImageProblemError

    if batch_size < 1:
        raise LoscatError(f"batch_size must be at least 1, got {batch_size}", param="batch_size")
    if limit is not None and limit < 1:
        raise LoscatError(f"limit must be at least 1, got {limit}", param="limit")
    parsed = [parse_candidate(c) for c in candidates]
    if not parsed:
        raise LoscatError("give at least one candidate, e.g. onnx:int8")
    reference = load_predictor(model, backend="torch", precision="fp32", device="cpu")
    # allow_inexact: an inexact ONNX graph is what this command exists to report, not a reason to stop
    others = [(b, p, load_predictor(model, backend=b, precision=p, device="cpu", allow_inexact=True))
              for b, p in parsed]
    pixels, unreadable = [], 0
    for _, path in tqdm(_sample(list_inputs(images), limit), desc="decode", unit="photo",
                        disable=not progress):
        try:
            pixels.append(reference.pixels(reference.load(path)))
        except ImageProblemError:
            unreadable += 1
    if not pixels:
        raise LoscatError(f"none of the files in {images} could be read as a photo")
    ref_logits, ref_s = _timed_logits(reference, pixels, batch_size)
    ref_preds = reference.from_logits(ref_logits)
    ref_probs = np.array([[p.probabilities[c] for c in reference.labels] for p in ref_preds])
    # the model's folder name only: a full path can name a person (a home folder, a clinic share)
    result = Comparison(model=os.path.basename(os.path.normpath(str(model))), photos=len(pixels),
                        unreadable=unreadable, reference_seconds_per_photo=ref_s,
                        multi_label=reference.folder.multi_label)
    for _backend, precision, predictor in others:
        logits, secs = _timed_logits(predictor, pixels, batch_size)
        preds = predictor.from_logits(logits)
        probs = np.array([[p.probabilities[c] for c in reference.labels] for p in preds])
        diff = np.abs(probs - ref_probs)
        result.candidates.append(Candidate(
            backend=predictor.backend, precision=precision, max_prob_diff=float(diff.max()),
            mean_prob_diff=float(diff.mean()),
            top1_changed=sum(a.label != b.label for a, b in zip(preds, ref_preds, strict=True)),
            review_changed=sum(a.needs_review != b.needs_review
                               for a, b in zip(preds, ref_preds, strict=True)),
            seconds_per_photo=secs, speedup=ref_s / max(secs, 1e-12),
            regions_changed=sum(_names(a) != _names(b) for a, b in zip(preds, ref_preds, strict=True))))
    return result


def _names(pred) -> list[str]:
    return [label for label, _ in pred.regions]


def format_comparison(result: Comparison) -> str:
    multi = result.multi_label  # a multi-region model: also the photos whose set of regions changes
    lines = [f"{result.photos} photos ({result.unreadable} unreadable left out); reference torch fp32 "
             f"{result.reference_seconds_per_photo:.3f} s per photo",
             "| backend | max prob diff | mean prob diff | top-1 changed | " + "regions changed | " * multi
             + "review flag changed | s/photo | vs torch fp32 | exact |", "|---" * (8 + multi) + "|"]
    for c in result.candidates:
        lines.append(f"| {c.name} | {c.max_prob_diff:.2g} | {c.mean_prob_diff:.2g} | {c.top1_changed} | "
                     + f"{c.regions_changed} | " * multi
                     + f"{c.review_changed} | {c.seconds_per_photo:.3f} | {c.speedup:.2f}x | "
                     f"{'yes' if c.exact else 'no'} |")
    what = "per-class sigmoid score" if multi else "calibrated class probability"
    lines.append(f"exact = every {what} within {EXACT_PROB_DIFF:g} of torch fp32.")
    return "\n".join(lines)
