"""Upstream bugs that loscat works around: each test runs the PLAIN transformers code and asserts the correct
behaviour, so it xfails while the bug is there. `strict=True`: once an upgrade fixes the bug the test XPASSes,
which fails the run and says which workaround to remove (docs/upstream.md lists them all).

`raises=AssertionError`: only the bug itself counts as the expected failure; a test broken by an API change
errors out instead of xfailing quietly. No loscat code is imported here.
"""

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, ViTConfig, ViTForImageClassification

ISSUE_43701 = "https://github.com/huggingface/transformers/issues/43701"
XFAIL_43701 = pytest.mark.xfail(
    strict=True, raises=AssertionError,
    reason=f"{ISSUE_43701}: remove the workaround in loscat_hf/training/trainer.py when this passes "
           "(RegionTrainer._load_best_model and _load_from_checkpoint)")


def _vit(seed: int) -> ViTForImageClassification:
    torch.manual_seed(seed)
    return ViTForImageClassification(ViTConfig(image_size=16, patch_size=8, hidden_size=16,
                                               num_hidden_layers=2, num_attention_heads=2,
                                               intermediate_size=32, num_labels=3))


class _Photos(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.x = torch.randn(12, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.x[i], "labels": torch.tensor(i % 3)}


def _args(out, epochs: int, **kw) -> TrainingArguments:
    return TrainingArguments(str(out), num_train_epochs=epochs, per_device_train_batch_size=4,
                             learning_rate=1e-2, report_to="none", use_cpu=True, disable_tqdm=True,
                             logging_strategy="no", **kw)


def _scripted(values):
    """compute_metrics that reports `values` in turn: decides which epoch's checkpoint is the best."""
    it = iter(values)
    return lambda _: {"score": next(it)}


def _differences(model, checkpoint) -> list[str]:
    ref = type(model).from_pretrained(checkpoint).state_dict()
    return [k for k, v in model.state_dict().items() if not torch.equal(v, ref[k])]


def _first_run(out):
    """Plain Trainer, 3 epochs, a checkpoint each; the first is the best (scripted metric), so that the best
    checkpoint differs from the weights training ends with."""
    trainer = Trainer(model=_vit(0), args=_args(out, 3, eval_strategy="epoch", save_strategy="epoch",
                                                load_best_model_at_end=True, metric_for_best_model="score"),
                      train_dataset=_Photos(), eval_dataset=_Photos(),
                      compute_metrics=_scripted([0.9, 0.5, 0.1]))
    trainer.train()
    return trainer


@XFAIL_43701
def test_plain_trainer_load_best_model_at_end_restores_the_whole_best_model(tmp_path):
    trainer = _first_run(tmp_path)
    best = trainer.state.best_model_checkpoint
    # preconditions fail the test outright (pytest.fail is not an AssertionError): only the bug may xfail
    if not (best and best.endswith("checkpoint-3")):
        pytest.fail(f"set-up changed: the best checkpoint is {best}, not checkpoint-3")
    if not (tmp_path / "checkpoint-9").is_dir() or not _differences(trainer.model, tmp_path / "checkpoint-9"):
        pytest.fail("set-up changed: no checkpoint-9, or it equals the best checkpoint")
    wrong = _differences(trainer.model, best)
    # transformers 5.24: the 32 tensors of the 2 encoder blocks keep the last epoch's weights
    # (8 of 40 restored)
    assert not wrong, f"{len(wrong)} tensors not restored from the best checkpoint, e.g. {wrong[:3]}"


@XFAIL_43701
def test_plain_trainer_resume_from_checkpoint_restores_the_whole_model(tmp_path):
    _first_run(tmp_path / "first")
    checkpoint = tmp_path / "first" / "checkpoint-3"
    at_start = {}

    class Snapshot(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            at_start.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    model = _vit(1)  # other initial weights: anything the resume leaves out stays visibly different
    trainer = Trainer(model=model, args=_args(tmp_path / "resumed", 2, save_strategy="no"),
                      train_dataset=_Photos(), callbacks=[Snapshot()])
    trainer.train(resume_from_checkpoint=str(checkpoint))
    ref = ViTForImageClassification.from_pretrained(checkpoint).state_dict()
    if not at_start:
        pytest.fail("set-up changed: on_train_begin did not run")
    wrong = [k for k, v in at_start.items() if not torch.equal(v, ref[k])]
    # transformers 5.24: the 32 tensors of the 2 encoder blocks keep their fresh initialisation
    assert not wrong, f"{len(wrong)} tensors not restored from {checkpoint.name}, e.g. {wrong[:3]}"


@pytest.mark.xfail(
    strict=True, raises=AssertionError,
    reason="gradio 6.31 processing_utils.save_pil_to_cache (no upstream issue known): remove cached_jpeg in "
           "loscat_hf/apps/cached.py (return the PIL image again) when this passes")
def test_gradio_saves_a_pil_output_atomically(tmp_path, monkeypatch):
    """gradio writes a PIL output to a path named by its content hash; writing the same image again must not
    truncate and rewrite that file in place, which another request may be serving at that moment."""
    import os
    import pathlib

    from gradio import processing_utils
    from PIL import Image

    img = Image.new("RGB", (8, 8), (10, 20, 30))
    first = processing_utils.save_pil_to_cache(img, str(tmp_path), format="jpeg")
    written = []
    real_open = pathlib.Path.open

    def spy(self, mode="r", *args, **kwargs):
        if "w" in mode:
            written.append(os.path.realpath(self))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", spy)
    again = processing_utils.save_pil_to_cache(img, str(tmp_path), format="jpeg")
    monkeypatch.undo()
    if again != first:
        pytest.fail("set-up changed: the same image no longer maps to one cache path")
    # gradio 6.31: Path.write_bytes on the served path (truncate, then write)
    assert os.path.realpath(first) not in written, "the same image's cache file was rewritten in place"
