"""`parse_train_args()` and `train_arguments()`: the task defaults, then --config, then Python options, then
the command line -> (LoscatArguments, TrainingArguments).

This module imports transformers (and torch) when it is imported, so that the annotations of its functions
resolve (`typing.get_type_hints`); the torch-free parts of `loscat-hf train` (`train --help`,
LoscatArguments, the defaults) are in training/arguments.py.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import TrainingArguments

from loscat_hf.defaults import BASE_MODEL
from loscat_hf.errors import LoscatError
from loscat_hf.training.arguments import (
    SCRATCH_DEFAULTS,
    LoscatArguments,
    _full_parser,
    problem_type_of,
    recipe_of,
)


def _read_config(path: str) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LoscatError(f"config {path} cannot be read ({exc.strerror})", param="config") from None
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise LoscatError(f"config {path} does not parse: {exc}", param="config") from None
    if not isinstance(data, dict):
        raise LoscatError(f"config {path} must hold a mapping of argument names to values", param="config")
    return {k.replace("-", "_"): v for k, v in data.items()}


def train_arguments(**options: object) -> tuple[LoscatArguments, TrainingArguments]:
    """The arguments `loscat-hf train` would build, from Python: the task defaults, then `options` (any loscat
    or TrainingArguments field, e.g. `train_arguments(dataset="ds", output_dir="m", model="tiny",
    num_train_epochs=3)`), checked exactly like the command line."""
    return parse_train_args([], options=options)


def parse_train_args(argv: Sequence[str],
                     options: dict | None = None) -> tuple[LoscatArguments, TrainingArguments]:
    """HfArgumentParser over (LoscatArguments, TrainingArguments): task defaults, then --config, then
    `options` (from Python), then argv."""
    parser = _full_parser()
    # pinning is for host-to-GPU copies (on CPU it only warns); a default, so --dataloader-pin-memory
    # still wins
    parser.set_defaults(dataloader_pin_memory=torch.cuda.is_available())
    # a bad value is the user's: LoscatError (one line, exit 2), not a usage dump
    parser.exit_on_error = False
    argv, options = list(argv), dict(options or {})
    # --config and --output-dir are looked at before the real parse: the config's values become defaults that
    # options and the command line override (argparse finds either spelling: --config FILE, --config=FILE)
    pre = argparse.ArgumentParser(prog="loscat-hf train", add_help=False, exit_on_error=False)
    pre.add_argument("--config")
    pre.add_argument("--output-dir", "--output_dir", dest="output_dir")
    pre.add_argument("--model")
    try:
        early = pre.parse_known_args(argv)[0]
    except argparse.ArgumentError as exc:
        raise LoscatError(f"train: {exc}") from None
    cfg_path = early.config or options.get("config")
    cfg = _read_config(cfg_path) if cfg_path else {}
    model = early.model or options.get("model") or cfg.get("model") or BASE_MODEL
    if recipe_of(str(model)) == "from scratch":  # defaults only: --config, options and argv still override
        parser.set_defaults(**SCRATCH_DEFAULTS)
    if cfg_path:
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise LoscatError(f"config {cfg_path} has unknown arguments: {', '.join(unknown)}",
                              param="config")
        parser.set_defaults(**cfg)
    if not (early.output_dir or options.get("output_dir") or cfg.get("output_dir")):
        raise LoscatError("output_dir is required: the folder the model, its checkpoints and report go to",
                          param="output_dir")
    if options:
        unknown = sorted(set(options) - {a.dest for a in parser._actions})
        if unknown:
            raise LoscatError(f"unknown training arguments: {', '.join(unknown)} "
                              f"(see `loscat-hf train --help-all`)")
        parser.set_defaults(**options)
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # `accelerate launch --multi_gpu` / torchrun on a machine without GPUs: DDP over gloo on CPU. Without
        # this, TrainingArguments sets up no process group and every process trains alone on all the data.
        os.environ["ACCELERATE_USE_CPU"] = "true"
    try:
        largs, targs = parser.parse_args_into_dataclasses(args=argv)
    except (ValueError, argparse.ArgumentError) as exc:  # unknown flags, bad values: the user's, not a crash
        raise LoscatError(f"train: {exc}") from None
    if not largs.dataset:
        raise LoscatError("dataset is required (a folder written by `loscat-hf prepare`)", param="dataset")
    if largs.task not in ("regions", "scores"):
        raise LoscatError(f"task must be 'regions' or 'scores', got {largs.task!r}", param="task")
    if largs.problem_type is not None:
        # a bad value, or multi-label with task scores, is refused before anything runs (an explicit value
        # never reads the dataset)
        problem_type_of(largs)
    if not (0.0 <= largs.sampling_power <= 1.0):
        raise LoscatError("sampling_power must be between 0 (none) and 1 (full balance)",
                          param="sampling_power")
    for name, lo, hi in (("hflip", 0, 1), ("max_rotation", 0, 180), ("color_jitter", 0, 1),
                         ("crop_scale", 0.05, 1)):
        if not (lo <= getattr(largs, name) <= hi):
            raise LoscatError(f"{name} must be between {lo} and {hi}, got {getattr(largs, name)}", param=name)
    if targs.dataloader_num_workers == 0:
        targs.dataloader_persistent_workers = False  # persistent workers need workers
    return largs, targs
