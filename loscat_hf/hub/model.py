"""`loscat-hf push`: publish a trained model folder on the Hugging Face Hub with a filled-in model card.

Only an allow-list of files leaves the machine (config, safetensors weights, preprocessor config, the
confusion-matrix image and the generated README.md): checkpoints, optimizer states, `training_args.bin`
(a pickle with local paths), logs and per-photo reports never do. Repos are private unless asked otherwise.
The token comes from `hf auth login` or HF_TOKEN through huggingface_hub and is never printed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from loscat_hf.errors import LoscatError
from loscat_hf.model.card import CARD_NAME, model_card

WEIGHT_PATTERNS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")
CONFIG_FILES = ("config.json", "preprocessor_config.json")


def upload_files(model_dir: str | Path) -> dict[str, Path]:
    """Repo path -> local file for everything that would be uploaded (except the generated README.md).

    The package's one allow-list for model files: `push-space` bundles these same files under `model/`."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise LoscatError(f"{model_dir} is not a saved model folder (no config.json)")
    files: dict[str, Path] = {}
    for name in CONFIG_FILES:
        if (model_dir / name).is_file():
            files[name] = model_dir / name
    for pattern in WEIGHT_PATTERNS:
        for p in sorted(model_dir.glob(pattern)):
            files[p.name] = p
    if not any(n.endswith(".safetensors") for n in files):
        raise LoscatError(f"{model_dir} has no model.safetensors: save with save_pretrained (safe_serialization)")
    if "preprocessor_config.json" not in files:
        raise LoscatError(f"{model_dir} has no preprocessor_config.json: save the image processor with the model")
    cm = model_dir / "eval" / "confusion_matrix.png"
    if cm.is_file():
        files["confusion_matrix.png"] = cm
    return files


def stage(model_dir: str | Path, card, dest: str | Path) -> Path:
    """Copy exactly what would be uploaded into `dest`, `card` (a rendered ModelCard) as README.md; return it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise LoscatError(f"{dest} is not empty")
    for name, src in upload_files(model_dir).items():
        shutil.copy2(src, dest / name)
    card.save(dest / CARD_NAME)
    return dest


def push_model(model_dir: str | Path, repo_id: str, private: bool = True, dataset_id: str | None = None,
               dry_run: str | Path | None = None, reports: list[str | Path] = ()) -> str:
    """Create (or reuse) the model repo and upload the allow-listed files + model card; return the repo URL.

    `reports`: `loscat-hf evaluate --out` folders (e.g. the test split) whose metrics the card adds."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise LoscatError(f"--repo-id must look like ORG/NAME, got {repo_id!r}")
    upload_files(model_dir)  # a bad folder or report fails here, before anything is written or sent
    card = model_card(model_dir, repo_id, dataset_id, reports)
    if dry_run is not None:
        stage(model_dir, card, dry_run)
        return f"dry run: upload folder written to {dry_run}"
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    if get_token() is None:
        raise LoscatError("not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN")
    api = HfApi()
    with tempfile.TemporaryDirectory(prefix="loscat-push-") as tmp:
        folder = stage(model_dir, card, Path(tmp) / "upload")
        try:
            url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                              commit_message="Upload LoSCAT region model (loscat-hf push)")
        except HfHubHTTPError as exc:
            raise LoscatError(f"Hub upload to {repo_id} failed: {str(exc).splitlines()[0]}") from None
    return str(url)
