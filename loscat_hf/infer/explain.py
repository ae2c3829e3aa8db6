"""Explanation maps: where in the photo a ViT region classifier looked (attention rollout).

Attention rollout (Abnar & Zuidema 2020) multiplies the head-averaged attention matrices of all layers,
each mixed with the identity for the residual path, and reads the CLS row over the patch tokens. It needs
no gradients, so it also works on the int8 (dynamically quantised) model the Space uses, and it comes from
the same forward pass that gives the prediction: an explained answer costs one (eager-attention) pass.

Maps show which patches fed the decision, not why; they are a sanity check for a reviewer (did the model
look at the body part or at the background?), not evidence.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from loscat_hf.errors import LoscatError
from loscat_hf.model.inference import autocast_for, eager_attention
from loscat_hf.model.transforms import normalise
from loscat_hf.taxonomy import SET_SEPARATOR


@dataclass
class Explanation:
    """One photo's map: `heat` is (S, S) float32 in [0, 1] over the model input; `overlay` is the decoded
    photo with it, at the photo's size shrunk to the packing size at most (the S x S model input only when no
    photo is given)."""

    heat: np.ndarray
    overlay: Image.Image
    logits: np.ndarray


def rollout(attentions: Sequence[torch.Tensor], residual: float = 0.5) -> np.ndarray:
    """Per-layer attentions (B, heads, T, T) -> (B, g, g) CLS-to-patch relevance, each map min-max scaled."""
    if not attentions:
        raise LoscatError("the model returned no attention weights: explanation maps need a ViT")
    joint = None
    for att in attentions:
        a = att.float().mean(dim=1)  # (B, T, T), heads averaged
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = residual * a + (1.0 - residual) * eye
        a = a / a.sum(dim=-1, keepdim=True)
        joint = a if joint is None else a @ joint
    cls = joint[:, 0, 1:]  # CLS row over the patches (register/distillation tokens are not in plain ViT)
    grid = int(math.isqrt(cls.shape[-1]))
    if grid * grid != cls.shape[-1]:
        raise LoscatError(f"cannot lay {cls.shape[-1]} patch tokens on a square grid")
    maps = cls.reshape(-1, grid, grid)
    lo = maps.amin(dim=(1, 2), keepdim=True)
    hi = maps.amax(dim=(1, 2), keepdim=True)
    return ((maps - lo) / (hi - lo).clamp_min(1e-12)).cpu().numpy().astype(np.float32)


def upsample(grid_map: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(g, g) map -> (size, size) (or (h, w) for size (w, h)) float32 in [0, 1], bilinear (smooth, no patch
    blocks)."""
    wh = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    img = Image.fromarray(grid_map.astype(np.float32), mode="F").resize(wh, Image.BILINEAR)
    return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)


def _colormap(heat: np.ndarray) -> np.ndarray:
    """A small 'jet'-like colour ramp (blue -> green -> yellow -> red) without a matplotlib import."""
    h = heat[..., None]
    r = np.clip(1.5 - np.abs(4 * h - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * h - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * h - 1), 0, 1)
    return (np.concatenate([r, g, b], axis=-1) * 255).astype(np.uint8)


def overlay(photo: Image.Image | np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The photo (any size: the map is stretched over it, as the model's input squashed the photo) with the
    heat map blended over it; strong areas are more opaque."""
    base = np.asarray(photo.convert("RGB") if isinstance(photo, Image.Image) else photo, dtype=np.float32)
    if base.shape[:2] != heat.shape:
        heat = upsample(heat, (base.shape[1], base.shape[0]))
    weight = (alpha * (0.3 + 0.7 * heat))[..., None]
    out = base * (1 - weight) + _colormap(heat).astype(np.float32) * weight
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), mode="RGB")


@torch.inference_mode()
def explain_pixels(predictor, pixel_values: torch.Tensor,
                   photos: Sequence[Image.Image] | None = None) -> list[Explanation]:
    """uint8 (B, 3, S, S) model inputs -> logits and rollout maps from one forward pass. `photos`: the decoded
    photos the inputs were made from (`predictor.explain_inputs(x)[0]`): each overlay is drawn at its photo's
    size (at most the packing size), readable even for a 64 px model; without them, at the input's S x S."""
    runner = predictor.runner
    model = runner.model
    x = normalise(pixel_values.to(runner.device), runner.mean, runner.std)
    with eager_attention(model), autocast_for(runner.device, runner.bf16):
        out = runner.forward(x, output_attentions=True)  # int8: photo by photo, as predict does
    logits = out.logits.float().cpu().numpy()
    grids = rollout(out.attentions)
    size = pixel_values.shape[-1]
    if photos is not None and len(photos) != len(grids):
        raise ValueError(f"{len(photos)} photos for {len(grids)} model inputs")
    inputs = pixel_values.permute(0, 2, 3, 1).cpu().numpy()
    result = []
    for i, grid in enumerate(grids):
        heat = upsample(grid, size)
        if photos is None:
            shown = overlay(inputs[i], heat)
        else:  # the map upsampled once, smoothly, to the size it is drawn at
            photo = display_size(photos[i], predictor.decoding.max_side)
            shown = overlay(photo, upsample(grid, photo.size))
        result.append(Explanation(heat=heat, overlay=shown, logits=logits[i]))
    return result


def display_size(photo: Image.Image, max_side: int) -> Image.Image:
    """The decoded photo, shrunk to the packing size (shorter side <= max_side) when it is larger: a photo
    decoded whole (a converted study checkpoint) would otherwise give a 12-megapixel overlay."""
    w, h = photo.size
    if min(w, h) <= max_side:
        return photo
    scale = max_side / min(w, h)
    return photo.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR,
                        reducing_gap=3.0)


def explain(predictor, images, batch_size: int = 8) -> list[Explanation]:
    """Photos (paths, bytes, streams or PIL images) -> one Explanation each, same order.

    Decoding is the predictor's (as its model folder records; EXIF-upright, metadata-free), so overlays carry
    no EXIF and have the decoded photo's size; unreadable photos raise ImageProblemError.
    """
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    out: list[Explanation] = []
    for start in range(0, len(items), batch_size):
        photos, pixels = zip(*(predictor.explain_inputs(x) for x in items[start:start + batch_size]),
                             strict=True)
        out += explain_pixels(predictor, torch.stack(pixels), photos=photos)
    return out


def _list_images(sources: Sequence[str | os.PathLike]) -> list[Path]:
    """Photo files and folders -> files; folders are listed by predict's rule (`folder.list_inputs`: every
    non-hidden file, recursively), so a file that is not a photo is reported as skipped, not silently
    ignored."""
    from loscat_hf.infer.folder import list_inputs

    files: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            files += [path for _, path in list_inputs(p)]
        elif p.is_file():
            files.append(p)
        else:
            raise LoscatError(f"no such file or folder: {p}")
    return files


def overlay_names(files: Sequence[Path]) -> list[str]:
    """`<stem>.explain.png` per photo; photos of one name in different folders (`a/IMG_1.jpg`, `b/IMG_1.jpg`)
    get `IMG_1-2`, `IMG_1-3`, ... in input order, so no overlay overwrites another (nor do two processes write
    one file)."""
    names: list[str] = []
    taken: set[str] = set()
    for f in files:
        stem, k = f.stem, 1
        while (name := stem if k == 1 else f"{stem}-{k}") in taken:
            k += 1
        taken.add(name)
        names.append(f"{name}.explain.png")
    return names


NONE_SHOWN = "(none above threshold)"  # a multi-region model's answer when no class passes its threshold


@dataclass
class ExplainResult:
    """Per photo: (photo, top region, its probability, overlay written); photos that could not be read.
    `regions`, beside each explained photo: the regions it shows with their scores, most probable first. That
    is a multi-region model's answer (`multi_label`: per-class sigmoid scores, so its top region and score
    alone are not the answer; none when no class passes its threshold); a single-region model's is its top
    region."""

    explained: list[tuple[Path, str, float, Path]]
    skipped: list[tuple[Path, str]]
    regions: list[list[tuple[str, float]]] = field(default_factory=list)
    multi_label: bool = False
    main: bool = True  # False: another process of a multi-process run (the first one prints)

    @property
    def overlays(self) -> list[Path]:
        return [row[3] for row in self.explained]

    def answers(self) -> list[tuple[Path, str, str, Path]]:
        """Per explained photo: (photo, answer, its score(s), overlay), as `explain` prints them. A
        single-region model: its top region and probability; a multi-region model: its regions ';'-joined
        and their scores in the same order (as predict's `regions` and `regions_probability`), or NONE_SHOWN
        and '-'."""
        if not self.multi_label:
            return [(photo, region, f"{p:.3f}", overlay) for photo, region, p, overlay in self.explained]
        return [(photo, SET_SEPARATOR.join(c for c, _ in shown) or NONE_SHOWN,
                 SET_SEPARATOR.join(f"{p:.3f}" for _, p in shown) or "-", overlay)
                for (photo, _, _, overlay), shown in zip(self.explained, self.regions, strict=True)]


def explain_folder(model: str, images: Sequence[str | os.PathLike], out: str | os.PathLike,
                   precision: str = "fp32", batch_size: int = 8, backend: str = "auto") -> ExplainResult:
    """`loscat-hf explain`: write `<name>.explain.png` overlays and return each photo's answer: its top region
    (a multi-region model: every region at or above its threshold, `ExplainResult.regions`). Under
    `accelerate launch` with several processes each explains its shard of the photos (`infer.shards`) and
    every process returns the whole result, in input order."""
    from tqdm.auto import tqdm

    from loscat_hf.infer import shards
    from loscat_hf.infer.load import load_predictor
    from loscat_hf.io.images import ImageProblemError

    procs = shards.launched()
    device = procs.device(None)
    with procs.main_first():
        predictor = load_predictor(model, device=device, precision=precision, backend=backend, explain=True)
    with procs.together():  # a node that cannot see the photos or out stops every process
        files = _list_images(images)
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
    procs.check_same("files", shards.digest([str(f) for f in files]), "images")
    result = ExplainResult([], [], multi_label=predictor.folder.multi_label)
    targets = dict(zip(files, overlay_names(files), strict=True))
    mine = shards.shard(files, batch_size, procs.index, procs.count)
    for start in tqdm(range(0, len(mine), batch_size), desc="explain", unit="batch", disable=not procs.main):
        chunk = mine[start:start + batch_size]
        good, photos, pixels = [], [], []
        for f in chunk:
            try:
                photo, x = predictor.explain_inputs(f)
            except ImageProblemError as exc:
                result.skipped.append((f, exc.reason))
                continue
            good.append(f)
            photos.append(photo)
            pixels.append(x)
        if not good:
            continue
        for f, ex in zip(good, explain_pixels(predictor, torch.stack(pixels), photos=photos), strict=True):
            pred = predictor.from_logits(ex.logits[None], top_k=1)[0]
            target = out_dir / targets[f]
            ex.overlay.save(target)
            result.explained.append((f, pred.label, pred.probability, target))
            result.regions.append(list(pred.regions))
    if procs.count > 1:  # the shards are contiguous: joined in process order, they are in input order
        parts = procs.gather(result)
        result = ExplainResult([row for part in parts for row in part.explained],
                               [row for part in parts for row in part.skipped],
                               [row for part in parts for row in part.regions], result.multi_label,
                               main=procs.main)
    if not result.explained:
        if procs.main and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # nothing written: leave no empty folder behind
        raise LoscatError(f"no photos found in {', '.join(map(str, images))} ({len(result.skipped)} "
                          "file(s) could not be read as photos)")
    return result
