"""Callbacks of `loscat-hf train`: the two-phase schedule (head first, then the whole model), told in the log,
and a warning when validation stays at chance."""

from __future__ import annotations

import logging
import math

import torch
from transformers import TrainerCallback

from loscat_hf.training.trainer import parameter_depths

logger = logging.getLogger(__name__)

HEAD_PREFIXES = ("classifier", "score_heads")


def phase1_trainable(model: torch.nn.Module, last_blocks: int) -> set[str]:
    """Names of the parameters phase 1 trains: the heads, and with `last_blocks` > 0 the last encoder blocks
    and the final norm above them."""
    depths = parameter_depths(model, need_blocks="phase1_trainable_blocks" if last_blocks > 0 else None)
    top = max(depths.values(), default=0)  # final norm and heads
    return {name for name, depth in depths.items()
            if name.startswith(HEAD_PREFIXES) or (last_blocks > 0 and depth > top - 1 - last_blocks)}


def phase1_frozen(model: torch.nn.Module, phase1_epochs: float, last_blocks: int) -> set[str]:
    """Names of the parameters TwoPhaseCallback freezes: none without a phase 1 (`phase1_epochs` 0, the
    from-scratch recipe's default), else those outside `phase1_trainable`. Covering every encoder block
    (`last_blocks` = num_hidden_layers) still freezes the embeddings; one block more leaves nothing frozen."""
    if phase1_epochs <= 1e-9:  # the callback's own tolerance: such a phase 1 ends before the first step
        return set()
    keep = phase1_trainable(model, last_blocks)
    return {name for name, _ in model.named_parameters() if name not in keep}


def ddp_find_unused_parameters(requested: bool | None, frozen: set[str]) -> bool:
    """DDP's `find_unused_parameters` for a run: the user's `--ddp-find-unused-parameters` when set, else on
    exactly when a phase freezes parameters. Frozen parameters get no gradient, and DDP without the search
    fails waiting for them; the search costs a walk of the autograd graph every step, and with nothing frozen
    every parameter of the region and score models gets a gradient. (transformers' own default, for
    `requested` None, is on for every PreTrainedModel: hence an explicit False here.)"""
    return requested if requested is not None else bool(frozen)


def count_parameters(model: torch.nn.Module, names: set[str] | None = None) -> int:
    """Parameters in `model`, or in those of its parameters named in `names`."""
    return sum(p.numel() for n, p in model.named_parameters() if names is None or n in names)


class TwoPhaseCallback(TrainerCallback):
    """Phase 1 trains the head (and optionally the last blocks); phase 2 the whole model.

    Freezing happens in on_train_begin, after the optimizer was built with every parameter (docs/pitfalls.md,
    "transformers Trainer"): frozen parameters get no gradient, AdamW skips them, and they join in once
    unfrozen. Each phase is logged when it starts and recorded in `phases` (step and epoch where it starts and
    ends, what it trains, how many parameters): train_summary.json and the training curves show them.
    """

    def __init__(self, phase1_epochs: float, trainable_blocks: int = 0) -> None:
        self.phase1_epochs = phase1_epochs
        self.trainable_blocks = trainable_blocks
        self.frozen = False
        self.phases: list[dict] = []

    def _set(self, model: torch.nn.Module, frozen: bool) -> None:
        keep = phase1_trainable(model, self.trainable_blocks)
        for name, param in model.named_parameters():
            param.requires_grad_(not frozen or name in keep)
        self.frozen = frozen

    def _phase1_trains(self) -> str:
        return "head" if self.trainable_blocks <= 0 else f"head + last {self.trainable_blocks} block(s)"

    def _switch_step(self, args, state, train_dataloader) -> tuple[int, float]:
        """The optimizer step (and epoch) before which the backbone joins: the first step whose epoch, as the
        Trainer counts it (batches seen / batches per epoch), reaches phase1_epochs."""
        try:
            batches = len(train_dataloader)
        except TypeError:  # no dataloader length (--max-steps over an iterable): steps are the unit
            return (min(state.max_steps,
                        math.ceil(self.phase1_epochs * state.max_steps / max(state.num_train_epochs, 1))),
                    self.phase1_epochs)
        accumulation = args.gradient_accumulation_steps
        per_epoch = math.ceil(batches / accumulation)
        whole, fraction = divmod(self.phase1_epochs, 1.0)
        within = math.ceil(fraction * batches / accumulation - 1e-9)
        step = min(state.max_steps, int(whole) * per_epoch + within)
        return step, whole + min(within * accumulation, batches) / batches

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        switch, switch_epoch = self._switch_step(args, state, train_dataloader)
        total = count_parameters(model)
        head = count_parameters(model, phase1_trainable(model, self.trainable_blocks))
        self.phases = [dict(phase=1, trains=self._phase1_trains(), trainable_parameters=head, start_step=0,
                            start_epoch=0.0, end_step=switch, end_epoch=round(switch_epoch, 4))]
        if switch < state.max_steps:
            self.phases.append(dict(phase=2, trains="whole model", trainable_parameters=total,
                                    start_step=switch, start_epoch=round(switch_epoch, 4),
                                    end_step=state.max_steps,
                                    end_epoch=float(args.num_train_epochs) if args.max_steps <= 0 else None))
        in_phase1 = (state.epoch or 0.0) < self.phase1_epochs - 1e-9
        if in_phase1:
            self._set(model, frozen=True)
        if not state.is_world_process_zero:
            return
        if state.global_step > 0:  # --resume: say where the run picks up
            logger.info("resuming at step %d (epoch %.2f) in phase %d: %s trainable", state.global_step,
                        state.epoch or 0.0, 1 if in_phase1 else 2, self._phase1_trains() if in_phase1 else
                        f"whole model ({total:,} parameters)")
            if not in_phase1:
                return
        logger.info("phase 1: %s trainable (%s of %s parameters), steps %d-%d (epochs 0.00-%.2f)",
                    self._phase1_trains(), f"{head:,}", f"{total:,}", 0, switch, switch_epoch)
        if len(self.phases) == 1:
            logger.warning("phase 1 (--phase1-epochs %g) covers the whole run: the backbone never trains",
                           self.phase1_epochs)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.frozen and (state.epoch or 0.0) >= self.phase1_epochs - 1e-9:
            self._set(model, frozen=False)
            if len(self.phases) > 1:  # where it really happened (the plan above says the same)
                self.phases[0].update(end_step=state.global_step, end_epoch=round(state.epoch, 4))
                self.phases[1].update(start_step=state.global_step, start_epoch=round(state.epoch, 4))
            if state.is_world_process_zero:
                logger.info("phase 1 ended; phase 2: whole model trainable (%s parameters) from step %d "
                            "(epoch %.2f)", f"{count_parameters(model):,}", state.global_step, state.epoch)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.frozen:
            self._set(model, frozen=False)
        if self.phases:  # where the run really stopped
            self.phases[-1].update(end_step=state.global_step, end_epoch=round(state.epoch or 0.0, 4))


class ChanceCallback(TrainerCallback):
    """Warn once when validation macro-F1 stays at chance level for `patience` evaluations in a row.

    Chance is 1 / (classes in the validation split); "at chance" is below 1.5 times that (3 classes or more).
    `hints` are the likely causes for this run (run.py knows the recipe), listed in the warning and kept in
    `warning`. `grace`: the share of the planned run whose evaluations do not count (record.chance_grace: a
    model trained from scratch sits at chance for its first epochs, a pretrained one does not). `chance`
    and `chance_is` replace 1 / n_classes and its wording where chance is another number (a multi-region
    model: record.multi_label_chance).
    """

    def __init__(self, n_classes: int, hints: list[str], patience: int = 3, grace: float = 0.0,
                 chance: float | None = None, chance_is: str | None = None) -> None:
        self.chance = 1.0 / max(n_classes, 1) if chance is None else float(chance)
        self.chance_is = chance_is or f"with {n_classes} classes"
        self.n_classes = n_classes
        self.hints = hints
        self.patience = patience
        self.grace = grace
        self.start_epoch = 0.0  # set from the planned epochs when training begins
        self.streak: list[float] = []
        self.warning: str | None = None
        self.last: float | None = None

    def outcome(self) -> str | None:
        """The warning for train_summary.json and the card, saying whether validation rose above chance
        later."""
        if self.warning and self.last is not None and self.last >= 1.5 * self.chance:
            return f"{self.warning}. It rose above chance later (last evaluation: macro-F1 {self.last:.3f})."
        return self.warning

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_epoch = self.grace * float(state.num_train_epochs or 0)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        score = (metrics or {}).get("eval_macro_f1")
        if score is None or self.n_classes < 3:  # with 1 or 2 classes, 1.5 x chance is no useful line
            return
        self.last = score
        if self.warning is not None or (state.epoch or 0.0) < self.start_epoch - 1e-9:
            return
        self.streak = self.streak + [score] if score < 1.5 * self.chance else []
        if len(self.streak) >= self.patience:
            waited = ("" if self.start_epoch <= 0 else " (from scratch a model sits at chance for its first "
                      f"epochs: evaluations before epoch {self.start_epoch:.2f} were not counted)")
            self.warning = (
                f"validation macro-F1 has stayed at chance level for {len(self.streak)} evaluations "
                f"({', '.join(f'{s:.3f}' for s in self.streak)}; chance is {self.chance:.3f} "
                f"{self.chance_is}) up to epoch {state.epoch:.2f}{waited}. Likely causes: "
                + "; ".join(self.hints))
            if state.is_world_process_zero:
                logger.warning("%s", self.warning)
