"""`loscat-hf link`: join predicted photo regions with the LoSCAT score table, per patient and visit.

The model says *where* each photo was taken (12 classes); the clinic's score table says *how active and
how damaged* each of the 18 sites was at each visit. Joining them by patient and visit gives photos per
region, the lesion distribution over the body, and mLoSSI / LoSDI per region and visit. A multi-region
model's predictions (a `regions` cell, every region a photo shows ';'-joined, that is not the row's `region`
on some answered row) file a photo under each of its regions, one linked row per photo and region, and the
photo counts once under each; a single-region model's CSV (`regions` = `region`) gives the report a CSV
without the column gives, byte for byte. Nothing is dropped
silently: photos without metadata or without score rows, score rows without photos or with an unknown
site, and photos whose prediction failed are counted in the summary and listed in their own CSVs.
The score table is read by `scores.read_score_table`, the one reader `prepare --scores` uses too, so both
commands refuse the same bad rows and treat an empty cell as missing (never 0). Every CSV written here goes
through `csvsafe`, because image names and ids end up in spreadsheets.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from loscat_hf.data.dataset import read_split_metadata, split_metadata_file
from loscat_hf.data.private import clinic_ids
from loscat_hf.data.score_tables import (
    COMPONENTS,
    LOSDI,
    MLOSSI,
    SCORE_COLUMNS,
    ScoreRow,
    format_score,
    read_score_table,
    total,
)
from loscat_hf.defaults import REGIONS_COLUMN as REGIONS
from loscat_hf.defaults import REGIONS_PROB_COLUMN as REGIONS_PROB
from loscat_hf.errors import LoscatError
from loscat_hf.io.csvsafe import SafeDictWriter, read_cell
from loscat_hf.taxonomy import SET_SEPARATOR, Taxonomy, load_taxonomy, split_set

log = logging.getLogger(__name__)
PREDICTION_COLUMNS = ("image", "region", "status")  # and optionally REGIONS, REGIONS_PROB (defaults.py)


@dataclass
class LinkResult:
    """Where the report went and its headline counts (also in summary.json)."""

    out: Path
    summary: dict

    def __str__(self) -> str:
        s = self.summary
        several = (f" ({s['photos_several_regions']} under several regions)"
                   if s.get("photos_several_regions") else "")
        return (f"{s['photos_total']} photos: {s['photos_linked']} linked{several}, "
                f"{s['photos_unmatched']} unmatched "
                f"({', '.join(f'{k} {v}' for k, v in s['unmatched_photo_reasons'].items()) or 'none'}), "
                f"{s['photos_error']} prediction errors; {s['score_rows_total']} score rows, "
                f"{s['score_rows_unmatched']} without a photo or site, "
                f"{sum(s['score_cells_missing'].values())} empty score cells "
                f"(missing: left out of the totals, not 0). Report: {s['out']}")


def _read_csv(path: str | Path, required: Iterable[str], what: str, alias: dict[str, str] | None = None
              ) -> list[dict[str, str]]:
    """Rows of a predictions or metadata CSV; cells that loscat-hf neutralised on write are read back as
    is."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [(alias or {}).get(h, h) for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise LoscatError(f"{what} {path} lacks column(s) {missing}; it has {reader.fieldnames}")
            reader.fieldnames = header
            return [{k: read_cell((v or "").strip()) for k, v in row.items() if k is not None}
                    for row in reader]
    except OSError as exc:
        raise LoscatError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _norm_path(text: str) -> tuple[str, ...]:
    parts = PurePosixPath(text.replace("\\", "/").strip()).parts
    return tuple(p for p in parts if p not in ("", ".", "/"))


def read_metadata(path: str | Path) -> list[dict[str, str]]:
    """Rows of image, patient_id, visit from a metadata CSV or a packed dataset folder.

    A packed dataset (`loscat-hf prepare`) has `<split>/metadata.parquet` with `file_name` relative to the
    split folder; the split is prefixed so that predictions made on the dataset folder match, and its patient
    and visit codes are mapped back to the clinic's ids through its private/codes.csv.
    """
    path = Path(path)
    if path.is_dir():
        splits = [d for d in sorted(path.iterdir()) if d.is_dir() and split_metadata_file(d)]
        if not splits and not (path / "metadata.csv").exists():
            raise LoscatError(f"metadata folder {path} has no metadata.parquet/metadata.csv "
                              "(nor <split>/metadata.*)")
        if not splits:
            return read_metadata(path / "metadata.csv")
        rows = []
        for d in splits:
            for r in read_split_metadata(d):
                rows.append({"image": f"{d.name}/{r['file_name']}",
                             "patient_id": str(r.get("patient_id") or ""),
                             "visit": str(r.get("visit") or "")})
        if split_metadata_file(path / "train"):  # a packed dataset: codes -> the clinic's own ids
            patients, visits = clinic_ids(path, [r["patient_id"] for r in rows], [r["visit"] for r in rows])
            for r, patient, visit in zip(rows, patients, visits, strict=True):
                r["patient_id"], r["visit"] = patient, visit
        return rows
    return _read_csv(path, ("image", "patient_id"), "metadata", {"file_name": "image"})


class _PathIndex:
    """Finds a metadata row for a prediction's image key by its longest path suffix that is unique.

    Predictions are keyed relative to the folder `predict` was run on, metadata relative to wherever it was
    written: 'unlabeled/a.jpg' must match 'a.jpg' and '/data/clinic/unlabeled/a.jpg' alike.
    """

    def __init__(self, rows: list[dict[str, str]]):
        self.rows = rows
        self.by_suffix: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            parts = _norm_path(row["image"])
            for k in range(1, len(parts) + 1):
                self.by_suffix[parts[-k:]].append(i)

    def find(self, key: str) -> tuple[int | None, str]:
        parts = _norm_path(key)
        for k in range(len(parts), 0, -1):
            hits = self.by_suffix.get(parts[-k:])
            if not hits:
                continue
            # several metadata rows may share a suffix: fine only if they agree on patient and visit
            if len({(self.rows[i]["patient_id"], self.rows[i].get("visit", "")) for i in hits}) == 1:
                return hits[0], ""
            return None, "ambiguous_metadata"
        return None, "no_metadata"


def _write(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Every link CSV goes through SafeDictWriter: image names and ids may start with = + - @."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = SafeDictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _score_cells(r: ScoreRow) -> dict:
    """A score row for unmatched_scores.csv: the table's columns (empty = missing) and its row number."""
    return {"patient_id": r.patient_id, "visit": r.visit, "site": r.site if r.site else r.site_text,
            **{c: format_score(r.values[c]) for c in COMPONENTS}, "row": r.row}


def _site_row(r: ScoreRow) -> dict:
    m, m_missing = total(r.values, MLOSSI)
    d, d_missing = total(r.values, LOSDI)
    return {"patient_id": r.patient_id, "visit": r.visit, "site": r.site, "region": r.label, "record": r,
            "mLoSSI": m, "mLoSSI_missing": m_missing, "LoSDI": d, "LoSDI_missing": d_missing}


def _add_totals(rows: Iterable[dict]) -> dict:
    """Sum site totals: missing totals are left out, their missing cells counted; None if none is present."""
    rows = list(rows)
    out: dict = {}
    for name in ("mLoSSI", "LoSDI"):
        present = [r[name] for r in rows if r[name] is not None]
        out[name] = float(sum(present)) if present else None
        out[f"{name}_missing"] = sum(r[f"{name}_missing"] for r in rows)
    return out


def _visit_key(v: str) -> tuple:
    digits = "".join(ch for ch in v if ch.isdigit())
    return (int(digits) if digits else 10**9, v)


def run_link(predictions: str | Path, scores: str | Path, metadata: str | Path, out: str | Path,
             taxonomy: str | Path | Taxonomy | None = None, plots: bool = True) -> LinkResult:
    """Join predictions, metadata and scores; write the CSV tables, plots and summary.json to `out`.

    The score table goes through `scores.read_score_table`, the reader of `prepare --scores`: a value out of
    range, a non-number or a repeated (patient, visit, site) stops the run with every bad row named, before
    anything is written; an empty cell stays missing. Only an unknown site is listed instead of refused.
    """
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    classes = list(tax.classes)
    preds = _read_csv(predictions, PREDICTION_COLUMNS, "predictions")
    meta = read_metadata(metadata)
    table = read_score_table(scores, tax, unknown_sites="list")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    # score rows: site -> class, per-site mLoSSI / LoSDI (sums of the components present)
    site_rows = [_site_row(r) for r in table.records]
    missing_cells = table.missing_cells()
    if any(missing_cells.values()):
        log.info("score table %s: %d empty cells (missing, left out of the totals)", scores,
                 sum(missing_cells.values()))
    multi = multi_region_predictions(preds)  # else exactly the one-region report
    linked, unmatched_photos, errors, n_linked = _link_photos(preds, meta, site_rows, classes, multi)
    photo_visits = {(r["patient_id"], r["visit"]) for r in linked}
    unmatched_scores: list[dict] = [_score_cells(r) | {"reason": "unknown_site"} for r in table.unknown_sites]
    unmatched_scores += [_score_cells(r["record"]) | {"reason": "no_photo"} for r in site_rows
                         if (r["patient_id"], r["visit"]) not in photo_visits]
    pvr = _patient_region_visit_totals(site_rows)
    visits = sorted({v for (_, v, _) in pvr}, key=_visit_key)
    n_patients = len({r["patient_id"] for r in site_rows})
    photos_per_region = Counter(r["region"] for r in linked)
    by_rv = _scores_by_region_visit(pvr, classes, visits)
    _write_tables(out, linked, classes, photos_per_region, _lesion_distribution(pvr, classes, n_patients),
                  by_rv, unmatched_photos, unmatched_scores, errors, n_linked, multi)
    all_rows = [*table.records, *table.unknown_sites]
    mean_m: dict[str, list[float]] = defaultdict(list)
    for (_, _, reg), totals in pvr.items():
        if totals["mLoSSI"] is not None:
            mean_m[reg].append(totals["mLoSSI"])
    summary = {
        "out": str(out),
        "photos_total": len(preds),
        "photos_linked": n_linked,
        "photos_unmatched": len(unmatched_photos),
        "unmatched_photo_reasons": dict(sorted(Counter(r["reason"] for r in unmatched_photos).items())),
        "photos_error": len(errors),
        "error_statuses": dict(sorted(Counter(r["status"] for r in errors).items())),
        "metadata_rows": len(meta),
        "score_rows_total": len(all_rows),
        "score_rows_unmatched": len(unmatched_scores),
        "unmatched_score_reasons": dict(sorted(Counter(r["reason"] for r in unmatched_scores).items())),
        "score_cells_missing": missing_cells,
        "score_rows_with_missing": sum(r.n_missing > 0 for r in all_rows),
        "patients_scored": n_patients,
        "patients_with_photos": len({r["patient_id"] for r in linked}),
        "visits": visits,
        "photos_per_region": {c: photos_per_region[c] for c in classes},
        "mean_mLoSSI_per_region": {c: round(sum(v) / len(v), 4) for c, v in mean_m.items() if v},
        "score_scope": "lesion distribution and scores use every score row with a known site, "
                       "including patient/visits without photos (listed in unmatched_scores.csv)",
        "score_totals": "mLoSSI and LoSDI are sums of the components present: an empty cell is missing, "
                        "never 0, left out of the sum and counted in the *_missing columns; a total whose "
                        "components are all missing is empty",
    }
    if multi:
        summary["photos_several_regions"] = len({r["image"] for r in linked if SET_SEPARATOR in r[REGIONS]})
        summary["photos_per_region_counting"] = ("a photo that shows several regions is linked, and "
                                                 "counted in photos_per_region, under each of them")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if plots:
        _plots(out, summary, by_rv, classes, visits)
    return LinkResult(out=out, summary=summary)


def multi_region_predictions(preds: list[dict[str, str]]) -> bool:
    """A multi-region model's predictions: some answered row's `regions` is not its one `region` (several, or
    none passed a threshold). A single-region model writes its region there on every answered row, so its
    CSV is linked as one without the column."""
    return any(p.get("status") == "ok" and REGIONS in p and split_set(p[REGIONS]) != [p.get("region")]
               for p in preds)


def _shown(p: dict, multi: bool) -> list[tuple[str, str]]:
    """(region, its probability) for every region a prediction row shows: its `regions` with their scores
    for a multi-region model's CSV, else its one region."""
    if not multi:
        return [(p["region"], p.get("probability", ""))]
    names, scores = split_set(p.get(REGIONS)), split_set(p.get(REGIONS_PROB))
    out: dict[str, str] = {}
    for name, score in zip(names, scores if len(scores) == len(names) else [""] * len(names), strict=True):
        out.setdefault(name, score)  # a region named twice is filed once
    return list(out.items())


def _link_photos(preds: list[dict], meta: list[dict], site_rows: list[dict], classes: list[str],
                 multi: bool = False) -> tuple[list[dict], list[dict], list[dict], int]:
    """prediction -> metadata -> the visit's score rows: (linked rows, unmatched photos with why, errors,
    photos linked). One linked row per photo and region it shows (`multi`: the rows' `regions`), each with
    the scored sites of that region at the photo's visit."""
    index = _PathIndex(meta)
    scored_visits = {(r["patient_id"], r["visit"]) for r in site_rows}
    sites_at: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in site_rows:
        sites_at[(r["patient_id"], r["visit"], r["region"])].append(r)
    linked, unmatched, errors, photos = [], [], [], 0
    for p in preds:
        if p["status"] != "ok":
            errors.append(p)
            continue
        shown = _shown(p, multi)
        if multi and not shown:
            unmatched.append(p | {"reason": "no_region_above_threshold"})
            continue
        if any(region not in classes for region, _ in shown):
            unmatched.append(p | {"reason": "unknown_predicted_region"})
            continue
        i, reason = index.find(p["image"])
        if i is None:
            unmatched.append(p | {"reason": reason})
            continue
        pid, visit = meta[i]["patient_id"], meta[i].get("visit", "")
        if (pid, visit) not in scored_visits:
            unmatched.append(p | {"patient_id": pid, "visit": visit, "reason": "no_scores"})
            continue
        photos += 1
        for region, probability in shown:
            here = sites_at.get((pid, visit, region), [])
            linked.append({
                "image": p["image"], "patient_id": pid, "visit": visit, "region": region,
                "probability": probability, "needs_review": p.get("needs_review", ""),
                "scored_sites": ";".join(sorted(r["site"] for r in here)),
                **({REGIONS: SET_SEPARATOR.join(name for name, _ in shown)} if multi else {}),
                **(_add_totals(here) if here else {}),
            })
    return linked, unmatched, errors, photos


def _patient_region_visit_totals(site_rows: list[dict]) -> dict[tuple[str, str, str], dict]:
    """(patient, visit, region) -> totals: left and right sites summed into their class; missing left out."""
    by_cell: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in site_rows:
        by_cell[(r["patient_id"], r["visit"], r["region"])].append(r)
    return {k: _add_totals(v) for k, v in by_cell.items()}


def _lesion_distribution(pvr: dict, classes: list[str], n_patients: int) -> list[dict]:
    """Per region: how many scored patients have activity (mLoSSI > 0) or damage (LoSDI > 0) there."""
    rows = []
    for c in classes:
        active = {pid for (pid, _, reg), t in pvr.items() if reg == c and (t["mLoSSI"] or 0) > 0}
        damaged = {pid for (pid, _, reg), t in pvr.items() if reg == c and (t["LoSDI"] or 0) > 0}
        rows.append({
            "region": c, "patients_scored": n_patients,
            "patients_with_activity": len(active),
            "share_activity": round(len(active) / n_patients, 4) if n_patients else 0.0,
            "patients_with_damage": len(damaged),
            "share_damage": round(len(damaged) / n_patients, 4) if n_patients else 0.0,
        })
    return rows


def _scores_by_region_visit(pvr: dict, classes: list[str], visits: list[str]) -> list[dict]:
    """Per region and visit: sum and mean of the patients' totals, and how many totals had missing cells."""
    rows = []
    for c in classes:
        for v in visits:
            cells = [t for (_, vv, reg), t in pvr.items() if reg == c and vv == v]
            if not cells:
                continue
            row: dict = {"region": c, "visit": v, "patients": len(cells)}
            for name in ("mLoSSI", "LoSDI"):
                present = [t[name] for t in cells if t[name] is not None]
                row[f"{name}_sum"] = sum(present) if present else None
                row[f"{name}_mean"] = round(sum(present) / len(present), 4) if present else None
                row[f"{name}_missing"] = sum(t[f"{name}_missing"] for t in cells)
            rows.append(row)
    return rows


def _write_tables(out: Path, linked: list[dict], classes: list[str], photos_per_region: Counter,
                  distribution: list[dict], by_rv: list[dict], unmatched_photos: list[dict],
                  unmatched_scores: list[dict], errors: list[dict], n_photos: int,
                  multi: bool = False) -> None:
    """`linked` has a row per photo and region: a photo of several regions counts under each, so with
    `multi` the shares of photos (of `n_photos` linked photos) may add up to more than 1."""
    photos_with_score = Counter(r["region"] for r in linked if r["scored_sites"])
    per_region = [{"region": c, "photos": photos_per_region[c],
                   "photos_with_region_scored": photos_with_score[c],
                   "share_of_photos": round(photos_per_region[c] / n_photos, 4) if n_photos else 0.0}
                  for c in classes]
    regions = [REGIONS] if multi else []
    _write(out / "photos_per_region.csv", per_region,
           ["region", "photos", "photos_with_region_scored", "share_of_photos"])
    _write(out / "lesion_distribution.csv", distribution, list(distribution[0]))
    _write(out / "scores_by_region_visit.csv", by_rv,
           ["region", "visit", "patients", "mLoSSI_sum", "mLoSSI_mean", "mLoSSI_missing",
            "LoSDI_sum", "LoSDI_mean", "LoSDI_missing"])
    _write(out / "linked_photos.csv", linked,
           ["image", "patient_id", "visit", "region", *regions, "probability", "needs_review", "scored_sites",
            "mLoSSI", "mLoSSI_missing", "LoSDI", "LoSDI_missing"])
    _write(out / "unmatched_photos.csv", unmatched_photos,
           ["image", "region", *regions, "probability", "patient_id", "visit", "reason"])
    _write(out / "unmatched_scores.csv", unmatched_scores, [*SCORE_COLUMNS, "row", "reason"])
    _write(out / "prediction_errors.csv", errors, ["image", "status", "error"])


def _plots(out: Path, summary: dict, by_rv: list[dict], classes: list[str], visits: list[str]) -> None:
    from loscat_hf.viz.bodymap import plot_body_map
    from loscat_hf.viz.plots import _figure, _save

    plot_body_map({k: float(v) for k, v in summary["photos_per_region"].items()}, out / "body_map_photos.png",
                  title="Linked photos per predicted region")
    plot_body_map(summary["mean_mLoSSI_per_region"], out / "body_map_mlossi.png",
                  title="Mean mLoSSI per region (patient-visits scored there)")
    if not by_rv:
        return
    fig = _figure((9.0, 4.5))
    axes = fig.subplots(1, 2, sharex=True)
    width = 0.8 / max(len(visits), 1)
    for a, (score, name) in zip(axes, (("mLoSSI_mean", "mean mLoSSI (activity)"),
                                       ("LoSDI_mean", "mean LoSDI (damage)")),
                                strict=True):
        for j, v in enumerate(visits):
            vals = {r["region"]: r[score] for r in by_rv if r["visit"] == v and r[score] is not None}
            a.bar([i + j * width for i in range(len(classes))], [vals.get(c, 0.0) for c in classes], width,
                  label=v)
        a.set_xticks([i + 0.4 - width / 2 for i in range(len(classes))], classes, rotation=60, ha="right")
        a.set_title(name)
    axes[0].legend(title="visit", fontsize=8)
    _save(fig, out / "scores_by_region_visit.png")
