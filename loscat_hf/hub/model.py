"""`loscat-hf push`: publish a trained model folder on the Hugging Face Hub with a filled-in model card.

Only an allow-list of files leaves the machine (config, safetensors weights, preprocessor config, the
confusion-matrix image and the generated README.md), and the repo ends up holding exactly those files:
checkpoints, optimizer states, `training_args.bin` (a pickle with local paths), logs and per-photo reports
never go, and files an earlier push left are deleted in the same commit. Visibility: `hub.repo.ensure_repo`.
The token comes from `hf auth login` or HF_TOKEN through huggingface_hub and is never printed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from loscat_hf.defaults import CONFUSION_MATRIX
from loscat_hf.errors import LoscatError
from loscat_hf.hub.repo import PushResult, check_private, check_repo_id, push_files
from loscat_hf.model.card import CARD_NAME, model_card
from loscat_hf.model.folder import config_json, source_is_public
from loscat_hf.model.published import public_config

WEIGHT_PATTERNS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")
CONFIG_FILES = ("config.json", "preprocessor_config.json")


def _config_json(model_dir: Path) -> dict:
    try:
        return config_json(model_dir)
    except (OSError, ValueError) as exc:
        raise LoscatError(f"{model_dir}/config.json cannot be read as JSON ({exc})") from None


def upload_files(model_dir: str | Path, workdir: Path) -> dict[str, Path]:
    """Repo path -> local file for everything that would be uploaded (except the generated README.md);
    config.json is its public copy (`model.published.public_config`), written into `workdir`.

    The package's one allow-list for model files: `push-space` bundles these same files under `model/`.
    Paths are those of the model folder (the confusion matrix stays `eval/confusion_matrix.png`), so the
    card's image link resolves in the local folder and in the pushed repo alike."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise LoscatError(f"{model_dir} is not a saved model folder (no config.json)")
    if not source_is_public(_config_json(model_dir)):
        raise LoscatError(f"{model_dir}/config.json names the local checkpoint it was converted from (an "
                          "older convert-timm recorded the file's name, which may name a patient): convert "
                          "the checkpoint again with `loscat-hf convert-timm` and push that folder")
    files: dict[str, Path] = {}
    for name in CONFIG_FILES:
        if (model_dir / name).is_file():
            files[name] = model_dir / name
    # every loscat-hf record rebuilt from allowed values: a hand edit or an older version's extra goes nowhere
    files["config.json"] = Path(workdir) / "config.json"
    files["config.json"].write_text(json.dumps(public_config(_config_json(model_dir)), indent=2,
                                               sort_keys=True) + "\n", encoding="utf-8")
    for pattern in WEIGHT_PATTERNS:
        for p in sorted(model_dir.glob(pattern)):
            files[p.name] = p
    if not any(n.endswith(".safetensors") for n in files):
        raise LoscatError(f"{model_dir} has no model.safetensors: "
                          "save with save_pretrained (safe_serialization)")
    if "preprocessor_config.json" not in files:
        raise LoscatError(f"{model_dir} has no preprocessor_config.json: "
                          "save the image processor with the model")
    if (model_dir / CONFUSION_MATRIX).is_file():
        files[CONFUSION_MATRIX] = model_dir / CONFUSION_MATRIX
    return files


def push_model(model_dir: str | Path, repo_id: str, private: bool = True, dataset_id: str | None = None,
               dry_run: str | Path | None = None, reports: list[str | Path] = ()) -> PushResult:
    """Make the model repo `repo_id` hold exactly the allow-listed files + the model card, in one commit.

    `private` (default): a new repo is created private and an existing public repo is refused; `private=False`
    publishes. `dataset_id`: the Hub dataset trained on (card metadata). `reports`: `loscat-hf evaluate --out`
    folders (e.g. the test split) whose metrics the card adds. `dry_run`: write the exact upload folder there
    and upload nothing. Returns what was (or would be) pushed."""
    repo_id = check_repo_id(repo_id, "repo_id")
    check_private(private)
    if dataset_id is not None:
        dataset_id = check_repo_id(dataset_id, "dataset_id")
    card = model_card(model_dir, repo_id, dataset_id, reports)  # a bad folder or report fails before sending
    with tempfile.TemporaryDirectory(prefix="loscat-push-") as tmp:
        files = upload_files(model_dir, Path(tmp))
        card.save(Path(tmp) / CARD_NAME)
        return push_files(repo_id, "model", {CARD_NAME: Path(tmp) / CARD_NAME, **files}, card.data.to_dict(),
                          private=private, message="Upload LoSCAT region model (loscat-hf push)",
                          dry_run=dry_run)
