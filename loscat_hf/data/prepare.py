"""`prepare()`: rater CSV + photo folder -> de-identified imagefolder dataset split by patient.

This module only orchestrates (annotations -> image paths -> score table -> packing) and returns a
PrepareResult; the work is in annotations.py (reading), consensus.py (one label per photo), io/images.py
(safe decoding), splits.py and packing.py. `loscat-hf prepare` prints `format_summary(result)`, sets the exit
code and pushes to the Hub.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from loscat_hf.data.dataset import CARD_NAME, PRIVATE_DIR, PROBLEMS_NAME, REPORT_NAME
from loscat_hf.data.packing import PackItem, PackOptions, PackResult, pack_dataset
from loscat_hf.defaults import MAX_SIDE
from loscat_hf.errors import LoscatError, Problem
from loscat_hf.io.atomic import check_output_dir

MAX_LISTED_PROBLEMS = 20
MAX_LISTED_UNMATCHED = 10


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def resolve_image_path(image: str, images_dir: Path) -> tuple[Path | None, Problem | None]:
    """The file a CSV image path names, or why it cannot be used (outside the folder, missing).

    The check is lexical ('..' and absolute paths), so a symlink the user put inside the folder is honoured.
    """
    root = os.path.normpath(os.path.abspath(images_dir))
    text = image.replace("\\", "/")
    posix = PurePosixPath(text)
    is_absolute = posix.is_absolute() or (len(text) > 2 and text[1] == ":" and text[2] == "/")
    candidate = os.path.normpath(text if is_absolute else os.path.join(root, *posix.parts))
    if not _is_within(candidate, root) or candidate == root:
        where = "an absolute path" if is_absolute else "a relative path that climbs out with '..'"
        return None, Problem(
            "outside_images_dir", image,
            f"{where} outside the images folder {images_dir}; write paths relative to the images folder",
        )
    path = Path(candidate)
    if not path.exists():
        hint = _case_hint(path)
        return None, Problem("missing_image", image, f"no such file under {images_dir}{hint}")
    return path, None


def _case_hint(path: Path) -> str:
    """Exports made on Windows/macOS often differ from the files only in letter case: say so."""
    parent = path.parent
    if not parent.is_dir():
        return f" (folder {parent.name!r} does not exist either)"
    wanted = path.name.lower()
    try:
        matches = [p.name for p in parent.iterdir() if p.name.lower() == wanted]
    except OSError:
        return ""
    return f" (a file {matches[0]!r} exists: letter case differs)" if matches else ""


def dataset_key(annotations: str | os.PathLike, seed: int) -> bytes:
    """The dataset's secret key (photo ids, code order), derived from the private annotation export.

    Secret: nobody without the export can compute it, so an image id or code reveals nothing. Derived, not
    drawn: the same export, seed and photos give the same dataset again, byte for byte (reproducible runs).
    """
    import hashlib

    return hashlib.sha256(b"loscat-hf dataset key\0" + Path(annotations).read_bytes()
                          + b"\0" + str(seed).encode()).digest()


@dataclass
class PrepareResult:
    """What `prepare` did: the packed dataset (None when nothing usable remained) and what was read."""

    out_dir: Path | None  # the dataset written (absolute), None when nothing usable remained
    out: str  # --out as the caller wrote it, for messages
    pack: PackResult
    consensus: object  # annotations.ConsensusResult: rows read, consensus photos, agreement, columns
    annotations: str
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self):
        return self.pack.problems


def prepare(
    *,
    annotations: str | os.PathLike,
    images: str | os.PathLike,
    out: str | os.PathLike,
    taxonomy: str | os.PathLike | None = None,
    val_fraction: float = 0.165,
    test_fraction: float = 0.0,
    seed: int = 0,
    max_side: int = MAX_SIDE,
    overwrite: bool = False,
    strict: bool = False,
    num_workers: int | None = None,
    scores: str | os.PathLike | None = None,
    keep_columns: str | list[str] | None = None,
    progress: bool | None = None,
    multi_region: bool = False,
) -> PrepareResult:
    """Build the dataset; `result.out_dir` is None when nothing usable remained (nothing is written then).

    A photo whose raters named several regions keeps them all (the dataset gets a `labels` column);
    `multi_region` writes that column even when every photo shows one region.
    `strict` is recorded in the report; deciding what a problem means (the CLI's exit code 1) is the caller's.
    User errors raise LoscatError before anything is written.
    """
    from loscat_hf.data.consensus import read_annotations
    from loscat_hf.taxonomy import load_taxonomy

    images_dir = Path(images)
    out_dir = Path(out)
    if not images_dir.is_dir():
        raise LoscatError(f"images folder {images_dir} does not exist or is not a folder", param="images")
    options = PackOptions(  # checks max_side and num_workers (LoscatError naming the parameter)
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, max_side=max_side,
        overwrite=overwrite, num_workers=num_workers, multi_region=multi_region,
        progress=sys.stderr.isatty() if progress is None else progress,
    )
    images_abs, out_abs = os.path.abspath(images_dir), os.path.abspath(out_dir)
    if _is_within(images_abs, out_abs):
        raise LoscatError(
            f"output folder {out_dir} contains the images folder {images_dir}: overwriting it would delete "
            "the original photos; choose another output folder", param="out"
        )
    check_output_dir(out_dir, overwrite)  # before reading anything: fail in a second, not after packing
    tax = load_taxonomy(taxonomy)
    score_table = None
    if scores:
        from loscat_hf.data.score_tables import read_score_table

        score_table = read_score_table(scores, tax)  # a bad table fails now, before any packing
    consensus = read_annotations(annotations, tax, keep_columns=keep_columns)

    problems: list[Problem] = list(consensus.problems)
    items: list[PackItem] = []
    for photo in consensus.photos:
        path, problem = resolve_image_path(photo.image, images_dir)
        if problem is not None:
            problems.append(Problem(problem.kind, problem.source, problem.reason, photo.row))
            continue
        items.append(PackItem(
            source=path, key=photo.image, label=photo.label, site=photo.site, patient_id=photo.patient_id,
            visit=photo.visit, extra=dict(photo.extra), row=photo.row,
        ))
    warnings = [f"{w.source}: {w.reason}" for w in getattr(consensus, "warnings", [])]
    notes: list[str] = []
    scores_used = None
    if score_table is not None:
        from loscat_hf.data.score_tables import attach_scores

        attached = attach_scores(items, score_table)
        items = attached.items
        scores_used = attached.n_matched
        notes.append(f"LoSCAT scores attached to {attached.n_matched} of {len(items)} photos (score_* "
                     f"columns; empty = missing); {len(attached.unmatched)} photo(s) have no row in "
                     f"{Path(scores).name}")
        if attached.several:
            notes.append(f"{attached.several} photo(s) show several regions: no score targets (scores train "
                         "on single-region photos; a photo spanning sites shows no one site's scores)")
        for u in attached.unmatched[:MAX_LISTED_UNMATCHED]:
            notes.append(f"no scores for {u}")
        if len(attached.unmatched) > MAX_LISTED_UNMATCHED:
            more = len(attached.unmatched) - MAX_LISTED_UNMATCHED
            notes.append(f"... and {more} more photos without scores")

    result = pack_dataset(
        items, out_dir, options, classes=tax.classes, problems=problems, warnings=warnings,
        agreement=consensus.agreement, notes=notes,
        parameters={  # publishable values only: no file or folder names
            "taxonomy": tax.name, "annotation_rows": consensus.n_rows, "strict": strict,
            "scores_used": scores_used, "kept_columns": list(consensus.kept_columns),
        },
        id_key=dataset_key(annotations, seed),
        private_details={
            "annotations_file": os.path.abspath(annotations), "images_folder": images_abs,
            "scores_file": os.path.abspath(scores) if scores else None,
            "dropped_columns": list(consensus.dropped_columns),
        },
    )

    return PrepareResult(out_dir=result.out_dir, out=str(out), pack=result, consensus=consensus,
                         annotations=str(annotations), notes=notes)


def format_summary(prepared: PrepareResult) -> str:
    """The console summary of a prepare run: counts per split, agreement, columns, problems, warnings."""
    from loscat_hf.data.agreement import format_agreement

    result, consensus, notes = prepared.pack, prepared.consensus, prepared.notes
    annotations, out_dir = prepared.annotations, Path(prepared.out)
    lines: list[str] = []
    add = lines.append

    add(
        f"Read {consensus.n_rows} rows from {annotations}: {len(consensus.photos)} photos with a consensus "
        "label."
    )
    if result.out_dir is not None:
        splits = ", ".join(f"{s} {v['photos']} photos / {v['patients']} patients"
                           for s, v in result.report["splits"].items())
        phantoms = result.report.get("phantom_photos") or 0
        synthetic = (f" {'All' if phantoms == result.n_photos else phantoms} of them are SYNTHETIC phantoms "
                     "(loscat-hf demo-data, by their EXIF): the card and report say so.") if phantoms else ""
        add(f"Wrote {result.n_photos} photos to {out_dir}: {splits}.{synthetic}\n")
        add(result.table)
        per = result.report.get("regions_per_photo")
        if per:
            add("Regions per photo: " + ", ".join(f"{k}: {n} photos" for k, n in per.items())
                + f"; the single-region path would have left out {result.report['single_region_would_drop']}"
                " (`labels` lists every photo's regions).")
    add("")
    add(format_agreement(consensus.agreement))
    if consensus.dropped_columns:
        add(f"\nColumns left out (not defined by loscat-hf; keep one with --keep-columns NAME): "
              f"{', '.join(consensus.dropped_columns)}")
    if consensus.kept_columns:
        add(f"Columns kept (--keep-columns): {', '.join(consensus.kept_columns)}")
    if consensus.superseded:
        add(f"{consensus.superseded} earlier answer(s) replaced by the same rater's later answer to the same "
            "photo (labelled_at): only the latest counts.")
    if result.problems:
        counts = Counter(p.kind for p in result.problems)
        listed = ", ".join(f"{k} {n}" for k, n in counts.most_common())
        add(f"\nLeft out: {len(result.problems)} ({listed})")
        for p in result.problems[:MAX_LISTED_PROBLEMS]:
            where = f"{p.source} row {p.row}" if p.row else p.source
            add(f"  [{p.kind}] {where}: {p.reason}")
        if len(result.problems) > MAX_LISTED_PROBLEMS:
            more = len(result.problems) - MAX_LISTED_PROBLEMS
            where = f" (all in {out_dir / PRIVATE_DIR / PROBLEMS_NAME})" if result.out_dir else ""
            add(f"  ... and {more} more{where}")
    else:
        add("\nNothing was left out.")
    for w in result.warnings:
        add(f"warning: {w}")
    for n in notes:
        add(f"note: {n}")
    if result.out_dir is not None:
        add(
            f"\nReport: {out_dir / REPORT_NAME}; dataset card: {out_dir / CARD_NAME}; "
            f"private maps to people and original files: {out_dir / PRIVATE_DIR} (never pushed)."
        )
    return "\n".join(lines)
