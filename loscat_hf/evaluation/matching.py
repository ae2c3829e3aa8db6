"""Which prediction row is which truth photo: a predictions CSV and a truth CSV name the same photos in
different ways (another folder, another machine, Windows paths). Each step pairs only names that are unique
on both sides, so a photo is never paired by a guess; `evaluate_predictions` counts the pairs per step.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from pathlib import Path

from loscat_hf.data.annotations import normalise_image_path

MATCH_STEPS = ("exact", "normalised", "resolved", "path_tail", "basename")
# path_tail: the last 4, 3, then 2 path components (e.g. patient folder + camera file name)
_TAILS = (4, 3, 2)


def _key(step: str, image: str, folder: str, tail: int = 1) -> str:
    text = normalise_image_path(image)
    if step == "exact":
        return image
    if step == "normalised":
        return text
    if step in ("path_tail", "basename"):
        parts = [part for part in text.split("/") if part]
        return "/".join(parts[-tail:]) if len(parts) >= tail else ""
    if not text:
        return ""
    if text.startswith("/") or re.match(r"[A-Za-z]:/", text):  # absolute (POSIX or Windows)
        return posixpath.normpath(text)
    return posixpath.normpath(posixpath.join(folder, text))  # relative to the CSV's own folder


def match_photos(truth: list[str], preds: list[str], truth_dir: Path,
                 pred_dir: Path) -> dict[int, tuple[int, str]]:
    """truth index -> (prediction index, step); each step only pairs keys that are unique on both sides."""
    folders = (Path(truth_dir).resolve().as_posix(), Path(pred_dir).resolve().as_posix())
    matched: dict[int, tuple[int, str]] = {}
    used: set[int] = set()
    steps = [(name, 1) for name in MATCH_STEPS[:3]] + [("path_tail", n) for n in _TAILS] + [("basename", 1)]
    for step, tail in steps:
        t_keys = [_key(step, image, folders[0], tail) for image in truth]
        p_keys = [_key(step, image, folders[1], tail) for image in preds]
        t_count, p_count = Counter(t_keys), Counter(p_keys)
        free = {k: j for j, k in enumerate(p_keys) if j not in used and p_count[k] == 1}
        for i, k in enumerate(t_keys):
            if i not in matched and k and t_count[k] == 1 and k in free:
                if step in ("path_tail", "basename") and not _one_ends_the_other(truth[i], preds[free[k]]):
                    continue  # patientA/IMG_0001.jpg is not /data/patientZ/IMG_0001.jpg: camera names repeat
                matched[i] = (free[k], step)
                used.add(free[k])
    return matched


def _one_ends_the_other(a: str, b: str) -> bool:
    """The shorter path's components are the last components of the longer one (`P1/x.jpg` ends
    `/archive/P1/x.jpg`; a bare `x.jpg` ends both), so a tail match never pairs different folders."""
    pa = [p for p in normalise_image_path(a).split("/") if p]
    pb = [p for p in normalise_image_path(b).split("/") if p]
    short, long = sorted((pa, pb), key=len)
    return bool(short) and long[len(long) - len(short):] == short
