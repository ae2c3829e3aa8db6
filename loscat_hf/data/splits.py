"""Patient-level train/validation/test split.

Photos of one patient look alike (same skin, same lesion, same camera), so a patient in two splits lets
a model score well by recognising the patient, not the region. Every split here is by patient, and
stratified so each split keeps roughly the class mix of the whole set.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from loscat_hf.errors import LoscatError
from loscat_hf.taxonomy import SET_SEPARATOR

SPLIT_ORDER = ("train", "validation", "test")


@dataclass
class SplitResult:
    """Split name per photo (same order as the input) and human-readable warnings about the split."""

    assignments: list[str]
    warnings: list[str] = field(default_factory=list)

    def split_names(self) -> list[str]:
        present = set(self.assignments)
        return [s for s in SPLIT_ORDER if s in present]


def _n_splits(fraction: float) -> int:
    return max(2, round(1.0 / fraction))


def _one_fold(
    labels: np.ndarray, groups: np.ndarray, index: np.ndarray, fraction: float, seed: int, what: str
) -> tuple[np.ndarray, bool]:
    """Indices (into `index`) of one StratifiedGroupKFold fold whose size is closest to `fraction`, and
    whether it could be stratified."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    n_splits = _n_splits(fraction)
    n_groups = len(set(groups[index].tolist()))
    if n_groups < n_splits:
        raise LoscatError(
            f"only {n_groups} patients are left for the {what} split, but a {fraction:.1%} share needs "
            f"at least {n_splits} patients (it takes one of {n_splits} patient groups); add patients or "
            f"raise the fraction"
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has only N members": we warn per class ourselves
        warnings.simplefilter("ignore", UserWarning)
        stratified = not np.all(np.unique(labels[index], return_counts=True)[1] < n_splits)
        if not stratified:
            # every class has fewer photos than folds: sklearn refuses to stratify (ValueError), and there
            # is nothing to stratify by; the patient grouping is what must hold, so split by patient alone
            splitter = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        folds = [test for _, test in splitter.split(np.zeros(len(index)), labels[index], groups[index])]
    folds = [f for f in folds if len(f)] or folds
    target = fraction * len(index)
    best = min(range(len(folds)), key=lambda i: (abs(len(folds[i]) - target), i))
    return folds[best], stratified


def assign_splits(
    labels: Sequence[str],
    groups: Sequence[str],
    val_fraction: float = 0.165,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> SplitResult:
    """Assign each photo to train/validation(/test) so that no patient (group) is in two splits.

    The test split is carved first from all patients, then validation from the rest with the share
    val/(1-test), each as one fold of sklearn's StratifiedGroupKFold(n_splits=round(1/share)).
    A photo showing several regions has its classes ';'-joined: that set is its stratum (as well as sets
    allow: a rare set is a small stratum), and the per-class warnings count it under each of its classes.
    """
    if len(labels) != len(groups):
        raise LoscatError(f"{len(labels)} labels but {len(groups)} patient ids: they must pair up")
    if not 0.0 < val_fraction < 1.0:
        raise LoscatError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if not 0.0 <= test_fraction < 1.0:
        raise LoscatError(f"test_fraction must be >= 0 and < 1, got {test_fraction}")
    if val_fraction + test_fraction >= 1.0:
        raise LoscatError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves no patients for training"
        )
    if not labels:
        raise LoscatError("no photos to split")
    y = np.asarray([str(v) for v in labels], dtype=object)
    g = np.asarray([str(v) for v in groups], dtype=object)
    assignments = np.full(len(y), "train", dtype=object)
    remaining = np.arange(len(y))
    unstratified = []
    if test_fraction > 0:
        fold, stratified = _one_fold(y, g, remaining, test_fraction, seed, "test")
        assignments[remaining[fold]] = "test"
        remaining = np.delete(remaining, fold)
        unstratified += [] if stratified else ["test"]
    val_share = val_fraction / (1.0 - test_fraction)
    fold, stratified = _one_fold(y, g, remaining, val_share, seed, "validation")
    assignments[remaining[fold]] = "validation"
    unstratified += [] if stratified else ["validation"]

    result = SplitResult(assignments=assignments.tolist())
    result.warnings = [
        f"the {what} split is by patient but not stratified by class: every class has fewer photos than the "
        "split needs folds (scikit-learn GroupKFold instead of StratifiedGroupKFold)" for what in unstratified
    ] + _split_warnings(y, g, assignments, test_fraction > 0)
    return result


def _split_warnings(y: np.ndarray, g: np.ndarray, assignments: np.ndarray, with_test: bool) -> list[str]:
    names = ["train", "validation"] + (["test"] if with_test else [])
    listed = ", ".join(names[:-1]) + " and " + names[-1]
    out = []
    sets = [set(v.split(SET_SEPARATOR)) for v in y.tolist()]
    for cls in sorted(set().union(*sets)):
        mask = np.asarray([cls in s for s in sets], dtype=bool)
        n_patients = len(set(g[mask].tolist()))
        if n_patients < len(names):
            word = "patient" if n_patients == 1 else "patients"
            out.append(
                f"class {cls!r} has photos from only {n_patients} {word}: it cannot appear in {listed}"
            )
            continue
        missing = [s for s in names if not np.any(mask & (assignments == s))]
        if missing:
            out.append(
                f"class {cls!r} ({n_patients} patients) has no photos in {', '.join(missing)} "
                f"with this seed; try another --seed or add patients"
            )
    return out


def split_counts_table(
    labels: Sequence[str],
    assignments: Sequence[str],
    classes: Sequence[str] | None = None,
    *,
    groups: Sequence[str] | None = None,
    markdown: bool = False,
) -> str:
    """Photos per class and split, with totals, each split's share of photos and (given groups) patients.
    A photo showing several regions (classes ';'-joined) counts under each: the class rows may sum to more
    than the total."""
    if classes is None:
        classes = sorted({c for label in labels for c in label.split(SET_SEPARATOR)})
    present = set(assignments)
    splits = [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))
    counts = Counter((c, a) for label, a in zip(labels, assignments, strict=True)
                     for c in label.split(SET_SEPARATOR))
    total = len(labels)
    header = ["class", *splits, "total", "share"]
    rows = []
    for cls in classes:
        n = sum(counts[(cls, s)] for s in splits)
        rows.append([cls, *(str(counts[(cls, s)]) for s in splits), str(n), _pct(n, total)])
    per_split = Counter(assignments)
    rows.append(["total", *(str(per_split[s]) for s in splits), str(total), _pct(total, total)])
    rows.append(["share", *(_pct(per_split[s], total) for s in splits), _pct(total, total), ""])
    if groups is not None:
        patients = {s: len({p for p, a in zip(groups, assignments, strict=True) if a == s}) for s in splits}
        rows.append(["patients", *(str(patients[s]) for s in splits), str(len(set(groups))), ""])
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = [f"{{:<{widths[0]}}}"] + [f"{{:>{w}}}" for w in widths[1:]]
    return "\n".join("  ".join(f.format(c) for f, c in zip(fmt, r, strict=True)).rstrip()
                     for r in [header, *rows])


def _pct(n: int, total: int) -> str:
    return f"{100.0 * n / total:.1f}%" if total else "-"
