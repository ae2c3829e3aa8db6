"""User-facing errors: the CLI prints their message, never a traceback."""


class LoscatError(Exception):
    """A problem with the user's input or environment that they can fix."""
