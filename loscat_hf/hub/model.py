"""`loscat-hf push`: publish a trained model folder on the Hugging Face Hub with a filled-in model card.

Only an allow-list of files leaves the machine (config, safetensors weights, preprocessor config, the
confusion-matrix image and the generated README.md): checkpoints, optimizer states, `training_args.bin`
(a pickle with local paths), logs and per-photo reports never do. Repos are private unless asked otherwise.
The token comes from `hf auth login` or HF_TOKEN through huggingface_hub and is never printed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from loscat_hf.defaults import BASE_MODEL, RUN_KEY, SOURCE_KEY
from loscat_hf.errors import LoscatError

WEIGHT_PATTERNS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")
CONFIG_FILES = ("config.json", "preprocessor_config.json")
TAGS = ["image-classification", "vision", "vit", "dermatology", "localized-scleroderma", "morphea", "loscat",
        "medical"]


def card_template() -> str:
    """The model-card template: `model_card.md` of the repo, shipped in the wheel as loscat_hf/resources/model_card.md."""
    return resources.files("loscat_hf").joinpath("resources/model_card.md").read_text(encoding="utf-8")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LoscatError(f"cannot read {path}: {exc}") from None


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


def render_card(model_dir: str | Path, repo_id: str, dataset_id: str | None = None, base_model: str = BASE_MODEL):
    """The filled-in `huggingface_hub.ModelCard` (YAML metadata + text) for a model folder."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    model_dir = Path(model_dir)
    config = _read_json(model_dir / "config.json")
    classes = [config["id2label"][k] for k in sorted(config.get("id2label", {}), key=int)]
    source = config.get(SOURCE_KEY) or {}
    if source and base_model == BASE_MODEL:  # converted by convert-timm (and maybe fine-tuned since)
        base_model = source.get("weights_repo") if source.get("study") else None
    metrics_path = model_dir / "eval" / "metrics.json"
    metrics = _read_json(metrics_path) if metrics_path.is_file() else None
    evaluated = model_dir / "eval" / "evaluated.json"
    split = _read_json(evaluated).get("split", "validation") if evaluated.is_file() else "validation"
    eval_results = None
    if metrics:
        missing = [k for k in ("macro_f1", "accuracy") if k not in metrics]
        if missing:
            raise LoscatError(f"{metrics_path} lacks {missing}: re-run `loscat-hf evaluate`")
        ds_type = dataset_id or "loscat-clinical-photos"
        common = dict(task_type="image-classification", task_name="LoSCAT body region", dataset_type=ds_type,
                      dataset_name=dataset_id or "LoSCAT clinical photos (private)", dataset_split=split)
        eval_results = [EvalResult(metric_type="f1", metric_name="macro-F1", metric_config="macro",
                                   metric_value=round(float(metrics["macro_f1"]), 4), **common),
                        EvalResult(metric_type="accuracy", metric_name="accuracy",
                                   metric_value=round(float(metrics["accuracy"]), 4), **common)]
    data = ModelCardData(
        license=None if source else "apache-2.0",  # converted weights keep their authors' licence
        library_name="transformers", pipeline_tag="image-classification", tags=TAGS,
        base_model=base_model, datasets=[dataset_id] if dataset_id else None,
        metrics=["f1", "accuracy"], model_name=repo_id.split("/")[-1], eval_results=eval_results,
    )
    size = config.get("image_size", "?")
    return ModelCard.from_template(
        data, template_str=card_template(), model_name=repo_id.split("/")[-1], repo_id=repo_id,
        base_model=base_model, classes=", ".join(classes), num_classes=len(classes), image_size=size,
        metrics=metrics, eval_split=split, eval_n=(metrics or {}).get("split_size", (metrics or {}).get("n")),
        has_confusion_matrix=(model_dir / "eval" / "confusion_matrix.png").is_file(),
        temperature=config.get("loscat_temperature"), dataset_id=dataset_id, source=source,
        fine_tuned=bool(config.get(RUN_KEY)),  # written by `train` into every model it saves
    )


def stage(model_dir: str | Path, repo_id: str, dest: str | Path, dataset_id: str | None = None) -> Path:
    """Copy exactly what would be uploaded into `dest` (README.md included) and return it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise LoscatError(f"{dest} is not empty")
    for name, src in upload_files(model_dir).items():
        shutil.copy2(src, dest / name)
    render_card(model_dir, repo_id, dataset_id).save(dest / "README.md")
    return dest


def push_model(model_dir: str | Path, repo_id: str, private: bool = True, dataset_id: str | None = None,
               dry_run: str | Path | None = None) -> str:
    """Create (or reuse) the model repo and upload the allow-listed files + model card; return the repo URL."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise LoscatError(f"--repo-id must look like ORG/NAME, got {repo_id!r}")
    if dry_run is not None:
        stage(model_dir, repo_id, dry_run, dataset_id)
        return f"dry run: upload folder written to {dry_run}"
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    upload_files(model_dir)  # fail on a bad folder before any network call
    if get_token() is None:
        raise LoscatError("not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN")
    api = HfApi()
    with tempfile.TemporaryDirectory(prefix="loscat-push-") as tmp:
        folder = stage(model_dir, repo_id, Path(tmp) / "upload", dataset_id)
        try:
            url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                              commit_message="Upload LoSCAT region model (loscat-hf push)")
        except HfHubHTTPError as exc:
            raise LoscatError(f"Hub upload to {repo_id} failed: {str(exc).splitlines()[0]}") from None
    return str(url)
