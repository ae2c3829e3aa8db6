"""`loscat-hf push-space`: upload a self-contained Space folder (app, requirements, examples, loscat_hf).

A fresh Space has no loscat_hf on PyPI to install, so the package itself is copied beside app.py; a local
model folder can be bundled too, a Hub model id is set as the Space variable LOSCAT_MODEL.

Like `push`, only an allow-list leaves the machine: the model folder goes through `hub.upload_files` (the one
allow-list of the package: never `training_args.bin`, `train_summary.json`, reports, checkpoints or logs),
and the Space and package files are named explicitly, so whatever a local run left in `space/` (gradio's
cache, flagged photos) or in the package folder stays local. `--dry-run DIR` writes exactly that folder.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from loscat_hf.errors import LoscatError
from loscat_hf.hub.model import upload_files

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parents[1]
SPACE_DIR = PACKAGE_DIR.parent / "space"
SPACE_FILES = ("app.py", "README.md", "requirements.txt", "examples/README.md")
EXAMPLE_PATTERN = "examples/SYNTHETIC_*.jpg"
PACKAGE_PATTERNS = ("**/*.py", "resources/*.json", "resources/*.md")
MODEL_PREFIX = "model"


def space_files(model: str | Path | None = None) -> dict[str, Path]:
    """Space path -> local file for everything push-space uploads."""
    if not (SPACE_DIR / "app.py").is_file():
        raise LoscatError(f"no space/ folder beside the package ({SPACE_DIR}): run from a repository checkout")
    files = {name: SPACE_DIR / name for name in SPACE_FILES if (SPACE_DIR / name).is_file()}
    files |= {p.relative_to(SPACE_DIR).as_posix(): p for p in sorted(SPACE_DIR.glob(EXAMPLE_PATTERN))}
    for pattern in PACKAGE_PATTERNS:
        for p in sorted(PACKAGE_DIR.glob(pattern)):
            if "__pycache__" not in p.parts and p.is_file():
                files[f"loscat_hf/{p.relative_to(PACKAGE_DIR).as_posix()}"] = p
    if model is not None and Path(model).is_dir():
        files |= {f"{MODEL_PREFIX}/{name}": p for name, p in upload_files(model).items()}
    return files


def build_space_folder(out: str | Path, model: str | Path | None = None) -> Path:
    """Copy exactly what push-space uploads into `out` (must not exist or be empty) and return it."""
    files = space_files(model)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise LoscatError(f"{out} is not empty")
    for name, src in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out / name)
    return out


def push_space(repo_id: str, model: str | None = None, private: bool = True,
               dry_run: str | Path | None = None) -> str:
    """Create (or update) the Space `repo_id` and upload the folder; returns the Space URL.

    With `dry_run`, only write the folder there and upload nothing."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise LoscatError(f"--repo-id must look like ORG/NAME, got {repo_id!r}")
    hub_model = model if model and not Path(model).is_dir() else None
    if dry_run is not None:
        build_space_folder(dry_run, model=model)
        note = f" (the Space variable LOSCAT_MODEL would be set to {hub_model})" if hub_model else ""
        return f"dry run: Space folder written to {dry_run}{note}"
    from huggingface_hub import HfApi, get_token

    if get_token() is None:
        raise LoscatError("not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN")
    api = HfApi()
    with tempfile.TemporaryDirectory(prefix="loscat-space-") as tmp:
        folder = build_space_folder(Path(tmp) / "space", model=model)
        try:
            api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
            # delete_patterns: files an earlier push-space put under model/ that the allow-list now leaves out
            api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="space",
                              commit_message="loscat-hf push-space", delete_patterns=[f"{MODEL_PREFIX}/*"])
            if hub_model:
                api.add_space_variable(repo_id, "LOSCAT_MODEL", hub_model)
        except Exception as exc:  # network, auth: the user can fix these
            raise LoscatError(f"cannot push the Space {repo_id}: {str(exc).splitlines()[0]}") from None
    log.info("pushed %d files to the Space %s", len(space_files(model)), repo_id)
    return f"https://huggingface.co/spaces/{repo_id}"
