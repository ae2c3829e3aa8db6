"""The two-phase schedule: head first (optionally the last blocks too), then the whole model."""

from __future__ import annotations

import re

import torch
from transformers import TrainerCallback

HEAD_PREFIXES = ("classifier", "score_heads")


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

    Freezing happens in on_train_begin, after the optimizer was built with every parameter (docs/pitfalls.md,
    "transformers Trainer"): frozen parameters get no gradient, AdamW skips them, and they join in once unfrozen.
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
