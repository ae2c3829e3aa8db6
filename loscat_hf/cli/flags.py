"""A LoscatError's parameters as the command line's flags.

The Python API's messages name parameters (`images 'x' does not exist`, `pass overwrite=True`) and say which
in `LoscatError(..., param=...)`; `main` prints `exc.cli_message(command_flags(...))`, which names the flags
instead (`--images 'x' does not exist`, `... (--overwrite)`). A subcommand's option dests are therefore the
parameter names of the function it calls: `add_argument("--patients", dest="n_patients", metavar="PATIENTS")`.
"""

from __future__ import annotations

import argparse


def option_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's dest -> its flag, e.g. {"n_patients": "--patients"}; of several spellings the dashed one
    (`--output-dir`, not `--output_dir`), of an on/off pair the one that changes the default (`--augment`,
    not `--no-augment`, where augmentation is off by default; `--public`, not `--private`, for `private`)."""
    flags: dict[str, str] = {}

    def keeps_default(action: argparse.Action) -> bool:  # e.g. --private when private=True is the default
        switches = argparse._StoreConstAction | argparse._StoreTrueAction | argparse._StoreFalseAction
        is_switch = isinstance(action, switches)
        return is_switch and action.const == parser.get_default(action.dest)

    for action in sorted(parser._actions, key=keeps_default):
        spellings = [s for s in action.option_strings if s.startswith("--")]
        if spellings and action.dest != argparse.SUPPRESS:
            flags.setdefault(action.dest, min(spellings, key=lambda s: ("_" in s, len(s))))
    return flags


def command_flags(command: str | None, parser: argparse.ArgumentParser) -> dict[str, str]:
    """The flags of the subcommand `command` of `parser` (`loscat-hf`'s), by parameter name; {} for none."""
    try:
        if command == "train":  # HfArgumentParser: every LoscatArguments and TrainingArguments field
            from loscat_hf.training.arguments import _full_parser

            return option_flags(_full_parser())
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return option_flags(sub.choices[command]) if command in sub.choices else {}
    except Exception:  # noqa: BLE001 - naming the flag must never hide the user's error behind another
        return {}


def add_review_thresholds(p: argparse.ArgumentParser) -> None:
    """--min-confidence / --min-margin: when an answer is flagged needs_review (`predict`, `calibrate`)."""
    from loscat_hf.defaults import MIN_CONFIDENCE, MIN_MARGIN

    p.add_argument("--min-confidence", type=float, default=None,
                   help=f"flag needs_review below this top-1 probability (default {MIN_CONFIDENCE:g})")
    p.add_argument("--min-margin", type=float, default=None,
                   help=f"flag needs_review when top-1 minus top-2 probability is below this (default "
                   f"{MIN_MARGIN:g})")
