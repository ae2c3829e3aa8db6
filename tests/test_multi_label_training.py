"""`train` on photos that show several regions: multi-label (sigmoid + BCE) training, the set sampler, BCE
label smoothing, per-class thresholds saved with the model, a single-region folder fine-tuned into a
multi-region one, and `--task scores` kept to single-region photos."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from loscat_hf.data.dataset import MULTI_LABEL, SINGLE_LABEL
from loscat_hf.errors import LoscatError
from loscat_hf.taxonomy import load_taxonomy
from loscat_hf.training.parse import parse_train_args
from loscat_hf.training.run import build_trainer, train
from loscat_hf.training.trainer import (
    balanced_sample_weights,
    multi_label_loss,
    set_sample_weights,
    smoothed_targets,
)

FAST = ["--model", "tiny", "--image-size", "32", "--dataloader-num-workers", "0",
        "--per-device-train-batch-size", "16", "--logging-steps", "1", "--learning-rate", "3e-3",
        "--warmup-steps", "0", "--phase1-epochs", "0"]
CLASSES = load_taxonomy().classes
PAIRS = [("thigh", "leg"), ("arm", "forearm"), ("forearm", "hand"), ("chest", "abdomen"), ("head", "neck")]


def _photo(rng: np.random.Generator, ids: list[int], size: int = 32):
    """Each class a colour; a photo of two regions shows both colours, side by side."""
    from PIL import Image

    img = np.zeros((size, size, 3), np.float32)
    step = size // len(ids)
    for j, k in enumerate(ids):
        img[:, j * step:(j + 1) * step] = [(37 * k) % 256, (91 * k + 60) % 256, (53 * k + 120) % 256]
    img += rng.normal(0, 8, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_multi_region(root: Path, single: dict[str, int], pairs: dict[str, int], seed: int = 0) -> Path:
    """A packed multi-region dataset as prepare lays it out (metadata.parquet typed with a
    Sequence(ClassLabel) `labels` column; `label` empty on a photo of several regions), every score filled in.
    `single`/`pairs`: per split, photos per class and per pair of PAIRS."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from loscat_hf.data.dataset import METADATA_NAME, dataset_features, metadata_features
    from loscat_hf.data.score_tables import COMPONENTS, score_column

    rng = np.random.default_rng(seed)
    scores = [score_column(c) for c in COMPONENTS]
    schema = metadata_features(dataset_features(CLASSES, scores, multi_region=True)).arrow_schema
    for split in single:
        sets = [[k] for k in range(len(CLASSES)) for _ in range(single[split])]
        sets += [sorted(CLASSES.index(c) for c in pair) for pair in PAIRS for _ in range(pairs[split])]
        d = root / split
        d.mkdir(parents=True)
        rows = []
        for i, ids in enumerate(sets):
            name = f"{split}{i:04d}"
            _photo(rng, ids).save(d / f"{name}.jpg", quality=95)
            rows.append({"file_name": f"{name}.jpg", "label": ids[0] if len(ids) == 1 else None,
                         "labels": ids, "site": ";".join(CLASSES[k] for k in ids),
                         "patient_id": f"{split}P{i % 7}", "visit": "V1", "image_id": name,
                         **{c: float(i % 3) for c in scores}})
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), d / METADATA_NAME)
    return root


@pytest.fixture(scope="module")
def multi_dataset(tmp_path_factory) -> Path:
    """12 classes x 3 single-region photos + 5 pairs x 4 in train; 2 + 5 x 2 in validation."""
    return write_multi_region(tmp_path_factory.mktemp("multids"), {"train": 3, "validation": 2},
                              {"train": 4, "validation": 2})


def _args(dataset, out, *extra):
    return parse_train_args(["--dataset", str(dataset), "--output-dir", str(out), *FAST, *extra])


@pytest.fixture(scope="module")
def multi_run(multi_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("multirun") / "out"
    summary = train(*_args(multi_dataset, out, "--num-train-epochs", "2"))
    return out, summary


# --- the problem type ------------------------------------------------------------------------------

def test_problem_type_follows_the_dataset_unless_given(multi_dataset, tiny_dataset, tmp_path):
    from loscat_hf.training.arguments import problem_type_of

    assert problem_type_of(_args(multi_dataset, tmp_path)[0]) == MULTI_LABEL
    assert problem_type_of(_args(tiny_dataset, tmp_path)[0]) == SINGLE_LABEL
    assert problem_type_of(_args(multi_dataset, tmp_path, "--problem-type", SINGLE_LABEL)[0]) == SINGLE_LABEL
    assert problem_type_of(_args(tiny_dataset, tmp_path, "--problem_type", MULTI_LABEL)[0]) == MULTI_LABEL
    assert problem_type_of(_args(multi_dataset, tmp_path, "--task", "scores")[0]) == SINGLE_LABEL
    with pytest.raises(LoscatError, match="^problem_type must be one of") as exc:
        _args(tiny_dataset, tmp_path, "--problem-type", "multi")
    assert exc.value.params == ("problem_type",)
    with pytest.raises(LoscatError, match="problem_type multi_label_classification does not go with task") \
            as exc:
        _args(multi_dataset, tmp_path, "--problem-type", MULTI_LABEL, "--task", "scores")
    assert "problem_type" in exc.value.params


def test_a_bad_problem_type_is_one_line_naming_the_flag(tiny_dataset, tmp_path, capsys):
    from loscat_hf.cli import main

    code = main(["train", "--dataset", str(tiny_dataset), "--output-dir", str(tmp_path / "o"),
                 "--problem-type", "multi-label"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("loscat-hf: error: --problem-type must be one of"), err
    assert not (tmp_path / "o").exists()


# --- the sampler ---------------------------------------------------------------------------------

def test_set_sampler_weights_sum_over_a_photos_classes():
    y = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], float)
    # freq: class 0 in 4 photos, class 1 in 2, class 2 in 1; the one photo of no class is its own group
    expected = [1 / 4, 1 / 4, 1 / 4, 1 / 2, 1 / 4 + 1 / 2, 1.0, 1.0]
    assert set_sample_weights(y).tolist() == pytest.approx(expected)
    assert set_sample_weights(y, 0.5).tolist() == pytest.approx(
        [4 ** -0.5] * 3 + [2 ** -0.5, 4 ** -0.5 + 2 ** -0.5, 1.0, 1.0])
    # photos of one region: exactly the single-label weights
    ids = [0, 0, 0, 1, 2, 2]
    assert torch.equal(set_sample_weights(np.eye(3)[ids]), balanced_sample_weights(ids))
    assert torch.equal(set_sample_weights(np.eye(3)[ids], 0.5), balanced_sample_weights(ids, 0.5))


def test_set_sampler_draws_every_class_at_least_uniformly():
    # class 2 (rare) only ever appears beside class 0 (common): a mean over the set would under-draw it
    y = np.array([[1, 0, 0]] * 80 + [[0, 1, 0]] * 15 + [[1, 0, 1]] * 5, float)
    w = set_sample_weights(y)
    sampler = torch.utils.data.WeightedRandomSampler(w, 30000, generator=torch.Generator().manual_seed(0))
    drawn = y[list(sampler)]
    photos_per_class = drawn.sum(0) / len(drawn)
    # "pick a class uniformly, then one of its photos": each class is in at least a third of the draws
    assert (photos_per_class > 1 / 3 - 0.02).all(), photos_per_class
    assert y.mean(0)[2] == 0.05  # ... of a set where it is in 5 %


def test_trainer_samples_a_multi_region_set_by_its_classes(multi_dataset, tmp_path):
    trainer, ds = build_trainer(*_args(multi_dataset, tmp_path / "o", "--seed", "1"), load_taxonomy())
    targets = np.asarray(list(ds["train"]["labels"]))
    assert torch.equal(trainer.sample_weights, set_sample_weights(targets))
    # every class gets at least a uniform class draw's share of the weight
    share = (trainer.sample_weights.numpy()[:, None] * targets).sum(0) / trainer.sample_weights.sum().item()
    assert (share >= 1 / len(CLASSES) - 1e-9).all()
    seen = Counter()
    for seed in range(20):  # the sampler draws from --seed: one epoch of 56 draws per seed
        trainer.args.seed = seed
        for batch in trainer.get_train_dataloader():
            assert batch["labels"].dtype == torch.float32 and batch["labels"].shape[1] == len(CLASSES)
            seen.update(tuple(int(k) for k in torch.nonzero(row).flatten()) for row in batch["labels"])
    foot, forearm = (CLASSES.index("foot"),), (CLASSES.index("forearm"),)
    # 3 photos of the foot alone (in 3 photos) and 3 of the forearm alone (in 11): equal in the set, but a
    # foot photo weighs 1/3 and a forearm-only one 1/11, so the foot is drawn about 3.7 times as often
    assert (targets[:, foot[0]].sum(), targets[:, forearm[0]].sum()) == (3, 11)
    assert seen[foot] > 2 * seen[forearm], (seen[foot], seen[forearm])


# --- the loss ------------------------------------------------------------------------------------

def _bce(z: float, t: float) -> float:
    p = 1 / (1 + math.exp(-z))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def test_bce_label_smoothing_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.5]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    smoothed = smoothed_targets(labels, 0.1).flatten().tolist()
    assert smoothed == pytest.approx([0.95, 0.05, 0.05, 0.05, 0.95, 0.95])
    hand = [_bce(z, 0.95 if y else 0.05) for z, y in zip(logits.flatten().tolist(), labels.flatten().tolist(),
                                                          strict=True)]
    loss = multi_label_loss(0.1)({"logits": logits}, labels)
    assert loss.item() == pytest.approx(sum(hand) / 6, rel=1e-6)
    plain = multi_label_loss(0.0)({"logits": logits}, labels)
    assert plain.item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).item(), rel=1e-6)
    assert abs(loss.item() - plain.item()) > 1e-3
    # over an optimizer step of 2 batches the Trainer passes the step's element count: sum / count
    step = multi_label_loss(0.1)({"logits": logits}, labels, num_items_in_batch=torch.tensor(12))
    assert step.item() == pytest.approx(sum(hand) / 12, rel=1e-6)


def test_trainer_smooths_bce_targets_not_softmax(multi_dataset, tmp_path):
    trainer, _ = build_trainer(*_args(multi_dataset, tmp_path / "o", "--label-smoothing-factor", "0.2"),
                               load_taxonomy())
    assert trainer.label_smoother is None  # the Trainer's softmax smoother: never on a multi-label model
    assert trainer.model.config.problem_type == MULTI_LABEL
    batch = trainer._prepare_inputs(next(iter(trainer.get_eval_dataloader())))
    loss = trainer.compute_loss(trainer.model, dict(batch))
    with torch.no_grad():
        logits = trainer.model(pixel_values=batch["pixel_values"]).logits
    labels = batch["labels"]
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels * 0.8 + 0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    assert abs(loss.item() - plain.item()) > 1e-3


# --- a whole run ---------------------------------------------------------------------------------

def test_multi_label_run_saves_its_thresholds_and_problem_type(multi_run):
    from transformers import AutoModelForImageClassification

    import loscat_hf

    out, summary = multi_run
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == MULTI_LABEL
    values = config["loscat_thresholds"]["values"]
    assert set(values) == set(CLASSES) and all(0 < v < 1 for v in values.values())
    how = config["loscat_thresholds"]
    assert how["by"] == "train" and how["split"] == "validation" and how["n"] == 12 * 2 + 5 * 2
    assert "loscat_temperature" not in config  # uncalibrated sigmoids: T = 1, nothing recorded
    assert config["loscat_run"]["problem_type"] == MULTI_LABEL
    assert AutoModelForImageClassification.from_pretrained(out).config.problem_type == MULTI_LABEL
    recorded = json.loads((out / "train_summary.json").read_text())
    assert recorded["problem_type"] == MULTI_LABEL and recorded["thresholds"] == values
    assert recorded["temperature"] == 1.0 and summary.thresholds == values
    folder = loscat_hf.read_model_folder(out)
    assert folder.multi_label and folder.thresholds == tuple(recorded["thresholds"][c] for c in CLASSES)
    assert folder.temperature == 1.0 and not folder.calibrated
    # the data counts: a photo of two regions counts for both
    train_counts = recorded["data"]["train"]
    assert train_counts["n"] == 12 * 3 + 5 * 4 and train_counts["several_regions"] == 20
    assert train_counts["per_class"]["forearm"] == 3 + 4 + 4
    hp = recorded["hyperparameters"]
    assert hp["sampler"].startswith("class-balanced over region sets")
    assert "binary cross-entropy" in hp["loss"]
    assert hp["label_smoothing"] == 0.1
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["exact_match"] == summary.accuracy and metrics["macro_f1"] == summary.macro_f1
    state = json.loads(max(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
                       .joinpath("trainer_state.json").read_text())
    assert all("eval_macro_f1" in e for e in state["log_history"] if "eval_loss" in e)


def test_cli_prints_exact_match_and_thresholds(multi_dataset, tmp_path, capsys):
    from loscat_hf.cli import main

    out = tmp_path / "cli"
    code = main(["train", "--dataset", str(multi_dataset), "--output-dir", str(out), *FAST,
                 "--max-steps", "1", "--eval-strategy", "no", "--save-strategy", "no",
                 "--load-best-model-at-end", "false"])
    text = capsys.readouterr().out
    assert code == 0 and "exact-match accuracy" in text and "per-class thresholds" in text


def test_a_single_region_folder_fine_tunes_into_a_multi_region_model(multi_dataset, tmp_path):
    from conftest import save_tiny_model
    from safetensors.torch import load_file
    from transformers import AutoModelForImageClassification

    from loscat_hf.model import folder as model_folder
    from loscat_hf.model.build import build_model_and_processor

    start = save_tiny_model(tmp_path / "single", seed=5)
    config_path = start / "config.json"
    config = json.loads(config_path.read_text())
    assert config["problem_type"] == SINGLE_LABEL
    model_folder.record_temperature(config, 1.7, by="calibrate", split="clinic", n=40)
    config_path.write_text(json.dumps(config))
    net, _ = build_model_and_processor(str(start), load_taxonomy(), problem_type=MULTI_LABEL)
    assert net.config.problem_type == MULTI_LABEL
    saved = AutoModelForImageClassification.from_pretrained(start).state_dict()
    state = net.state_dict()  # the backbone and the same classes' head, all kept
    assert set(state) == set(saved) and all(torch.equal(state[k], v) for k, v in saved.items())
    head = load_file(str(start / "model.safetensors"))["classifier.weight"]
    assert torch.equal(state["classifier.weight"], head)

    out = tmp_path / "multi"
    args = ["--dataset", str(multi_dataset), "--output-dir", str(out), *FAST[4:], "--model", str(start),
            "--problem-type", MULTI_LABEL, "--max-steps", "1", "--eval-strategy", "no",
            "--save-strategy", "no", "--load-best-model-at-end", "false"]
    summary = train(*parse_train_args(args))
    saved = json.loads((out / "config.json").read_text())
    assert saved["problem_type"] == MULTI_LABEL and summary.problem_type == MULTI_LABEL
    assert "loscat_temperature" not in saved and "loscat_calibration" not in saved  # not these weights'
    assert set(saved["loscat_thresholds"]["values"]) == set(CLASSES)
    assert saved["loscat_base_model"]["kind"] == "folder"


def test_task_scores_on_a_multi_region_dataset_trains_single_region_photos(multi_dataset, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="loscat_hf")
    trainer, ds = build_trainer(*_args(multi_dataset, tmp_path / "o", "--task", "scores"), load_taxonomy())
    assert len(ds["train"]) == 12 * 3 and len(ds["validation"]) == 12 * 2  # the pairs are left out
    assert sorted(Counter(ds["train"]["labels"]).values()) == [3] * 12  # one int label per photo
    assert trainer.model.config.problem_type == SINGLE_LABEL and trainer.label_smoother is not None
    assert "train 20" in caplog.text and "validation 10" in caplog.text
    assert "task scores trains on the photos that show one region" in caplog.text


def test_resume_refuses_a_checkpoint_of_another_problem_type(tmp_path):
    from loscat_hf.training.output_dir import check_checkpoint

    identity = {"dataset_sha256": "a" * 64, "taxonomy": "t", "classes": list(CLASSES), "task": "regions"}
    ckpt = tmp_path / "out" / "checkpoint-1"
    ckpt.mkdir(parents=True)
    for recorded in ({**identity, "problem_type": MULTI_LABEL}, {**identity}):
        (ckpt / "config.json").write_text(json.dumps({"loscat_run": recorded}))
        with pytest.raises(LoscatError, match=f"trained as {recorded.get('problem_type', SINGLE_LABEL)}") \
                as exc:
            other = MULTI_LABEL if recorded.get("problem_type") != MULTI_LABEL else SINGLE_LABEL
            check_checkpoint(ckpt, tmp_path / "out", {**identity, "problem_type": other})
        assert "problem_type" in exc.value.params
    # a checkpoint written before problem types were recorded is single-label, and resumes as one
    check_checkpoint(ckpt, tmp_path / "out", {**identity, "problem_type": SINGLE_LABEL})


def test_multi_label_chance_is_what_marking_every_photo_scores():
    from loscat_hf.training.callbacks import ChanceCallback
    from loscat_hf.training.record import multi_label_chance

    y = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0]], float)
    chance, present = multi_label_chance(y)
    assert chance == pytest.approx(3 * (2 * 0.5 / 1.5) / 4) and present == 3  # F1 2p/(1+p), absent 0
    from sklearn.metrics import f1_score

    assert chance == pytest.approx(f1_score(y, np.ones_like(y), average="macro", zero_division=0))
    cb = ChanceCallback(present, ["too few epochs"], chance=chance, chance_is="(every class marked)")

    class State:
        epoch, is_world_process_zero = 1.0, False

    for score in (0.1, 0.2, 0.05):
        cb.on_evaluate(None, State(), None, metrics={"eval_macro_f1": score})
    assert cb.warning and "chance is 0.500 (every class marked)" in cb.warning


def test_a_single_label_run_on_a_multi_region_dataset_says_what_it_left_out(multi_dataset, tmp_path):
    """Its validation report counts the photos showing several regions it could not score (10 here)."""
    out = tmp_path / "single"
    train(*_args(multi_dataset, out, "--problem-type", SINGLE_LABEL, "--num-train-epochs", "1"))
    report = json.loads((out / "eval" / "metrics.json").read_text())
    assert report["n_left_out_several_regions"] == 10 and report["split_size"] == 12 * 2
