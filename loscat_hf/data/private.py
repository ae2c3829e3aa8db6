"""DATASET/private/: everything that maps back to people or original files, written and read here only.

Never published, never quoted in a card or report: the photo ledger (id_map.csv), the code map back to the
clinic's patient ids and visits (codes.csv), every problem in full (problems.csv) and the run's details.
Files are 0600 in a 0700 folder.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from loscat_hf.data.dataset import CODES_NAME, DETAILS_NAME, ID_MAP_NAME, PRIVATE_DIR, PROBLEMS_NAME
from loscat_hf.errors import Problem
from loscat_hf.io.csvsafe import SafeWriter, read_cell

if TYPE_CHECKING:
    from loscat_hf.data.packing import PackItem

logger = logging.getLogger(__name__)


def draw_codes(values: Iterable, prefix: str, rng: random.Random) -> dict:
    """Opaque per-dataset codes ('P017') for identifying values (MRNs, visit dates), in random order.

    The order is drawn by `rng`, seeded with the dataset's secret key, so a code says nothing about the value
    it replaces (not even its rank); the map back lives in private/codes.csv only.
    """
    order = sorted({v for v in values if v})
    rng.shuffle(order)
    width = max(3, len(str(len(order))))
    return {value: f"{prefix}{i + 1:0{width}d}" for i, value in enumerate(order)}


def pseudonymous_agreement(agreement: Mapping, rng: random.Random) -> tuple[dict, dict[str, str]]:
    """A copy of the agreement report with rater names replaced by 'rater 1', 'rater 2', ...; and the name
    map."""
    report = copy.deepcopy(dict(agreement))
    pairs = report.get("pairs", [])
    names = sorted({p[k] for p in pairs for k in ("rater_a", "rater_b")})
    rng.shuffle(names)  # numbered in random order: not even the names' order shows
    number = {name: i + 1 for i, name in enumerate(names)}
    for pair in pairs:  # the statistics are symmetric: lower number first
        pair["rater_a"], pair["rater_b"] = sorted((number[pair["rater_a"]], number[pair["rater_b"]]))
    pairs.sort(key=lambda p: (p["rater_a"], p["rater_b"]))
    for pair in pairs:
        pair["rater_a"], pair["rater_b"] = f"rater {pair['rater_a']}", f"rater {pair['rater_b']}"
    return report, {name: f"rater {n}" for name, n in number.items()}


def private_open(path: Path, mode: str = "w"):
    """A file readable by its owner only (0600): the private folder holds what maps back to people."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode through O_CREAT: be exact
    return os.fdopen(fd, mode, newline="", encoding="utf-8")


def private_dir(folder: Path, exist_ok: bool = False) -> Path:
    """A folder only its owner can enter (0700), for files that map back to people or original files."""
    folder.mkdir(mode=0o700, exist_ok=exist_ok)
    folder.chmod(0o700)  # mkdir's mode is reduced by the umask, never widened; be exact
    return folder


def write_private(
    folder: Path, *, items: Sequence[PackItem], kept: Sequence[int], duplicates: Mapping[int, int],
    image_ids: Sequence[str | None], split_of: Mapping[int, str], problems: Sequence[Problem],
    patient_codes: Mapping[str, str], visit_codes: Mapping[tuple[str, str], str], details: Mapping,
) -> None:
    """private/: the ledger of every photo, the code map, every problem in full, and the run's details."""
    private_dir(folder)
    by_key = {item.key: item for item in items}

    def codes_of(item: PackItem | None) -> list[str]:
        if item is None:
            return ["", "", "", ""]
        return [item.patient_id, patient_codes.get(item.patient_id, ""), item.visit,
                visit_codes.get((item.patient_id, item.visit), "")]

    with private_open(folder / ID_MAP_NAME) as fh:
        writer = SafeWriter(fh)
        writer.writerow(["original_path", "image_id", "patient_id", "patient_code", "visit", "visit_code",
                         "split", "status", "csv_row", "reason"])
        for i in kept:
            item = items[i]
            writer.writerow([item.key, image_ids[i], *codes_of(item), split_of[i], "kept",
                             item.row or "", ""])
        done = {items[i].key for i in duplicates}
        for i, first in duplicates.items():
            item = items[i]
            writer.writerow([item.key, image_ids[first], *codes_of(item), "", "duplicate_image",
                             item.row or "", f"byte-identical to {items[first].key}"])
        for p in problems:
            if p.kind == "duplicate_image" and p.source in done:
                continue
            item = by_key.get(p.source)
            is_photo = item is not None or not p.source.lower().endswith((".csv", ".tsv", ".txt"))
            writer.writerow([p.source if is_photo else "", "", *codes_of(item), "", p.kind, p.row or "",
                             p.reason if is_photo else f"{p.source}: {p.reason}"])
    with private_open(folder / CODES_NAME) as fh:
        writer = SafeWriter(fh)
        writer.writerow(["kind", "code", "patient_id", "visit"])
        writer.writerows(sorted(["patient", code, pid, ""] for pid, code in patient_codes.items()))
        writer.writerows(sorted(["visit", code, pid, visit] for (pid, visit), code in visit_codes.items()))
    with private_open(folder / PROBLEMS_NAME) as fh:
        writer = SafeWriter(fh)
        writer.writerow(["kind", "source", "csv_row", "reason"])
        writer.writerows([p.kind, p.source, p.row or "", p.reason] for p in problems)
    with private_open(folder / DETAILS_NAME) as fh:
        fh.write(json.dumps(dict(details), indent=2, ensure_ascii=False, default=str) + "\n")


def read_codes(dataset_dir: str | Path) -> dict[str, dict]:
    """The private code map of a packed dataset: {"patient": {code: patient_id}, "visit": {code: (patient_id,
    visit)}}; empty maps when private/ is absent (a dataset downloaded from the Hub has none, by design).

    For the clinic's own joins of a packed dataset with its score tables (link, evaluate-ensemble --scores).
    """
    path = Path(dataset_dir) / PRIVATE_DIR / CODES_NAME
    out: dict[str, dict] = {"patient": {}, "visit": {}}
    if not path.is_file():
        return out
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            kind, code = row["kind"], read_cell(row["code"])
            pid, visit = read_cell(row["patient_id"]), read_cell(row["visit"])
            out.setdefault(kind, {})[code] = pid if kind == "patient" else (pid, visit)
    return out


def clinic_ids(dataset_dir: str | Path, patients: Sequence[str],
               visits: Sequence[str]) -> tuple[list[str], list[str]]:
    """Packed patient/visit codes -> the clinic's own ids, through private/codes.csv (local use only).

    Without the private map (a dataset from the Hub) the codes are returned unchanged and a warning says
    that they will not match the clinic's score tables.
    """
    codes = read_codes(dataset_dir)
    if not codes["patient"]:
        logger.warning("%s has no %s/%s: its patient ids are opaque codes and will not match a clinic's "
                       "score table; run on the dataset folder that prepare wrote",
                       dataset_dir, PRIVATE_DIR, CODES_NAME)
        return list(patients), list(visits)
    out_p = [codes["patient"].get(p, p) for p in patients]
    out_v = [codes["visit"][v][1] if v in codes["visit"] else v for v in visits]
    return out_p, out_v
