"""RegionTrainer's private Trainer hooks, through the public entry points (train, evaluate): these fail if a
transformers upgrade stops calling a hook, which a direct call of the hook cannot show. And `train --help`."""

import enum
import re
import subprocess
import sys

import pytest
import torch

from loscat_hf.taxonomy import load_taxonomy
from loscat_hf.training import arguments
from loscat_hf.training.arguments import COMMON_TRAINING_OPTIONS, TASK_DEFAULTS, train_help
from loscat_hf.training.parse import parse_train_args

FAST = ["--model", "tiny", "--image-size", "32", "--dataloader-num-workers", "0",
        "--per-device-train-batch-size", "16", "--logging-steps", "1", "--learning-rate", "3e-3",
        "--warmup-steps", "0", "--phase1-epochs", "0"]


def _trainer(dataset, out, *extra, callbacks=()):
    from loscat_hf.training.run import build_trainer

    largs, targs = parse_train_args(["--dataset", str(dataset), "--output-dir", str(out), *FAST, *extra])
    trainer, _ = build_trainer(largs, targs, load_taxonomy())
    for cb in callbacks:
        trainer.add_callback(cb)
    return trainer


def _differences(model, checkpoint) -> list[str]:
    ref = type(model).from_pretrained(checkpoint).state_dict()
    return [k for k, v in model.state_dict().items() if not torch.equal(v, ref[k])]


def test_model_sees_normalised_pixels_augmented_only_in_training(tiny_dataset, tmp_path, monkeypatch):
    """_prepare_inputs: were it no longer called, ViT would silently cast the raw 0..255 uint8 pixels to
    float."""
    import loscat_hf.training.trainer as trainer_module

    calls = []
    real = trainer_module.normalise

    def spy(pixel_values, mean, std, augment=None):
        calls.append(augment is not None)
        return real(pixel_values, mean, std, augment)

    monkeypatch.setattr(trainer_module, "normalise", spy)
    trainer = _trainer(tiny_dataset, tmp_path / "o", "--max-steps", "2", "--eval-strategy", "no",
                       "--save-strategy", "no", "--load-best-model-at-end", "false")
    seen = []

    def look(module, args, kwargs):
        pv = kwargs["pixel_values"]
        seen.append((module.training, pv.dtype, pv.abs().max().item()))

    trainer.model.register_forward_pre_hook(look, with_kwargs=True)
    trainer.train()
    trainer.evaluate()
    training = [s for s in seen if s[0]]
    evaluation = [s for s in seen if not s[0]]
    assert len(training) == 2 and len(evaluation) == 1  # 2 steps; 36 validation photos in one batch of 64
    assert all(dtype == torch.float32 and peak <= 1.0 + 1e-6 for _, dtype, peak in seen), seen  # mean=std=0.5
    assert calls == [True, True, False]  # augmented in training only


def test_train_restores_the_whole_best_model_and_resume_the_whole_checkpoint(tiny_dataset, tmp_path):
    """_load_best_model and _load_from_checkpoint (huggingface/transformers#43701, tests/test_upstream.py),
    called by train() itself: the best checkpoint is the first of two, so restoring it is visible."""
    from transformers import TrainerCallback

    trainer = _trainer(tiny_dataset, tmp_path / "o", "--num-train-epochs", "2", "--save-total-limit", "5")
    scores = iter([0.9, 0.1])
    trainer.compute_metrics = lambda _: {"macro_f1": next(scores)}
    trainer.train()
    best, last = tmp_path / "o" / "checkpoint-6", tmp_path / "o" / "checkpoint-12"  # 90 photos, batches of 16
    assert trainer.state.best_model_checkpoint == str(best)
    best_model = type(trainer.model).from_pretrained(best)
    assert any(".layers." in k for k in _differences(best_model, last))  # the encoder moved after epoch 1
    wrong = _differences(trainer.model, best)
    assert not wrong, f"{len(wrong)} tensors not restored from the best checkpoint, e.g. {wrong[:3]}"

    at_start = {}

    class Snapshot(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            at_start.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    resumed = _trainer(tiny_dataset, tmp_path / "r", "--max-steps", "7", "--seed", "7",
                       "--eval-strategy", "no", "--save-strategy", "no", "--load-best-model-at-end", "false",
                       callbacks=[Snapshot()])
    assert _differences(resumed.model, best)  # another initialisation (seed 7)
    resumed.train(resume_from_checkpoint=str(best))
    ref = best_model.state_dict()
    assert at_start, "on_train_begin did not run"
    wrong = [k for k, v in at_start.items() if not torch.equal(v, ref[k])]
    assert not wrong, f"{len(wrong)} tensors not restored at resume, e.g. {wrong[:3]}"


# --- loscat-hf train --help ---------------------------------------------------------------------------------

def _options(help_text: str) -> dict[str, str]:
    """--option -> its help entry (metavar, text and default), whitespace collapsed."""
    blocks = re.split(r"\n(?=  --)", help_text)
    return {m.group(1): " ".join(b.split()) for b in blocks if (m := re.match(r"\s+(--[\w-]+)", b))}


def _shown_default(name: str) -> object:
    parser_default = arguments._full_parser().get_default(name)
    return parser_default.value if isinstance(parser_default, enum.Enum) else parser_default


def test_short_help_lists_loscat_and_common_options_with_the_commands_defaults():
    short = train_help()
    options = _options(short)
    for name in ["--dataset", "--model", "--sampling-power", "--layer-decay", "--resume",
                 "--overwrite-output-dir", "--task", "--config", "--output-dir", "--num-train-epochs",
                 "--bf16", "--resume-from-checkpoint"]:
        assert name in options, name
    assert "(default: 0.0002" in options["--learning-rate"]
    assert ("(default: 0.05)" in options["--warmup-steps"]
            and "(default: macro_f1)" in options["--metric-for-best-model"])
    assert "(default: 0.75; 1.0 for the random-init presets)" in options["--layer-decay"]
    assert "(default: 0.0002; 0.001 for the random-init presets)" in options["--learning-rate"]
    assert "--fsdp" not in short and "--deepspeed" not in short and "--adam-beta1" not in short
    assert short.splitlines()[-1] == ("loscat-hf train --help-all lists every TrainingArguments option "
                                      "(about 650 lines).")
    assert len(short.splitlines()) < 150
    # every default it shows is the one the parser applies (TASK_DEFAULTS or TrainingArguments' own)
    for name in COMMON_TRAINING_OPTIONS:
        if name in ("output_dir", "bf16"):  # "required"; "on where the GPU supports bf16"
            continue
        expected = _shown_default(name)
        assert f"(default: {expected}" in options["--" + name.replace("_", "-")], (name, expected)
    assert TASK_DEFAULTS["learning_rate"] == 2e-4


def test_short_help_imports_neither_torch_nor_transformers():
    code = ("import sys; from loscat_hf.training.arguments import train_help; train_help(); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("option",
                         ["--fsdp", "--learning_rate", "--adam_beta1", "--dataset", "--layer_decay"])
def test_full_help_lists_every_option(option):
    full = train_help(full=True)
    assert re.search(rf"^\s+{option}\b", full, re.M), option
    assert len(full.splitlines()) > 500
    assert "0.0002" in _options(full)["--learning_rate"]
