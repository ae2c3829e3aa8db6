"""`loscat-hf` command line: one subcommand per step of the pipeline.

Each subcommand only parses arguments and calls the module that does the work; user errors
(LoscatError) print a message and exit 2, never a traceback. This module assembles the parser from one
module per command group (data, train, evaluate, infer, model, apps, hub) and runs it; the first line above
is the parser's description.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from loscat_hf import __version__
from loscat_hf.cli.apps import add_demo, add_label
from loscat_hf.cli.data import add_demo_data, add_prepare
from loscat_hf.cli.evaluate import add_calibrate, add_evaluate, add_evaluate_ensemble
from loscat_hf.cli.flags import command_flags
from loscat_hf.cli.hub import add_push, add_push_dataset, add_push_space
from loscat_hf.cli.infer import add_compare_backends, add_explain, add_link, add_predict
from loscat_hf.cli.model import add_convert_timm
from loscat_hf.cli.train import add_quickstart, add_train, train_command
from loscat_hf.errors import LoscatError

# One registrar per subcommand, in the order `loscat-hf --help` lists them (roughly the pipeline's).
_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_demo_data, add_prepare, add_train, add_evaluate, add_calibrate, add_quickstart, add_predict, add_link,
    add_push, add_push_dataset, add_explain, add_demo, add_push_space, add_label, add_evaluate_ensemble,
    add_convert_timm, add_compare_backends,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loscat-hf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"loscat-hf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _REGISTRARS:
        register(sub)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (a test's capture, a redirected stream), not the one at start."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _log_to_console() -> None:
    """loscat_hf's INFO messages (quickstart steps, training set-up, warnings) on stderr, plain text."""
    logger = logging.getLogger("loscat_hf")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _process() -> str:
    """Which process speaks, under `accelerate launch` with several (each may say its own error)."""
    from loscat_hf.infer.shards import position

    index, count = position()
    return f" (process {index} of {count})" if count > 1 else ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = None
    try:
        _log_to_console()
        if argv[:1] == ["train"]:  # all of TrainingArguments, HfArgumentParser style (training/parse.py)
            return train_command(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except LoscatError as exc:  # the API's message names parameters; a command-line user reads their flags
        flags = command_flags(argv[0] if argv else None, parser or build_parser())
        print(f"loscat-hf: error{_process()}: {exc.cli_message(flags)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loscat-hf: interrupted", file=sys.stderr)
        return 130
