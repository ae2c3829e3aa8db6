"""One run per --output-dir: a run's identity, the --resume checks and --overwrite-output-dir.

A run's identity (dataset fingerprint, taxonomy classes, task, problem type) travels in every checkpoint's
config.json as `loscat_run`, written by `save_pretrained` together with the weights.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from transformers import TrainingArguments

from loscat_hf.data.dataset import SINGLE_LABEL, dataset_fingerprint
from loscat_hf.errors import LoscatError
from loscat_hf.model.folder import CONFIG_NAME, config_json, run_record
from loscat_hf.training.arguments import LoscatArguments

__all__ = ["RUN_OUTPUTS", "prepare_output_dir", "run_identity"]

# What a run writes into --output-dir besides checkpoint-*: --overwrite-output-dir removes exactly these
# (never other files a user keeps there), so the old run's model can never sit beside the new run's
# checkpoints.
RUN_OUTPUTS = ("config.json", "model.safetensors", "preprocessor_config.json", "training_args.bin",
               "train_summary.json", "README.md", "eval", "runs")  # README.md: the model card train writes


def run_identity(largs: LoscatArguments, taxonomy, problem_type: str = SINGLE_LABEL) -> dict:
    """What makes a checkpoint this run's: the data (fingerprint, not the path), the label ids, the task and
    the problem type (one region per photo, or several: another loss and other targets)."""
    return {"dataset_sha256": dataset_fingerprint(largs.dataset), "taxonomy": taxonomy.name,
            "classes": list(taxonomy.classes), "task": largs.task, "problem_type": problem_type}


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _best_inside(best: Path, out: Path) -> bool:
    """Whether trainer_state's best checkpoint is one of `out`'s. The Trainer writes it as output_dir/name,
    relative when --output-dir was: then it depends on the directory training ran in, so compare its last
    two parts (folder name, checkpoint name) instead of resolving it against today's working directory."""
    if best.is_absolute():
        return _inside(best, out)
    return best.parent.name == out.resolve().name and (out / best.name).is_dir()


def check_checkpoint(checkpoint: str | os.PathLike, out: Path, identity: dict, param: str = "resume") -> None:
    """Refuse to resume from a checkpoint that is not this run's, or whose best checkpoint is elsewhere.
    `param`: the argument that asked to resume (resume, or resume_from_checkpoint), named in the errors."""
    ckpt = Path(checkpoint)
    cfg_path = ckpt / CONFIG_NAME
    try:
        recorded = run_record(config_json(ckpt))
    except (OSError, ValueError):
        raise LoscatError(f"{param}: {cfg_path} is missing or unreadable; train into a new output folder",
                          param=(param, "output_dir")) from None
    if not isinstance(recorded, dict):
        raise LoscatError(f"{param}: {ckpt} does not record which dataset and taxonomy it was trained on "
                          "(another program or an older loscat-hf wrote it); train into a new output folder",
                          param=(param, "output_dir"))
    if recorded.get("dataset_sha256") != identity["dataset_sha256"]:
        raise LoscatError(f"{param}: {ckpt} was trained on another dataset (train/validation metadata "
                          "differ); resume with the dataset it was trained on, or train into a new output "
                          "folder", param=(param, "dataset", "output_dir"))
    if recorded.get("classes") != identity["classes"]:
        raise LoscatError(f"{param}: {ckpt} was trained with another taxonomy ({recorded.get('taxonomy')}: "
                          f"{', '.join(map(str, recorded.get('classes') or []))}); resume with that "
                          "taxonomy, or train into a new output folder",
                          param=(param, "taxonomy", "output_dir"))
    if recorded.get("task") != identity["task"]:
        raise LoscatError(f"{param}: {ckpt} was trained for task {recorded.get('task')!r}, not "
                          f"{identity['task']!r}; resume with that task, or train into a new output folder",
                          param=(param, "task", "output_dir"))
    # a checkpoint of a loscat-hf that trained single-label only records no problem type
    recorded_type = recorded.get("problem_type") or SINGLE_LABEL
    if recorded_type != identity.get("problem_type", SINGLE_LABEL):
        raise LoscatError(f"{param}: {ckpt} was trained as {recorded_type}, not {identity['problem_type']}; "
                          "resume with that problem_type, or train into a new output folder",
                          param=(param, "problem_type", "output_dir"))
    state_path = ckpt / "trainer_state.json"
    if state_path.is_file():
        try:
            best = json.loads(state_path.read_text(encoding="utf-8")).get("best_model_checkpoint")
        except ValueError:
            raise LoscatError(f"{param}: {state_path} does not parse; train into a new output folder",
                              param=(param, "output_dir")) from None
        if best and not _best_inside(Path(best), out):
            raise LoscatError(f"{param}: {state_path} records the best checkpoint {best}, outside {out} "
                              "(a copied or another run's folder); refusing to load weights from there: "
                              "train into a new output folder", param=(param, "output_dir"))


def prepare_output_dir(largs: LoscatArguments, targs: TrainingArguments,
                       identity: dict) -> tuple[str | None, list[Path]]:
    """Check --output-dir before anything is built or written: (checkpoint to resume from, stale checkpoints).

    A non-empty folder holds another run: refused unless --resume (its last checkpoint must be this run's)
    or --overwrite-output-dir (then its checkpoint-* folders are returned, to be deleted once the dataset and
    model have loaded, so rotation and a later --resume never mix two runs). Without this the Trainer
    overwrote the other run's model and rotated its checkpoints away.
    """
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(targs.output_dir)
    resume = targs.resume_from_checkpoint
    if out.exists() and not out.is_dir():
        raise LoscatError(f"output_dir {out} is a file; choose a folder", param="output_dir")
    if largs.resume and largs.overwrite_output_dir:
        raise LoscatError("resume continues the run in the output folder, overwrite_output_dir replaces it: "
                          "pick one", param=("resume", "overwrite_output_dir"))
    if largs.resume:
        resume = get_last_checkpoint(str(out)) if out.is_dir() else None
        if resume is None:
            raise LoscatError(f"resume: no checkpoint-* folder in {out}", param="resume")
    if resume:
        check_checkpoint(resume, out, identity, param="resume" if largs.resume else "resume_from_checkpoint")
        return resume, []
    if not out.is_dir() or not any(out.iterdir()):
        return None, []
    if not largs.overwrite_output_dir:
        raise LoscatError(f"output_dir {out} is not empty (another run's model or checkpoints?); pass "
                          "resume=True to continue that run, overwrite_output_dir=True to replace it, or "
                          "choose a new folder",
                          param=("output_dir", "resume", "overwrite_output_dir"))
    stale = [p for p in out.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return None, stale + [out / name for name in RUN_OUTPUTS if (out / name).exists()]
