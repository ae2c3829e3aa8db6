"""Temperature scaling and calibration error: how far the softmax confidence can be trusted.

A fine-tuned ViT is usually over-confident. One scalar temperature T, fitted on the validation logits
(probs = softmax(logits / T)), fixes most of that without changing any prediction (argmax is unchanged).
The training code stores the fitted value in the model folder's config.json (model/folder.py); plain
transformers ignores that attribute, and loscat-hf's inference and evaluation divide the logits by it. Not
`config.temperature`: transformers 5.x treats that name as a generation parameter and `save_pretrained`
raises ValueError on it.

numpy only (no torch, no scipy): the NLL is convex in 1/T, so a bounded grid + golden-section search in
log T finds the optimum reliably, in milliseconds, without any optimiser settings to get wrong.
"""

from __future__ import annotations

import math

import numpy as np

T_MIN = 0.05
T_MAX = 20.0


def apply_temperature(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of logits / T in float64 (numerically stable); rows sum to 1."""
    z = np.asarray(logits, dtype=np.float64) / max(float(temperature), 1e-6)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def needs_review(probs: np.ndarray, min_confidence: float, min_margin: float) -> np.ndarray:
    """Which rows a person should check: top-1 probability below `min_confidence`, or the top two within
    `min_margin` (one rule for `predict`, the Space and `calibrate`'s report)."""
    p = -np.sort(-np.asarray(probs, dtype=np.float64), axis=1)
    margin = p[:, 0] - p[:, 1] if p.shape[1] > 1 else np.ones(len(p))
    return (p[:, 0] < min_confidence) | (margin < min_margin)


def _nll_from_logits(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    m = z.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(z - m).sum(axis=1)))
    return float(np.mean(lse - z[np.arange(len(labels)), labels]))


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class); probabilities are clipped at 1e-12 so one certain mistake stays finite."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        return float("nan")
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, t_min: float = T_MIN,
                    t_max: float = T_MAX) -> float:
    """The temperature T in [t_min, t_max] that minimises the NLL of softmax(logits / T) on labelled data.

    Returns 1.0 (no scaling) when there is nothing to learn from: no samples, fewer than 2 classes,
    non-finite logits, or no misclassified sample at all (the NLL then keeps falling as T -> 0, so any
    "optimum" would only be the lower bound and make the model maximally over-confident).
    Labels outside the logits' classes are a caller bug and raise ValueError.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2 or not np.all(np.isfinite(z)):
        return 1.0
    if len(y) != z.shape[0]:
        raise ValueError(f"{z.shape[0]} rows of logits but {len(y)} labels")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must lie in 0..{z.shape[1] - 1}, got {int(y.min())}..{int(y.max())}")
    if np.all(z.argmax(axis=1) == y):
        return 1.0

    def nll(log_t: float) -> float:
        return _nll_from_logits(z, y, float(np.exp(log_t)))

    # Unimodal in log T (convex in 1/T): a coarse grid brackets the minimum, golden section refines it.
    lo, hi = np.log(t_min), np.log(t_max)
    grid = np.linspace(lo, hi, 41)
    values = [nll(g) for g in grid]
    i = int(np.argmin(values))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(60):
        if b - a < 1e-6:
            break
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    best = (a + b) / 2.0
    temperature = float(np.exp(best))
    if not np.isfinite(temperature) or nll(best) > nll(0.0):  # never worse than no scaling
        return 1.0
    return temperature


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> list[dict]:
    """Equal-width bins over the top-class confidence: per bin its range, count, mean confidence, accuracy.

    A sample with confidence c falls in bin ceil(c * n_bins) - 1, i.e. bins are (lower, upper] and the
    first bin also holds c = 0. Empty bins are kept with count 0 (confidence and accuracy None), so
    the list always has n_bins entries and plots line up.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    conf = p.max(axis=1) if len(y) else np.zeros(0)
    correct = (p.argmax(axis=1) == y) if len(y) else np.zeros(0, dtype=bool)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = idx == b
        n = int(mask.sum())
        bins.append({
            "lower": b / n_bins, "upper": (b + 1) / n_bins, "count": n,
            "confidence": float(conf[mask].mean()) if n else None,
            "accuracy": float(correct[mask].mean()) if n else None,
        })
    return bins


def ece_from_bins(bins: list[dict]) -> float:
    """ECE = sum over bins of (share of samples) * |accuracy - mean confidence|."""
    total = sum(b["count"] for b in bins)
    if total == 0:
        return float("nan")
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error over `n_bins` equal-width bins of the top-class confidence (0 = calibrated).

    Reported next to accuracy because a clinician reading "93 % forearm" should be able to trust the 93 %.
    NaN for no samples.
    """
    return ece_from_bins(reliability_bins(probs, labels, n_bins))


def _ece(probs: np.ndarray, labels: np.ndarray) -> float | None:
    value = expected_calibration_error(probs, labels)
    return round(value, 4) if math.isfinite(value) else None


def fit_record(logits: np.ndarray, labels: np.ndarray, before: float = 1.0) -> tuple[float, dict]:
    """The temperature fitted on labelled logits, and what `record_temperature` keeps of the fit: n and the
    ECE before (with temperature `before`: what the model answered until now) and after."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    temperature = fit_temperature(z, y)
    return temperature, {"n": int(len(y)), "ece_before": _ece(apply_temperature(z, before), y),
                         "ece_after": _ece(apply_temperature(z, temperature), y)}
