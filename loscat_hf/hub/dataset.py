"""Push a packed dataset to the Hub: exactly its publishable files, nothing else."""

from __future__ import annotations

from pathlib import Path

from loscat_hf.data.dataset import (
    CARD_NAME,
    LICENSE_NAME,
    METADATA_NAME,
    PRIVATE_DIR,
    dataset_origin,
    publishable_files,
)
from loscat_hf.errors import LoscatError
from loscat_hf.hub.repo import PushResult, check_private, check_repo_id, push_files


def push_dataset_to_hub(dataset_dir: str | Path, repo_id: str, private: bool = True,
                        dry_run: str | Path | None = None) -> PushResult:
    """Make a Hub dataset repo hold exactly a packed dataset's `publishable_files`, in one commit.

    The same commit deletes every other file of the repo (a file an earlier push left, e.g. a split this
    dataset no longer has); earlier revisions stay in the repo's git history. `private` (default): a new repo
    is created private and an existing public repo is refused; `private=False` publishes. `dry_run`: write the
    exact upload folder there and upload nothing. A dataset from an older prepare (raw patient ids, no
    private/) is refused. Uses the token from `hf auth login` / HF_TOKEN; the token is never printed.
    """
    from huggingface_hub import DatasetCard

    repo_id = check_repo_id(repo_id, "repo_id")
    check_private(private)
    out = Path(dataset_dir)
    if not (out / CARD_NAME).is_file() or not (out / "train").is_dir():
        raise LoscatError(f"{out} is not a dataset written by `loscat-hf prepare` (no README.md or train/)")
    if not (out / PRIVATE_DIR).is_dir() or not (out / "train" / METADATA_NAME).is_file():
        raise LoscatError(f"{out} was written by an older loscat-hf "
                          f"(patient ids not coded, no {PRIVATE_DIR}/): "
                          "rebuild it with `loscat-hf prepare --overwrite` before pushing")
    if dataset_origin(out).get("phantom_photos") is None or not (out / LICENSE_NAME).is_file():
        raise LoscatError(f"{out} was written by an older loscat-hf: its card has no licence link and does "
                          "not say whether its photos are SYNTHETIC phantoms; rebuild it with "
                          "`loscat-hf prepare --overwrite` before pushing")
    metadata = DatasetCard.load(out / CARD_NAME).data.to_dict()
    return push_files(repo_id, "dataset", dict(publishable_files(out)), metadata, private=private,
                      message="Upload dataset prepared by loscat-hf", dry_run=dry_run)
