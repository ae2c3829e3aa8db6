"""The photos a rater labels with `loscat-hf label`, each with its patient id and visit.

Patient ids come from `--patients` (a CSV of image, patient_id[, visit], image relative to the photo folder)
or else from the first folder level under the photo folder (`DIR/<patient_id>/.../photo.jpg`). A photo with
no patient id is refused at start-up rather than labelled into rows `prepare` would drop.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loscat_hf.data.annotations import column_cells, map_columns, normalise_image_path, read_export
from loscat_hf.errors import LoscatError
from loscat_hf.io.images import folder_files, printable_name

logger = logging.getLogger(__name__)

# photo ids are keyed by a secret of this process: a plain hash of a guessable path ('MRN123/1.jpg') could be
# reversed by trying paths, so an id names no photo outside the running app (ids change when it restarts)
_ID_KEY = secrets.token_bytes(16)
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif")
PATIENT_COLUMNS = ("image", "patient_id")
MAX_LISTED = 5


@dataclass(frozen=True)
class LabelPhoto:
    """A photo to label: its opaque id (what the app and its API show), where it is, whose it is."""

    photo_id: str  # keyed hash of `image`: names no patient or file
    image: str  # relative to the photo folder, '/'-separated (the label file's `image`)
    path: Path  # the file itself, inside the photo folder (links resolved)
    patient_id: str
    visit: str = ""


def photo_id(image: str) -> str:
    return hmac.new(_ID_KEY, image.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def read_patients(path: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """image -> (patient_id, visit) from a `--patients` CSV; empty ids and contradictions name their row."""
    path, what = Path(path), "patients file"
    frame = read_export(path, what, PATIENT_COLUMNS)
    columns = map_columns(frame, path, what, PATIENT_COLUMNS)

    def cells(name: str) -> list[str]:
        return column_cells(frame, columns, name)

    out: dict[str, tuple[str, str]] = {}
    first: dict[str, int] = {}
    for row, image, patient, visit in zip(frame.index, cells("image"), cells("patient_id"), cells("visit"),
                                          strict=True):
        image = normalise_image_path(image)
        if not image or not patient:
            raise LoscatError(f"{what} {path} row {row}: empty {'image' if not image else 'patient_id'}")
        if image in out and out[image] != (patient, visit):
            raise LoscatError(f"{what} {path} rows {first[image]} and {row} give {image!r} two different "
                              "patients or visits")
        out.setdefault(image, (patient, visit))
        first.setdefault(image, row)
    if not out:
        raise LoscatError(f"{what} {path} has a header but no rows")
    return out


def offerable(found: list[tuple[str, Path]], root: Path) -> list[tuple[str, Path]]:
    """The photos a rater can label, each as its resolved file; the others are named in a warning.

    A name that is not UTF-8 cannot be written to the (UTF-8) label file as it is, so `prepare` could not
    find the photo by it: rename it. A link to a file outside the folder is never opened: the app would show
    whatever it points to (another patient's folder, /etc/passwd)."""
    real_root = root.resolve()
    ok, undecodable, outside = [], [], []
    for image, path in found:
        real = path.resolve()
        try:
            image.encode("utf-8")
        except UnicodeEncodeError:
            undecodable.append(printable_name(image))
            continue
        if real_root not in real.parents:
            outside.append(image)
            continue
        ok.append((image, real))
    if undecodable:
        logger.warning("%d photo(s) under %s are not offered: their file names are not valid UTF-8 (e.g. "
                       "%s); rename them to UTF-8 names (e.g. with convmv) and start again",
                       len(undecodable), root, ", ".join(undecodable[:MAX_LISTED]))
    if outside:
        logger.warning("%d photo(s) under %s are not offered: they are links to files outside it (e.g. %s); "
                       "copy the photos into the folder", len(outside), root, ", ".join(outside[:MAX_LISTED]))
    return ok


def inside(photo: LabelPhoto) -> bool:
    """The photo's file is still the one listed: no link put in its place since (checked before it opens)."""
    return os.path.realpath(photo.path) == str(photo.path)


def list_photos(images: str | os.PathLike, patients: str | os.PathLike | None = None,
                exclude: Sequence[str | os.PathLike] = ()) -> list[LabelPhoto]:
    """Every photo under `images` (recursive; hidden files and other file types skipped), sorted by path."""
    root = Path(images)
    if not root.is_dir():
        raise LoscatError(f"images {root} is not a folder", param="images")
    files = folder_files(root, exclude)
    found = [(image, path) for image, path in files if path.suffix.lower() in PHOTO_SUFFIXES]
    others = len(files) - len(found)
    found = offerable(found, root)
    if others:
        logger.info("%d file(s) under %s are not photos (by extension: %s) and are not offered for labelling",
                    others, root, ", ".join(PHOTO_SUFFIXES))
    if not found:
        raise LoscatError(f"images {root} holds no photos ({', '.join(PHOTO_SUFFIXES)})", param="images")
    if patients is not None:
        table = read_patients(patients)
        missing = [image for image, _ in found if image not in table]
        if missing:
            raise LoscatError(f"{len(missing)} photo(s) under {root} are not in the patients table "
                              f"{patients} (e.g. {', '.join(missing[:MAX_LISTED])}); add them, or move them "
                              "out of the folder", param="patients")
        unused = len(set(table) - {image for image, _ in found})
        if unused:
            logger.info("%d row(s) of --patients %s name no photo under %s", unused, patients, root)
        return [LabelPhoto(photo_id(image), image, path, *table[image]) for image, path in found]
    loose = [image for image, _ in found if "/" not in image]
    if loose:
        raise LoscatError(f"{len(loose)} photo(s) lie directly in {root} "
                          f"(e.g. {', '.join(loose[:MAX_LISTED])}), not in a patient folder: without a "
                          "patients table the first folder level is the patient id "
                          "(DIR/<patient_id>/photo.jpg); move them or pass patients=CSV "
                          "(image, patient_id[, visit])",
                          param="patients")
    return [LabelPhoto(photo_id(image), image, path, image.split("/", 1)[0]) for image, path in found]
