"""splits.assign_splits: never a patient in two splits; class mix of each split close to the whole."""

from collections import Counter

import numpy as np
import pytest

from loscat_hf.data.splits import assign_splits, split_counts_table
from loscat_hf.errors import LoscatError

CLASSES = ["head", "neck", "chest", "arm", "leg", "hand"]


def _photos(n_patients: int = 40, seed: int = 0) -> tuple[list[str], list[str]]:
    """Patients with 3-12 photos each; each patient shows a few regions (as in clinic follow-up)."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for p in range(n_patients):
        regions = rng.choice(CLASSES, size=rng.integers(1, 4), replace=False)
        for _ in range(rng.integers(3, 13)):
            labels.append(str(rng.choice(regions)))
            groups.append(f"P{p:03d}")
    return labels, groups


def test_no_patient_in_two_splits_over_many_seeds():
    labels, groups = _photos(40)
    for seed in range(30):
        result = assign_splits(labels, groups, val_fraction=0.2, test_fraction=0.15, seed=seed)
        split_of: dict[str, set[str]] = {}
        for g, s in zip(groups, result.assignments, strict=True):
            split_of.setdefault(g, set()).add(s)
        assert all(len(s) == 1 for s in split_of.values()), seed
        assert set(result.assignments) == {"train", "validation", "test"}


def test_class_shares_close_to_whole():
    labels, groups = _photos(40, seed=1)
    whole = Counter(labels)
    for seed in range(5):
        result = assign_splits(labels, groups, val_fraction=0.25, test_fraction=0.0, seed=seed)
        for split in ("train", "validation"):
            in_split = [lab for lab, s in zip(labels, result.assignments, strict=True) if s == split]
            counts = Counter(in_split)
            for cls in CLASSES:
                assert abs(counts[cls] / len(in_split) - whole[cls] / len(labels)) < 0.08, (seed, split, cls)
        share = result.assignments.count("validation") / len(labels)
        assert 0.15 < share < 0.35


def test_same_seed_same_split_and_seed_matters():
    labels, groups = _photos(30)
    a = assign_splits(labels, groups, seed=3).assignments
    assert a == assign_splits(labels, groups, seed=3).assignments
    assert any(assign_splits(labels, groups, seed=s).assignments != a for s in range(4, 8))


def test_warns_about_rare_classes():
    labels, groups = _photos(30)
    labels += ["foot"] * 3
    groups += ["P000", "P001", "P001"]
    result = assign_splits(labels, groups, val_fraction=0.2, test_fraction=0.2)
    assert any(
        "class 'foot' has photos from only 2 patients: it cannot appear in train, validation and test" in w
        for w in result.warnings
    )


@pytest.mark.parametrize(
    "val, test",
    [(0.0, 0.0), (1.0, 0.0), (-0.1, 0.0), (0.2, -0.1), (0.5, 0.5), (0.6, 0.5)],
)
def test_bad_fractions(val, test):
    labels, groups = _photos(10)
    with pytest.raises(LoscatError):
        assign_splits(labels, groups, val_fraction=val, test_fraction=test)


def test_too_few_patients():
    with pytest.raises(LoscatError, match="only 3 patients"):
        assign_splits(["head"] * 6, ["a", "a", "b", "b", "c", "c"], val_fraction=0.165)
    with pytest.raises(LoscatError, match="pair up"):
        assign_splits(["head"], ["a", "b"])


def test_counts_table():
    labels = ["head", "head", "neck", "neck", "neck", "head"]
    assignments = ["train", "validation", "train", "train", "validation", "train"]
    groups = ["a", "b", "a", "c", "b", "c"]
    text = split_counts_table(labels, assignments, ["head", "neck", "foot"], groups=groups)
    lines = text.splitlines()
    assert lines[0].split() == ["class", "train", "validation", "total", "share"]
    assert lines[1].split() == ["head", "2", "1", "3", "50.0%"]
    assert lines[3].split() == ["foot", "0", "0", "0", "0.0%"]
    assert lines[4].split() == ["total", "4", "2", "6", "100.0%"]
    assert lines[-1].split() == ["patients", "2", "1", "3"]
    md = split_counts_table(labels, assignments, ["head", "neck"], markdown=True)
    assert md.splitlines()[0] == "| class | train | validation | total | share |"


def test_too_small_classes_to_stratify_still_split_by_patient():
    """12 photos of 12 patients in 6 classes: sklearn's StratifiedGroupKFold raised a ValueError."""
    labels = [f"c{i % 6}" for i in range(12)]
    groups = [f"P{i}" for i in range(12)]
    result = assign_splits(labels, groups, val_fraction=0.25, seed=0)
    assert result.assignments.count("validation") == 3 and result.assignments.count("train") == 9
    assert any("not stratified" in w for w in result.warnings)  # said in the card, not only in a log
