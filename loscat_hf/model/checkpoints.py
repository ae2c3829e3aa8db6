"""Find and read a raw weights file: a local path or a Hub `ORG/REPO[/PATH]`, never unpickling code.

Used by `convert-timm`. Hub files come through huggingface_hub (its cache, HF_TOKEN, HF_HUB_OFFLINE), so a
file downloaded once converts offline later.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path

from loscat_hf.errors import LoscatError
from loscat_hf.model.hub_access import OFFLINE_SET, download_by_hand, first_line, hub_unreachable, why_failed

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
# the usual wrappers around a state dict in training scripts' torch.save(...) calls
_WRAPPERS = ("state_dict", "model", "model_state_dict")


def _weight_files(names) -> list[str]:
    return sorted(n for n in names
                  if n.lower().endswith(WEIGHT_SUFFIXES) and not Path(n).name.startswith("."))


def _pick(files: list[str], where: str) -> str:
    if not files:
        raise LoscatError(f"{where} holds no weights file ({', '.join(WEIGHT_SUFFIXES)})")
    if len(files) > 1:
        raise LoscatError(f"{where} holds {len(files)} weights files: {', '.join(files)}; name one "
                          f"(e.g. {where.rstrip('/')}/{files[0]})")
    return files[0]


def _hub_files(repo: str) -> list[str]:
    """Weight files of a Hub repo: listed online, or from the local cache when offline or unreachable."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    offline = hub_unreachable()  # offline (set, or now), the listing below fails at once
    try:
        return _weight_files(HfApi().list_repo_files(repo))
    except Exception as exc:  # offline mode, a transport error (httpx's are not OSErrors), HTTP errors
        if isinstance(exc, HfHubHTTPError) and getattr(exc.response, "status_code", 0) in (401, 403, 404):
            raise LoscatError(f"Hub repo {repo} does not exist or is not readable with your token: "
                              f"{first_line(exc)}") from None
        try:
            snapshot = Path(snapshot_download(repo, local_files_only=True))
        except Exception:  # not in the cache either
            raise LoscatError(f"cannot list the Hub repo {repo}: it is not in the local HF cache and the Hub "
                              f"cannot be used ({why_failed(exc, offline)}); download the weights file by "
                              "hand and pass its path") from None
        return _weight_files(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*")
                             if p.is_file())


def resolve_checkpoint(ref: str) -> tuple[Path, str]:
    """(local file, description) for a local path or a Hub reference `ORG/REPO` or `ORG/REPO/PATH`.

    A repo (or folder) with several weights files is an error listing them; nothing is guessed."""
    ref = str(ref)
    local = Path(os.path.expanduser(ref))
    if local.is_dir():
        return (local / _pick(_weight_files(p.name for p in local.iterdir() if p.is_file()), str(local)),
                str(local))
    if local.is_file():
        return local, str(local)
    parts = ref.split("/")
    looks_local = (ref.startswith((".", "/", "~")) or "\\" in ref or re.match(r"[A-Za-z]:", ref)
                   or len(parts) < 2 or ref.endswith("/")
                   or (len(parts) == 2 and ref.lower().endswith(WEIGHT_SUFFIXES)))
    if looks_local:  # `models/x.pt` is a mistyped local path, not the Hub repo "models/x.pt"
        raise LoscatError(f"no such checkpoint file {ref!r} (a Hub reference looks like ORG/REPO or "
                          f"ORG/REPO/FILE)")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    repo = "/".join(parts[:2])
    filename = "/".join(parts[2:]) if len(parts) > 2 else _pick(_hub_files(repo), repo)
    if not filename.lower().endswith(WEIGHT_SUFFIXES):
        raise LoscatError(f"{repo}/{filename} is not a weights file ({', '.join(WEIGHT_SUFFIXES)})")
    offline = hub_unreachable()  # offline (set, or now): not in the cache fails at once
    try:
        path = hf_hub_download(repo, filename)
    except Exception as exc:
        if isinstance(exc, (HfHubHTTPError, ValueError)):  # 404, no token, an invalid repo id or file name
            raise LoscatError(f"cannot download {repo}/{filename} (not on the Hub, or not readable with your "
                              f"token): {first_line(exc)}") from None
        # offline, unreachable
        raise LoscatError(download_by_hand(repo, filename, why_failed(exc, offline))) from None
    if offline not in (None, OFFLINE_SET):
        logger.warning("the Hub cannot be used (%s): %s/%s comes from the local HF cache", offline, repo,
                       filename)
    return Path(path), f"{repo}/{filename}"


def load_state_dict(path: str | Path) -> dict:
    """Tensors of a .safetensors file or a torch pickle read with weights_only=True (no code can run).

    A state dict wrapped in {'state_dict': ...} (or 'model', 'model_state_dict') and DataParallel's
    'module.' prefixes are unwrapped; anything else that is not a flat name -> tensor dict is refused."""
    import torch

    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise LoscatError(f"{path} is not a plain weights file (it would need to run pickled code, which is "
                          f"refused: {first_line(exc)[:160]})") from None
    except Exception as exc:  # truncated zip, not a pickle, damaged safetensors header
        raise LoscatError(f"cannot read {path}: not a torch.save or safetensors weights file, or a damaged "
                          f"one ({type(exc).__name__}: {first_line(exc)[:160]})") from None
    for key in _WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        kinds = type(state).__name__ if not isinstance(state, dict) else f"dict with keys {list(state)[:4]}"
        raise LoscatError(f"{path} is not a state dict of tensors (it holds a {kinds})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    logger.info("read %d tensors from %s", len(state), path)
    return state
