"""The Trainer subclasses: balanced sampling, layer-wise LR, device-side normalisation, strict reloads,
the multi-region model's loss (sigmoid + smoothed BCE, through the public `compute_loss_func`) and the joint
region + score loss of `--task scores`.

`RegionTrainer` overrides four private Trainer methods, each because no public hook does the job (the reason
is at each one; docs/upstream.md lists the upstream workarounds). transformers does not promise to keep
private methods: each override has a test that goes through the public entry point (`train()`, `evaluate()`,
`get_train_dataloader()`) and fails if upstream stops calling it (tests/test_trainer_hooks.py,
tests/test_training.py::test_trainer_dataloader_draws_classes_near_uniformly).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from transformers import Trainer

from loscat_hf.errors import LoscatError
from loscat_hf.model.transforms import AugmentConfig, normalise


def balanced_sample_weights(labels: Sequence[int], power: float = 1.0) -> torch.Tensor:
    """Per-sample weights freq(label)**-power: power 1 draws every class equally often."""
    counts = Counter(int(x) for x in labels)
    return torch.tensor([counts[int(x)] ** -power for x in labels], dtype=torch.double)


def set_sample_weights(targets, power: float = 1.0) -> torch.Tensor:
    """Per-sample weights of photos labelled with a set of classes (multi-hot rows): the sum over the photo's
    classes of freq(class)**-power, freq being the photos that show the class.

    Why the sum: at power 1 it is the chance that "pick a class uniformly, then one of its photos uniformly"
    picks this photo (power p: a class picked in proportion to freq**(1-p)), so every class is drawn at least
    as often as single-label balancing draws it, a thigh + leg photo coming along for either class. The mean
    would halve a two-region photo's weight, so a rare class seen mostly beside a common one would be drawn
    less than uniform; the max would count a photo once for its rarest class only. A photo of one region
    gets freq**-power exactly as `balanced_sample_weights` gives it; a photo of no class (a negative for
    every class) counts as a class of its own."""
    rows = np.asarray(targets if isinstance(targets, np.ndarray) else list(targets), dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"set_sample_weights needs multi-hot rows (photos x classes), got {rows.shape}")
    y = torch.from_numpy(rows) > 0.5
    # Python's pow, as balanced_sample_weights: one-region photos get bit-identical weights
    per_class = torch.tensor([int(n) ** -power if n else 0.0 for n in y.sum(dim=0).tolist()],
                             dtype=torch.double)
    weights = (y.double() * per_class[None, :]).sum(dim=1)
    empty = ~y.any(dim=1)
    if empty.any():
        weights[empty] = int(empty.sum()) ** -power
    return weights


def smoothed_targets(targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Label smoothing of binary targets: y * (1 - eps) + eps / 2 (1 -> 1 - eps/2, 0 -> eps/2), each class's
    two outcomes being the two "classes" the smoothing spreads eps over, as softmax smoothing spreads it over
    the K classes."""
    return targets * (1.0 - smoothing) + smoothing / 2.0


def multi_label_loss(smoothing: float = 0.0):
    """The Trainer's `compute_loss_func` of a multi-region model: binary cross-entropy with logits per class,
    on label-smoothed targets (`smoothed_targets`).

    Summed and divided by `num_items_in_batch` (the Trainer counts every element of the multi-hot labels,
    over all the batches of one optimizer step and, by default, all devices): the mean over photos x classes
    of the whole step, what BCEWithLogitsLoss gives for one batch, and right under gradient accumulation and
    DDP (a `compute_loss_func`'s loss is taken as already scaled for them). Without the count (evaluation)
    it is the batch mean."""

    def compute_loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        target = smoothed_targets(labels.to(torch.float32), smoothing).to(logits.device)
        total = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target, reduction="sum")
        count = num_items_in_batch if num_items_in_batch is not None else target.numel()
        return total / count

    return compute_loss


def parameter_depths(model: torch.nn.Module, need_blocks: str | None = None) -> dict[str, int]:
    """Depth of every parameter: 0 = embeddings, k = encoder block k (1..L), L + 1 = final norm and heads.

    The blocks are found as the model's ModuleList of `num_hidden_layers` modules, not by parameter names:
    transformers 5 renamed ViT's `vit.encoder.layer.N` to `vit.layers.N`, and a name pattern silently matched
    nothing after that (layer decay and --phase1-trainable-blocks did nothing until this was fixed).
    `need_blocks`: the training argument that needs the blocks ("layer_decay"), named in the error without
    them."""
    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    blocks = next((name for name, module in model.named_modules()
                   if isinstance(module, torch.nn.ModuleList) and n_layers and len(module) == n_layers), None)
    if blocks is None and need_blocks:
        others = [p for p in ("layer_decay", "phase1_trainable_blocks") if p != need_blocks]
        raise LoscatError(f"{need_blocks} needs a ViT-style encoder (a list of num_hidden_layers blocks), "
                          f"which {type(model).__name__} does not have: train it with layer_decay 1 and "
                          "phase1_trainable_blocks 0", param=(need_blocks, *others))
    depths = {}
    for name, _ in model.named_parameters():
        if blocks is not None and name.startswith(blocks + "."):
            depths[name] = int(name[len(blocks) + 1:].split(".", 1)[0]) + 1
        elif "embeddings" in name:
            depths[name] = 0
        else:
            depths[name] = n_layers + 1
    return depths


def depth_learning_rate(learning_rate: float, layer_decay: float, n_layers: int, depth: int) -> float:
    """Layer-wise decay: the head (depth L + 1) gets `learning_rate`, each level below `layer_decay` times
    less."""
    return learning_rate * layer_decay ** (n_layers + 1 - depth)


def learning_rate_groups(model: torch.nn.Module, learning_rate: float,
                         layer_decay: float) -> dict[str, float]:
    """The peak learning rate of the head, the top and bottom encoder blocks and the embeddings: what the log
    and train_summary.json report (the Trainer's own `learning_rate` is whichever group comes first)."""
    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    return {name: depth_learning_rate(learning_rate, layer_decay, n_layers, depth)
            for name, depth in (("head", n_layers + 1), ("top_block", n_layers), ("bottom_block", 1),
                                ("embeddings", 0))}


def load_weights_strict(model: torch.nn.Module, checkpoint_dir: str) -> None:
    """Load a checkpoint's weights through from_pretrained (which renames legacy keys), strictly.

    The stock Trainer's raw, non-strict load misses the renamed ViT encoder keys
    (https://github.com/huggingface/transformers/issues/43701)."""
    try:
        loaded = type(model).from_pretrained(checkpoint_dir)
        model.load_state_dict(loaded.state_dict(), strict=True)
    except RuntimeError as exc:  # another architecture or size (--model differs from the checkpoint's)
        raise LoscatError(f"the weights in {checkpoint_dir} do not fit this model "
                          f"({str(exc).splitlines()[0][:200]}); use the model it was trained with",
                          param="model") from None
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
        # Private hook, kept: transformers 5.24 has no public way to set the training sampler.
        # `args.train_sampling_strategy` offers only random, sequential, group_by_length and batch_rebalance,
        # and the public `get_train_dataloader()` builds its DataLoader in the private `_get_dataloader`
        # (column removal, workers, seed_worker, accelerator.prepare), which an override would have to copy.
        # Were upstream to stop calling this, training would silently fall back to uniform shuffling:
        # test_training.py's test_trainer_dataloader_draws_classes_near_uniformly catches that.
        if self.sample_weights is None:
            return super()._get_train_sampler(train_dataset)
        generator = torch.Generator().manual_seed(self.args.seed)
        return torch.utils.data.WeightedRandomSampler(self.sample_weights,
                                                      num_samples=len(self.sample_weights),
                                                      replacement=True, generator=generator)

    def create_optimizer(self, model=None):
        if self.optimizer is not None or self.layer_decay == 1.0 or self.optimizer_cls_and_kwargs is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        n_layers = getattr(opt_model.config, "num_hidden_layers", 0)
        decay_names = set(self.get_decay_parameter_names(opt_model))
        depths = parameter_depths(opt_model, need_blocks="layer_decay")
        groups: dict[tuple[int, bool], dict] = {}
        # deepest first: the head's group is group 0, whose rate the Trainer logs as `learning_rate`
        for name, param in sorted(opt_model.named_parameters(), key=lambda item: -depths[item[0]]):
            if not param.requires_grad:
                continue
            depth, decay = depths[name], name in decay_names
            group = groups.setdefault((depth, decay), {
                "params": [], "weight_decay": self.args.weight_decay if decay else 0.0,
                "lr": depth_learning_rate(self.args.learning_rate, self.layer_decay, n_layers, depth),
                "depth": depth})
            group["params"].append(param)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(list(groups.values()), **optimizer_kwargs)
        return self.optimizer

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Public hook ("subclass and override"): with layer decay, the rates of the top and bottom encoder
        # blocks are logged beside `learning_rate` (the head's, group 0). The Trainer reads `learning_rate`
        # before the scheduler steps (the rate the step used); every group follows the same schedule, so each
        # block's rate is that times its peak's share of the head's.
        if "learning_rate" in logs and self.optimizer is not None:
            peaks = {g.get("depth"): g.get("initial_lr", g["lr"]) for g in self.optimizer.param_groups}
            n_layers = getattr(self.model.config, "num_hidden_layers", 0)
            head = peaks.get(n_layers + 1)
            if head and len(set(peaks.values())) > 1:
                logs["lr_top_block"] = logs["learning_rate"] * peaks.get(n_layers, head) / head
                logs["lr_bottom_block"] = logs["learning_rate"] * peaks.get(1, head) / head
        super().log(logs, start_time)

    def _prepare_inputs(self, inputs):
        # Private hook, kept: the one point that both `training_step` and `prediction_step` pass every batch
        # through once it is on the device (including prediction_step's label-free branch, which calls the
        # model without `compute_loss`). Public alternatives and why not: a data_collator runs on the CPU in
        # the DataLoader workers (4x the bytes to copy, augmentation on the CPU); `compute_loss` misses
        # label-free prediction; overriding both `training_step` and `prediction_step` would move each batch
        # to the device before super() moves it again. Were upstream to stop calling this, ViT would silently
        # cast the raw 0..255 pixels to float: tests/test_trainer_hooks.py checks that the model sees
        # normalised input.
        inputs = super()._prepare_inputs(inputs)
        pv = inputs.get("pixel_values")
        if pv is not None and pv.dtype == torch.uint8:
            augment = self.augment if self.model.training else None
            inputs["pixel_values"] = normalise(pv, self._mean.to(pv.device), self._std.to(pv.device), augment)
        return inputs

    # Workaround of https://github.com/huggingface/transformers/issues/43701 (open; fix attempts in PRs 48822
    # and 49022, unreleased). In transformers 5.x (checked on 5.24.0) the stock Trainer reloads a checkpoint's
    # raw state dict with strict=False, but `save_pretrained` wrote the ViT encoder under its legacy key
    # names: resume and load_best_model_at_end restore the embeddings, final norm and head and leave every
    # encoder block as it was (the only sign is a "missing keys" warning). Here both go through
    # `from_pretrained` (which renames legacy keys) and a strict load. Private hooks, kept: super() cannot be
    # reused (its raw load is the bug); a callback's on_train_end runs after the partial load and after the
    # on_train_end of callbacks registered before it (report_to integrations that log the model);
    # on_train_begin is not told the resume checkpoint. tests/test_upstream.py xfails (strict) while the bug
    # is there; when it XPASSes, delete both overrides.
    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        load_weights_strict(self.model if model is None else model, resume_from_checkpoint)

    def _load_best_model(self):
        load_weights_strict(self.model, self.state.best_model_checkpoint)


class MultiLabelTrainer(RegionTrainer):
    """RegionTrainer of a multi-region model: sigmoid + binary cross-entropy on smoothed targets.

    The Trainer's own `label_smoothing_factor` smoother (LabelSmoother) is softmax cross-entropy over the
    classes, which would be the wrong loss for independent per-class sigmoids; transformers switches it off
    for a multi_label_classification config (with a warning that smoothing is disabled, which here is not
    true). The smoothing is instead applied to the BCE targets through the public `compute_loss_func` hook
    (`multi_label_loss`), and the smoother is set to None so that it can never be applied."""

    def __init__(self, *args, **kwargs) -> None:
        import warnings

        targs = kwargs.get("args") if "args" in kwargs else args[1]
        kwargs["compute_loss_func"] = multi_label_loss(float(targs.label_smoothing_factor))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Label smoothing is not compatible")
            super().__init__(*args, **kwargs)
        self.label_smoother = None


class ScoreTrainer(RegionTrainer):
    """RegionTrainer whose loss is the model's joint loss (label smoothing applied inside the model)."""

    def __init__(self, *args, score_weight: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.score_weight = score_weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs, smoothing=float(self.args.label_smoothing_factor),
                        score_weight=self.score_weight)
        return (outputs.loss, outputs) if return_outputs else outputs.loss
