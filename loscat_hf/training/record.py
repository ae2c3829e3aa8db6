"""What a training run says about itself: where it started, its recipe and hyperparameters, the data counts,
the hardware, and the likely causes when it learns nothing. train_summary.json and the model card are built
from these records; everything here is publishable (Hub ids, preset names, counts, numbers: never a local
path)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from loscat_hf.hardware import usable_cores
from loscat_hf.model.folder import MULTI_LABEL, base_record, config_json, preset
from loscat_hf.model.published import start_allowed
from loscat_hf.training.arguments import LoscatArguments, recipe_of

# a folder inside a Hub cache: .../models--ORG--NAME/snapshots/<commit>
_CACHE_PATH = re.compile(r"models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\]")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def base_model_record(model: str) -> dict:
    """Where training started, as config.json (`loscat_base_model`) and the card may state it.

    {"kind": "scratch", "preset": "tiny"}, {"kind": "hub", "id": "google/vit-base-patch16-384"}, or for a
    local folder {"kind": "folder"} plus what the folder itself records (`from`: its own start, when
    loscat-hf trained it; `id`: the Hub id when it is a Hub cache snapshot). The folder's path is never
    recorded: it is private."""
    if recipe_of(model) == "from scratch":
        return {"kind": "scratch", "preset": model}
    folder = Path(model)
    if not folder.is_dir():  # it loaded, and is no folder: a Hub id
        return {"kind": "hub", "id": model} if _HUB_ID.match(model) else {"kind": "hub"}
    record: dict = {"kind": "folder"}
    if m := _CACHE_PATH.search(str(folder.resolve()) + "/"):
        record["id"] = f"{m.group(1)}/{m.group(2)}"
    try:
        config = config_json(folder)
    except (OSError, ValueError):
        return record
    inner = (start_allowed(base_record(config))
             or start_allowed({"kind": "scratch", "preset": preset(config)}))
    if inner:
        record["from"] = inner
    return start_allowed(record) or {"kind": "folder"}


# The share of a from-scratch run whose evaluations the chance warning does not count. Measured on the
# quickstart (60 epochs of the tiny preset, 83 validation photos of 8 patients): validation macro-F1 was
# below 1.5 x chance for three evaluations in a row as late as epoch 30 of a run whose test macro-F1 ended at
# 0.445 (docs/training.md, "When validation stays at chance").
SCRATCH_CHANCE_GRACE = 0.5


def chance_grace(largs: LoscatArguments) -> float:
    """The share of the planned epochs before which validation at chance means nothing for this recipe: half
    the run from scratch (random features learn slowly: SCRATCH_CHANCE_GRACE), none when fine-tuning
    (pretrained features leave chance within an epoch or two)."""
    return SCRATCH_CHANCE_GRACE if recipe_of(largs.model) == "from scratch" else 0.0


def chance_hints(largs: LoscatArguments, learning_rate: float, epochs: float) -> list[str]:
    """Likely causes of a run stuck at chance, most specific first (ChanceCallback's warning)."""
    hints = []
    scratch = recipe_of(largs.model) == "from scratch"
    if scratch and largs.phase1_epochs > 0:
        hints.append(f"a random-init model with a fine-tuning recipe: --phase1-epochs "
                     f"{largs.phase1_epochs:g} trains only the head on random features "
                     "(use --phase1-epochs 0)")
    if scratch and learning_rate < 5e-4:
        hints.append(f"--learning-rate {learning_rate:g} is a fine-tuning rate; from scratch try 1e-3")
    elif learning_rate > 3e-3:
        hints.append(f"--learning-rate {learning_rate:g} may be too high (is the training loss falling?)")
    else:
        hints.append(f"the learning rate (--learning-rate {learning_rate:g})")
    hints.append(f"too few epochs (--num-train-epochs {epochs:g})")
    if largs.augment and (largs.hflip > 0 or largs.max_rotation > 0):
        hints.append("augmentation that changes what a photo shows (--hflip 0, --max-rotation 0 where sides "
                     "or orientation matter)")
    hints.append("labels that the photos do not show (check the dataset's labels and the per-class report)")
    return hints


def hardware_record(targs) -> str:
    """The device trained on, in words: "1 x NVIDIA H200" or "CPU (2 cores)"."""
    import torch

    if targs.device.type == "cuda":
        count = targs.world_size if targs.world_size > 1 else max(targs.n_gpu, 1)
        return f"{count} x {torch.cuda.get_device_name(targs.device)}"
    procs = f", {targs.world_size} processes" if targs.world_size > 1 else ""
    return f"{targs.device.type.upper()} ({usable_cores()} cores{procs})"


def data_record(ds, classes: Sequence[str] | None = None) -> dict:
    """Photos per split and per class (the labels as trained, after --max-*-samples caps). `classes`: a
    multi-label run's classes, in the order of its multi-hot `labels`; each photo then counts for every class
    it shows (per_class adds up to more than n), and `several_regions` counts the photos showing more than
    one."""
    out = {}
    for split in ds:
        if classes is not None:
            n = len(ds[split])
            y = np.asarray(list(ds[split]["labels"]), dtype=np.float64).reshape(n, len(classes)) > 0.5
            out[split] = {"n": n, "per_class": dict(sorted((c, int(k)) for c, k in zip(classes, y.sum(0),
                                                                                          strict=True) if k)),
                          "several_regions": int((y.sum(1) > 1).sum())}
            continue
        names = ds[split].features["label"].names
        counts = Counter(names[k] for k in ds[split]["label"])
        out[split] = {"n": len(ds[split]), "per_class": dict(sorted(counts.items()))}
    return out


def multi_label_chance(targets) -> tuple[float, int]:
    """Chance macro-F1 of a multi-region model on these multi-hot targets, and how many classes some photo
    shows. Its validation macro-F1 is measured at thresholds fitted on the same photos (evaluation's
    `trainer_metrics`), and a fitted threshold can always mark every photo: for a class of prevalence p that
    scores F1 2p / (1 + p) with no skill at all. Chance is the mean of that over the classes (a class no photo
    shows counts 0, as the macro-F1 counts it)."""
    rows = list(targets) if not isinstance(targets, np.ndarray) else targets
    y = np.asarray(rows, dtype=np.float64)
    if y.ndim != 2 or not len(y):
        return 0.0, 0
    prevalence = (y > 0.5).mean(axis=0)
    return float((2 * prevalence / (1 + prevalence)).mean()), int((prevalence > 0).sum())


def hyperparameters(largs: LoscatArguments, targs, trainer) -> dict:
    """The recipe as it ran: the numbers a reader needs to repeat it."""
    from loscat_hf.training.arguments import augment_config
    from loscat_hf.training.trainer import learning_rate_groups

    augment = augment_config(largs)
    multi = getattr(trainer.model.config, "problem_type", None) == MULTI_LABEL
    if largs.sampling_power <= 0:
        sampler = "plain shuffling"
    elif multi:  # trainer.set_sample_weights
        sampler = (f"class-balanced over region sets (weight = sum over a photo's classes of class frequency "
                   f"^ -{largs.sampling_power:g})")
    else:
        sampler = f"class-balanced (weight = class frequency ^ -{largs.sampling_power:g})"
    out = {
        "recipe": recipe_of(largs.model),
        "epochs": targs.num_train_epochs if targs.max_steps <= 0 else None,
        "max_steps": targs.max_steps if targs.max_steps > 0 else None,
        "optimizer": str(getattr(targs.optim, "value", targs.optim)),
        "learning_rates": learning_rate_groups(trainer.model, targs.learning_rate, largs.layer_decay),
        "layer_decay": largs.layer_decay,
        "lr_scheduler": str(getattr(targs.lr_scheduler_type, "value", targs.lr_scheduler_type)),
        "warmup_steps": targs.warmup_steps,
        "weight_decay": targs.weight_decay,
        "batch_size": (targs.per_device_train_batch_size * max(targs.world_size, 1)
                       * targs.gradient_accumulation_steps),
        "label_smoothing": targs.label_smoothing_factor,
        "sampler": sampler,
        "phase1_epochs": largs.phase1_epochs,
        "phase1_trainable_blocks": largs.phase1_trainable_blocks,
        "augmentation": None if augment is None else {
            "crop_scale": largs.crop_scale, "max_rotation": largs.max_rotation, "hflip": largs.hflip,
            "color_jitter": largs.color_jitter},
        "precision": "bf16" if targs.bf16 else ("fp16" if targs.fp16 else "fp32"),
        "seed": targs.seed,
        "task": largs.task,
    }
    if multi:  # one sigmoid per class: binary cross-entropy, smoothed towards 1/2 (trainer.multi_label_loss)
        out["loss"] = (f"binary cross-entropy per class, targets smoothed to y * (1 - "
                       f"{targs.label_smoothing_factor:g}) + {targs.label_smoothing_factor:g} / 2")
    return out
