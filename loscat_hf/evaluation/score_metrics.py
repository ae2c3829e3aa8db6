"""Agreement of predicted LoSCAT scores with the clinical rater, per component and per visit total.

Why these metrics: MAE/RMSE say how far off a score is in LoSCAT points; Pearson/Spearman whether the model
orders lesions like the rater; quadratic-weighted kappa and ICC are what rater-agreement studies of LoSCAT
report, so the model can be compared with a second human rater. ICC is ICC(2,1) (Shrout & Fleiss:
two-way random effects, absolute agreement, single rater): a model that is consistently 1 point high must
count as disagreeing, which ICC(3,1) (consistency) would hide.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from loscat_hf.data.dataset import TARGET_COLUMN
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
    """MAE, RMSE, Pearson, Spearman, quadratic kappa, ICC(2,1) and severity-class accuracy; NaN targets skipped."""
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
    out["qwk"] = float(cohen_kappa_score(cls_t, cls_p, weights="quadratic")) if len(both) > 1 else float("nan")
    out["icc_2_1"] = icc(np.stack([t, p], axis=1), "2,1")
    out["severity_accuracy"] = float((cls_p == cls_t).mean())
    return out


def component_report(pred: np.ndarray, true: np.ndarray, components: Sequence[str] = tuple(COMPONENTS)) -> dict:
    """agreement() per component of (n photos, n components) arrays."""
    return {c: agreement(pred[:, j], true[:, j], COMPONENTS.get(c, (0, 1, 2, 3))) for j, c in enumerate(components)}


def _nansum_or_nan(frame: pd.DataFrame) -> pd.Series:
    return frame.sum(axis=1, min_count=1)


def site_scores(photos: pd.DataFrame, components: Sequence[str] = tuple(COMPONENTS)) -> pd.DataFrame:
    """Photos (patient_id, visit, site, <component>...) -> one row per site: the worst photo of that site.

    Why the maximum: a clinician scores a site by its most affected area, and several photos of one site
    usually show different parts of it.
    """
    return photos.groupby(["patient_id", "visit", "site"], sort=True)[list(components)].max().reset_index()


def visit_totals(sites: pd.DataFrame) -> pd.DataFrame:
    """Site rows -> per visit mLoSSI and LoSDI (sums over the sites present; the LoSCAT has 18 at most)."""
    frame = sites.copy()
    frame["mlossi"] = _nansum_or_nan(frame[list(MLOSSI)])
    frame["losdi"] = _nansum_or_nan(frame[list(LOSDI)])
    totals = frame.groupby(["patient_id", "visit"], sort=True)[["mlossi", "losdi"]].sum(min_count=1)
    return totals.reset_index()


def compare_totals(predicted_photos: pd.DataFrame, clinical_sites: pd.DataFrame) -> dict:
    """Per-visit totals from predicted photo scores vs the clinical totals of the score table.

    Predicted totals only cover photographed sites; clinical totals cover every site the rater scored, so
    a visit whose affected sites were not photographed is under-estimated: that is reported, not hidden.
    """
    pred = visit_totals(site_scores(predicted_photos))
    true = visit_totals(clinical_sites)
    merged = pred.merge(true, on=["patient_id", "visit"], suffixes=("_pred", "_true"))
    out: dict = {"n_visits": len(merged)}
    for total in ("mlossi", "losdi"):
        levels = tuple(range(int(np.nanmax(np.r_[merged[f"{total}_true"], merged[f"{total}_pred"], 0])) + 2))
        out[total] = agreement(merged[f"{total}_pred"].to_numpy(), merged[f"{total}_true"].to_numpy(), levels)
    return out


def table_sites(rows: Mapping[tuple[str, str, str], Mapping[str, float | None]]) -> pd.DataFrame:
    """A ScoreTable's rows as a site-level DataFrame (None -> NaN) for visit_totals/compare_totals."""
    records = [{"patient_id": p, "visit": v, "site": s, **{c: (np.nan if x is None else x) for c, x in vals.items()}}
               for (p, v, s), vals in rows.items()]
    return pd.DataFrame.from_records(records)


def score_evaluation(score_preds: np.ndarray, split, components: tuple[str, ...], out_dir: Path) -> dict:
    """Per-component agreement on a split; writes scores_report.json and returns it."""
    from loscat_hf.model.score_heads import clip_scores  # torch: only when a score model is evaluated

    preds = clip_scores(score_preds, components)
    true = np.asarray(split[TARGET_COLUMN], dtype=np.float64)
    report = {"components": component_report(preds, true, components)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scores_report.json").write_text(json.dumps(report, indent=2))
    return report
