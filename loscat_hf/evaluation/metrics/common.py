"""What the single-label and the multi-label reports share: constants, the input error, subgroup gaps and
number formatting (one module both import, so neither imports the other)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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


def top_off_diagonal(matrix: np.ndarray, names: Sequence[str], key: str, neighbours=None) -> list[dict]:
    """The TOP_CONFUSIONS largest off-diagonal cells of a class x class count matrix (a confusion matrix, or
    the multi-label report's errors), most first: {"true", key, "count"[, "neighbours"]}."""
    k = len(names)
    cells = sorted(((int(matrix[i, j]), i, j) for i in range(k) for j in range(k)
                    if i != j and matrix[i, j] > 0), key=lambda t: (-t[0], t[1], t[2]))
    top = []
    for count, i, j in cells[:TOP_CONFUSIONS]:
        row: dict[str, Any] = {"true": names[i], key: names[j], "count": count}
        if neighbours is not None:
            row["neighbours"] = bool(neighbours(names[i], names[j]))
        top.append(row)
    return top


def fmt(x: Any, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.1%}" if pct else f"{x:.3f}"


def subgroup_reports(subgroups: Mapping[str, Sequence] | None, n: int,
                     one: Callable[[Sequence], dict]) -> dict | None:
    """Each subgroup column's report (`one(values)`), its values checked to be one per sample; None without
    subgroups (the single- and the multi-label report share it)."""
    if not subgroups:
        return None
    out = {}
    for column, values in subgroups.items():
        if len(values) != n:
            raise MetricsInputError(f"subgroup column {column!r} has {len(values)} values for {n} samples")
        out[str(column)] = one(values)
    return out


def subgroup_markdown(subgroups: dict | None, accuracy: str = "accuracy") -> list[str]:
    """per_class.md's subgroup tables, one per column; `accuracy`: what the report's accuracy is (a
    multi-label report's is exact match)."""
    lines: list[str] = []
    for column, sub in (subgroups or {}).items():
        lines += ["", f"**{column}** ({accuracy} gap {fmt(sub['accuracy_gap'])}, macro-F1 gap "
                      f"{fmt(sub['macro_f1_gap'])} over values with n ≥ {sub['min_n_for_gap']})", "",
                  f"| value | n | {accuracy} | macro-F1 | ECE |", "|---|---:|---:|---:|---:|"]
        for value, v in sub["values"].items():
            lines.append(f"| {value} | {v['n']} | {fmt(v['accuracy'])} | {fmt(v['macro_f1'])} "
                         f"| {fmt(v['ece'])} |")
    return lines


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
