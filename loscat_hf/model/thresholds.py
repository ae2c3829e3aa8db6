"""A multi-region model's answers: sigmoid scores, per-class thresholds, the regions a photo shows.

A multi-region model (`problem_type` "multi_label_classification") scores every class on its own: sigmoid,
not softmax, so the scores do not sum to 1 and a photo may pass several classes. Each class gets its own
threshold, fitted on validation (the one that maximises that class's F1), because a rare class's scores sit
lower than a common one's and one global 0.5 would miss it. `train` fits and records them
(model/folder.py `record_thresholds`); prediction, evaluation and the Space read them back through here.

numpy only: serving imports it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.5  # the sigmoid's midpoint: a class without a fitted threshold (no positive seen)
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)  # candidate thresholds


def sigmoid(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Per-class scores sigmoid(logits / T) in float64; each in (0, 1), independent of the others."""
    z = np.asarray(logits, dtype=np.float64) / max(float(temperature), 1e-6)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow


def shown(probs: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Boolean (n, C): which classes pass their threshold (score >= threshold)."""
    return np.asarray(probs, dtype=np.float64) >= np.asarray(thresholds, dtype=np.float64)[None, :]


def regions(probs: np.ndarray, thresholds: Sequence[float],
            labels: Sequence[str]) -> list[list[tuple[str, float]]]:
    """Per photo, every class at or above its threshold with its score, most probable first."""
    out = []
    passed = shown(probs, thresholds)
    for row, keep in zip(np.asarray(probs, dtype=np.float64), passed, strict=True):
        order = [i for i in np.argsort(-row, kind="stable") if keep[i]]
        out.append([(labels[i], float(row[i])) for i in order])
    return out


def needs_review_multi(probs: np.ndarray, thresholds: Sequence[float], margin: float) -> np.ndarray:
    """Which photos a person should check: no class passes its threshold, or some class's score lies within
    `margin` of its threshold (in or out is a coin toss there)."""
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)[None, :]
    return ~(p >= t).any(axis=1) | (np.abs(p - t) < margin).any(axis=1)


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = float(np.sum(pred & truth))
    denominator = float(np.sum(pred) + np.sum(truth))
    return 2.0 * tp / denominator if denominator else 0.0


def fit_thresholds(probs: np.ndarray, targets: np.ndarray,
                   labels: Sequence[str]) -> tuple[dict[str, float], dict]:
    """Per class, the grid threshold with the best F1 on these photos (ties: the one nearest 0.5); a class
    without a positive photo keeps DEFAULT_THRESHOLD. Returns ({label: threshold}, how) with `how` the JSON
    record: rule, n photos, and the classes left at the default (`record_thresholds` takes both)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets) > 0.5
    out = np.full(p.shape[1], DEFAULT_THRESHOLD)
    defaulted = []
    for c in range(p.shape[1]):
        if not y[:, c].any():
            defaulted.append(labels[c])
            continue
        scores = [(_f1(p[:, c] >= t, y[:, c]), -abs(t - DEFAULT_THRESHOLD), t) for t in GRID]
        out[c] = max(scores)[2]
    values = {label: float(t) for label, t in zip(labels, out, strict=True)}
    return values, {"rule": "per-class F1 maximum", "n": int(len(p)), "default_for": defaulted}
