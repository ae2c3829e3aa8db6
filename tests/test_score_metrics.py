"""Score metrics against scipy/sklearn and published ICC values; visit totals against hand sums."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import cohen_kappa_score

from loscat_hf.data.score_tables import COMPONENTS
from loscat_hf.evaluation.score_metrics import (
    agreement,
    compare_totals,
    icc,
    severity_class,
    site_scores,
    visit_table,
    visit_totals,
)


def test_icc_matches_shrout_fleiss_table():
    # Shrout & Fleiss (1979) Table 2: 6 targets, 4 judges; ICC(2,1) = 0.29, ICC(3,1) = 0.71
    x = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    assert icc(x, "2,1") == pytest.approx(0.29, abs=0.005)
    assert icc(x, "3,1") == pytest.approx(0.71, abs=0.005)


def test_agreement_matches_scipy_and_sklearn_and_skips_nan():
    true = np.array([0, 1, 2, 3, 1, 2, 0, 3, np.nan])
    pred = np.array([0.2, 1.4, 1.6, 2.6, 0.4, 2.9, 0.1, 3.2, 2.0])
    m = agreement(pred, true)
    t, p = true[:8], pred[:8]
    assert m["n"] == 8
    assert m["mae"] == pytest.approx(np.abs(p - t).mean())
    assert m["rmse"] == pytest.approx(np.sqrt(((p - t) ** 2).mean()))
    assert m["pearson"] == pytest.approx(pearsonr(p, t)[0])
    assert m["spearman"] == pytest.approx(spearmanr(p, t)[0])
    cls = np.clip(np.rint(p), 0, 3).astype(int)
    assert m["qwk"] == pytest.approx(cohen_kappa_score(t.astype(int), cls, weights="quadratic"))
    assert m["severity_accuracy"] == pytest.approx((cls == t).mean())
    # a constant +1 bias keeps ICC(3,1) at 1 but lowers ICC(2,1): the reason ICC(2,1) is reported
    assert icc(np.stack([t, t + 1], 1), "3,1") == pytest.approx(1.0)
    assert agreement(t + 1, t)["icc_2_1"] < 0.9


def test_severity_class_respects_allowed_levels():
    assert severity_class(np.array([1.4, 1.6, 2.0]), (0, 3)).tolist() == [0, 3, 3]


def _photos(rows):
    return pd.DataFrame(rows, columns=["patient_id", "visit", "site", *COMPONENTS])


def test_worst_photo_per_site_and_visit_totals_by_hand():
    photos = _photos([
        ("P1", "v1", "head", 1, 2, 0, 0, 1, 0),
        ("P1", "v1", "head", 3, 1, 3, 1, 0, 0),  # same site: worst per component -> 3, 2, 3 | 1, 1, 0
        ("P1", "v1", "left_thigh", 0, 1, 0, 2, 2, 3),
        ("P1", "v2", "head", 0, 0, 0, 0, 0, np.nan),
        ("P2", "v1", "chest", 2, 2, 3, np.nan, np.nan, np.nan),
    ])
    sites = site_scores(photos)
    assert len(sites) == 4
    totals = visit_totals(sites).set_index(["patient_id", "visit"])
    assert totals.loc[("P1", "v1"), "mlossi"] == (3 + 2 + 3) + (0 + 1 + 0)
    assert totals.loc[("P1", "v1"), "losdi"] == (1 + 1 + 0) + (2 + 2 + 3)
    assert totals.loc[("P1", "v2"), "losdi"] == 0
    assert totals.loc[("P2", "v1"), "mlossi"] == 7 and np.isnan(totals.loc[("P2", "v1"), "losdi"])

    clinical = _photos([
        ("P1", "v1", "head", 3, 2, 3, 1, 1, 0), ("P1", "v1", "left_thigh", 0, 1, 0, 2, 2, 3),
        ("P1", "v1", "abdomen", 1, 1, 0, 0, 0, 0),  # scored, not photographed: prediction misses it
        ("P1", "v2", "head", 0, 0, 0, 0, 0, 0), ("P2", "v1", "chest", 2, 2, 3, 0, 0, 0),
    ])
    cmp = compare_totals(photos, clinical)
    assert cmp["n_visits"] == 3
    assert cmp["mlossi"]["mae"] == pytest.approx(2 / 3)  # errors 2, 0, 0
    # over the photographed sites only, the abdomen (not photographed) drops out: mLoSSI agrees exactly
    assert cmp["photographed_sites"]["mlossi"]["mae"] == 0.0
    assert cmp["sites_scored"] == 5 and cmp["sites_photographed"] == 4 and cmp["n_visits_not_in_table"] == 0


def test_an_empty_rated_cell_leaves_the_visit_total_out_and_the_cell_out_of_the_site_comparison():
    photos = _photos([
        ("P1", "v1", "head", 1, 1, 0, 1, 1, 1), ("P1", "v1", "chest", 2, 0, 0, 0, 0, 0),
        ("P2", "v1", "head", 1, 1, 0, 1, 1, 1),
        ("P3", "v1", "head", 0, 0, 0, 0, 0, 0),  # a visit the table does not have
    ])
    clinical = _photos([
        ("P1", "v1", "head", 1, 1, 0, 1, 1, np.nan),  # dyspigmentation not scored
        ("P1", "v1", "chest", 2, 0, 0, 0, 0, 0),
        ("P2", "v1", "head", 1, 1, 0, 2, 2, 2),
    ])
    table = visit_table(photos, clinical).set_index(["patient_id", "visit"])
    # missing is never zero: the rated total is unknown
    assert np.isnan(table.loc[("P1", "v1"), "losdi_true"])
    assert table.loc[("P1", "v1"), "mlossi_true"] == 4 == table.loc[("P1", "v1"), "mlossi_pred"]
    # photographed sites: the unscored cell is dropped on both sides (2 vs 2), not counted as a 1-point error
    assert (table.loc[("P1", "v1"), "losdi_pred_photographed"] == 2
            == table.loc[("P1", "v1"), "losdi_true_photographed"])
    cmp = compare_totals(photos, clinical)
    assert cmp["n_visits"] == 2 and cmp["n_visits_not_in_table"] == 1
    assert cmp["losdi"]["n"] == 1 and cmp["losdi"]["n_incomplete_left_out"] == 1  # only P2 compared
    assert cmp["losdi"]["mae"] == 3.0  # P2: 3 predicted vs 6 rated
    assert cmp["photographed_sites"]["losdi"]["n"] == 2
    assert cmp["photographed_sites"]["losdi"]["mae"] == pytest.approx(1.5)  # errors 0 and 3
