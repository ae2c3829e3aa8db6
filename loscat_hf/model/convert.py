"""`loscat-hf convert-timm`: a timm ViT checkpoint (the study's published model) -> a standard model folder.

The LoSCAT study (github caoyuanyuan-tz/LoSCAT_BodyRec) published a plain state dict of
`timm.create_model("vit_base_patch16_384", num_classes=12)`. timm cannot be installed beside the CPU torch
this project uses (docs/pitfalls.md), and plain `transformers` is what collaborators load, so the tensors are
renamed into `ViTForImageClassification` here: the fused qkv rows split in q, k, v order, LayerNorm eps 1e-6
as in timm, sizes read from the tensor shapes, heads and depth from the timm architecture name. The folder
also states the checkpoint's own preprocessing (bicubic 384, ImageNet mean/std) in preprocessor_config.json
and records FULL decoding (the whole photo, resized once: the study's inference script), which every loscat-hf
decode path follows, and a model card crediting the authors. What is published about a local checkpoint is
"local file" and its sha256, never its name (a file or folder may be named after a patient).

Pickles are read with `torch.load(weights_only=True)`: a checkpoint can never run code here.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from loscat_hf.errors import LoscatError
from loscat_hf.io.atomic import check_output_dir, commit_folder, partial_folder
from loscat_hf.io.hashing import file_sha256
from loscat_hf.model.build import PROBLEM_TYPE, image_processor
from loscat_hf.model.checkpoints import load_state_dict, resolve_checkpoint
from loscat_hf.model.folder import FULL, LOCAL_CHECKPOINT, record_decoding, record_source
from loscat_hf.model.study import (
    BICUBIC,
    IMAGENET_MEAN,
    IMAGENET_STD,
    STUDY_ARCH,
    STUDY_CHECKPOINT,
    STUDY_CLASS_CODES,
    STUDY_CODE_REPO,
    STUDY_WEIGHTS_REPO,
)
from loscat_hf.taxonomy import Taxonomy, load_taxonomy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimmArch:
    """What a timm ViT name fixes: heads (the tensors cannot say), and the width and depth they must have."""

    width: int
    heads: int
    depth: int
    patch: int
    image_size: int


_SIZES = {"tiny": (192, 3, 12), "small": (384, 6, 12), "base": (768, 12, 12), "large": (1024, 16, 24)}
ARCHS: dict[str, TimmArch] = {
    f"vit_{name}_patch{p}_{s}": TimmArch(width, heads, depth, p, s)
    for name, (width, heads, depth) in _SIZES.items() for p in (16, 32) for s in (224, 384)
}


@dataclass
class ConvertResult:
    """The folder written and what went into it."""

    out_dir: Path
    source: str
    arch: str
    labels: list[str]  # taxonomy class names, in the checkpoint's output order
    codes: list[str]  # the checkpoint's own class names (study codes)
    image_size: int
    n_tensors: int

    def summary(self) -> str:
        return (f"converted {self.source} ({self.arch}, {self.n_tensors} tensors, {self.image_size} px, "
                f"{len(self.labels)} classes: {', '.join(self.labels)}) -> {self.out_dir}")


def _block_keys(i: int) -> list[str]:
    return [f"blocks.{i}.{part}.{wb}"
            for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
            for wb in ("weight", "bias")]


def expected_keys(depth: int) -> set[str]:
    top = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight",
           "norm.bias", "head.weight", "head.bias"}
    return top | {k for i in range(depth) for k in _block_keys(i)}


def _natural(key: str) -> list:
    """Sort key: blocks.2 before blocks.10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _few(keys, n: int = 4) -> str:
    """Some key names, whole blocks shown as `blocks.12-23.*`: the message stays one readable line."""
    keys = set(keys)
    blocks = {int(k.split(".")[1]) for k in keys if re.match(r"blocks\.\d+\.", k)}
    whole = sorted(i for i in blocks if set(_block_keys(i)) <= keys)
    keys -= {k for i in whole for k in _block_keys(i)}
    runs = []
    for i in whole:
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    parts = [f"blocks.{a}{f'-{b}' if b > a else ''}.*" for a, b in runs]
    parts += sorted(keys, key=_natural)
    return ", ".join(parts[:n]) + (f" (+{len(parts) - n} more)" if len(parts) > n else "")


def check_layout(state: dict, arch_name: str, where: str) -> TimmArch:
    """Refuse anything but exactly the tensors of `arch_name`, with one line naming what is missing or
    extra."""
    if arch_name not in ARCHS:
        raise LoscatError(f"arch {arch_name!r} is not a known timm ViT; known: {', '.join(sorted(ARCHS))}",
                          param="arch")
    arch = ARCHS[arch_name]
    if any(k.startswith(("vit.", "classifier.")) for k in state):
        raise LoscatError(f"{where} is already a transformers checkpoint (vit.*, classifier.*), not a timm "
                          "one: use its folder as a model directly", param="checkpoint")
    if not any(k.startswith("blocks.") for k in state) or "cls_token" not in state:
        raise LoscatError(f"{where} is not a timm ViT state dict (no cls_token/blocks.N.*; first keys: "
                          f"{_few(state, 3)})")
    want = expected_keys(arch.depth)
    missing, extra = want - set(state), set(state) - want
    if missing or extra:
        parts = (([f"missing {_few(missing)}"] if missing else [])
                 + ([f"extra {_few(extra)}"] if extra else []))
        raise LoscatError(f"{where} does not fit timm {arch_name} ({arch.depth} blocks): {'; '.join(parts)}")
    return arch


def expected_shapes(state: dict, arch: TimmArch) -> dict[str, tuple[int, ...]]:
    """The shape each tensor of `arch` must have. Width, MLP size, patch, tokens and classes come from the
    tensors that state them when those have the right number of dimensions, else from the architecture."""

    def size(key: str, ndim: int, dim: int, default: int) -> int:
        t = state.get(key)
        return int(t.shape[dim]) if t is not None and t.dim() == ndim else default

    d = size("cls_token", 3, -1, arch.width)
    p = size("patch_embed.proj.weight", 4, -1, arch.patch)
    tokens = size("pos_embed", 3, 1, (arch.image_size // arch.patch) ** 2 + 1)
    m = size("blocks.0.mlp.fc1.weight", 2, 0, 4 * d)
    c = size("head.weight", 2, 0, size("head.bias", 1, 0, 1))
    shapes = {"cls_token": (1, 1, d), "pos_embed": (1, tokens, d), "patch_embed.proj.weight": (d, 3, p, p),
              "patch_embed.proj.bias": (d,), "norm.weight": (d,), "norm.bias": (d,), "head.weight": (c, d),
              "head.bias": (c,)}
    for i in range(arch.depth):
        b = f"blocks.{i}"
        shapes |= {f"{b}.norm1.weight": (d,), f"{b}.norm1.bias": (d,), f"{b}.norm2.weight": (d,),
                   f"{b}.norm2.bias": (d,), f"{b}.attn.qkv.weight": (3 * d, d),
                   f"{b}.attn.qkv.bias": (3 * d,), f"{b}.attn.proj.weight": (d, d),
                   f"{b}.attn.proj.bias": (d,), f"{b}.mlp.fc1.weight": (m, d), f"{b}.mlp.fc1.bias": (m,),
                   f"{b}.mlp.fc2.weight": (d, m), f"{b}.mlp.fc2.bias": (d,)}
    return shapes


_KINDS = {0: "a single number", 1: "a vector", 2: "a matrix"}


def check_tensors(state: dict, arch: TimmArch, arch_name: str, where: str, full: bool = False) -> None:
    """Refuse, in one line naming the tensor, weights that are not real floating point, a tensor with the
    wrong number of dimensions (e.g. a 0-d or 1-d tensor where a matrix belongs) and, with `full`, any other
    shape than `arch`'s or a NaN or infinite value: they would be a traceback, or a model that answers
    nonsense."""
    import torch

    shapes = expected_shapes(state, arch)
    for key in sorted(state, key=_natural):
        t, want = state[key], shapes[key]
        if t.is_complex() or not t.is_floating_point():
            raise LoscatError(f"{where}: tensor {key} is {str(t.dtype).replace('torch.', '')}, not real "
                              "floating point; this is not a trained timm ViT's weights (a damaged or "
                              "re-typed checkpoint): convert the original file")
        if t.dim() != len(want) or (full and tuple(t.shape) != want):
            kind = _KINDS.get(len(want), f"a {len(want)}-d tensor")
            raise LoscatError(f"{where}: tensor {key} has shape {list(t.shape)}, but timm {arch_name} needs "
                              f"{kind} of shape {list(want)}; convert the original, undamaged checkpoint")
        if full and not bool(torch.isfinite(t).all()):
            raise LoscatError(f"{where}: tensor {key} holds NaN or infinite values (a damaged file or a "
                              "diverged training run); refusing to convert: use an intact checkpoint")


def vit_config(state: dict, arch: TimmArch, id2label: dict[int, str], where: str):
    """ViTConfig with the sizes the tensors have (hidden, mlp, patch, image size) and timm's eps 1e-6."""
    from transformers import ViTConfig

    hidden = int(state["cls_token"].shape[-1])
    proj = tuple(state["patch_embed.proj.weight"].shape)
    tokens = int(state["pos_embed"].shape[1])
    grid = round((tokens - 1) ** 0.5)
    n_classes = int(state["head.weight"].shape[0])
    problems, params = [], []
    if hidden != arch.width:  # the heads would be wrong: refuse rather than compute something else
        fits = sorted({n.split("_patch")[0] for n, a in ARCHS.items() if a.width == hidden})
        problems.append(f"its tensors are {hidden} wide, the architecture's are {arch.width}"
                        + (f" (try arch '{fits[0]}_patch{proj[-1]}_{grid * proj[-1]}')" if fits else ""))
        params.append("arch")
    if len(proj) != 4 or proj[0] != hidden or proj[1] != 3 or proj[2] != proj[3]:
        problems.append(f"patch_embed.proj.weight has shape {list(proj)}")
    if grid * grid != tokens - 1:
        problems.append(f"pos_embed has {tokens} tokens, not 1 + a square grid")
    if tuple(state["blocks.0.attn.qkv.weight"].shape) != (3 * hidden, hidden):
        problems.append(f"blocks.0.attn.qkv.weight is {list(state['blocks.0.attn.qkv.weight'].shape)}, "
                        f"not [{3 * hidden}, {hidden}]")
    if n_classes != len(id2label):
        problems.append(f"the head has {n_classes} outputs but {len(id2label)} labels were given")
        params.append("labels")
    if problems:
        raise LoscatError(f"{where}: {'; '.join(problems)}", param=params)
    image_size = grid * proj[2]
    if image_size != arch.image_size or proj[2] != arch.patch:
        logger.warning("%s: the tensors say patch %d, %d px; the name %s says patch %d, %d px "
                       "(the tensors win)",
                       where, proj[2], image_size, f"vit_*_patch{arch.patch}_{arch.image_size}", arch.patch,
                       arch.image_size)
    return ViTConfig(
        hidden_size=hidden, num_hidden_layers=arch.depth, num_attention_heads=arch.heads,
        intermediate_size=int(state["blocks.0.mlp.fc1.weight"].shape[0]), hidden_act="gelu",
        layer_norm_eps=1e-6, image_size=image_size, patch_size=proj[2], num_channels=3, qkv_bias=True,
        num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()},
        problem_type=PROBLEM_TYPE,  # the study's model gives one region per photo
    )


def rename_tensors(state: dict, depth: int, target_keys: set[str]) -> dict:
    """timm names -> the installed transformers' ViTForImageClassification names (5.x `vit.layers.N`, or the
    4.x `vit.encoder.layer.N` names), splitting each fused qkv into q, k and v."""
    new = "vit.layers.0.attention.q_proj.weight" in target_keys
    out = {
        "vit.embeddings.cls_token": state["cls_token"],
        "vit.embeddings.position_embeddings": state["pos_embed"],
        "vit.layernorm.weight": state["norm.weight"], "vit.layernorm.bias": state["norm.bias"],
        "classifier.weight": state["head.weight"], "classifier.bias": state["head.bias"],
    }
    for wb in ("weight", "bias"):
        out[f"vit.embeddings.patch_embeddings.projection.{wb}"] = state[f"patch_embed.proj.{wb}"]
    for i in range(depth):
        b, t = f"blocks.{i}", (f"vit.layers.{i}" if new else f"vit.encoder.layer.{i}")
        names = ({"q": "attention.q_proj", "k": "attention.k_proj", "v": "attention.v_proj",
                  "o": "attention.o_proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"} if new else
                 {"q": "attention.attention.query", "k": "attention.attention.key",
                  "v": "attention.attention.value", "o": "attention.output.dense",
                  "fc1": "intermediate.dense", "fc2": "output.dense"})
        for wb in ("weight", "bias"):
            q, k, v = state[f"{b}.attn.qkv.{wb}"].chunk(3, dim=0)
            out |= {f"{t}.{names['q']}.{wb}": q, f"{t}.{names['k']}.{wb}": k, f"{t}.{names['v']}.{wb}": v,
                    f"{t}.{names['o']}.{wb}": state[f"{b}.attn.proj.{wb}"],
                    f"{t}.{names['fc1']}.{wb}": state[f"{b}.mlp.fc1.{wb}"],
                    f"{t}.{names['fc2']}.{wb}": state[f"{b}.mlp.fc2.{wb}"],
                    f"{t}.layernorm_before.{wb}": state[f"{b}.norm1.{wb}"],
                    f"{t}.layernorm_after.{wb}": state[f"{b}.norm2.{wb}"]}
    return {k: v.float().contiguous() for k, v in out.items()}


def parse_labels(codes: list[str] | tuple[str, ...], taxonomy: Taxonomy) -> list[str]:
    """The checkpoint's class names (study codes or any spelling) -> the taxonomy's classes, each once."""
    labels = []
    for code in codes:
        parsed = taxonomy.parse(code)
        if parsed.label is None:
            raise LoscatError(f"labels: {code!r} is a non-site code ({parsed.code}), not a class",
                              param="labels")
        labels.append(parsed.label)
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise LoscatError(f"labels names the class(es) {', '.join(twice)} more than once: {', '.join(codes)}",
                          param="labels")
    return labels


def public_source(path: Path) -> dict:
    """What config.json and the card may say about a local checkpoint: that it was a local file, and its
    sha256 (to tell which file it was by its content). Its name and folder may name a patient, and a pushed
    folder publishes both: allow-listed, never copied."""
    return {"checkpoint": LOCAL_CHECKPOINT, "sha256": file_sha256(path)}


def convert_timm(checkpoint: str, out: str | Path, arch: str = STUDY_ARCH,
                 labels: list[str] | tuple[str, ...] | None = None, taxonomy: str | Taxonomy | None = None,
                 overwrite: bool = False) -> ConvertResult:
    """Convert a timm ViT checkpoint (local file or Hub `ORG/REPO[/PATH]`) into a model folder at `out`.

    labels: the checkpoint's class names in output order (default: the study's 12 codes).
    """
    from transformers import ViTForImageClassification

    from loscat_hf.model.card import converted_card

    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    out = check_output_dir(out, overwrite)
    path, source = resolve_checkpoint(checkpoint)
    state = load_state_dict(path)
    timm_arch = check_layout(state, arch, source)
    check_tensors(state, timm_arch, arch, source)  # dtypes and dimensions: vit_config reads shapes
    local = Path(os.path.expanduser(str(checkpoint))).exists()
    study = not local and source.startswith(STUDY_WEIGHTS_REPO + "/")
    if not labels and not study:
        logger.warning("no labels given: assuming the study's class order %s", ",".join(STUDY_CLASS_CODES))
    codes = list(labels) if labels else list(STUDY_CLASS_CODES)
    classes = parse_labels(codes, tax)
    config = vit_config(state, timm_arch, dict(enumerate(classes)), source)
    check_tensors(state, timm_arch, arch, source, full=True)
    published = public_source(path) if local else {"checkpoint": source, "hub": True}
    source = published["checkpoint"] + (f" (sha256 {published['sha256'][:16]})" if local else "")
    record_source(config, {**published, "arch": arch, "labels": codes, "study": study,
                           "code": f"https://github.com/{STUDY_CODE_REPO}" if study else None,
                           "weights_repo": STUDY_WEIGHTS_REPO if study else None})
    record_decoding(config, FULL)  # the study's script: one bicubic resize of the whole photo
    model = ViTForImageClassification(config)
    renamed = rename_tensors(state, timm_arch.depth, set(model.state_dict()))
    try:
        model.load_state_dict(renamed, strict=True)
    except RuntimeError as exc:  # shapes that passed the checks above but not the model (e.g. a head bias)
        raise LoscatError(f"{source} does not fit {arch}: {str(exc).splitlines()[-1].strip()}") from None
    processor = image_processor(config.image_size, IMAGENET_MEAN, IMAGENET_STD, resample=BICUBIC)
    tmp = partial_folder(out)  # what a killed conversion left (350 MB each for ViT-B) goes first
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        converted_card(config, processor, source, arch, codes, study).save(tmp / "README.md")
        commit_folder(tmp, out, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("wrote %s", out)
    return ConvertResult(out_dir=out, source=source, arch=arch, labels=classes, codes=codes,
                         image_size=config.image_size, n_tensors=len(state))


def cached_conversion(checkpoint: str = STUDY_CHECKPOINT, cache_dir: str | Path | None = None) -> Path:
    """The converted folder of a (Hub) checkpoint, converted on first use and reused after (the Space's
    default model). It lives under HF_HOME/loscat-hf/converted/ unless `cache_dir` says otherwise, one folder
    per Hub revision: a checkpoint the authors update is converted again."""
    from huggingface_hub import constants

    path, _ = resolve_checkpoint(checkpoint)  # the HF cache: a download once, then an ETag check (or offline)
    parts = path.parts
    revision = parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else ""
    root = Path(cache_dir) if cache_dir else Path(constants.HF_HOME) / "loscat-hf" / "converted"
    out = root / re.sub(r"[^A-Za-z0-9._-]+", "--", f"{checkpoint.strip('/')}@{revision[:12]}".rstrip("@"))
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    logger.info("converting %s once into %s", checkpoint, out)
    convert_timm(checkpoint, out, overwrite=True)
    return out


__all__ = ["ARCHS", "STUDY_CHECKPOINT", "STUDY_CLASS_CODES", "ConvertResult", "cached_conversion",
           "convert_timm"]
