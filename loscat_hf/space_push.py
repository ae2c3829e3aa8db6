"""`loscat-hf push-space`: upload a self-contained Space folder (app, requirements, examples, loscat_hf).

A fresh Space has no loscat_hf on PyPI to install, so the package itself is copied beside app.py; a local
model folder can be bundled too, a Hub model id is set as the Space variable LOSCAT_MODEL.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from loscat_hf.errors import LoscatError

PACKAGE_DIR = Path(__file__).resolve().parent
SPACE_DIR = PACKAGE_DIR.parent / "space"


def build_space_folder(out: str | Path, model: str | None = None) -> Path:
    """Assemble the Space folder at `out` (must not exist or be empty) and return it."""
    if not (SPACE_DIR / "app.py").is_file():
        raise LoscatError(f"no space/ folder beside the package ({SPACE_DIR}): run from a repository checkout")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise LoscatError(f"{out} is not empty")
    shutil.copytree(SPACE_DIR, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(PACKAGE_DIR, out / "loscat_hf", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if model and Path(model).is_dir():
        if not (Path(model) / "config.json").is_file():
            raise LoscatError(f"{model} has no config.json: not a saved model folder")
        shutil.copytree(model, out / "model", ignore=shutil.ignore_patterns("checkpoint-*", "runs", "*.bin.index*"))
    return out


def push_space(repo_id: str, model: str | None = None, private: bool = True) -> str:
    """Create (or update) the Space `repo_id` and upload the folder; returns the Space URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    with tempfile.TemporaryDirectory(prefix="loscat-space-") as tmp:
        folder = build_space_folder(Path(tmp) / "space", model=model)
        try:
            api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
            api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="space",
                              commit_message="loscat-hf push-space")
            if model and not Path(model).is_dir():
                api.add_space_variable(repo_id, "LOSCAT_MODEL", model)
        except Exception as exc:  # network, auth: the user can fix these
            raise LoscatError(f"cannot push the Space {repo_id}: {str(exc).splitlines()[0]}") from None
    return f"https://huggingface.co/spaces/{repo_id}"
