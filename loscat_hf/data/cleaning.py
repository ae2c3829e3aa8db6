"""Decode, hash and re-encode every photo of a pack in worker processes: `clean_photos`, packing's first step.

Each photo is read once, named by a keyed hash of its bytes and written re-encoded (no EXIF/GPS/ICC/comment)
into the staging folder as <image_id>.jpg; a photo that cannot be used becomes a Problem, not an error.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from loscat_hf.defaults import SIZE_SLACK
from loscat_hf.errors import Problem
from loscat_hf.io.atomic import atomic_file
from loscat_hf.io.images import ImageProblemError, is_phantom, open_image, read_image_bytes, save_clean_jpeg

if TYPE_CHECKING:
    from loscat_hf.data.packing import PackItem, PackOptions

JPEG_QUALITY = 95
ID_LENGTH = 16  # hex chars of HMAC-SHA256: 64 bits, no collision in any realistic photo collection


def _clean_one(
    task: tuple[int, str, str, int, int, bytes],
) -> tuple[int, str | None, str | None, str | None, bool]:
    """Worker: read, hash, decode and re-encode one photo -> (index, image_id, problem kind, reason, phantom).

    `phantom`: the file is a `loscat-hf demo-data` photo (its EXIF says so; the re-encoded copy has no EXIF).

    Disk-full and other write errors are not the photo's fault: they propagate and stop the run.
    """
    index, source, staging, max_side, max_pixels, id_key = task
    try:
        data, _ = read_image_bytes(source)
        # keyed: a plain hash would let anyone holding a copy of a photo confirm that its child is in the
        # dataset; identical files still get one id (duplicates are found by it)
        image_id = hmac.new(id_key, data, hashlib.sha256).hexdigest()[:ID_LENGTH]
        img = open_image(data, max_side=max_side, max_pixels=max_pixels, size_slack=SIZE_SLACK)
    except ImageProblemError as exc:
        return index, None, exc.kind, exc.reason, False
    except Exception as exc:  # noqa: BLE001 - a decoder bug on one odd file must not stop 2,000 others
        return index, None, "unreadable", f"cannot decode the image: {type(exc).__name__}: {exc}", False
    target = os.path.join(staging, f"{image_id}.jpg")
    if not os.path.exists(target):  # a byte-identical copy already wrote it
        with atomic_file(target) as part:  # byte-identical copies in two workers may write it at once
            save_clean_jpeg(img, part, quality=JPEG_QUALITY)
    return index, image_id, None, None, is_phantom(data)


def _run_tasks(
    tasks: list[tuple[int, str, str, int, int, bytes]], options: PackOptions
) -> Iterator[tuple[int, str | None, str | None, str | None, bool]]:
    from tqdm.auto import tqdm

    num_workers = options.workers
    bar = tqdm(total=len(tasks), unit="photo", desc="packing photos", disable=not options.progress,
               file=sys.stderr)
    try:
        if num_workers <= 1 or len(tasks) < 4:
            for task in tasks:
                yield _clean_one(task)
                bar.update()
            return
        import multiprocessing

        # spawn: no fork of a parent that may hold threads (tqdm monitor, BLAS); costs ~0.3 s per worker
        executor = ProcessPoolExecutor(max_workers=num_workers,
                                       mp_context=multiprocessing.get_context("spawn"))
        try:
            chunksize = max(1, min(16, len(tasks) // (num_workers * 8)))
            for result in executor.map(_clean_one, tasks, chunksize=chunksize):
                yield result
                bar.update()
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def clean_photos(items: Sequence[PackItem], staging: Path, options: PackOptions, id_key: bytes,
                 problems: list[Problem]) -> tuple[list[str | None], list[bool]]:
    """Decode and re-encode every photo into `staging` as <image_id>.jpg; per item its id, or None (and a
    Problem) for a photo that could not be used, and whether it is a demo-data phantom."""
    tasks = [(i, str(item.source), str(staging), options.max_side, options.max_pixels, id_key)
             for i, item in enumerate(items)]
    image_ids: list[str | None] = [None] * len(items)
    phantoms = [False] * len(items)
    for index, image_id, kind, reason, phantom in _run_tasks(tasks, options):
        if image_id is None:
            item = items[index]
            problems.append(Problem(kind or "unreadable", item.key, reason or "", item.row))
        image_ids[index], phantoms[index] = image_id, phantom
    return image_ids, phantoms
