import json
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from loscat_hf.taxonomy import load_taxonomy
from loscat_hf.training.callbacks import TwoPhaseCallback
from loscat_hf.training.parse import parse_train_args
from loscat_hf.training.run import build_trainer, train
from loscat_hf.training.trainer import balanced_sample_weights

FAST = ["--model", "tiny", "--image-size", "32", "--dataloader-num-workers", "0",
        "--per-device-train-batch-size", "16", "--logging-steps", "1", "--learning-rate", "3e-3",
        "--warmup-steps", "0"]


def _args(tmp_path, *extra):
    return parse_train_args(["--dataset", str(tmp_path / "ds"), "--output-dir", str(tmp_path / "out"), *FAST,
                             *extra])


def test_sampler_balances_an_imbalanced_set():
    labels = [0] * 900 + [1] * 90 + [2] * 10
    for power, expected in [(1.0, [1 / 3] * 3), (0.0, [0.9, 0.09, 0.01])]:
        w = balanced_sample_weights(labels, power)
        sampler = torch.utils.data.WeightedRandomSampler(w, 30000, generator=torch.Generator().manual_seed(0))
        counts = Counter(labels[i] for i in sampler)
        shares = [counts[c] / 30000 for c in range(3)]
        assert np.allclose(shares, expected, atol=0.02), (power, shares)
    half = balanced_sample_weights(labels, 0.5)
    assert half[0] < half[-1] and half[-1] / half[0] == pytest.approx((900 / 10) ** 0.5)


def _trainer(tiny_dataset, tmp_path, *extra, callbacks=()):
    """The trainer `loscat-hf train` builds, without its own two-phase callback (tests add theirs)."""
    largs, targs = parse_train_args(["--dataset", str(tiny_dataset), "--output-dir", str(tmp_path / "o"),
                                     "--phase1-epochs", "0", *FAST, *extra])
    trainer, ds = build_trainer(largs, targs, load_taxonomy())
    for cb in callbacks:
        trainer.add_callback(cb)
    return trainer, ds


def test_trainer_dataloader_draws_classes_near_uniformly(tiny_dataset, tmp_path):
    trainer, ds = _trainer(tiny_dataset, tmp_path, "--seed", "3")
    seen = Counter()
    for _ in range(8):
        for batch in trainer.get_train_dataloader():
            seen.update(batch["labels"].tolist())
    total = sum(seen.values())
    assert len(seen) == 12
    raw = Counter(ds["train"]["labels"])
    assert raw[11] / raw[0] == 13 / 2  # the set is imbalanced ...
    assert (max(seen.values()) / total < 2.0 / 12
            and min(seen.values()) / total > 0.4 / 12)  # ... draws are not


def test_label_smoothing_reaches_the_loss(tiny_dataset, tmp_path):
    trainer, _ = _trainer(tiny_dataset, tmp_path, "--label-smoothing-factor", "0.1")
    batch = trainer._prepare_inputs(next(iter(trainer.get_eval_dataloader())))
    loss = trainer.compute_loss(trainer.model, dict(batch))
    logits = trainer.model(pixel_values=batch["pixel_values"]).logits
    expected = torch.nn.functional.cross_entropy(logits, batch["labels"], label_smoothing=0.1)
    plain = torch.nn.functional.cross_entropy(logits, batch["labels"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert abs(loss.item() - plain.item()) > 1e-3


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_two_phase_freezes_backbone_then_trains_it(tiny_dataset, tmp_path):
    snaps = []

    class Snap(TwoPhaseCallback):
        def on_epoch_end(self, args, state, control, model=None, **kw):
            snaps.append(_snapshot(model))

    trainer, _ = _trainer(tiny_dataset, tmp_path, "--num-train-epochs", "2", "--eval-strategy", "no",
                          "--save-strategy", "no", "--load-best-model-at-end", "false",
                          callbacks=[Snap(phase1_epochs=1)])
    start = _snapshot(trainer.model)
    # The optimizer holds every parameter, including those frozen in phase 1 (docs/pitfalls.md).
    trainer.create_optimizer()
    held = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in held for p in trainer.model.parameters())
    trainer.train()
    after1, after2 = snaps
    backbone = [n for n in start if not n.startswith("classifier")]
    assert all(torch.equal(start[n], after1[n]) for n in backbone), "backbone moved in phase 1"
    assert not torch.equal(start["classifier.weight"], after1["classifier.weight"]), "head did not train"
    moved = [n for n in backbone if not torch.equal(after1[n], after2[n])]
    assert len(moved) > 0.9 * len(backbone), "backbone did not train in phase 2"
    assert all(p.requires_grad for p in trainer.model.parameters())


def test_defaults_use_fused_adamw_and_leave_the_loop_a_core(tiny_dataset, tmp_path):
    import os

    largs, targs = parse_train_args(["--dataset", str(tiny_dataset), "--output-dir", str(tmp_path / "o")])
    cores = len(os.sched_getaffinity(0))
    workers = targs.dataloader_num_workers
    assert workers <= 16 and (workers == 0 if cores == 1 else 1 <= workers < cores)
    assert targs.dataloader_persistent_workers == (workers > 0)
    trainer, _ = _trainer(tiny_dataset, tmp_path, "--layer-decay", "0.5")  # also with layer-wise groups
    trainer.create_optimizer()
    assert trainer.args.optim == "adamw_torch_fused" and trainer.optimizer.defaults.get("fused") is True
    assert trainer.model.config._attn_implementation == "sdpa"


def test_layer_decay_gives_lower_lr_to_early_layers(tiny_dataset, tmp_path):
    trainer, _ = _trainer(tiny_dataset, tmp_path, "--layer-decay", "0.5")
    trainer.create_optimizer()
    lrs = {}
    for g in trainer.optimizer.param_groups:
        for p in g["params"]:
            lrs[id(p)] = g["lr"]
    named = dict(trainer.model.named_parameters())
    head = lrs[id(named["classifier.weight"])]
    emb = lrs[id(named["vit.embeddings.patch_embeddings.projection.weight"])]
    assert head == pytest.approx(3e-3) and emb == pytest.approx(3e-3 * 0.5 ** 5)


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_best_model_and_resume_restore_every_weight(tiny_dataset, tmp_path):
    from transformers import Trainer

    trainer, _ = _trainer(tiny_dataset, tmp_path, "--num-train-epochs", "2", "--phase1-epochs", "0",
                          "--save-total-limit", "5")
    trainer.train()
    ckpts = sorted((tmp_path / "o").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    first, last = ckpts[0], ckpts[-1]
    assert not torch.equal(_weights(first)["vit.embeddings.patch_embeddings.projection.weight"],
                           _weights(last)["vit.embeddings.patch_embeddings.projection.weight"])

    def equals_checkpoint(model, ckpt):
        ref = type(model).from_pretrained(ckpt).state_dict()
        return all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())

    # The stock Trainer (transformers 5.23) leaves the encoder untouched; ours restores everything.
    trainer.state.best_model_checkpoint = str(first)
    Trainer._load_best_model(trainer)
    if not equals_checkpoint(trainer.model, first):
        print("stock Trainer restored only part of the model (upstream bug still present)")
    trainer._load_best_model()
    assert equals_checkpoint(trainer.model, first)
    trainer._load_from_checkpoint(str(last))
    assert equals_checkpoint(trainer.model, last)


def test_train_end_to_end_saves_best_model_and_resumes(tiny_dataset, tmp_path):
    from transformers import pipeline

    out = tmp_path / "run"
    common = ["--dataset", str(tiny_dataset), "--output-dir", str(out), *FAST, "--phase1-epochs", "1",
              "--save-total-limit", "5"]
    summary = train(*parse_train_args([*common, "--num-train-epochs", "2"]))
    best = summary.best_checkpoint
    saved = _weights(out)
    ref = _weights(__import__("pathlib").Path(best))
    assert set(saved) == set(ref) and all(torch.equal(saved[k], ref[k]) for k in ref)
    for name in ["config.json", "model.safetensors", "preprocessor_config.json", "eval/metrics.json",
                 "eval/confusion_matrix.png", "eval/training_curves.png", "README.md"]:
        assert (out / name).exists(), name
    recorded = json.loads((out / "train_summary.json").read_text())
    assert [p["trains"] for p in recorded["phases"]] == ["head", "whole model"]
    assert (recorded["phases"][1]["start_epoch"] == 1.0
            and recorded["hyperparameters"]["recipe"] == "from scratch")
    assert recorded["data"]["train"]["n"] == 90 and recorded["data"]["validation"]["per_class"]["hand"] == 3
    card = (out / "README.md").read_text()  # the card push would publish, saved beside the model
    assert "**Trained from scratch**" in card and "| epochs | 2 |" in card and "phase 2: whole model" in card
    assert str(tmp_path) not in card
    # --resume continues from the last checkpoint, with its weights, up to the new epoch count.
    before = {p.name for p in out.glob("checkpoint-*")}
    summary2 = train(*parse_train_args([*common, "--num-train-epochs", "3", "--resume", "true"]))
    # the resumed run records both phases where they were, and its own end
    assert [(p["start_step"], p["end_step"]) for p in summary2.phases] == [(0, 6), (6, 18)]
    assert summary2.phases[1]["end_epoch"] == 3.0
    added = sorted({p.name for p in out.glob("checkpoint-*")} - before)
    assert len(added) == 1, added  # exactly one more epoch was trained, not three from scratch
    state = json.loads((out / added[0] / "trainer_state.json").read_text())
    # history carried over from run 1
    assert state["epoch"] == 3.0 and state["log_history"][0]["epoch"] <= 1.0
    assert summary2.best_checkpoint
    # A plain transformers pipeline loads the folder.
    clf = pipeline("image-classification", model=str(out))
    from PIL import Image

    pred = clf(Image.open(next((tiny_dataset / "validation").glob("*.jpg"))), top_k=3)
    assert len(pred) == 3 and pred[0]["label"] in load_taxonomy().classes


def test_config_file_and_cli_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("num_train_epochs: 7\nsampling_power: 0.5\nlearning_rate: 0.001\n")
    largs, targs = parse_train_args(["--dataset", "d", "--output-dir", str(tmp_path), "--config", str(cfg),
                                     "--learning-rate", "0.002"])
    assert targs.num_train_epochs == 7 and largs.sampling_power == 0.5 and targs.learning_rate == 0.002
    assert targs.label_smoothing_factor == 0.1 and targs.metric_for_best_model == "macro_f1"


def test_bad_arguments_are_clear(tmp_path):
    from loscat_hf.errors import LoscatError

    with pytest.raises(LoscatError, match="^dataset is required"):
        parse_train_args(["--output-dir", str(tmp_path)])
    with pytest.raises(LoscatError, match="^sampling_power must be"):
        parse_train_args(["--dataset", "d", "--output-dir", str(tmp_path), "--sampling-power", "2"])
    bad = tmp_path / "c.json"
    bad.write_text('{"no_such_option": 1}')
    with pytest.raises(LoscatError, match="no_such_option"):
        parse_train_args(["--dataset", "d", "--output-dir", str(tmp_path), "--config", str(bad)])
    with pytest.raises(LoscatError, match="not a packed dataset"):
        train(*parse_train_args(["--dataset", str(tmp_path), "--output-dir", str(tmp_path / "o"), *FAST]))


@pytest.mark.slow
@pytest.mark.parametrize("phase1_epochs", ["0", "1"])
def test_ddp_two_processes_on_cpu(tiny_dataset, tmp_path, phase1_epochs):
    """The same `train` command under `accelerate launch` with 2 processes (gloo on CPU). Without a phase 1
    nothing is frozen and DDP runs without the unused-parameter search; with one, phase 1 freezes the backbone
    and DDP must search (without it the second step fails waiting for the frozen parameters' gradients)."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "loscat_hf.cli",
           "train", "--dataset", str(tiny_dataset), "--output-dir", str(out), *FAST,
           "--num-train-epochs", "2", "--per-device-train-batch-size", "8", "--phase1-epochs", phase1_epochs]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = max(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((last / "trainer_state.json").read_text())
    # 90 photos, 2 processes x 8 per batch -> 6 optimizer steps per epoch (vs 12 with one process of 8).
    assert state["global_step"] == 12, state["global_step"]
    assert (out / "model.safetensors").exists() and (out / "eval" / "metrics.json").exists()


def test_default_bf16_reaches_the_accelerator(tmp_path, monkeypatch):
    """Where the GPU has bf16, the default must set TrainingArguments.mixed_precision (what the Trainer's
    Accelerator autocasts by), not only the `bf16` flag: that once trained ViT-B in fp32 on an H200."""
    import loscat_hf.training.arguments as training

    monkeypatch.setattr(training, "gpu_supports_bf16", lambda: True)
    _, targs = _args(tmp_path, "--use-cpu", "true")  # bf16 without a GPU is allowed only with use_cpu
    assert targs.bf16 and targs.mixed_precision == "bf16"
    _, targs = _args(tmp_path, "--use-cpu", "true", "--bf16", "false")  # the command line still overrides
    assert not targs.bf16 and targs.mixed_precision == "no"
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"bf16": false}')
    _, targs = _args(tmp_path, "--use-cpu", "true", "--config", str(cfg))  # and so does a config file
    assert not targs.bf16 and targs.mixed_precision == "no"
    monkeypatch.setattr(training, "gpu_supports_bf16", lambda: False)
    _, targs = _args(tmp_path)
    assert not targs.bf16 and targs.mixed_precision == "no"


# --- the output folder and resume belong to one run ----------------------------------------

def _run_args(dataset, out, *extra):
    return parse_train_args(["--dataset", str(dataset), "--output-dir", str(out), *FAST,
                             "--phase1-epochs", "0", "--save-total-limit", "5", *extra])


@pytest.fixture(scope="module")
def finished_run(tiny_dataset, tmp_path_factory):
    """A finished 2-epoch run (checkpoint-6, checkpoint-12) that the tests below copy and tamper with."""
    out = tmp_path_factory.mktemp("run") / "out"
    train(*_run_args(tiny_dataset, out, "--num-train-epochs", "2"))
    return out


def _tree(path):
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in sorted(path.rglob("*"))}


def _copy_dataset(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_train_refuses_a_folder_holding_another_run(tiny_dataset, finished_run, tmp_path):
    import shutil

    from loscat_hf.errors import LoscatError

    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    before = _tree(out)
    with pytest.raises(LoscatError, match="overwrite_output_dir=True") as exc:
        train(*_run_args(tiny_dataset, out, "--max-steps", "1"))
    assert str(out) in str(exc.value) and "\n" not in str(exc.value)
    assert _tree(out) == before  # nothing overwritten, no checkpoint deleted
    stray = tmp_path / "notes"
    stray.mkdir()
    (stray / "thesis.docx").write_bytes(b"mine")
    with pytest.raises(LoscatError, match="overwrite_output_dir=True"):
        train(*_run_args(tiny_dataset, stray, "--max-steps", "1"))
    assert [p.name for p in stray.iterdir()] == ["thesis.docx"]


def test_overwrite_output_dir_replaces_the_other_runs_checkpoints(tiny_dataset, finished_run, tmp_path):
    import shutil

    from loscat_hf.errors import LoscatError

    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    old = _weights(out)
    with pytest.raises(LoscatError, match="not a packed dataset"):  # a run that fails early deletes nothing
        train(*_run_args(tmp_path / "nowhere", out, "--max-steps", "1", "--overwrite-output-dir"))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-6"]
    (out / "eval" / "old_run_only.png").write_bytes(b"x")  # an output only the old run wrote
    (out / "my_notes.txt").write_text("kept")  # not something a run writes: never deleted
    train(*_run_args(tiny_dataset, out, "--max-steps", "2", "--save-strategy", "steps", "--save-steps", "1",
                            "--eval-strategy", "steps", "--eval-steps", "1", "--overwrite-output-dir"))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert not (out / "eval" / "old_run_only.png").exists() and (out / "my_notes.txt").read_text() == "kept"
    new = _weights(out)
    assert any(not torch.equal(old[k], new[k]) for k in old)


def test_resume_refuses_a_checkpoint_of_another_dataset_or_taxonomy(tiny_dataset, finished_run, tmp_path):
    import json
    import shutil

    from loscat_hf.errors import LoscatError

    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    before = _tree(out)
    other = _copy_dataset(tiny_dataset, tmp_path / "other_ds")
    meta = other / "train" / "metadata.csv"
    lines = meta.read_text().splitlines(keepends=True)
    meta.write_text("".join(lines[:-1]))  # one photo fewer: another dataset
    with pytest.raises(LoscatError, match="dataset") as exc:
        train(*_run_args(other, out, "--num-train-epochs", "3", "--resume", "true"))
    assert "checkpoint-12" in str(exc.value) and "\n" not in str(exc.value)

    tax = load_taxonomy()
    data = json.loads(
        resources.files("loscat_hf").joinpath("resources/taxonomy.json").read_text(encoding="utf-8"))
    data["classes"] = [tax.classes[1], tax.classes[0], *tax.classes[2:]]  # same names, other label ids
    tax_file = tmp_path / "tax.json"
    tax_file.write_text(json.dumps(data))
    with pytest.raises(LoscatError, match="taxonomy"):
        train(*_run_args(tiny_dataset, out, "--num-train-epochs", "3", "--resume", "true",
                                "--taxonomy", str(tax_file)))
    assert _tree(out) == before


def test_resume_refuses_a_best_checkpoint_outside_the_output_folder(tiny_dataset, finished_run, tmp_path):
    """A copied (or other run's) folder whose trainer_state.json points at best weights somewhere else."""
    import json
    import shutil

    from loscat_hf.errors import LoscatError

    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    state = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"].startswith(str(finished_run))  # the original folder, still there
    before = _tree(out)
    with pytest.raises(LoscatError, match="best") as exc:
        train(*_run_args(tiny_dataset, out, "--num-train-epochs", "3", "--resume", "true"))
    assert str(finished_run) in str(exc.value) and "\n" not in str(exc.value)
    assert _tree(out) == before


def test_resume_refuses_a_checkpoint_without_run_identity(tiny_dataset, finished_run, tmp_path):
    import json
    import shutil

    from loscat_hf.errors import LoscatError

    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    for ckpt in out.glob("checkpoint-*"):
        cfg = json.loads((ckpt / "config.json").read_text())
        cfg.pop("loscat_run", None)
        (ckpt / "config.json").write_text(json.dumps(cfg))
        state = json.loads((ckpt / "trainer_state.json").read_text())
        state["best_model_checkpoint"] = str(out / Path(state["best_model_checkpoint"]).name)
        (ckpt / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(LoscatError, match="checkpoint-12"):
        train(*_run_args(tiny_dataset, out, "--num-train-epochs", "3", "--resume", "true"))


# --- a broken dataset is a one-line error before anything is written ----------------------

def test_train_with_a_photo_missing_from_train_is_a_clear_error(tiny_dataset, tmp_path):
    from loscat_hf.errors import LoscatError

    ds = _copy_dataset(tiny_dataset, tmp_path / "ds")
    gone = sorted((ds / "train").glob("*.jpg"))[5]
    gone.unlink()
    out = tmp_path / "out"
    with pytest.raises(LoscatError, match=gone.name) as exc:
        train(*_run_args(ds, out, "--max-steps", "1"))
    msg = str(exc.value)
    assert "metadata.csv" in msg and "prepare" in msg and "\n" not in msg
    assert not out.exists()


def test_train_with_an_empty_validation_split_is_a_clear_error(tiny_dataset, tmp_path, capsys):
    from loscat_hf.cli import main

    ds = _copy_dataset(tiny_dataset, tmp_path / "ds")
    for photo in (ds / "validation").glob("*.jpg"):
        photo.unlink()
    meta = ds / "validation" / "metadata.csv"
    meta.write_text(meta.read_text().splitlines(keepends=True)[0])  # header only
    out = tmp_path / "out"
    rc = main(["train", "--dataset", str(ds), "--output-dir", str(out), *FAST, "--max-steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "validation" in err and "--val-fraction" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_best_checkpoint_check_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    """The Trainer records best_model_checkpoint relative when --output-dir was relative."""
    from loscat_hf.training.output_dir import _best_inside

    out = tmp_path / "runs" / "model"
    (out / "checkpoint-6").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "runs")  # resumed from another folder than training ran in
    assert _best_inside(Path("runs/model/checkpoint-6"), out)  # as written from tmp_path
    assert _best_inside(out / "checkpoint-6", out)
    assert not _best_inside(Path("runs/other/checkpoint-6"), out)
    assert not _best_inside(tmp_path / "other" / "checkpoint-6", out)
