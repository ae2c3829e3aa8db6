"""The answer file of `loscat-hf label`: one CSV row per answer, appended and fsynced, never rewritten.

A killed app loses nothing it has confirmed: each answer is one `write()` followed by `fsync` before the
rater sees the next photo. Several app processes (raters) may append to one file at once: every row is
written under an exclusive lock of the file (`fcntl.flock`; on systems without it, only threads of one
process are serialised: run one app per file there), so rows are never lost or interleaved. A changed
answer is a new row; readers (`read_answers`, and `prepare --annotations` through the `labelled_at` column)
keep the latest per (image, rater). Cells go through `csvsafe` (a file named `=x.jpg` is not a formula).
The file holds patient ids: it is created readable by its owner only, and belongs with the private data.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from dataclasses import astuple, dataclass
from datetime import datetime, timezone
from pathlib import Path

from loscat_hf.data.annotations import superseded_rows
from loscat_hf.errors import LoscatError
from loscat_hf.io.csvsafe import SafeWriter, read_cell

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LABEL_COLUMNS = ("image", "patient_id", "visit", "region", "rater", "quality", "labelled_at")
QUALITIES = ("good", "poor", "exclude")  # `prepare` leaves poor and exclude answers out


@dataclass(frozen=True)
class Answer:
    """One rater's answer for one photo, as a row of the label file."""

    image: str  # relative to the labelled folder, '/'-separated
    patient_id: str
    visit: str
    region: str  # one of the taxonomy's 18 sites, or a non-site code
    rater: str
    quality: str
    labelled_at: str  # UTC, ISO 8601 with seconds: later answers sort later as text

    def key(self) -> tuple[str, str]:
        return self.image, self.rater


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _encode(values: tuple[str, ...]) -> bytes:
    buf = io.StringIO()
    SafeWriter(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().encode("utf-8")


HEADER = _encode(LABEL_COLUMNS)


class LabelLog:
    """Append-only access to one label file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise LoscatError(f"out {self.path} is a folder; name the CSV file to write", param="out")
        if self.path.is_file() and self.path.stat().st_size:
            try:
                with open(self.path, newline="", encoding="utf-8-sig") as fh:
                    header = next(csv.reader(fh), [])
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise LoscatError(f"out {self.path} exists but cannot be read as a loscat-hf label file "
                                  f"({getattr(exc, 'strerror', None) or exc}); choose a new file name",
                                  param="out") from None
            if tuple(h.strip() for h in header) != LABEL_COLUMNS:
                raise LoscatError(
                    f"out {self.path} exists but is not a loscat-hf label file (its header is {header}, "
                    f"expected {list(LABEL_COLUMNS)}); choose a new file name (an export of another tool is "
                    "read by `prepare --annotations`, not appended to)", param="out")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LoscatError(f"out {self.path}: cannot create {self.path.parent} ({exc.strerror})",
                              param="out") from None

    def append(self, answer: Answer) -> None:
        """Write one row and fsync it; the header first into an empty file."""
        row = _encode(astuple(answer))
        with self._lock:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            except OSError as exc:
                raise LoscatError(f"cannot write the label file {self.path}: {exc.strerror}") from None
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # released by close()
                size = os.fstat(fd).st_size
                if size == 0:
                    row = HEADER + row
                else:
                    row = _after_a_cut_row(fd, size) + row
                view = memoryview(row)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if size == 0:  # a new file: make its directory entry durable too
                _fsync_dir(self.path.parent)

    def read(self) -> list[Answer]:
        """Every complete row, in file order (a row cut off by a crash, with fewer fields, is skipped)."""
        return read_answers(self.path)


def _after_a_cut_row(fd: int, size: int) -> bytes:
    """What to write before a new row so that it starts a line of its own: nothing after a complete row; after
    a row a crash cut off, a line end, with a closing quote first if the cut was inside a quoted cell (else
    the reader would take the new row as the rest of that cell). The cut row stays, short of fields: readers
    drop it."""
    start = max(0, size - (1 << 16))
    if hasattr(os, "pread"):
        tail = os.pread(fd, size - start, start)
    else:  # Windows: no pread; appends go to the end whatever the position
        os.lseek(fd, start, os.SEEK_SET)
        tail = os.read(fd, size - start)
    if tail.endswith(b"\n"):
        return b""
    last = tail.rsplit(b"\n", 1)[-1]
    return (b'"' if last.count(b'"') % 2 else b"") + b"\n"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: no directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_answers(path: str | os.PathLike) -> list[Answer]:
    """The rows of a label file in file order; [] when it does not exist yet."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LoscatError(f"cannot read the label file {path}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    return [Answer(*(read_cell(v) for v in row)) for row in rows[1:] if len(row) == len(LABEL_COLUMNS)]


def latest_answers(answers: list[Answer]) -> dict[tuple[str, str], Answer]:
    """(image, rater) -> that rater's latest answer for the photo: `prepare`'s rule (`superseded_rows`)."""
    replaced = superseded_rows([a.key() for a in answers], [a.labelled_at for a in answers])
    return {a.key(): a for i, a in enumerate(answers) if i not in replaced}
