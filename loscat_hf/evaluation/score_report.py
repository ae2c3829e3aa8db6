"""The score report of a model with LoSCAT score heads on one split: per component, per visit, and plots.

One writer for `loscat-hf evaluate` (any split, the clinic's score table optional), `train --task scores` (the
validation split) and, for the visit totals, `evaluate-ensemble`. Everything it writes is aggregate: counts and
metrics, and plots of numbers without ids; the clinic's patient and visit ids it needs to meet the score table
stay in memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loscat_hf.evaluation.score_metrics import component_report, table_sites, totals_agreement, visit_table

if TYPE_CHECKING:
    import pandas as pd

REPORT_NAME = "scores_report.json"
TABLE_NAME = "scores.md"
PHOTO_PLOT = "score_agreement.png"
VISIT_PLOT = "visit_totals.png"
_COLUMNS = (("n", "n"), ("mae", "MAE"), ("rmse", "RMSE"), ("pearson", "Pearson r"), ("spearman", "Spearman ρ"),
            ("qwk", "quadratic κ"), ("icc_2_1", "ICC(2,1)"), ("severity_accuracy", "severity accuracy"))
_TOTAL_NAMES = {"mlossi": "mLoSSI", "losdi": "LoSDI"}


def clinical_visits(preds: np.ndarray, components: Sequence[str], split, table, dataset_dir: str | None = None
                    ) -> tuple[pd.DataFrame, int]:
    """`visit_table` of a split's predicted photo scores against a read score table (`read_score_table`), and
    the number of visits in the split.

    The packed split holds opaque patient/visit codes; with `dataset_dir` they are mapped back to the clinic's
    ids (private/codes.csv) so that they meet the table's rows. The frame holds those ids: never write it."""
    import pandas as pd

    from loscat_hf.data.private import clinic_ids
    from loscat_hf.model.score_heads import clip_scores

    photos = pd.DataFrame(clip_scores(preds, tuple(components)), columns=list(components))
    patients, visits = list(split["patient_id"]), list(split["visit"])
    if dataset_dir is not None:
        patients, visits = clinic_ids(dataset_dir, patients, visits)
    photos["patient_id"], photos["visit"], photos["site"] = patients, visits, list(split["site"])
    return visit_table(photos, table_sites(table.rows)), len(set(zip(patients, visits, strict=True)))


def score_report(preds: np.ndarray, targets: np.ndarray | None, components: Sequence[str], out_dir: str | Path,
                 split: str, visits: tuple[pd.DataFrame, int] | None = None) -> dict:
    """Write scores_report.json, scores.md and the plots of one split; return the report.

    `preds` are the raw score-head outputs (clipped here to each component's range); `targets` the rated scores
    (NaN = missing), None when the dataset was packed without `prepare --scores`; `visits` a `clinical_visits`
    result when a score table was given."""
    from loscat_hf.model.score_heads import clip_scores
    from loscat_hf.viz.plots import plot_score_agreement, plot_visit_totals

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    preds = clip_scores(preds, tuple(components))
    report: dict[str, Any] = {"split": split, "n_photos": len(preds), "components": None}
    clear(out)  # a plot of an earlier run must not sit beside this report
    if targets is not None:
        report["n_photos_rated"] = int((~np.isnan(targets)).any(axis=1).sum())
        report["components"] = component_report(preds, targets, tuple(components))
        if report["n_photos_rated"]:
            plot_score_agreement(preds, targets, list(components), out / PHOTO_PLOT, report["components"],
                                 title=f"Predicted vs rated LoSCAT score per photo, {split} split")
    else:
        report["note"] = ("the dataset has no score_* columns (packed without `loscat-hf prepare --scores`): "
                          "no per-photo agreement")
    if visits is not None:
        table, n_visits = visits
        report["visit_totals"] = totals_agreement(table, n_visits)
        if len(table):
            plot_visit_totals(table, out / VISIT_PLOT, title=f"Predicted vs rated visit totals, {split} split")
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2, default=_json_default), encoding="utf-8")
    (out / TABLE_NAME).write_text(markdown(report), encoding="utf-8")
    return report


def clear(out_dir: str | Path) -> None:
    """Remove a score report from a report folder (re-used by a region-only model, or before a new report)."""
    for name in (REPORT_NAME, TABLE_NAME, PHOTO_PLOT, VISIT_PLOT):
        (Path(out_dir) / name).unlink(missing_ok=True)


def _fmt(value: Any, key: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return str(value) if key == "n" else f"{value:.2f}"


def markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown tables (what the README and a paper's table would show)."""
    lines = [f"**Score agreement on the {report['split']} split**: {report['n_photos']} photos"
             + (f", {report['n_photos_rated']} with a rated score" if "n_photos_rated" in report else "")]
    if report.get("components"):
        lines += ["", "| component | " + " | ".join(label for _, label in _COLUMNS) + " |",
                  "|---|" + "---:|" * len(_COLUMNS)]
        for name, m in report["components"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(m.get(k), k) for k, _ in _COLUMNS) + " |")
    elif report.get("note"):
        lines += ["", report["note"]]
    totals = report.get("visit_totals")
    if totals:
        cols = _COLUMNS[:-1]  # a total has no severity class
        lines += ["", f"**Visit totals**: {totals['n_visits']} visits in the score table"
                  f" ({totals['n_visits_not_in_table']} of the split's visits not in it); "
                  f"{totals['sites_photographed']} of {totals['sites_scored']} scored sites photographed.", "",
                  "| total | compared over | " + " | ".join(label for _, label in cols) + " |",
                  "|---|---|" + "---:|" * len(cols)]
        for key, name in _TOTAL_NAMES.items():
            whole = totals[key]
            left = f" ({whole['n_incomplete_left_out']} with an empty cell left out)" if whole.get(
                "n_incomplete_left_out") else ""
            for over, m in ((f"whole visit{left}", whole),
                            ("photographed sites", totals["photographed_sites"][key])):
                lines.append(f"| {name} | {over} | " + " | ".join(_fmt(m.get(k), k) for k, _ in cols) + " |")
    return "\n".join(lines) + "\n"


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """Console lines: one per component and one per visit total."""
    lines = []
    for name, m in (report.get("components") or {}).items():
        lines.append(f"  {name}: n={m.get('n')} MAE {_fmt(m.get('mae'), 'mae')}, Pearson "
                     f"{_fmt(m.get('pearson'), 'pearson')}, QWK {_fmt(m.get('qwk'), 'qwk')}, ICC(2,1) "
                     f"{_fmt(m.get('icc_2_1'), 'icc')}")
    if report.get("note"):
        lines.append(f"  {report['note']}")
    totals = report.get("visit_totals") or {}
    for key, name in _TOTAL_NAMES.items():
        if key in totals:
            m = totals[key]
            lines.append(f"  {name} per visit: n={m.get('n')} MAE {_fmt(m.get('mae'), 'mae')}, Pearson "
                         f"{_fmt(m.get('pearson'), 'pearson')}, ICC(2,1) {_fmt(m.get('icc_2_1'), 'icc')} "
                         f"(photographed sites: n={totals['photographed_sites'][key].get('n')}, ICC(2,1) "
                         f"{_fmt(totals['photographed_sites'][key].get('icc_2_1'), 'icc')})")
    return lines


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
