"""DDP searches for unused parameters (a walk of the autograd graph every step) exactly when a phase freezes
some: checked against what TwoPhaseCallback really freezes, and through build_trainer to the Accelerator's DDP
settings, without launching DDP (tests/test_training.py's slow test launches it)."""

from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.training_args import ParallelMode

from loscat_hf.model.build import build_model_and_processor
from loscat_hf.model.score_heads import build_score_model
from loscat_hf.taxonomy import load_taxonomy
from loscat_hf.training.callbacks import TwoPhaseCallback, ddp_find_unused_parameters, phase1_frozen
from loscat_hf.training.parse import parse_train_args
from loscat_hf.training.run import build_trainer

FAST = ["--model", "tiny", "--image-size", "32", "--dataloader-num-workers", "0",
        "--per-device-train-batch-size", "16", "--eval-strategy", "no", "--save-strategy", "no",
        "--load-best-model-at-end", "false"]
TINY_BLOCKS = 4  # the tiny preset's num_hidden_layers


def _no_gradient_in_first_step(model: torch.nn.Module, phase1_epochs: float, blocks: int) -> set[str]:
    """Parameters without a gradient in the first optimizer step, with TwoPhaseCallback set up as the Trainer
    does (on_train_begin, then on_step_begin) over 10 batches per epoch."""
    callback = TwoPhaseCallback(phase1_epochs, blocks)
    args = SimpleNamespace(gradient_accumulation_steps=1, num_train_epochs=2, max_steps=-1)
    state = TrainerState(max_steps=20, num_train_epochs=2, epoch=0.0, global_step=0)
    callback.on_train_begin(args, state, TrainerControl(), model=model, train_dataloader=list(range(10)))
    callback.on_step_begin(args, state, TrainerControl(), model=model)
    model.zero_grad(set_to_none=True)
    kwargs = {"labels": torch.tensor([0, 1])}
    if hasattr(model, "score_components"):
        kwargs["score_targets"] = torch.tensor([[1.0] * len(model.score_components)] * 2)
    model(pixel_values=torch.randn(2, 3, 32, 32), **kwargs).loss.backward()
    missing = {name for name, p in model.named_parameters() if p.grad is None}
    callback.on_train_end(args, state, TrainerControl(), model=model)
    return missing


@pytest.mark.parametrize("builder", [build_model_and_processor, build_score_model], ids=["regions", "scores"])
@pytest.mark.parametrize("phase1_epochs,blocks,freezes", [
    (0.0, 0, False),  # no phase 1: the from-scratch recipe's default
    (0.0, 2, False),  # blocks without a phase 1 change nothing
    (1e-12, 0, False),  # a phase 1 that ends before the first step
    (1.0, 0, True),  # the fine-tuning default: head only
    (0.5, 2, True),  # a fraction of an epoch, with the last 2 blocks
    (1.0, TINY_BLOCKS, True),  # every encoder block: the embeddings stay frozen
    (1.0, TINY_BLOCKS + 1, False),  # one block more reaches the embeddings: nothing frozen
    (3.0, 12, False),
])
def test_frozen_parameters_are_exactly_those_without_a_gradient(builder, phase1_epochs, blocks, freezes):
    model = builder("tiny", load_taxonomy(), 32, seed=0)[0]
    frozen = phase1_frozen(model, phase1_epochs, blocks)
    assert frozen == _no_gradient_in_first_step(model, phase1_epochs, blocks)
    assert bool(frozen) is freezes
    assert not any(name.startswith(("classifier", "score_heads")) for name in frozen)  # heads always train
    assert ddp_find_unused_parameters(None, frozen) is freezes


def test_an_explicit_choice_is_kept():
    assert ddp_find_unused_parameters(True, set()) is True
    assert ddp_find_unused_parameters(False, {"vit.embeddings.cls_token"}) is False
    assert ddp_find_unused_parameters(None, set()) is False  # not None: transformers would turn it on
    assert ddp_find_unused_parameters(None, {"vit.embeddings.cls_token"}) is True


@pytest.fixture()
def distributed(monkeypatch):
    """TrainingArguments that report DDP (as under `accelerate launch`) in this single process."""
    monkeypatch.setattr(TrainingArguments, "parallel_mode", property(lambda self: ParallelMode.DISTRIBUTED))


@pytest.mark.parametrize("extra,expected", [
    pytest.param([], False, id="scratch-recipe"),  # the tiny preset's recipe: no phase 1
    pytest.param(["--phase1-epochs", "1"], True, id="head-only"),
    pytest.param(["--phase1-epochs", "1", "--phase1-trainable-blocks", str(TINY_BLOCKS + 1)], False,
                 id="nothing-frozen"),
    pytest.param(["--task", "scores", "--phase1-epochs", "1"], True, id="score-model"),
    pytest.param(["--ddp-find-unused-parameters", "true"], True, id="user-true"),  # the user's choice wins
    pytest.param(["--phase1-epochs", "1", "--ddp-find-unused-parameters", "false"], False, id="user-false"),
])
def test_build_trainer_hands_the_decision_to_ddp(distributed, tiny_dataset, tmp_path, extra, expected):
    if "scores" in extra:
        from test_score_model import _scored_dataset

        tiny_dataset = _scored_dataset(tmp_path / "scored", n_train=8, n_val=4)
    largs, targs = parse_train_args(["--dataset", str(tiny_dataset), "--output-dir", str(tmp_path / "o"),
                                     *FAST, *extra])
    trainer, _ = build_trainer(largs, targs, load_taxonomy())
    assert trainer.args.ddp_find_unused_parameters is expected
    assert trainer.accelerator.ddp_handler.find_unused_parameters is expected  # what DDP will be built with


def test_outside_ddp_the_argument_is_left_alone(tiny_dataset, tmp_path):
    largs, targs = parse_train_args(["--dataset", str(tiny_dataset), "--output-dir", str(tmp_path / "o"),
                                     *FAST, "--phase1-epochs", "1"])
    trainer, _ = build_trainer(largs, targs, load_taxonomy())
    assert trainer.args.ddp_find_unused_parameters is None
