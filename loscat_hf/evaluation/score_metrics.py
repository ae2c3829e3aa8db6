"""Agreement of predicted LoSCAT scores with the clinical rater, per component and per visit total.

Why these metrics: MAE/RMSE say how far off a score is in LoSCAT points; Pearson/Spearman whether the model
orders lesions like the rater; quadratic-weighted kappa and ICC are what rater-agreement studies of LoSCAT
report, so the model can be compared with a second human rater. ICC is ICC(2,1) (Shrout & Fleiss:
two-way random effects, absolute agreement, single rater): a model that is consistently 1 point high must
count as disagreeing, which ICC(3,1) (consistency) would hide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from loscat_hf.data.score_tables import COMPONENTS, LOSDI, MLOSSI

SEVERITY_NAMES = ("none", "mild", "moderate", "severe")  # per-site component levels 0, 1, 2, 3


def icc(ratings: np.ndarray, kind: str = "2,1") -> float:
    """ICC(2,1) or ICC(3,1) of an (n targets, k raters) matrix (Shrout & Fleiss 1979)."""
    x = np.asarray(ratings, dtype=np.float64)
    n, k = x.shape
    if n < 2 or k < 2:
        return float("nan")
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    if kind == "2,1":
        denom = msr + (k - 1) * mse + k * (msc - mse) / n
    elif kind == "3,1":
        denom = msr + (k - 1) * mse
    else:
        raise ValueError(f"kind must be '2,1' or '3,1', got {kind!r}")
    return float((msr - mse) / denom) if denom > 0 else float("nan")


def severity_class(values: np.ndarray, levels: Sequence[int] = (0, 1, 2, 3)) -> np.ndarray:
    """Continuous predictions -> the nearest allowed level (new_extension: 0 or 3)."""
    lv = np.asarray(levels, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    return lv[np.abs(v[:, None] - lv[None, :]).argmin(axis=1)].astype(int)


def agreement(pred: np.ndarray, true: np.ndarray, levels: Sequence[int] = (0, 1, 2, 3)) -> dict:
    """MAE, RMSE, Pearson, Spearman, quadratic kappa, ICC(2,1) and severity-class accuracy; NaN targets
    skipped."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import cohen_kappa_score

    p, t = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    keep = ~(np.isnan(p) | np.isnan(t))
    p, t = p[keep], t[keep]
    out = {"n": int(keep.sum())}
    if out["n"] == 0:
        return out
    err = p - t
    out["mae"] = float(np.abs(err).mean())
    out["rmse"] = float(np.sqrt((err ** 2).mean()))
    varied = out["n"] > 1 and p.std() > 0 and t.std() > 0
    out["pearson"] = float(pearsonr(p, t)[0]) if varied else float("nan")
    out["spearman"] = float(spearmanr(p, t)[0]) if varied else float("nan")
    cls_p, cls_t = severity_class(p, levels), severity_class(t, levels)
    both = np.union1d(cls_p, cls_t)
    out["qwk"] = (float(cohen_kappa_score(cls_t, cls_p, weights="quadratic")) if len(both) > 1
                  else float("nan"))
    out["icc_2_1"] = icc(np.stack([t, p], axis=1), "2,1")
    out["severity_accuracy"] = float((cls_p == cls_t).mean())
    return out


def component_report(pred: np.ndarray, true: np.ndarray,
                     components: Sequence[str] = tuple(COMPONENTS)) -> dict:
    """agreement() per component of (n photos, n components) arrays."""
    return {c: agreement(pred[:, j], true[:, j], COMPONENTS.get(c, (0, 1, 2, 3)))
            for j, c in enumerate(components)}


TOTALS = {"mlossi": MLOSSI, "losdi": LOSDI}
VISIT = ["patient_id", "visit"]
SITE = [*VISIT, "site"]


def site_scores(photos: pd.DataFrame, components: Sequence[str] = tuple(COMPONENTS)) -> pd.DataFrame:
    """Photos (patient_id, visit, site, <component>...) -> one row per site: the worst photo of that site.

    Why the maximum: a clinician scores a site by its most affected area, and several photos of one site
    usually show different parts of it.
    """
    return photos.groupby(SITE, sort=True)[list(components)].max().reset_index()


def visit_totals(sites: pd.DataFrame, complete: bool = False) -> pd.DataFrame:
    """Site rows -> per visit mLoSSI and LoSDI (sums over the sites present; the LoSCAT has 18 at most).

    `complete=False`: the sum of the cells present, a total with no cell present is NaN (a prediction has
    every cell). `complete=True`: a total with any missing cell is NaN, because missing is never zero: the
    rater's total of a visit with an unscored cell is not known.
    """
    frame = sites.copy()
    for total, parts in TOTALS.items():
        frame[total] = frame[list(parts)].sum(axis=1, min_count=len(parts) if complete else 1)
    keys = [frame[k] for k in VISIT]
    totals = frame[list(TOTALS)].groupby(keys, sort=True).sum(min_count=1)
    if complete:
        totals = totals.where(~frame[list(TOTALS)].isna().groupby(keys, sort=True).any())
    return totals.reset_index()


def visit_table(predicted_photos: pd.DataFrame, clinical_sites: pd.DataFrame) -> pd.DataFrame:
    """One row per visit of the predictions that the score table also has, with two comparisons per total:

    `<total>_pred`/`<total>_true` (whole visit): predicted over the photographed sites vs the rater's total
    over every site scored, NaN where the rater left a cell empty. What an automated score of the visit would
    say: a visit whose affected sites were not photographed is under-estimated, and that is reported, not
    hidden. `<total>_pred_photographed`/`<total>_true_photographed`: only the sites both photographed and
    scored, each cell only where the rater scored it: the model's own agreement, free of what was not
    photographed.
    """
    comps = list(COMPONENTS)
    pred = site_scores(_str_keys(predicted_photos[[*SITE, *comps]]))
    clinical = _str_keys(clinical_sites.reindex(columns=[*SITE, *comps]))
    visits = pred[VISIT].drop_duplicates().merge(clinical[VISIT].drop_duplicates(), on=VISIT)
    whole = visit_totals(pred).merge(visit_totals(clinical, complete=True), on=VISIT,
                                     suffixes=("_pred", "_true"))
    both = pred.merge(clinical, on=SITE, suffixes=("", "_true"))
    for c in comps:  # the prediction of a cell the rater left empty is left out with it
        both[c] = both[c].where(both[f"{c}_true"].notna())
    rated = both[[*SITE, *(f"{c}_true" for c in comps)]].rename(columns={f"{c}_true": c for c in comps})
    shared = visit_totals(both[[*SITE, *comps]]).merge(visit_totals(rated), on=VISIT,
                                                        suffixes=("_pred_photographed", "_true_photographed"))
    counts = clinical.groupby(VISIT).size().rename("sites_scored").reset_index().merge(
        both.groupby(VISIT).size().rename("sites_photographed").reset_index(), on=VISIT, how="left")
    table = (visits.merge(whole, on=VISIT, how="left").merge(shared, on=VISIT, how="left")
             .merge(counts, on=VISIT))
    table["sites_photographed"] = table["sites_photographed"].fillna(0).astype(int)
    return table.sort_values(VISIT).reset_index(drop=True)


def _str_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """Patient, visit and site as text on both sides of a merge (a CSV read by pandas may give numbers)."""
    return frame.astype({k: str for k in SITE})


def _total_agreement(pred: np.ndarray, true: np.ndarray) -> dict:
    """agreement() of a visit total: kappa over its integer values 0..max+1; no severity class (a sum has
    none)."""
    levels = tuple(range(int(np.nanmax(np.r_[pred, true, [0]])) + 2))
    out = agreement(pred, true, levels)
    out.pop("severity_accuracy", None)
    return out


def totals_agreement(table: pd.DataFrame, n_visits: int) -> dict:
    """Agreement of a `visit_table`'s per-visit mLoSSI/LoSDI with the rater's, `n_visits` the predictions'
    visits.

    `<total>`: whole visits, leaving out (and counting) visits whose clinical total has an empty cell;
    `photographed_sites.<total>`: over the sites both photographed and scored. Counts say how many visits of
    the predictions the table lacks and how many scored sites were photographed.
    """
    out: dict = {"n_visits": len(table), "n_visits_not_in_table": n_visits - len(table),
                 "sites_scored": int(table["sites_scored"].sum()),
                 "sites_photographed": int(table["sites_photographed"].sum()), "photographed_sites": {}}
    for total in TOTALS:
        pred, true = table[f"{total}_pred"].to_numpy(float), table[f"{total}_true"].to_numpy(float)
        out[total] = {**_total_agreement(pred, true), "n_incomplete_left_out": int(np.isnan(true).sum())}
        pred, true = (table[f"{total}_{k}_photographed"].to_numpy(float) for k in ("pred", "true"))
        out["photographed_sites"][total] = _total_agreement(pred, true)
    return out


def compare_totals(predicted_photos: pd.DataFrame, clinical_sites: pd.DataFrame) -> dict:
    """Per-visit totals of predicted photo scores vs the score table's: `totals_agreement` of their
    `visit_table`."""
    n_visits = len(predicted_photos[VISIT].drop_duplicates())
    return totals_agreement(visit_table(predicted_photos, clinical_sites), n_visits)


def table_sites(rows: Mapping[tuple[str, str, str], Mapping[str, float | None]]) -> pd.DataFrame:
    """A ScoreTable's rows as a site-level DataFrame (None -> NaN) for visit_totals/compare_totals."""
    records = [{"patient_id": p, "visit": v, "site": s,
                **{c: (np.nan if x is None else x) for c, x in vals.items()}}
               for (p, v, s), vals in rows.items()]
    return pd.DataFrame.from_records(records)
