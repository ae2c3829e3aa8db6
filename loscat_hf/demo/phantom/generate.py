"""`loscat-hf demo-data` entry point: check arguments, plan, render photos in parallel, write CSVs and README.

The only module that touches the output folder: it refuses a non-empty one without `overwrite`, and then
removes only OUTPUTS, never a user's other files.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import time
from collections import Counter
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from loscat_hf.demo.phantom.cohort import SEVERITY_COLUMNS
from loscat_hf.demo.phantom.jpeg import _render_and_save
from loscat_hf.demo.phantom.plan import _plan
from loscat_hf.errors import LoscatError
from loscat_hf.taxonomy import SET_SEPARATOR, load_taxonomy

# Files and folders this module writes; --overwrite removes only these.
OUTPUTS = ("images", "unlabeled", "annotations.csv", "loscat_scores.csv", "photos_truth.csv",
           "unlabeled_metadata.csv", "unlabeled_truth.csv", "README.md", "SYNTHETIC")

_README = """# SYNTHETIC phantom data (loscat-hf demo-data)

**Every image, name, record number, date, GPS position and score in this folder is SYNTHETIC.**
No real patient is shown. The photos are drawn by `loscat_hf.demo.phantom` (seed {seed}) so that the
pipeline can be run and tested without clinical data. The identifying-looking file names and EXIF
(patient name in ImageDescription, GPS, camera, capture date) are fake on purpose: they let you check
that `loscat-hf prepare` de-identifies photos before anything is trained or shared.

- `images/<patient>/<visit>/*.jpg`: {n_photos} labelled photos of {n_patients} patients, one LoSCAT site each
  ({image_size[0]}x{image_size[1]}; about 20% stored rotated with an EXIF orientation tag).
- `annotations.csv`: one row per rating (image relative to `images/`, patient_id, visit, region as the
  rater wrote it, rater, quality, skin_tone): {n_ratings} rows by raters R1-R4, with messy spellings,
  neighbour-site disagreements, ties, "unclear"/"multiple"/"not gradable" and poor/exclude quality marks.
- `loscat_scores.csv`: LoSCAT component scores per patient, visit and site (erythema, skin_thickness,
  new_extension, dermal_atrophy, subcutaneous_atrophy, dyspigmentation); the painted plaques follow them.
- `photos_truth.csv`: ground truth per photo (the site the phantom camera aimed at, its class, severities).
- `unlabeled/`: {n_unlabeled} photos of other patients without labels; `unlabeled_metadata.csv` maps each
  file to patient_id and visit; `unlabeled_truth.csv` holds their true sites for checking batch labels.

Next step:

    loscat-hf prepare --annotations {out}/annotations.csv --images {out}/images --out DATASET \\
        --scores {out}/loscat_scores.csv

Per class (truth): {per_class}
"""

_SPANNING = """
Multi-region ({n} labelled photos, {n_unlabeled} unlabeled): these show two adjacent sites (thigh+leg,
arm+forearm, forearm+hand, chest+abdomen, head+neck; same side) with one linear lesion across their border.
Raters then name both sites in one `region` cell, separated by `;` (e.g. `Left thigh; L leg`), or only one
of them; `photos_truth.csv` and `unlabeled_truth.csv` name both in `site` and `label` (e.g.
`left_thigh;left_leg`, `thigh;leg`), and `loscat_scores.csv` has the lesion's scores in both sites. Per
class above counts such a labelled photo in both.
"""


def generate_demo_data(out: str | Path, n_patients: int = 60, n_photos: int = 600,
                       image_size: tuple[int, int] = (1024, 768), n_unlabeled: int = 40, seed: int = 0,
                       overwrite: bool = False, num_workers: int | None = None,
                       photo_like: bool = False, multi_region: bool = False) -> dict:
    """Write a SYNTHETIC clinic archive to `out` (photos, rater CSV, LoSCAT scores, truth) and return a
    summary.

    `photo_like` adds camera grain (texture, sensor noise) and saves at JPEG quality 90-95, so the files cost
    what camera photos cost to decode (benchmarks use it); the default renders are smooth (~0.3 bits per
    pixel). `multi_region` makes about SPAN_SHARE of the labelled photos, and of the unlabeled ones, show two
    adjacent sites (thigh+leg, arm+forearm, forearm+hand, chest+abdomen, head+neck) with one streak across
    both; raters name both (';'-joined) or one, and the truth tables name both. Without it the archive is
    exactly as before. Same arguments give the same bytes. Raises LoscatError on bad arguments or a
    non-empty `out` without `overwrite` (which then replaces only what this function writes).
    """
    t0 = time.perf_counter()
    root, size = _check_args(out, n_patients, n_photos, image_size, n_unlabeled, seed, num_workers)
    specs, ratings, truth, unl, scores = _plan(n_patients, n_photos, n_unlabeled, size, seed, root,
                                               multi_region=bool(multi_region))
    if photo_like:
        for spec in specs:
            spec.update(camera_grain=True, quality=90 + spec["index"] % 6)
    _prepare_out(root, overwrite)
    (root / "images").mkdir()
    if n_unlabeled:
        (root / "unlabeled").mkdir()

    _render_all(specs, num_workers)
    _write_tables(root, ratings, truth, unl, scores)
    classes = load_taxonomy().classes
    # a spanning photo counts twice
    per_class = Counter(c for r in truth for c in r["label"].split(SET_SEPARATOR))
    n_spanning = sum(1 for r in truth if SET_SEPARATOR in r["site"])
    n_unlabeled_spanning = sum(1 for r in unl if SET_SEPARATOR in r["site"])
    per_class_d = {c: per_class.get(c, 0) for c in classes}
    (root / "SYNTHETIC").write_text("Everything in this folder is SYNTHETIC phantom data made by loscat-hf "
                                    "demo-data. No real patient data.\n", encoding="utf-8")
    readme = _README.format(
        seed=seed, n_photos=n_photos, n_patients=n_patients, image_size=size, n_ratings=len(ratings),
        n_unlabeled=n_unlabeled, out=root, per_class=", ".join(f"{c} {n}" for c, n in per_class_d.items()))
    if multi_region:
        readme += _SPANNING.format(n=n_spanning, n_unlabeled=n_unlabeled_spanning)
    (root / "README.md").write_text(readme, encoding="utf-8")
    seconds = time.perf_counter() - t0
    summary = dict(
        out=str(root), images=str(root / "images"), annotations=str(root / "annotations.csv"),
        scores=str(root / "loscat_scores.csv"), truth=str(root / "photos_truth.csv"),
        unlabeled=str(root / "unlabeled") if n_unlabeled else None, n_patients=n_patients, n_photos=n_photos,
        n_ratings=len(ratings), n_unlabeled=n_unlabeled, n_score_rows=len(scores), per_class=per_class_d,
        per_skin_tone=dict(sorted(Counter(r["skin_tone"] for r in truth).items())),
        n_exif_orientation=sum(1 for r in truth if r["orientation"]), seconds=round(seconds, 1),
        multi_region=bool(multi_region), n_spanning=n_spanning, n_unlabeled_spanning=n_unlabeled_spanning,
    )
    return summary


def format_summary(summary: dict) -> str:
    """The console lines of a `generate_demo_data` summary, ending with the `prepare` command to run next."""
    root = Path(summary["out"])
    files = [summary["annotations"], summary["scores"], summary["truth"], summary["images"]]
    files += [summary["unlabeled"]] if summary["unlabeled"] else []
    spanning = (f"  {summary['n_spanning']} photos span two adjacent sites (--multi-region; counted in both "
                "classes above)")
    if summary["n_unlabeled"]:
        n_unl = summary.get("n_unlabeled_spanning", 0)
        spanning += f", as do {n_unl} of the {summary['n_unlabeled']} unlabeled"
    return "\n".join([
        f"SYNTHETIC phantom data: {summary['n_photos']} photos of {summary['n_patients']} patients, "
        f"{summary['n_ratings']} ratings, {summary['n_unlabeled']} unlabeled photos in "
        f"{summary['seconds']:.1f} s -> {root}",
        "  per class: " + ", ".join(f"{c} {n}" for c, n in summary["per_class"].items()),
        *([spanning] if summary.get("multi_region") else []),
        "  " + ", ".join(files),
        f"  next: loscat-hf prepare --annotations {summary['annotations']} --images {summary['images']} "
        f"--out DATASET --scores {summary['scores']} --keep-columns skin_tone",
    ])


def _render_all(specs: list[dict], num_workers: int | None) -> None:
    """Render and save every photo, in worker processes when there are enough (each spec is
    self-contained)."""
    workers = num_workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(specs) // 8 or 1))
    from tqdm import tqdm

    bar = tqdm(total=len(specs), desc="phantom photos", unit="photo", file=sys.stderr, mininterval=0.5,
               disable=len(specs) < 50)
    try:
        if workers == 1:
            for spec in specs:
                _render_and_save(spec)
                bar.update()
        else:
            with get_context().Pool(workers) as pool:
                for _ in pool.imap_unordered(_render_and_save, specs, chunksize=4):
                    bar.update()
    finally:
        bar.close()


def _write_tables(root: Path, ratings: list[dict], truth: list[dict], unl: list[dict],
                  scores: list[dict]) -> None:
    """The rater export, the truth tables and the LoSCAT score table (unlabeled tables only when any)."""
    _write_csv(root / "annotations.csv", ratings,
               ["image", "patient_id", "visit", "region", "rater", "quality", "skin_tone"])
    truth_cols = ["image", "patient_id", "visit", "site", "label", *SEVERITY_COLUMNS, "view", "skin_tone",
                  "orientation", "defect"]
    _write_csv(root / "photos_truth.csv", truth, truth_cols)
    _write_csv(root / "loscat_scores.csv", scores, ["patient_id", "visit", "site", *SEVERITY_COLUMNS])
    if unl:
        _write_csv(root / "unlabeled_metadata.csv", unl, ["image", "patient_id", "visit"])
        _write_csv(root / "unlabeled_truth.csv", unl, truth_cols)


def _check_args(out: Any, n_patients: Any, n_photos: Any, image_size: Any, n_unlabeled: Any, seed: Any,
                num_workers: Any) -> tuple[Path, tuple[int, int]]:
    """Validate before anything is written (each error names its parameter); -> (out folder, (W, H))."""

    def is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(n_patients) or n_patients < 1:
        raise LoscatError(f"n_patients must be a whole number >= 1, got {n_patients!r}", param="n_patients")
    if not is_int(n_photos) or n_photos < n_patients:
        raise LoscatError(f"n_photos must be >= n_patients ({n_patients}): every patient needs a photo; got "
                          f"{n_photos!r}", param=("n_photos", "n_patients"))
    n_classes = len(load_taxonomy().classes)
    if n_photos < n_classes:
        raise LoscatError(f"n_photos must be at least {n_classes} so that every class appears; "
                          f"got {n_photos}", param="n_photos")
    if not is_int(n_unlabeled) or n_unlabeled < 0:
        raise LoscatError(f"n_unlabeled must be a whole number >= 0, got {n_unlabeled!r}",
                          param="n_unlabeled")
    if not is_int(seed) or seed < 0:
        raise LoscatError(f"seed must be a whole number >= 0, got {seed!r}", param="seed")
    if num_workers is not None and (not is_int(num_workers) or num_workers < 1):
        raise LoscatError(f"num_workers must be >= 1, got {num_workers!r}", param="num_workers")
    try:
        size = tuple(int(v) for v in image_size)
    except (TypeError, ValueError):
        raise LoscatError(f"image_size must be two whole numbers W H, got {image_size!r}",
                          param="image_size") from None
    if len(size) != 2 or not all(32 <= v <= 8192 for v in size):
        raise LoscatError(f"image_size must be two numbers W H between 32 and 8192, got {image_size!r}",
                          param="image_size")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise LoscatError(f"out {root} exists and is not a folder", param="out")
    return root, (size[0], size[1])


def _prepare_out(root: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless `overwrite`; then remove only OUTPUTS."""
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise LoscatError(f"output folder {root} exists and is not empty; "
                              "pass overwrite=True or another folder", param="overwrite")
        for name in OUTPUTS:  # only what demo-data writes: never a user's other files
            p = root / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
    root.mkdir(parents=True, exist_ok=True)


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

