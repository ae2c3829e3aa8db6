"""User-facing errors and problem records: the CLI prints their message, never a traceback."""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass


class LoscatError(Exception):
    """A problem with the user's input or environment that they can fix.

    The message speaks of the Python API's parameters, never of command-line flags: a message about one
    parameter starts with its name (`images 'x' does not exist`), a fix names it as a Python call does
    (`pass overwrite=True to replace it`). `param` names the parameter(s) to change, so that the CLI can name
    the flag instead (`cli_message`): `LoscatError(f"images '{root}' does not exist", param="images")`.
    """

    def __init__(self, message: str = "", *, param: str | Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.params: tuple[str, ...] = (param,) if isinstance(param, str) else tuple(param or ())

    def cli_message(self, flags: Mapping[str, str]) -> str:
        """The message for a command-line user; `flags` maps parameter names to the command's flags.

        A leading parameter name becomes its flag (`--images 'x' does not exist`); the flags of the other
        parameters are appended (`... pass overwrite=True to replace it (--overwrite)`). A parameter without
        a flag in `flags` (a Python-only one) leaves the message as it is.
        """
        message = str(self)
        named = [p for p in self.params if flags.get(p)]
        if named and named[0] == self.params[0] and message.startswith((f"{named[0]} ", f"{named[0]}:")):
            message = flags[named[0]] + message[len(named[0]):]
            named = named[1:]
        if named:
            message = f"{message} ({', '.join(flags[p] for p in named)})"
        return message


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
