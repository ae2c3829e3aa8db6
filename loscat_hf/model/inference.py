"""Batched forward passes of a region classifier: one place for device, dtype and normalisation choices.

Used by evaluation (dataset splits) and prediction (folders of photos), so both see the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext

import numpy as np
import torch

from loscat_hf.model.transforms import normalise


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_for(device: torch.device, bf16: bool | None):
    """bf16 autocast on a GPU that supports it (or when asked); full precision otherwise."""
    if bf16 is None:
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


@contextmanager
def eager_attention(model: torch.nn.Module):
    """Switch a model to eager attention (the only kind that returns weights) for one call, then back."""
    config = model.config
    before = getattr(config, "_attn_implementation", None)
    if before in (None, "eager"):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


class LogitRunner:
    """Holds a model on its device and turns uint8 batches (B, 3, S, S) into float32 logits.

    `one_at_a_time` runs the photos of a batch through the model singly. Dynamic int8 quantisation scales
    activations per forward pass, so in a batch a photo's answer would depend on its companions; singly it
    does not, and on CPU int8 ViT-B/16-384 is no slower at batch 1.
    """

    def __init__(self, model: torch.nn.Module, image_mean, image_std, device: str | None = None,
                 bf16: bool | None = None, one_at_a_time: bool = False) -> None:
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.bf16 = bf16
        self.one_at_a_time = one_at_a_time
        self.mean = torch.tensor(image_mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(image_std, dtype=torch.float32, device=self.device)

    def forward(self, x: torch.Tensor, **kwargs):
        """The model on a normalised batch (kwargs such as output_attentions pass through); photo by photo
        when `one_at_a_time`, with the outputs joined along the batch."""
        if not self.one_at_a_time or x.shape[0] == 1:
            return self._model_call(x, **kwargs)
        outs = [self._model_call(x[i:i + 1], **kwargs) for i in range(x.shape[0])]
        return type(outs[0])(**{k: _join([o[k] for o in outs]) for k in outs[0].keys()})

    def _model_call(self, x: torch.Tensor, **kwargs):
        """One forward pass of the model (the ONNX runner replaces it)."""
        return self.model(pixel_values=x, **kwargs)

    @torch.inference_mode()
    def outputs(self, pixel_values: torch.Tensor):
        """The model's whole output (logits and any extra heads, e.g. score_preds) for a uint8 batch."""
        x = normalise(pixel_values.to(self.device, non_blocking=True), self.mean, self.std)
        with autocast_for(self.device, self.bf16):
            return self.forward(x)

    @torch.inference_mode()
    def __call__(self, pixel_values: torch.Tensor, tta: bool = False) -> np.ndarray:
        x = normalise(pixel_values.to(self.device, non_blocking=True), self.mean, self.std)
        with autocast_for(self.device, self.bf16):
            logits = self.forward(x).logits.float()
            if tta:  # horizontal flip keeps the (side-agnostic) label
                logits = (logits + self.forward(x.flip(-1)).logits.float()) / 2
        return logits.cpu().numpy()

    def run(self, batches: Iterable[torch.Tensor], tta: bool = False) -> Iterator[np.ndarray]:
        for batch in batches:
            yield self(batch, tta=tta)


def _join(parts: list):
    """Concatenate per-photo outputs along the batch: tensors, or tuples of them (attentions per layer)."""
    if isinstance(parts[0], tuple):
        return tuple(_join(list(layer)) for layer in zip(*parts, strict=True))
    return torch.cat(parts)
