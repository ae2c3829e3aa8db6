"""A timm ViT written out in plain torch, for tests: random state dicts in timm's layout and timm's
forward pass.

timm itself cannot be installed beside the CPU torch of the test path (docs/pitfalls.md). This follows
timm.models.vision_transformer.VisionTransformer with class token, global_pool='token', pre-norm blocks,
fused qkv (bias), exact GELU, LayerNorm eps 1e-6, final `norm` then `head` on token 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_timm_state(dim: int = 192, depth: int = 12, patch: int = 16, image: int = 384,
                      mlp: int | None = None, classes: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mlp = mlp or 4 * dim
    tokens = (image // patch) ** 2 + 1

    def r(*shape, scale=0.05):
        return torch.randn(*shape, generator=g) * scale

    state = {"cls_token": r(1, 1, dim, scale=0.5), "pos_embed": r(1, tokens, dim, scale=0.5),
             "patch_embed.proj.weight": r(dim, 3, patch, patch), "patch_embed.proj.bias": r(dim),
             "norm.weight": 1 + r(dim), "norm.bias": r(dim), "head.weight": r(classes, dim, scale=0.5),
             "head.bias": r(classes)}
    for i in range(depth):
        b = f"blocks.{i}"
        state |= {f"{b}.norm1.weight": 1 + r(dim), f"{b}.norm1.bias": r(dim),
                  f"{b}.attn.qkv.weight": r(3 * dim, dim, scale=0.1), f"{b}.attn.qkv.bias": r(3 * dim),
                  f"{b}.attn.proj.weight": r(dim, dim), f"{b}.attn.proj.bias": r(dim),
                  f"{b}.norm2.weight": 1 + r(dim), f"{b}.norm2.bias": r(dim),
                  f"{b}.mlp.fc1.weight": r(mlp, dim), f"{b}.mlp.fc1.bias": r(mlp),
                  f"{b}.mlp.fc2.weight": r(dim, mlp), f"{b}.mlp.fc2.bias": r(dim)}
    return state


@torch.no_grad()
def timm_forward(state: dict[str, torch.Tensor], x: torch.Tensor, heads: int) -> torch.Tensor:
    """Logits of timm's VisionTransformer for a normalised batch (B, 3, H, W)."""
    w = state["patch_embed.proj.weight"]
    dim, patch = w.shape[0], w.shape[-1]
    x = F.conv2d(x, w, state["patch_embed.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    x = torch.cat([state["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + state["pos_embed"]
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})

    def ln(t, name):
        return F.layer_norm(t, (dim,), state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-6)

    for i in range(depth):
        b = f"blocks.{i}"
        h = ln(x, f"{b}.norm1")
        qkv = F.linear(h, state[f"{b}.attn.qkv.weight"], state[f"{b}.attn.qkv.bias"])
        B, N, _ = qkv.shape
        q, k, v = qkv.reshape(B, N, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(-1)
        h = (attn @ v).transpose(1, 2).reshape(B, N, dim)
        x = x + F.linear(h, state[f"{b}.attn.proj.weight"], state[f"{b}.attn.proj.bias"])
        h = F.gelu(F.linear(ln(x, f"{b}.norm2"), state[f"{b}.mlp.fc1.weight"], state[f"{b}.mlp.fc1.bias"]))
        x = x + F.linear(h, state[f"{b}.mlp.fc2.weight"], state[f"{b}.mlp.fc2.bias"])
    x = ln(x, "norm")
    return F.linear(x[:, 0], state["head.weight"], state["head.bias"])


def hub_cache_with(tmp_path, repo: str, files: dict[str, object]):
    """A local HF cache (HF_HOME layout) holding `repo` at one commit with `files` (name -> state dict or
    bytes), as `hf_hub_download` would have left it; returns the HF_HOME folder."""
    home = tmp_path / "hf_home"
    org, name = repo.split("/")
    base = home / "hub" / f"models--{org}--{name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    for fname, content in files.items():
        dest = base / "snapshots" / commit / fname
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            dest.write_bytes(content)
        else:
            torch.save(content, dest)
    return home
