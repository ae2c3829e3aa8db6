"""What the single-label and the multi-label reports share: constants, the input error, subgroup gaps and
number formatting (one module both import, so neither imports the other)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from loscat_hf.errors import LoscatError

N_BINS = 15
TOP_CONFUSIONS = 10
MISSING = "(missing)"


class MetricsInputError(LoscatError, ValueError):
    """Predictions, labels, probabilities and class names that do not fit together."""


def subgroup_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip()):
        return MISSING
    return str(v)


def subgroup_gaps(per_value: dict[str, dict], min_n: int) -> dict:
    """A subgroup column's values with the largest accuracy and macro-F1 gaps between values of n >= min_n
    (the single- and the multi-label report share it, and the card reads it)."""
    out: dict[str, Any] = {"values": per_value, "min_n_for_gap": min_n}
    eligible = {k: v for k, v in per_value.items() if k != MISSING and v["n"] >= min_n}
    for metric in ("accuracy", "macro_f1"):
        if len(eligible) >= 2:
            worst = min(eligible, key=lambda k: eligible[k][metric])
            best = max(eligible, key=lambda k: eligible[k][metric])
            out[f"{metric}_gap"] = eligible[best][metric] - eligible[worst][metric]
            out[f"{metric}_gap_between"] = {"worst": worst, "best": best}
        else:  # a gap needs two groups large enough to be more than noise
            out[f"{metric}_gap"] = None
            out[f"{metric}_gap_between"] = None
    return out


def fmt(x: Any, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.1%}" if pct else f"{x:.3f}"


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
