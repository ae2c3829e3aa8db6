"""The answer file of `loscat-hf label`: one CSV row per answer, appended and fsynced, never rewritten.

A killed app loses nothing it has confirmed: each answer is one `write()` followed by `fsync` before the
rater sees the next photo. Several app processes (raters) may append to one file at once: every row is
written under an exclusive lock of the file (`fcntl.flock`; on systems without it, only threads of one
process are serialised: run one app per file there), so rows are never lost or interleaved. A changed
answer is a new row; readers (`read_answers`, and `prepare --annotations` through the `labelled_at` column)
keep the latest per (image, rater). Cells go through `csvsafe` (a file named `=x.jpg` is not a formula).
The file holds patient ids: it is created readable by its owner only, and belongs with the private data.

A file name may hold a comma, a quote or a line break: its cell is quoted and may span lines. A crash can cut
a row anywhere, inside such a cell too. The next append closes what the cut left open (`_after_a_cut_row`),
and `read_answers` re-reads from the line after any damaged record, so no cut hides the answers after it.
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
    """One CSV row. A cell with a carriage return is quoted too (every cell of that row): csv quotes only
    for the line terminator's characters, and an unquoted CR ends the record for every CSV reader."""
    buf = io.StringIO()
    quoting = csv.QUOTE_ALL if any("\r" in str(v) for v in values) else csv.QUOTE_MINIMAL
    SafeWriter(buf, lineterminator="\n", quoting=quoting).writerow(values)
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
                with open(self.path, "rb") as fh:
                    head = fh.read(1 << 13)
                if b"\x00" in head:  # a workbook or other binary file
                    raise UnicodeDecodeError("utf-8", head, head.index(b"\x00"), len(head), "binary data")
                # the header line only: a row a crash cut further on may hold a character cut in two
                header = next(csv.reader([head.split(b"\n", 1)[0].decode("utf-8-sig")]), [])
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
    """What to write before a new row so that it starts a record of its own: nothing after a complete row;
    after a row a crash cut off, a line end, with a closing quote first if the cut was inside a quoted cell
    (else the reader would take the new row as the rest of that cell). The cut row stays, short of fields:
    readers drop it.

    Inside a quoted cell or not is the parity of the quote characters of the whole file (the writer puts
    them only around quoted cells and doubles those inside): the last line alone does not tell, as a cut
    inside a quoted multi-line file name can leave a last line with no quote at all."""
    quotes, offset, tail = 0, 0, b""
    while offset < size:
        if hasattr(os, "pread"):
            chunk = os.pread(fd, min(1 << 20, size - offset), offset)
        else:  # Windows: no pread; appends go to the end whatever the position
            os.lseek(fd, offset, os.SEEK_SET)
            chunk = os.read(fd, min(1 << 20, size - offset))
        if not chunk:
            break
        quotes, offset, tail = quotes + chunk.count(b'"'), offset + len(chunk), (tail + chunk)[-4:]
    if quotes % 2:
        return _finish_utf8(tail) + b'"\n'
    return b"" if tail.endswith(b"\n") else _finish_utf8(tail) + b"\n"


def _finish_utf8(tail: bytes) -> bytes:
    """Bytes that complete a UTF-8 character a cut left unfinished at the end of the file (b"" if none): one
    broken character would make a UTF-8 reader refuse the whole file, and `prepare` read it as cp1252."""
    start = tail.lstrip(bytes(range(0x80, 0xC0)))  # from the last character's first byte
    try:
        start.decode("utf-8")
        return b""
    except UnicodeDecodeError:
        pass
    for n in (1, 2, 3):
        for first in (0x80, 0x90, 0xA0):  # the second byte's range depends on the first
            filler = bytes([first]) + b"\x80" * (n - 1)
            try:
                (start + filler).decode("utf-8")
                return filler
            except UnicodeDecodeError:
                continue
    return b""


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
    """The complete rows of a label file in file order; [] when it does not exist yet."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        # a character a crash cut in two decodes as U+FFFD inside its (dropped) record
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
            rows = complete_records(fh.read(), len(LABEL_COLUMNS))
    except OSError as exc:
        raise LoscatError(f"cannot read the label file {path}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    return [Answer(*(read_cell(v) for v in row)) for row in rows[1:]]


def complete_records(text: str, fields: int) -> list[list[str]]:
    """The CSV records of `text` that have `fields` cells, however the ones around them were cut.

    A damaged record (another number of cells: a row a crash cut off, or one an open quote ran on into the
    rows after it) is dropped, and reading goes on from the line after its first line: an answer written
    after a cut is read even where the file was never repaired (by an older loscat-hf, or a cut that no
    append followed)."""
    lines = text.split("\n")
    lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    records, start = [], 0
    while start < len(lines):
        used = 0

        def feed(first: int = start):
            nonlocal used
            for line in lines[first:]:
                used += 1
                yield line

        try:
            row = next(csv.reader(feed()), None)
        except csv.Error:  # e.g. a NUL byte: this record is damaged
            row = None
        if row is not None and len(row) == fields:
            records.append(row)
            start += used
        else:
            start += 1
    return records


def latest_answers(answers: list[Answer]) -> dict[tuple[str, str], Answer]:
    """(image, rater) -> that rater's latest answer for the photo: `prepare`'s rule (`superseded_rows`)."""
    replaced = superseded_rows([a.key() for a in answers], [a.labelled_at for a in answers])
    return {a.key(): a for i, a in enumerate(answers) if i not in replaced}
