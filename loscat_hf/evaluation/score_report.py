"""The score report of a model with LoSCAT score heads on one split: per component, per visit, and plots.

One writer for `loscat-hf evaluate` (any split, the clinic's score table optional), `train --task scores`
(the validation split) and, for the visit totals, `evaluate-ensemble`. Everything it writes is aggregate:
counts and metrics, and plots of numbers without ids; the clinic's patient and visit ids it needs to meet the
score table stay in memory.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loscat_hf.defaults import SCORE_REPORT_NAME
from loscat_hf.errors import LoscatError
from loscat_hf.evaluation.score_metrics import (
    component_report,
    table_sites,
    totals_agreement,
    visit_table,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

TABLE_NAME = "scores.md"
PHOTO_PLOT = "score_agreement.png"
VISIT_PLOT = "visit_totals.png"
_COLUMNS = (("n", "n"), ("mae", "MAE"), ("rmse", "RMSE"), ("pearson", "Pearson r"),
            ("spearman", "Spearman ρ"), ("qwk", "quadratic κ"), ("icc_2_1", "ICC(2,1)"),
            ("severity_accuracy", "severity accuracy"))
_TOTAL_NAMES = {"mlossi": "mLoSSI", "losdi": "LoSDI"}


@dataclass
class ClinicalVisits:
    """A split's predicted visit totals beside the score table's (`score_metrics.visit_table`: holds the
    clinic's ids, never written), with the counts the report states."""

    table: pd.DataFrame
    n_visits: int  # visits in the split
    photos_without_site: int  # photos whose side is unknown (site = class name): in no visit total

    def report(self) -> dict:
        return {**totals_agreement(self.table, self.n_visits),
                "photos_without_site": self.photos_without_site}


def split_clinic_keys(split, dataset_dir: str | None) -> tuple[list[str], list[str]]:
    """The split's (patient, visit) per photo as the clinic writes them: the packed codes mapped back through
    DATASET/private/codes.csv (unchanged without it, with a warning from `clinic_ids`)."""
    from loscat_hf.data.private import clinic_ids

    patients, visits = list(split["patient_id"]), list(split["visit"])
    return clinic_ids(dataset_dir, patients, visits) if dataset_dir is not None else (patients, visits)


def read_table_for(scores_table: str, models: list[str], taxonomy):
    """Read a LoSCAT score table for visit totals, refusing it before any model runs: a bad table (every bad
    row named), or models without score heads for all six components (config.json tells, no weights
    loaded)."""
    from loscat_hf.data.score_tables import COMPONENTS, read_score_table
    from loscat_hf.model.folder import load_config, score_components

    for model in models:
        predicted = score_components(load_config(model))
        if not predicted:
            raise LoscatError(f"scores_table needs a model with LoSCAT score heads "
                              f"(`loscat-hf train --task scores`); {model} predicts the body region only",
                              param="scores_table")
        if set(COMPONENTS) - set(predicted):
            raise LoscatError(f"scores_table: {model} predicts {', '.join(predicted)}, not all six "
                              "components that mLoSSI and LoSDI add up", param="scores_table")
    return read_score_table(scores_table, taxonomy)


def check_table_meets_split(keys: tuple[list[str], list[str]], table, table_name: str) -> None:
    """Refuse, before a model runs, a score table that has no visit of the split (`keys`:
    `split_clinic_keys`): a wrong table, or a dataset without its private/codes.csv (one from the Hub), would
    otherwise give visit totals over nothing."""
    patients, visits = keys
    split_visits = set(zip(patients, visits, strict=True))
    if split_visits and not split_visits & {(p, v) for p, v, _ in table.rows}:
        raise LoscatError(f"scores_table {table_name}: none of the split's {len(split_visits)} visits is in "
                          "it; is it this clinic's table, and the dataset the folder `prepare` wrote (its "
                          "private/codes.csv maps the packed codes back to the clinic's ids)?",
                          param="scores_table")


def clinical_visits(preds: np.ndarray, components: Sequence[str], split, keys: tuple[list[str], list[str]],
                    table, sites: Collection[str]) -> ClinicalVisits:
    """The split's predicted photo scores per visit against a read score table (`read_score_table`).

    Photos are keyed by the clinic's ids (`keys`: `split_clinic_keys`, read once per run). A photo whose site
    is not one of the taxonomy's `sites` (side unknown: packed with its class name) meets no row of the table
    and could count twice beside its sided site: it is left out of every total and counted."""
    import pandas as pd

    from loscat_hf.model.score_heads import clip_scores

    photos = pd.DataFrame(clip_scores(preds, tuple(components)), columns=list(components))
    patients, visits = keys
    photos["patient_id"], photos["visit"], photos["site"] = patients, visits, list(split["site"])
    known = photos["site"].isin(set(sites))
    table_frame = visit_table(photos[known], table_sites(table.rows))
    return ClinicalVisits(table_frame, len(set(zip(patients, visits, strict=True))), int((~known).sum()))


def score_report(preds: np.ndarray, targets: np.ndarray | None, components: Sequence[str],
                 out_dir: str | Path, split: str, visits: ClinicalVisits | None = None) -> dict:
    """Write scores_report.json, scores.md and the plots of one split; return the report.

    `preds` are the raw score-head outputs (clipped here to each component's range); `targets` the rated
    scores (NaN = missing), None when the dataset was packed without `prepare --scores`; `visits` a
    `clinical_visits` result when a score table was given."""
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
        report["visit_totals"] = visits.report()
        if len(visits.table):
            plot_visit_totals(visits.table, out / VISIT_PLOT,
                              title=f"Predicted vs rated visit totals, {split} split")
    report = json_safe(report)
    (out / SCORE_REPORT_NAME).write_text(json.dumps(report, indent=2, allow_nan=False), encoding="utf-8")
    (out / TABLE_NAME).write_text(markdown(report), encoding="utf-8")
    return report


def clear(out_dir: str | Path) -> None:
    """Remove a score report from a report folder (re-used by a region-only model, or before a new report)."""
    for name in (SCORE_REPORT_NAME, TABLE_NAME, PHOTO_PLOT, VISIT_PLOT):
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
                  f"{totals['sites_photographed']} of {totals['sites_scored']} scored sites photographed.",
                  "",
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


def json_safe(obj: Any) -> Any:
    """A report with NaN/inf (a correlation of constant predictions, n = 1) as None, numpy scalars as Python
    ones: strict JSON, which JavaScript and the Hub's viewers parse (a bare NaN token is not JSON)."""
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
