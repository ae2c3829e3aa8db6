"""Push a packed dataset to the Hub: exactly its publishable files, nothing else."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from loscat_hf.data.dataset import CARD_NAME, METADATA_NAME, PRIVATE_DIR, publishable_files
from loscat_hf.errors import LoscatError

logger = logging.getLogger(__name__)


def push_dataset_to_hub(out_dir: str | Path, repo_id: str, private: bool = True) -> str:
    """Make a Hub dataset repo hold exactly a packed dataset's `publishable_files`; returns its URL.

    One commit adds those files and deletes every other file of the repo (a file an earlier push left, e.g.
    a split this dataset no longer has), so the repo's current files are the allow-list; earlier revisions
    stay in the repo's git history. A dataset from an older prepare (raw patient ids, no private/) is refused.
    Uses the token from `hf auth login` / HF_TOKEN; the token is never printed.
    """
    out = Path(out_dir)
    if not (out / CARD_NAME).is_file() or not (out / "train").is_dir():
        raise LoscatError(f"{out} is not a dataset written by `loscat-hf prepare` (no README.md or train/)")
    if not (out / PRIVATE_DIR).is_dir() or not (out / "train" / METADATA_NAME).is_file():
        raise LoscatError(f"{out} was written by an older loscat-hf (patient ids not coded, no {PRIVATE_DIR}/): "
                          "rebuild it with `loscat-hf prepare --overwrite` before pushing")
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    files = publishable_files(out)
    keep = {name for name, _ in files} | {".gitattributes"}
    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        stale = [f for f in api.list_repo_files(repo_id, repo_type="dataset") if f not in keep]
        api.create_commit(
            repo_id=repo_id, repo_type="dataset", commit_message="Upload dataset prepared by loscat-hf",
            operations=[CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files]
            + [CommitOperationDelete(path_in_repo=name) for name in stale],
        )
    except Exception as exc:  # noqa: BLE001 - network/auth errors become one readable line
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        message = re.sub(r"hf_[A-Za-z0-9]{6,}", "hf_***", message)  # some errors echo the token
        raise LoscatError(
            f"could not push {out} to the Hub dataset repo {repo_id!r}: {message} "
            "(log in with `hf auth login` or set HF_TOKEN)"
        ) from None
    if stale:
        logger.info("deleted %d file(s) outside the allow-list from %s", len(stale), repo_id)
    return str(url)
