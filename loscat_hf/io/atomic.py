"""Atomic writes: a reader sees the old file (or folder) or the whole new one, never half of it.

`atomic_file`/`write_atomic` are the one way a single file is replaced (a temp file beside it, then
os.replace). A dataset folder is built beside OUT and renamed into place: an interrupted prepare must never
leave a half-written dataset that a training run could pick up, nor orphaned copies of decoded patient
photos (the `.OUT.partial-<pid>-*` folders are removed on the next run).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loscat_hf.errors import LoscatError

logger = logging.getLogger(__name__)


@contextmanager
def atomic_file(path: str | Path, private: bool = False) -> Iterator[Path]:
    """Yield a temp path beside `path` to write; on success it replaces `path` in one rename, on any error it
    is removed and `path` is untouched. Unique per process and call, so two writers never share a temp file.
    `private`: the file is created owner-only (0600) before anything is written into it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keeps the type
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    if private:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to `path` atomically (`atomic_file`)."""
    with atomic_file(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")


def check_output_dir(out_dir: str | Path, overwrite: bool) -> Path:
    """Fail early (before minutes of packing) if OUT exists and may not be replaced."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LoscatError(f"out {out} exists and is not a folder", param="out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise LoscatError(f"output folder {out} already exists; pass overwrite=True to replace it",
                          param="overwrite")
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Delete `.OUT.partial-<pid>-*` and `.OUT.old-<pid>-*` folders that a killed prepare left behind (their
    process is gone). They hold decoded patient photos and private/; nothing else would ever remove them.
    A folder of another name, or of a prepare still running, is left alone.
    """
    removed = []
    for folder in out.parent.glob(f".{out.name}.*-*"):
        match = re.fullmatch(rf"\.{re.escape(out.name)}\.(?:partial|old)-(\d+)-[0-9a-f]{{8}}", folder.name)
        if not match or not folder.is_dir():
            continue
        if int(match.group(1)) != os.getpid() and _pid_alive(int(match.group(1))):
            continue  # another prepare into the same OUT is running now
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        logger.info("removed %d unfinished folder(s) of an interrupted prepare next to %s", len(removed), out)
    return removed


def partial_folder(out: Path) -> Path:
    """A new, empty `.OUT.partial-<pid>-<hex8>` folder beside OUT to build a folder in (the name
    `remove_stale_partials` knows), after removing what killed runs left; `commit_folder` renames it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def write_error(out: Path, exc: OSError) -> LoscatError:
    """A disk problem while writing OUT, as one line the user can act on."""
    hints = {
        errno.ENOSPC: "the disk is full: free space or choose another output folder",
        errno.EROFS: "the file system is read-only: choose another output folder",
        errno.EACCES: "permission denied: choose an output folder you can write to",
        errno.EPERM: "permission denied: choose an output folder you can write to",
        getattr(errno, "EDQUOT", -1): ("the disk quota is exceeded: free space or choose another output "
                                       "folder"),
    }
    what = hints.get(exc.errno, f"{exc.strerror or exc}: check the disk, or choose another output folder")
    return LoscatError(f"cannot write the dataset {out}: {what}; nothing was written", param="out")


def commit_folder(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished folder into place; an old OUT is removed only after the new one is there."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(tmp, out)
        return
    if not overwrite:
        raise LoscatError(f"output folder {out} appeared while packing; pass overwrite=True to replace it",
                          param="overwrite")
    old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
