"""Find and read a raw weights file: a local path or a Hub `ORG/REPO[/PATH]`, never unpickling code.

Used by `convert-timm`. Hub files come through huggingface_hub (its cache, HF_TOKEN, HF_HUB_OFFLINE), so a
file downloaded once converts offline later.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
from pathlib import Path

from loscat_hf.errors import LoscatError

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


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an error, shortened to whole sentences (or whole words, then '...'), never cut
    mid-word."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
    if len(line) <= limit:
        return line
    cut = line[:limit]
    end = cut.rfind(". ")
    return cut[:end + 1] if end > limit // 3 else cut.rsplit(" ", 1)[0] + " ..."


HUB_PROBE_S = 3.0  # how long one request may take to show that the Hub answers
OFFLINE_SET = "HF_HUB_OFFLINE is set"  # the user's choice: nothing to warn about
_WENT_OFFLINE: list[str] = []  # why `hub_unreachable` took this process offline, once it did


def hub_unreachable() -> str | None:
    """Why the Hub cannot be used now (HF_HUB_OFFLINE, or no answer within HUB_PROBE_S), or None.

    Where it does not answer, this process goes offline as HF_HUB_OFFLINE=1 would (the local HF cache only):
    huggingface_hub otherwise retries each file it does not find in the cache for ~25 s (docs/upstream.md).
    The request runs in a thread so that a hanging name lookup cannot outlast the limit either."""
    import threading

    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return _WENT_OFFLINE[0] if _WENT_OFFLINE else OFFLINE_SET
    failed = [f"nothing within {HUB_PROBE_S:g} s"]  # until the request answers

    def probe() -> None:
        try:
            get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_S)  # any status is an answer
            failed.clear()
        except Exception as exc:  # httpx's transport errors (not OSErrors), SSL, a refusing proxy
            failed[0] = _first_line(exc, 80)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(HUB_PROBE_S + 1)
    if not failed:
        return None
    why = f"{constants.ENDPOINT} did not answer: {failed[0]}"
    _WENT_OFFLINE[:] = [why]
    constants.HF_HUB_OFFLINE = True  # what huggingface_hub's and transformers' offline checks read
    os.environ["HF_HUB_OFFLINE"] = "1"  # and what worker processes read
    return why


def _why(exc: BaseException, offline: str | None) -> str:
    """Why the Hub could not serve a file: the offline reason for a cache miss, else the error itself."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    return offline if offline and isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled)) else \
        _first_line(exc, 120)


def _by_hand(repo: str, filename: str, why: str) -> str:
    """What to do when a Hub checkpoint cannot be fetched: fetch it by hand, convert it, use the folder."""
    from huggingface_hub import constants

    return (f"cannot download {repo}/{filename}: it is not in the local HF cache and the Hub cannot be used "
            f"({why}); download it by hand from {constants.ENDPOINT}/{repo}/resolve/main/{filename}, convert "
            f"it with `loscat-hf convert-timm {Path(filename).name} --out FOLDER` and use that model folder "
            "(--model FOLDER)")


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
                              f"{_first_line(exc)}") from None
        try:
            snapshot = Path(snapshot_download(repo, local_files_only=True))
        except Exception:  # not in the cache either
            raise LoscatError(f"cannot list the Hub repo {repo}: it is not in the local HF cache and the Hub "
                              f"cannot be used ({_why(exc, offline)}); download the weights file by hand and "
                              "pass its path") from None
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
                              f"token): {_first_line(exc)}") from None
        raise LoscatError(_by_hand(repo, filename, _why(exc, offline))) from None  # offline, unreachable
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
                          f"refused: {_first_line(exc)[:160]})") from None
    except Exception as exc:  # truncated zip, not a pickle, damaged safetensors header
        raise LoscatError(f"cannot read {path}: not a torch.save or safetensors weights file, or a damaged "
                          f"one ({type(exc).__name__}: {_first_line(exc)[:160]})") from None
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


# The files `from_pretrained` loads weights from, as transformers.utils names them (SAFE_WEIGHTS_NAME,
# WEIGHTS_NAME and their index files, with "-0000k-of-0000n" shards and ".variant" names; peft's
# adapter_model.*). Spelled out, not imported: the torch-free `predict` start imports no transformers
# (tests/test_cache_keys.py checks them against transformers). "*.safetensors" was the whole rule before, so
# a safetensors-only folder keeps its fingerprint; training_args.bin is not a weights file.
_LOADABLE = ("*.safetensors", "pytorch_model*.bin", "adapter_model*.bin", "*.safetensors.index.json",
             "pytorch_model*.bin.index.json")


def weights_files(folder: str | Path) -> list[Path]:
    """Every file of a local model folder that transformers may load weights from, sorted by name: the
    patterns above, and any shard an index file names."""
    root = Path(folder)
    if not root.is_dir():
        return []
    found = {p for pattern in _LOADABLE for p in root.glob(pattern) if p.is_file()}
    for index in [p for p in found if p.name.endswith(".index.json")]:
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            continue  # a damaged index: hashed as it is; loading it fails with transformers' own error
        inside = (os.path.normpath(s) for s in shards if isinstance(s, str) and not os.path.isabs(s))
        found |= {root / s for s in inside if not s.startswith("..") and (root / s).is_file()}
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def weights_fingerprint(folder: str | Path) -> str | None:
    """sha256 over every weights file of a model folder that transformers may load (names and contents:
    safetensors, pytorch_model*.bin, shards and their index files): which weights an evaluation report
    measured, so a card never shows another model's numbers. None for a Hub id or a folder without them."""
    files = weights_files(folder)
    if not any(not p.name.endswith(".index.json") for p in files):
        return None
    digest = hashlib.sha256()
    for path in files:  # relative names: a top-level file's is its name, as always
        with open(path, "rb") as fh:
            name = path.relative_to(folder).as_posix()
            digest.update(name.encode() + b"\0" + hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()
