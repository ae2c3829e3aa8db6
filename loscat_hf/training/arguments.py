"""`loscat-hf train` arguments: loscat's own options, the task's TrainingArguments defaults, --help.

torch and transformers are imported only where needed: `train_help()` (`loscat-hf train --help`) runs
without them (0.1 s instead of ~4 s). Parsing them (`parse_train_args`, `train_arguments`, --config) is in
training/parse.py, which imports transformers so that its annotations resolve.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING

from loscat_hf.defaults import BASE_MODEL
from loscat_hf.hardware import default_workers

if TYPE_CHECKING:
    from transformers import HfArgumentParser

logger = logging.getLogger(__name__)


@dataclass
class LoscatArguments:
    """loscat-specific options; every TrainingArguments field is accepted too (`--help-all` lists all)."""

    dataset: str | None = field(default=None, metadata={
        "help": "packed dataset folder (loscat-hf prepare --out)"})
    model: str = field(default=BASE_MODEL,
                       metadata={"help": "Hub id, local model folder, or preset: tiny, vit-base-384-random"})
    taxonomy: str | None = field(default=None, metadata={
        "help": "taxonomy JSON (default: 18 sites -> 12 classes)"})
    image_size: int | None = field(default=None, metadata={"help": "input size, presets only"})
    sampling_power: float = field(default=1.0, metadata={
        "help": "class balance of the sampler: weight = freq**-power; 0 = plain shuffling, 1 = full balance"})
    phase1_epochs: float = field(default=1.0, metadata={"help": "epochs that train only the head (0 = none)"})
    phase1_trainable_blocks: int = field(default=0, metadata={
        "help": "last encoder blocks also trained in phase 1"})
    layer_decay: float = field(default=0.75, metadata={
        "help": "phase 2 layer-wise LR decay: block k of L gets lr * decay**(L+1-k); 1 = one LR for all"})
    augment: bool = field(default=True, metadata={
        "help": "training augmentation on/off (random crop, rotation, colour jitter, flip; each set below)"})
    hflip: float = field(default=0.5, metadata={
        "help": "probability of a horizontal flip (0 where flipping changes a label: sides, text, digits)"})
    max_rotation: float = field(default=15.0, metadata={
        "help": "random rotation up to this many degrees (0 = none)"})
    color_jitter: float = field(default=0.2, metadata={
        "help": "brightness, contrast and saturation vary by up to this share (0 = none)"})
    crop_scale: float = field(default=0.55, metadata={
        "help": "random crops keep at least this share of the photo's area (1 = no crop: the whole photo)"})
    resume: bool = field(default=False, metadata={
        "help": "resume from the last checkpoint in --output-dir (refused if it is another dataset's, "
                "taxonomy's, task's or problem type's, or if its best checkpoint lies outside --output-dir)"})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "train into a non-empty --output-dir, deleting the outputs of the run it holds "
                "(checkpoint-*, model files, eval/, runs/, train_summary.json, the README.md card; "
                "nothing else)"})
    max_train_samples: int | None = field(default=None, metadata={
        "help": "cap the training set (quick runs)"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "cap the validation set"})
    task: str = field(default="regions", metadata={
        "help": "regions (region head only) or scores (region head + LoSCAT score heads; needs "
                "prepare --scores)"})
    score_weight: float = field(default=1.0, metadata={"help": "--task scores: weight of the score loss"})
    problem_type: str | None = field(default=None, metadata={
        "help": "single_label_classification (one region per photo: softmax) or multi_label_classification "
                "(photos that show several regions: a sigmoid per class, per-class thresholds); default: "
                "multi-label on a multi-region dataset (prepare --multi-region, or region cells naming "
                "several sites), else single-label. --task scores is single-label"})
    config: str | None = field(default=None, metadata={
        "help": "JSON/YAML file with any of these arguments; the command line overrides it"})


# Defaults for this task; any of them can still be set on the command line or in --config. The optimizer is
# transformers' default (fused AdamW with torch >= 2.8); bf16 is switched on where the GPU supports it. A
# worker crops ~140 photos/s at 384 px (scripts/benchmark.py input): 16 feed the 1,000+ images/s that a
# ViT-B/16-384 should reach on one H100 in bf16.
TASK_DEFAULTS: dict = dict(
    num_train_epochs=10, learning_rate=2e-4, weight_decay=0.05, warmup_steps=0.05,
    per_device_train_batch_size=32, per_device_eval_batch_size=64, label_smoothing_factor=0.1,
    eval_strategy="epoch", save_strategy="epoch", save_total_limit=2, load_best_model_at_end=True,
    metric_for_best_model="macro_f1", greater_is_better=True, logging_steps=10, report_to="none",
    remove_unused_columns=False, dataloader_num_workers=default_workers(16),
    dataloader_persistent_workers=True, seed=42,
)


# The recipe of a randomly initialised preset (`--model tiny`, `vit-base-384-random`): from scratch there are
# no pretrained features to protect, so no head-only phase, one learning rate for all layers, and a
# from-scratch rate. With the fine-tuning recipe (lr 2e-4, a head-only epoch on random features) a preset
# learned much less: docs/training.md "Two recipes" has the measurements. Any of them can still be set
# explicitly.
SCRATCH_DEFAULTS: dict = dict(learning_rate=1e-3, phase1_epochs=0.0, layer_decay=1.0)


def recipe_of(model: str) -> str:
    """"from scratch" for the random-init presets, else "fine-tuning" (a pretrained Hub id or folder)."""
    from loscat_hf.model.build import PRESETS

    return "from scratch" if model in PRESETS else "fine-tuning"


def problem_type_of(largs: LoscatArguments) -> str:
    """The run's transformers problem type: `problem_type` when given, else what the dataset holds
    (multi-label on a multi-region dataset). `--task scores` is single-label: its score heads are one
    region's scores, so it trains on the photos that show one region (a LoscatError when multi-label is
    asked for)."""
    from loscat_hf.data.dataset import MULTI_LABEL, PROBLEM_TYPES, SINGLE_LABEL, is_multi_region
    from loscat_hf.errors import LoscatError

    if largs.problem_type not in (None, *PROBLEM_TYPES):
        raise LoscatError(f"problem_type must be one of {', '.join(PROBLEM_TYPES)} (or unset: follow the "
                          f"dataset), got {largs.problem_type!r}", param="problem_type")
    if largs.task == "scores":
        if largs.problem_type == MULTI_LABEL:
            raise LoscatError("problem_type multi_label_classification does not go with task 'scores' (score "
                              "heads score one region): train task 'scores' single-label, on the photos that "
                              "show one region", param=("problem_type", "task"))
        return SINGLE_LABEL
    if largs.problem_type:
        return largs.problem_type
    return MULTI_LABEL if largs.dataset and is_multi_region(largs.dataset) else SINGLE_LABEL


def gpu_supports_bf16() -> bool:
    """The default of --bf16: on where a CUDA GPU has bf16 units (Ampere and newer)."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _full_parser() -> HfArgumentParser:
    """HfArgumentParser over (LoscatArguments, TrainingArguments), every option, with this task's defaults."""
    from transformers import HfArgumentParser, TrainingArguments

    parser = HfArgumentParser((LoscatArguments, TrainingArguments), prog="loscat-hf train")
    # bf16 is a default, not a patch after parsing: TrainingArguments.__post_init__ turns bf16 into
    # `mixed_precision`, which is what the Trainer's Accelerator autocasts by. Setting `targs.bf16` after
    # parsing (as before) reported bf16 but trained in fp32: ViT-B/16-384 at 115 images/s on an H200.
    parser.set_defaults(**TASK_DEFAULTS, bf16=gpu_supports_bf16())
    return parser


# `loscat-hf train --help`: the TrainingArguments most runs set, one line each (`--help-all` lists all 114).
COMMON_TRAINING_OPTIONS: dict[str, str] = {
    "output_dir": "folder for the checkpoints, the final model and its eval/ report",
    "num_train_epochs": "epochs to train",
    "max_steps": "stop after this many optimizer steps instead (-1: --num-train-epochs decides)",
    "learning_rate": "peak learning rate of the head; earlier blocks get less with --layer-decay",
    "lr_scheduler_type": "learning-rate schedule after the warm-up: linear, cosine, constant, ...",
    "warmup_steps": "linear warm-up: a number of steps, or a fraction of all steps when below 1",
    "weight_decay": "AdamW weight decay (biases and norms excluded)",
    "per_device_train_batch_size": "training photos per batch and device",
    "per_device_eval_batch_size": "validation photos per batch and device",
    "gradient_accumulation_steps": "batches whose gradients add up before each optimizer step",
    "label_smoothing_factor": "label smoothing of the cross-entropy loss",
    "bf16": "bfloat16 mixed precision",
    "use_cpu": "train on the CPU even where a GPU is present",
    "seed": "random seed (head initialisation, sampler, augmentation)",
    "eval_strategy": "when to validate: no, steps or epoch",
    "save_strategy": "when to write a checkpoint: no, steps, epoch or best",
    "save_total_limit": "checkpoints kept in --output-dir (the best one is always kept)",
    "load_best_model_at_end": "end with the weights of the best checkpoint by --metric-for-best-model",
    "metric_for_best_model": "validation metric that picks the best checkpoint",
    "logging_steps": "log the training loss every this many steps",
    "dataloader_num_workers": "processes that decode and crop the photos",
    "report_to": "where to log: none, tensorboard, wandb, mlflow, all, ...",
    "resume_from_checkpoint": "a checkpoint folder to resume from (--resume picks the last one in "
                              "--output-dir)",
}
# TrainingArguments' own defaults of the common options that TASK_DEFAULTS leaves alone, written out so that
# the short help needs no transformers import (tests/test_trainer_hooks.py checks them against what parsing
# gives).
_UPSTREAM_DEFAULTS: dict = dict(max_steps=-1, lr_scheduler_type="linear", gradient_accumulation_steps=1,
                                use_cpu=False, resume_from_checkpoint=None)
_SHOWN_DEFAULTS: dict = dict(
    output_dir="required", bf16="on where the GPU supports bf16",
    dataloader_num_workers=f"{TASK_DEFAULTS['dataloader_num_workers']} here: the usable CPU cores but "
                           "one, at most 16")
_METAVARS = {"dataset": "DIR", "output_dir": "DIR", "resume_from_checkpoint": "DIR", "model": "ID|DIR",
             "taxonomy": "FILE", "config": "FILE", "task": "{regions,scores}",
             "problem_type": "{single_label_classification,multi_label_classification}",
             "eval_strategy": "{no,steps,epoch}", "save_strategy": "{no,steps,epoch,best}",
             "bf16": "{true,false}", "use_cpu": "{true,false}", "load_best_model_at_end": "{true,false}"}


def _short_help() -> str:
    parser = argparse.ArgumentParser(
        prog="loscat-hf train", add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="loscat-hf train --dataset DIR --output-dir DIR [options]",
        description="Fine-tune a ViT on a packed dataset (loscat-hf prepare) with the Hugging Face Trainer.\n"
                    "Options take either spelling (--learning-rate, --learning_rate); --config FILE sets any "
                    "of them.",
        epilog="loscat-hf train --help-all lists every TrainingArguments option (about 650 lines).")

    def add(group: argparse._ArgumentGroup, name: str, text: str, default: object, kind: str) -> None:
        metavar = _METAVARS.get(name) or {"bool": "{true,false}", "int": "N", "float": "X"}.get(kind, "TEXT")
        if name in SCRATCH_DEFAULTS:  # the recipe depends on --model
            text = f"{text} (default: {default}; {SCRATCH_DEFAULTS[name]} for the random-init presets)"
        elif "(default:" not in text:
            text = f"{text} (default: {default})"
        group.add_argument("--" + name.replace("_", "-"), metavar=metavar, help=text.replace("%", "%%"))

    own = parser.add_argument_group("loscat options")
    for f in fields(LoscatArguments):
        kind = str(f.type).split(" |")[0]  # "int | None" -> int (annotations are strings here)
        add(own, f.name, f.metadata.get("help", ""), None if f.default is MISSING else f.default, kind)
    common = parser.add_argument_group("common TrainingArguments, with the defaults of loscat-hf train")
    for name, text in COMMON_TRAINING_OPTIONS.items():
        value = TASK_DEFAULTS.get(name, _UPSTREAM_DEFAULTS.get(name))
        add(common, name, text, _SHOWN_DEFAULTS.get(name, value), type(value).__name__)
    return parser.format_help()


def augment_config(largs: LoscatArguments):
    """The AugmentConfig of --hflip, --max-rotation, --color-jitter and --crop-scale; None with --augment
    false."""
    from loscat_hf.model.transforms import AugmentConfig

    if not largs.augment:
        return None
    return AugmentConfig(scale=(largs.crop_scale, 1.0), max_rotation=largs.max_rotation, hflip=largs.hflip,
                         brightness=largs.color_jitter, contrast=largs.color_jitter,
                         saturation=largs.color_jitter)


def train_help(full: bool = False) -> str:
    """`loscat-hf train --help`: loscat's options and the common TrainingArguments with this command's
    defaults, built without importing torch or transformers; `full` (`--help-all`): HfArgumentParser's help
    of every option."""
    return (_full_parser().format_help() if full else _short_help()).rstrip("\n")
