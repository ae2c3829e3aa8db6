"""User-facing errors and problem records: the CLI prints their message, never a traceback."""

from dataclasses import asdict, dataclass


class LoscatError(Exception):
    """A problem with the user's input or environment that they can fix."""



@dataclass(frozen=True)
class Problem:
    """One thing left out, and why: shown in the console summary and kept in the reports.

    `kind` is a short stable key (e.g. "missing_image", "unknown_region", "tie") used to count problems
    by reason; `source` is the file (CSV or image) and `row` the 1-based CSV data row when there is one.
    """

    kind: str
    source: str
    reason: str
    row: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)
