import json
from collections import Counter

import pandas as pd
import pytest

from loscat_hf.data.agreement import agreement_report, fleiss_kappa, format_agreement
from loscat_hf.errors import LoscatError

LABELS = ("head", "neck", "chest", "abdomen", "upper_back", "lower_back",
          "arm", "forearm", "hand", "thigh", "leg", "foot")


def _pairs_frame(table: dict[tuple[str, str], int]) -> pd.DataFrame:
    """Two raters A and B; table[(label_A, label_B)] photos got that pair of labels."""
    rows, n = [], 0
    for (label_a, label_b), count in table.items():
        for _ in range(count):
            rows += [(f"p{n}", "A", label_a), (f"p{n}", "B", label_b)]
            n += 1
    return pd.DataFrame(rows, columns=["image", "rater", "label"])


def test_cohen_kappa_2x2_hand_computed():
    #              B: arm   B: leg   | A total
    #   A: arm        20        5    |   25
    #   A: leg        10       15    |   25
    #   B total       30       20    |   50
    # po = (20 + 15) / 50 = 0.70
    # pe = (25/50)(30/50) + (25/50)(20/50) = 0.30 + 0.20 = 0.50
    # kappa = (0.70 - 0.50) / (1 - 0.50) = 0.40
    frame = _pairs_frame({("arm", "arm"): 20, ("arm", "leg"): 5, ("leg", "arm"): 10, ("leg", "leg"): 15})
    report = agreement_report(frame, LABELS)
    (pair,) = report["pairs"]
    assert (pair["rater_a"], pair["rater_b"], pair["n_photos"]) == ("A", "B", 50)
    assert pair["percent_agreement"] == pytest.approx(70.0)
    assert pair["cohen_kappa"] == pytest.approx(0.40)
    assert report["percent_agreement"] == pytest.approx(70.0)
    assert report["most_confused"] == [{"labels": ["arm", "leg"], "count": 15}]


def test_cohen_kappa_3x3_hand_computed():
    #              B: head  B: neck  B: chest | A total
    #   A: head       10        2        3    |   15
    #   A: neck        1        8        1    |   10
    #   A: chest       4        2       19    |   25
    #   B total       15       12       23    |   50
    # po = (10 + 8 + 19) / 50 = 0.74
    # pe = (15*15 + 10*12 + 25*23) / 50^2 = (225 + 120 + 575) / 2500 = 0.368
    # kappa = (0.74 - 0.368) / (1 - 0.368) = 0.372 / 0.632 = 0.588608...
    table = {("head", "head"): 10, ("head", "neck"): 2, ("head", "chest"): 3,
             ("neck", "head"): 1, ("neck", "neck"): 8, ("neck", "chest"): 1,
             ("chest", "head"): 4, ("chest", "neck"): 2, ("chest", "chest"): 19}
    report = agreement_report(_pairs_frame(table), LABELS)
    assert report["pairs"][0]["cohen_kappa"] == pytest.approx(0.372 / 0.632)
    # confusions are unordered: head/chest 3 + 4 = 7, head/neck 2 + 1 = 3, neck/chest 1 + 2 = 3
    assert report["most_confused"] == [
        {"labels": ["head", "chest"], "count": 7},
        {"labels": ["head", "neck"], "count": 3},
        {"labels": ["neck", "chest"], "count": 3},
    ]


# Fleiss (1971) worked example as given on Wikipedia: 10 subjects, 14 raters each, 5 categories.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]
# By hand: P_i = (sum_j n_ij^2 - 14) / (14 * 13); the numerators are
#   182, 46, 56, 80, 60, 84, 44, 32, 52, 52  -> sum 688, so P_bar = 688 / (10 * 182) = 0.378022
# column totals 20, 28, 39, 21, 32 (of 140) -> Pe = (20^2 + 28^2 + 39^2 + 21^2 + 32^2) / 140^2
#   = (400 + 784 + 1521 + 441 + 1024) / 19600 = 4170 / 19600 = 0.212755
# kappa = (0.378022 - 0.212755) / (1 - 0.212755) = 0.209930
FLEISS_P_BAR = 688 / 1820
FLEISS_PE = 4170 / 19600
FLEISS_KAPPA = (FLEISS_P_BAR - FLEISS_PE) / (1 - FLEISS_PE)


def test_fleiss_kappa_classic_example_hand_computed():
    assert FLEISS_KAPPA == pytest.approx(0.20993, abs=1e-5)
    cats = ["head", "neck", "chest", "arm", "leg"]
    counts = [{c: n for c, n in zip(cats, row, strict=True) if n} for row in FLEISS_TABLE]
    assert fleiss_kappa(counts) == pytest.approx(FLEISS_KAPPA)
    # the same through agreement_report: 14 raters, each rates every photo
    rows = []
    for i, row in enumerate(FLEISS_TABLE):
        labels = [c for c, n in zip(cats, row, strict=True) for _ in range(n)]
        rows += [(f"photo{i}", f"r{k:02d}", label) for k, label in enumerate(labels)]
    report = agreement_report(pd.DataFrame(rows, columns=["image", "rater", "label"]), LABELS)
    assert report["fleiss_kappa"] == pytest.approx(FLEISS_KAPPA)
    assert report["n_photos_multi_rated"] == 10 and report["n_raters"] == 14
    assert report["percent_agreement"] == pytest.approx(10.0)  # only photo 0 is unanimous
    assert len(report["pairs"]) == 14 * 13 // 2


def test_fleiss_kappa_varying_raters_hand_computed():
    # photo 1: arm, arm, arm   (n=3) P1 = (9 - 3) / (3 * 2) = 1
    # photo 2: arm, leg        (n=2) P2 = (1 + 1 - 2) / (2 * 1) = 0
    # photo 3: leg, leg        (n=2) P3 = (4 - 2) / (2 * 1) = 1
    # photo 4: head            (n=1) skipped: one rating carries no agreement information
    # P_bar = 2/3; p_arm = 4/7, p_leg = 3/7; Pe = 16/49 + 9/49 = 25/49
    # kappa = (2/3 - 25/49) / (1 - 25/49) = (23/147) / (24/49) = 23/72 = 0.319444...
    counts = [Counter(arm=3), Counter(arm=1, leg=1), Counter(leg=2), Counter(head=1)]
    assert fleiss_kappa(counts) == pytest.approx(23 / 72)


def test_degenerate_cases_are_none_not_nan():
    frame = pd.DataFrame([("p1", "A", "arm"), ("p1", "B", "arm"), ("p2", "A", "arm"), ("p2", "B", "arm")],
                         columns=["image", "rater", "label"])
    report = agreement_report(frame, LABELS)
    assert report["pairs"][0]["cohen_kappa"] is None
    assert report["fleiss_kappa"] is None
    assert report["percent_agreement"] == 100.0
    assert fleiss_kappa([]) is None
    single = agreement_report(frame.iloc[:1], LABELS)
    assert single["percent_agreement"] is None and single["pairs"] == []
    assert "no photo" in format_agreement(single)


def test_codes_and_repeat_ratings_are_ignored_and_report_is_json():
    frame = pd.DataFrame([
        ("p1", "A", "arm"), ("p1", "B", "unclear"), ("p1", "C", "arm"),
        ("p2", "A", "leg"), ("p2", "A", "foot"), ("p2", "B", "foot"),
    ], columns=["image", "rater", "label"])
    report = agreement_report(frame, LABELS)
    assert report["n_ratings"] == 4  # 'unclear' and A's second rating of p2 left out
    assert report["n_photos_multi_rated"] == 2
    assert report["percent_agreement"] == pytest.approx(50.0)
    assert {(p["rater_a"], p["rater_b"]) for p in report["pairs"]} == {("A", "B"), ("A", "C")}
    assert report["most_confused"] == [{"labels": ["leg", "foot"], "count": 1}]
    json.dumps(report)
    assert agreement_report(frame, LABELS, pairwise=False)["pairs"] == []


def test_format_agreement_table():
    frame = _pairs_frame({("arm", "arm"): 20, ("arm", "leg"): 5, ("leg", "arm"): 10, ("leg", "leg"): 15})
    text = format_agreement(agreement_report(frame, LABELS))
    assert "70.0%" in text and "0.400" in text and "A vs B" in text and "arm/leg (15)" in text


def test_missing_columns_raise_loscat_error():
    with pytest.raises(LoscatError, match="missing"):
        agreement_report(pd.DataFrame({"image": [], "label": []}), LABELS)
