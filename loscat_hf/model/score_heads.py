"""A ViT with the region head plus LoSCAT score heads (`loscat-hf train --task scores`).

Why regression heads (one output per component, in LoSCAT points): the components are ordinal 0-3 scales
that are summed into mLoSSI/LoSDI totals, so a continuous estimate is what the totals need; MSE penalises a
3-vs-0 error nine times a 1-point one, like the quadratic-weighted kappa used to judge it; and with a few
hundred scored photos per level an ordinal (cumulative-link) head has more thresholds to fit than data to
fit them. Predictions are clipped to the allowed range at inference (new_extension: 0 or 3).

The model subclasses ViTForImageClassification and only adds `score_heads.*` weights, so a saved folder
still loads with plain `transformers.AutoModelForImageClassification` (region head; extra weights ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import ViTConfig, ViTForImageClassification
from transformers.modeling_outputs import ModelOutput

from loscat_hf.data.score_tables import COMPONENTS
from loscat_hf.errors import LoscatError
from loscat_hf.model.folder import record_components, score_components


@dataclass
class RegionScoreOutput(ModelOutput):
    """Region logits (first, so code written for plain classifiers keeps working) and score predictions."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    score_preds: torch.Tensor | None = None


def masked_score_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the targets that are present (NaN = missing contributes nothing).

    The missing entries are replaced before the subtraction, not after, so no NaN reaches the gradient.
    """
    mask = ~torch.isnan(target)
    safe = torch.where(mask, target, pred.detach())
    sq = (pred - safe).pow(2) * mask
    return sq.sum() / mask.sum().clamp(min=1)


class ViTWithScores(ViTForImageClassification):
    """ViTForImageClassification + a linear score head on the [CLS] token."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__(config)
        components = score_components(config) or COMPONENTS
        record_components(config, components)
        self.score_heads = nn.Linear(config.hidden_size, len(components))
        self.post_init()

    @property
    def score_components(self) -> tuple[str, ...]:
        return score_components(self.config)

    def forward(self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                score_targets: torch.Tensor | None = None, smoothing: float = 0.0,
                score_weight: float = 1.0, **kwargs) -> RegionScoreOutput:
        outputs = self.vit(pixel_values, **kwargs)
        cls = outputs.last_hidden_state[:, 0, :]
        logits = self.classifier(cls)
        score_preds = self.score_heads(cls)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits, labels, label_smoothing=smoothing)
        if score_targets is not None:
            s_loss = masked_score_loss(score_preds, score_targets.to(score_preds.dtype))
            loss = score_weight * s_loss if loss is None else loss + score_weight * s_loss
        return RegionScoreOutput(loss=loss, logits=logits, score_preds=score_preds)


def build_score_model(model: str, taxonomy, image_size: int | None = None, seed: int = 0):
    """(ViTWithScores, processor) from a preset, a Hub ViT id or a local folder (score heads new if
    absent)."""
    from loscat_hf.model.build import build_model_and_processor

    base, processor = build_model_and_processor(model, taxonomy, image_size, seed=seed)
    config = base.config
    if getattr(config, "model_type", None) != "vit":
        raise LoscatError(f"task 'scores' needs a ViT model, got model_type {config.model_type!r}",
                          param=("task", "model"))
    torch.manual_seed(seed)
    net = ViTWithScores(config)
    missing, unexpected = net.load_state_dict(base.state_dict(), strict=False)
    if unexpected or not all(k.startswith("score_heads") for k in missing):
        raise ValueError(f"backbone weights do not fit ViTWithScores: missing {missing}, "
                         f"unexpected {unexpected}")
    weights = Path(model) / "model.safetensors"
    if score_components(base.config) and weights.is_file():  # a previous scores run: keep its heads
        from safetensors.torch import load_file

        state = {k: v for k, v in load_file(str(weights)).items() if k.startswith("score_heads")}
        if state and state["score_heads.weight"].shape == net.score_heads.weight.shape:
            net.load_state_dict(state, strict=False)
    return net, processor


def clip_scores(preds, components: tuple[str, ...]) -> np.ndarray:
    """Clip predictions to each component's range (0-3) for reporting."""
    out = np.asarray(preds, dtype=np.float64).copy()
    for j, c in enumerate(components):
        levels = COMPONENTS.get(c, (0, 1, 2, 3))
        out[:, j] = np.clip(out[:, j], min(levels), max(levels))
    return out
