"""Fine-tune an image classifier on a packed loscat dataset with the HF Trainer.

What the stock Trainer lacks, and this module adds:
- a class-balanced weighted sampler (`_get_train_sampler`), strength set by `--sampling-power`;
- a two-phase schedule (head first, then the whole model) by a callback, with layer-wise LR decay;
- uint8 batches normalised on the device;
- strict checkpoint loading: transformers 5.23 restores only the ViT head at `load_best_model_at_end`
  and at resume (PITFALLS); here both go through `from_pretrained` and a strict `load_state_dict`;
- one run per output folder: a non-empty `--output-dir` is refused unless `--resume` (which checks that the
  checkpoint belongs to this run) or `--overwrite-output-dir` (transformers 5 dropped that flag; it is ours).
  A run's identity (dataset fingerprint, taxonomy classes, task) travels in every checkpoint's config.json
  as `loscat_run`, written by `save_pretrained` together with the weights.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from loscat_hf.errors import LoscatError
from loscat_hf.hardware import default_workers
from loscat_hf.model.transforms import AugmentConfig, normalise

HEAD_PREFIXES = ("classifier", "score_heads")
RUN_KEY = "loscat_run"  # config.json attribute: which dataset, taxonomy and task a checkpoint was trained on
TRAINING_SPLITS = ("train", "validation")
# What a run writes into --output-dir besides checkpoint-*: --overwrite-output-dir removes exactly these (never
# other files a user keeps there), so the old run's model can never sit beside the new run's checkpoints.
RUN_OUTPUTS = ("config.json", "model.safetensors", "preprocessor_config.json", "training_args.bin",
               "train_summary.json", "eval", "runs")

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


def balanced_sample_weights(labels: Sequence[int], power: float = 1.0) -> torch.Tensor:
    """Per-sample weights freq(label)**-power: power 1 draws every class equally often."""
    counts = Counter(int(x) for x in labels)
    return torch.tensor([counts[int(x)] ** -power for x in labels], dtype=torch.double)


def _trainable_prefixes(model: torch.nn.Module, last_blocks: int) -> tuple[str, ...]:
    names = [n for n, _ in model.named_parameters()]
    blocks = sorted({int(m.group(1)) for n in names if (m := re.search(r"encoder\.layer\.(\d+)\.", n))})
    keep = list(HEAD_PREFIXES)
    if last_blocks > 0 and blocks:
        keep += [f"encoder.layer.{b}." for b in blocks[-last_blocks:]]
        keep += ["vit.layernorm."]
    return tuple(keep)


class TwoPhaseCallback(TrainerCallback):
    """Phase 1 trains the head (and optionally the last blocks); phase 2 the whole model.

    Freezing happens in on_train_begin, after the optimizer was built with every parameter (PITFALLS):
    frozen parameters get no gradient, AdamW skips them, and they join in once unfrozen.
    """

    def __init__(self, phase1_epochs: float, trainable_blocks: int = 0) -> None:
        self.phase1_epochs = phase1_epochs
        self.trainable_blocks = trainable_blocks
        self.frozen = False

    def _set(self, model: torch.nn.Module, frozen: bool) -> None:
        keep = _trainable_prefixes(model, self.trainable_blocks)
        for name, param in model.named_parameters():
            param.requires_grad_(not frozen or any(k in name for k in keep))
        self.frozen = frozen

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.phase1_epochs > 0 and (state.epoch or 0.0) < self.phase1_epochs:
            self._set(model, frozen=True)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.frozen and (state.epoch or 0.0) >= self.phase1_epochs - 1e-9:
            self._set(model, frozen=False)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.frozen:
            self._set(model, frozen=False)


def _layer_depth(name: str, n_layers: int) -> int:
    if m := re.search(r"encoder\.layer\.(\d+)\.", name):
        return int(m.group(1)) + 1
    if "embeddings" in name:
        return 0
    return n_layers + 1  # final layernorm, pooler, heads


def load_weights_strict(model: torch.nn.Module, checkpoint_dir: str) -> None:
    """Load a checkpoint's weights through from_pretrained (which renames legacy keys), strictly."""
    try:
        loaded = type(model).from_pretrained(checkpoint_dir)
        model.load_state_dict(loaded.state_dict(), strict=True)
    except RuntimeError as exc:  # another architecture or size (--model differs from the checkpoint's)
        raise LoscatError(f"the weights in {checkpoint_dir} do not fit this model "
                          f"({str(exc).splitlines()[0][:200]}); use the --model it was trained with") from None
    del loaded


class RegionTrainer(Trainer):
    """Trainer with balanced sampling, layer-wise LR, device-side normalisation and strict reloads."""

    def __init__(self, *args, sample_weights: torch.Tensor | None = None, layer_decay: float = 1.0,
                 image_mean: Sequence[float] = (0.5, 0.5, 0.5), image_std: Sequence[float] = (0.5, 0.5, 0.5),
                 augment: AugmentConfig | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sample_weights = sample_weights
        self.layer_decay = layer_decay
        self.augment = augment  # device-side flip/rotation/jitter of training batches (transforms.py)
        self._mean = torch.tensor(image_mean, dtype=torch.float32)
        self._std = torch.tensor(image_std, dtype=torch.float32)

    def _get_train_sampler(self, train_dataset=None):
        if self.sample_weights is None:
            return super()._get_train_sampler(train_dataset)
        generator = torch.Generator().manual_seed(self.args.seed)
        return torch.utils.data.WeightedRandomSampler(self.sample_weights, num_samples=len(self.sample_weights),
                                                      replacement=True, generator=generator)

    def create_optimizer(self, model=None):
        if self.optimizer is not None or self.layer_decay == 1.0 or self.optimizer_cls_and_kwargs is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        n_layers = getattr(opt_model.config, "num_hidden_layers", 0)
        decay_names = set(self.get_decay_parameter_names(opt_model))
        groups: dict[tuple[int, bool], dict] = {}
        for name, param in opt_model.named_parameters():
            if not param.requires_grad:
                continue
            depth = _layer_depth(name, n_layers)
            decay = name in decay_names
            group = groups.setdefault((depth, decay), {
                "params": [], "weight_decay": self.args.weight_decay if decay else 0.0,
                "lr": self.args.learning_rate * self.layer_decay ** (n_layers + 1 - depth)})
            group["params"].append(param)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(list(groups.values()), **optimizer_kwargs)
        return self.optimizer

    def _prepare_inputs(self, inputs):
        inputs = super()._prepare_inputs(inputs)
        pv = inputs.get("pixel_values")
        if pv is not None and pv.dtype == torch.uint8:
            augment = self.augment if self.model.training else None
            inputs["pixel_values"] = normalise(pv, self._mean.to(pv.device), self._std.to(pv.device), augment)
        return inputs

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        load_weights_strict(self.model if model is None else model, resume_from_checkpoint)

    def _load_best_model(self):
        load_weights_strict(self.model, self.state.best_model_checkpoint)


def load_packed_dataset(path: str, taxonomy, max_train: int | None = None, max_eval: int | None = None):
    """Load the imagefolder with plain `datasets`, typed by the features its card declares, and add integer
    `labels` in the taxonomy's order (the card's ClassLabel order may differ from a --taxonomy given now).
    """
    from datasets import load_dataset

    from loscat_hf.data.packing import METADATA_COLUMNS, card_features, dataset_features, split_metadata_file

    root = Path(path)
    train_meta = split_metadata_file(root / "train")
    if train_meta is None:
        raise LoscatError(f"{path} is not a packed dataset (no train/metadata.parquet); run `loscat-hf prepare` "
                          "first")
    features = card_features(root)
    if features is None and train_meta.suffix == ".csv":  # hand-made or older: the same schema, rebuilt
        with open(train_meta, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
        features = dataset_features(taxonomy.classes, [c for c in header if c not in METADATA_COLUMNS])
    ds = load_dataset("imagefolder", data_dir=str(root), features=features)  # parquet: its schema's features
    if "validation" not in ds or len(ds["validation"]) == 0:
        raise LoscatError(f"{path} has no validation photos; run `loscat-hf prepare` again with a --val-fraction "
                          "that leaves some patients for validation")
    names = ds["train"].features["label"].names
    label2id = taxonomy.label2id
    unknown = sorted(set(names) - set(label2id))
    if unknown:
        raise LoscatError(f"dataset labels {unknown} are not classes of the taxonomy {taxonomy.name}")
    ds = ds.map(lambda b: {"labels": [label2id[names[x]] for x in b["label"]]}, batched=True)
    if max_train:
        ds["train"] = ds["train"].shuffle(seed=0).select(range(min(max_train, len(ds["train"]))))
    if max_eval:
        ds["validation"] = ds["validation"].select(range(min(max_eval, len(ds["validation"]))))
    return ds


def check_packed_files(path: str | os.PathLike) -> None:
    """Every photo that train/ and validation/ list exists, and validation is not empty: a one-line error
    before anything is loaded or written (datasets would drop or fail on it in the middle of the run)."""
    from loscat_hf.data.packing import read_split_metadata, split_metadata_file

    root = Path(path)
    if split_metadata_file(root / "train") is None:
        return  # not a packed dataset at all: load_packed_dataset says so
    for split in TRAINING_SPLITS:
        meta = split_metadata_file(root / split)
        if meta is None:
            raise LoscatError(f"{root} has no validation split ({root / split} has no metadata): training needs "
                              "one to pick the best checkpoint; re-run `loscat-hf prepare` with a --val-fraction "
                              "above 0")
        rows = read_split_metadata(root / split)
        if not rows:
            raise LoscatError(f"{meta} lists no photos: training needs a non-empty {split} split; re-run "
                              "`loscat-hf prepare` with more patients or a larger --val-fraction")
        missing = [(i, row.get("file_name") or "") for i, row in enumerate(rows, start=1)
                   if not row.get("file_name") or not (meta.parent / row["file_name"]).is_file()]
        if missing:
            row, name = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise LoscatError(f"{meta} row {row} lists {name or '(no file_name)'}, which is not in {meta.parent}"
                              f"{more}; restore the photos or rebuild the dataset with `loscat-hf prepare --overwrite`")


def dataset_fingerprint(path: str | os.PathLike) -> str:
    """sha256 over the train and validation metadata files: which photos, labels and split a run used."""
    from loscat_hf.data.packing import split_metadata_file

    digest = hashlib.sha256()
    for split in TRAINING_SPLITS:
        meta = split_metadata_file(Path(path) / split)
        digest.update(split.encode() + b"\0")
        if meta is not None:
            digest.update(meta.read_bytes())
    return digest.hexdigest()


def run_identity(largs: LoscatArguments, taxonomy) -> dict:
    """What makes a checkpoint this run's: the data (fingerprint, not the path), the label ids, the task."""
    return {"dataset_sha256": dataset_fingerprint(largs.dataset), "taxonomy": taxonomy.name,
            "classes": list(taxonomy.classes), "task": largs.task}


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _best_inside(best: Path, out: Path) -> bool:
    """Whether trainer_state's best checkpoint is one of `out`'s. The Trainer writes it as output_dir/name,
    relative when --output-dir was: then it depends on the directory training ran in, so compare its last
    two parts (folder name, checkpoint name) instead of resolving it against today's working directory."""
    if best.is_absolute():
        return _inside(best, out)
    return best.parent.name == out.resolve().name and (out / best.name).is_dir()


def check_checkpoint(checkpoint: str | os.PathLike, out: Path, identity: dict) -> None:
    """Refuse to resume from a checkpoint that is not this run's, or whose best checkpoint is elsewhere."""
    ckpt = Path(checkpoint)
    cfg_path = ckpt / "config.json"
    try:
        recorded = json.loads(cfg_path.read_text(encoding="utf-8")).get(RUN_KEY)
    except (OSError, ValueError):
        raise LoscatError(f"--resume: {cfg_path} is missing or unreadable; train into a new --output-dir") from None
    if not isinstance(recorded, dict):
        raise LoscatError(f"--resume: {ckpt} does not record which dataset and taxonomy it was trained on (another "
                          "program or an older loscat-hf wrote it); train into a new --output-dir")
    if recorded.get("dataset_sha256") != identity["dataset_sha256"]:
        raise LoscatError(f"--resume: {ckpt} was trained on another dataset (train/validation metadata "
                          "differ); resume with the --dataset it was trained on, or train into a new --output-dir")
    if recorded.get("classes") != identity["classes"]:
        raise LoscatError(f"--resume: {ckpt} was trained with another taxonomy ({recorded.get('taxonomy')}: "
                          f"{', '.join(map(str, recorded.get('classes') or []))}); resume with that --taxonomy, "
                          "or train into a new --output-dir")
    if recorded.get("task") != identity["task"]:
        raise LoscatError(f"--resume: {ckpt} was trained for --task {recorded.get('task')}, not "
                          f"{identity['task']}; resume with that --task, or train into a new --output-dir")
    state_path = ckpt / "trainer_state.json"
    if state_path.is_file():
        try:
            best = json.loads(state_path.read_text(encoding="utf-8")).get("best_model_checkpoint")
        except ValueError:
            raise LoscatError(f"--resume: {state_path} does not parse; train into a new --output-dir") from None
        if best and not _best_inside(Path(best), out):
            raise LoscatError(f"--resume: {state_path} records the best checkpoint {best}, outside {out} (a copied "
                              "or another run's folder); refusing to load weights from there: train into a new "
                              "--output-dir")


def prepare_output_dir(largs: LoscatArguments, targs: TrainingArguments,
                       identity: dict) -> tuple[str | None, list[Path]]:
    """Check --output-dir before anything is built or written: (checkpoint to resume from, stale checkpoints).

    A non-empty folder holds another run: refused unless --resume (its last checkpoint must be this run's)
    or --overwrite-output-dir (then its checkpoint-* folders are returned, to be deleted once the dataset and
    model have loaded, so rotation and a later --resume never mix two runs). Without this the Trainer
    overwrote the other run's model and rotated its checkpoints away.
    """
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(targs.output_dir)
    resume = targs.resume_from_checkpoint
    if out.exists() and not out.is_dir():
        raise LoscatError(f"--output-dir {out} is a file; choose a folder")
    if largs.resume and largs.overwrite_output_dir:
        raise LoscatError("--resume continues the run in --output-dir, --overwrite-output-dir replaces it: pick one")
    if largs.resume:
        resume = get_last_checkpoint(str(out)) if out.is_dir() else None
        if resume is None:
            raise LoscatError(f"--resume: no checkpoint-* folder in {out}")
    if resume:
        check_checkpoint(resume, out, identity)
        return resume, []
    if not out.is_dir() or not any(out.iterdir()):
        return None, []
    if not largs.overwrite_output_dir:
        raise LoscatError(f"--output-dir {out} is not empty (another run's model or checkpoints?); pass --resume to "
                          "continue that run, --overwrite-output-dir to replace it, or choose a new folder")
    stale = [p for p in out.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return None, stale + [out / name for name in RUN_OUTPUTS if (out / name).exists()]


SUBGROUP_EXCLUDE = {"image", "file_name", "label", "labels", "site", "patient_id", "visit", "image_id"}


def subgroup_columns(split) -> list[str]:
    """Per-photo columns worth auditing (skin tone, age band, camera): low-cardinality strings."""
    cols = []
    for col in split.column_names:
        if col in SUBGROUP_EXCLUDE or col.startswith("score_"):
            continue
        values = split.unique(col)
        if 1 < len(values) <= 12 and all(isinstance(v, str) for v in values):
            cols.append(col)
    return cols


def build_trainer(largs: LoscatArguments, targs: TrainingArguments, taxonomy, ds=None) -> tuple[Trainer, object]:
    """The Trainer that `loscat-hf train` runs, and the (packed) dataset it trains on.

    Model, balanced sampler, transforms, two-phase callback and device-side normalisation all come from
    here, so scripts/benchmark.py times exactly the object the command trains with.
    """
    from loscat_hf.evaluation.metrics import compute_metrics_fn
    from loscat_hf.model.build import build_model_and_processor, processor_size
    from loscat_hf.model.transforms import ImageTransform, collate

    if ds is None:
        ds = load_packed_dataset(largs.dataset, taxonomy, largs.max_train_samples, largs.max_eval_samples)
    builder, trainer_cls, transform_cls, extra = build_model_and_processor, RegionTrainer, ImageTransform, {}
    if largs.task == "scores":  # region head + score heads: score_training.py supplies the differences
        from loscat_hf.model.score_heads import build_score_model
        from loscat_hf.train import score_training as st

        ds = st.add_score_targets(ds)
        builder, trainer_cls, transform_cls = build_score_model, st.ScoreTrainer, st.ScoreTransform
        extra = {"score_weight": largs.score_weight}
    model, processor = builder(largs.model, taxonomy, largs.image_size, seed=targs.seed)
    size = processor_size(processor)
    train_labels = ds["train"]["labels"]
    weights = balanced_sample_weights(train_labels, largs.sampling_power) if largs.sampling_power > 0 else None
    train_set = ds["train"].with_transform(transform_cls(size, train=largs.augment))
    eval_set = ds["validation"].with_transform(transform_cls(size, train=False))
    callbacks = [TwoPhaseCallback(largs.phase1_epochs, largs.phase1_trainable_blocks)] if largs.phase1_epochs else []
    if callbacks and targs.parallel_mode.name == "DISTRIBUTED":
        targs.ddp_find_unused_parameters = True  # frozen parameters produce no gradient in phase 1
    trainer = trainer_cls(
        model=model, args=targs, train_dataset=train_set, eval_dataset=eval_set, data_collator=collate,
        processing_class=processor, compute_metrics=compute_metrics_fn(list(taxonomy.classes)),
        callbacks=callbacks, sample_weights=weights, layer_decay=largs.layer_decay,
        image_mean=processor.image_mean, image_std=processor.image_std,
        augment=AugmentConfig() if largs.augment else None, **extra,
    )
    return trainer, ds


def run_training(largs: LoscatArguments, targs: TrainingArguments) -> dict:
    """Train, restore the best model, fit a temperature, save a standard model folder and its report."""
    from loscat_hf.evaluation.split_eval import evaluate_split
    from loscat_hf.model.calibration import CONFIG_KEY, fit_temperature
    from loscat_hf.taxonomy import load_taxonomy
    from loscat_hf.viz.plots import plot_training_curves

    taxonomy = load_taxonomy(largs.taxonomy)
    out = Path(targs.output_dir)
    check_packed_files(largs.dataset)  # before the output folder is touched: nothing half-written
    identity = run_identity(largs, taxonomy)
    resume, stale = prepare_output_dir(largs, targs, identity)
    trainer, ds = build_trainer(largs, targs, taxonomy)
    setattr(trainer.model.config, RUN_KEY, identity)  # saved into every checkpoint's config.json
    if stale and trainer.is_world_process_zero():
        logger.warning("--overwrite-output-dir: deleting the earlier run's model and %d file(s)/folder(s) in %s",
                       len(stale), out)
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    eval_set = trainer.eval_dataset
    train_labels = ds["train"]["labels"]
    counts = Counter(train_labels)
    if trainer.is_world_process_zero():
        print(f"training {largs.model} on {len(ds['train'])} photos "
              f"({', '.join(f'{taxonomy.classes[k]}={v}' for k, v in sorted(counts.items()))}), "
              f"validating on {len(ds['validation'])}; bf16={targs.bf16}, device={targs.device}")
    result = trainer.train(resume_from_checkpoint=resume)

    # Calibrate on validation: the temperature travels in config.json (plain transformers ignores it).
    pred = trainer.predict(eval_set)
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    temperature = fit_temperature(np.asarray(logits, dtype=np.float64), np.asarray(ds["validation"]["labels"]))
    setattr(trainer.model.config, CONFIG_KEY, float(temperature))
    trainer.model.config.loscat_best_checkpoint = (
        Path(trainer.state.best_model_checkpoint).name if trainer.state.best_model_checkpoint else None)
    trainer.save_model(str(out))
    summary = {"train_runtime_s": result.metrics.get("train_runtime"),
               "train_samples_per_second": result.metrics.get("train_samples_per_second"),
               "best_checkpoint": trainer.state.best_model_checkpoint, "best_metric": trainer.state.best_metric,
               "temperature": temperature}
    if trainer.is_world_process_zero():
        eval_dir = out / "eval"
        report = evaluate_split(logits, ds["validation"], taxonomy, eval_dir, temperature=temperature,
                                subgroups=subgroup_columns(ds["validation"]))
        plot_training_curves(trainer.state.log_history, eval_dir / "training_curves.png")
        summary["macro_f1"] = report["macro_f1"]
        summary["accuracy"] = report["accuracy"]
        if largs.task == "scores":
            from loscat_hf.train.score_training import score_evaluation

            scores = score_evaluation(pred.predictions[1], ds["validation"], trainer.model.score_components,
                                      eval_dir)
            summary["scores"] = {c: {k: m.get(k) for k in ("mae", "pearson", "spearman", "qwk", "icc_2_1")}
                                 for c, m in scores["components"].items()}
            for c, m in scores["components"].items():
                print(f"  {c}: n={m['n']} MAE {m.get('mae', float('nan')):.2f} "
                      f"Pearson {m.get('pearson', float('nan')):.2f} QWK {m.get('qwk', float('nan')):.2f}")
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
        print(f"macro-F1 {report['macro_f1']:.3f}, accuracy {report['accuracy']:.3f} on validation; "
              f"model in {out}, report and plots in {eval_dir}")
    return summary


def train_main(argv: Sequence[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        from transformers import HfArgumentParser

        HfArgumentParser((LoscatArguments, TrainingArguments), prog="loscat-hf train").print_help()
        return 0
    largs, targs = parse_train_args(argv)
    run_training(largs, targs)
    return 0


if __name__ == "__main__":
    sys.exit(train_main(sys.argv[1:]))
