"""`loscat-hf train` arguments: loscat's own options, the task's TrainingArguments defaults, --config."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainingArguments

from loscat_hf.errors import LoscatError
from loscat_hf.hardware import default_workers

logger = logging.getLogger(__name__)

@dataclass
class LoscatArguments:
    """loscat-specific options; every TrainingArguments field is accepted too (`--help` lists all)."""

    dataset: str | None = field(default=None, metadata={"help": "packed dataset folder (loscat-hf prepare --out)"})
    model: str = field(default="google/vit-base-patch16-384",
                       metadata={"help": "Hub id, local model folder, or preset: tiny, vit-base-384-random"})
    taxonomy: str | None = field(default=None, metadata={"help": "taxonomy JSON (default: 18 sites -> 12 classes)"})
    image_size: int | None = field(default=None, metadata={"help": "input size, presets only"})
    sampling_power: float = field(default=1.0, metadata={
        "help": "class balance of the sampler: weight = freq**-power; 0 = plain shuffling, 1 = full balance"})
    phase1_epochs: float = field(default=1.0, metadata={"help": "epochs that train only the head (0 = none)"})
    phase1_trainable_blocks: int = field(default=0, metadata={
        "help": "last encoder blocks also trained in phase 1"})
    layer_decay: float = field(default=0.75, metadata={
        "help": "phase 2 layer-wise LR decay: block k of L gets lr * decay**(L+1-k); 1 = one LR for all"})
    augment: bool = field(default=True, metadata={"help": "random crop, rotation, colour jitter, flip"})
    resume: bool = field(default=False, metadata={
        "help": "resume from the last checkpoint in --output-dir (refused if it is another dataset's, taxonomy's "
                "or task's, or if its best checkpoint lies outside --output-dir)"})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "train into a non-empty --output-dir, deleting the outputs of the run it holds (checkpoint-*, "
                "model files, eval/, runs/, train_summary.json; nothing else)"})
    max_train_samples: int | None = field(default=None, metadata={"help": "cap the training set (quick runs)"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "cap the validation set"})
    task: str = field(default="regions", metadata={
        "help": "regions (region head only) or scores (region head + LoSCAT score heads; needs prepare --scores)"})
    score_weight: float = field(default=1.0, metadata={"help": "--task scores: weight of the score loss"})
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

def _read_config(path: str) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LoscatError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise LoscatError(f"config {path} does not parse: {exc}") from None
    if not isinstance(data, dict):
        raise LoscatError(f"config {path} must hold a mapping of argument names to values")
    return {k.replace("-", "_"): v for k, v in data.items()}

def gpu_supports_bf16() -> bool:
    """The default of --bf16: on where a CUDA GPU has bf16 units (Ampere and newer)."""
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())

def parse_train_args(argv: Sequence[str]) -> tuple[LoscatArguments, TrainingArguments]:
    """HfArgumentParser over (LoscatArguments, TrainingArguments), task defaults, then --config, then argv."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser((LoscatArguments, TrainingArguments), prog="loscat-hf train")
    # bf16 is a default, not a patch after parsing: TrainingArguments.__post_init__ turns bf16 into
    # `mixed_precision`, which is what the Trainer's Accelerator autocasts by. Setting `targs.bf16` after
    # parsing (as before) reported bf16 but trained in fp32: ViT-B/16-384 at 115 images/s on an H200.
    parser.set_defaults(**TASK_DEFAULTS, bf16=gpu_supports_bf16())
    argv = list(argv)
    cfg_path = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"), None)
    if cfg_path:
        cfg = _read_config(cfg_path)
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise LoscatError(f"config {cfg_path} has unknown arguments: {', '.join(unknown)}")
        parser.set_defaults(**cfg)
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # `accelerate launch --multi_gpu` / torchrun on a machine without GPUs: DDP over gloo on CPU. Without
        # this, TrainingArguments sets up no process group and every process trains alone on all the data.
        os.environ["ACCELERATE_USE_CPU"] = "true"
    try:
        largs, targs = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as exc:  # unknown flags, bad values: the user's command line, not a crash
        raise LoscatError(f"train: {exc}") from None
    if not largs.dataset:
        raise LoscatError("--dataset is required (a folder written by `loscat-hf prepare`)")
    if largs.task not in ("regions", "scores"):
        raise LoscatError(f"--task must be 'regions' or 'scores', got {largs.task!r}")
    if not (0.0 <= largs.sampling_power <= 1.0):
        raise LoscatError("--sampling-power must be between 0 (none) and 1 (full balance)")
    explicit = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    if targs.dataloader_num_workers == 0:
        targs.dataloader_persistent_workers = False
    if "dataloader_pin_memory" not in explicit and not torch.cuda.is_available():
        targs.dataloader_pin_memory = False  # pinning is for host-to-GPU copies; on CPU it only warns
    return largs, targs
