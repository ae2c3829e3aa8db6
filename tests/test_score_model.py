"""Score heads: masked loss, plain-transformers loading, and learning on a synthetic fixture."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from loscat_hf.data.score_tables import COMPONENTS
from loscat_hf.model.score_heads import ViTWithScores, build_score_model, masked_score_loss
from loscat_hf.taxonomy import load_taxonomy
from loscat_hf.training.parse import parse_train_args
from loscat_hf.training.run import train

FAST = ["--model", "tiny", "--image-size", "32", "--dataloader-num-workers", "0",
        "--per-device-train-batch-size", "16", "--logging-steps", "1", "--learning-rate", "3e-3",
        "--warmup-steps", "0"]


def _tiny():
    return build_score_model("tiny", load_taxonomy(), image_size=32)


def test_masked_targets_change_neither_loss_nor_gradients():
    model, _ = _tiny()
    x = torch.rand(4, 3, 32, 32)
    target = torch.tensor([[1.0, 2.0, 3.0, 0.0, float("nan"), 1.0]] * 4)
    target[1, 0] = float("nan")

    def loss_and_grad(t):
        model.zero_grad()
        out = model(pixel_values=x, labels=torch.tensor([0, 1, 2, 3]), score_targets=t)
        out.loss.backward()
        return out.loss.item(), model.score_heads.weight.grad.clone()

    loss_a, grad_a = loss_and_grad(target)
    changed = target.clone()
    changed[torch.isnan(changed)] = 3.0  # fill in the masked targets with anything
    loss_b, grad_b = loss_and_grad(target.clone())
    assert loss_a == loss_b and torch.equal(grad_a, grad_b) and not torch.isnan(grad_a).any()
    loss_c, _ = loss_and_grad(changed)
    assert loss_c != loss_a  # the same values, unmasked, do count
    # all missing -> the score loss is zero, not NaN
    assert masked_score_loss(torch.zeros(2, 6), torch.full((2, 6), float("nan"))).item() == 0.0


def test_saved_folder_loads_with_plain_transformers(tmp_path):
    from transformers import AutoModelForImageClassification

    model, processor = _tiny()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    plain = AutoModelForImageClassification.from_pretrained(tmp_path)
    assert type(plain).__name__ == "ViTForImageClassification"
    x = torch.rand(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(plain(pixel_values=x).logits, model(pixel_values=x).logits, atol=1e-6)
    again = ViTWithScores.from_pretrained(tmp_path)
    assert torch.equal(again.score_heads.weight, model.score_heads.weight)
    assert again.score_components == tuple(COMPONENTS)


def _scored_dataset(root, n_train=96, n_val=36, seed=0):
    """Label from hue; erythema 0-3 painted as the red of a central square; other scores half missing."""
    classes = load_taxonomy().classes
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("validation", n_val)):
        d = root / split
        d.mkdir(parents=True)
        rows = []
        for i in range(n):
            k, ery = i % 4, int(rng.integers(0, 4))
            img = (np.full((32, 32, 3), (40 + 50 * k, 90, 200 - 40 * k), np.float32)
                   + rng.normal(0, 8, (32, 32, 3)))
            img[8:24, 8:24, 0] = 40 + 70 * ery
            img[8:24, 8:24, 1:] = 60
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"{i}.jpg", quality=95)
            row = {"file_name": f"{i}.jpg", "label": classes[k], "site": classes[k],
                   "patient_id": f"{split}{i}", "visit": "V1", "image_id": f"{split}{i}"}
            row.update({f"score_{c}": "" for c in COMPONENTS})
            row["score_erythema"] = str(ery)
            if i % 2:
                row["score_dyspigmentation"] = "1"
            rows.append(row)
        with open(d / "metadata.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return root


@pytest.mark.slow
def test_score_heads_learn_on_held_out_images(tmp_path):
    ds = _scored_dataset(tmp_path / "ds")
    out = tmp_path / "run"
    summary = train(*parse_train_args([
        "--dataset", str(ds), "--output-dir", str(out), *FAST, "--task", "scores", "--num-train-epochs", "8",
        "--phase1-epochs", "0", "--save-strategy", "no", "--load-best-model-at-end", "false",
        "--eval-strategy", "no", "--augment", "false"]))
    ery = summary.scores["erythema"]
    assert ery["pearson"] > 0.6, ery
    assert (out / "eval" / "scores_report.json").exists()


def test_scores_task_needs_score_columns(tiny_dataset, tmp_path):
    from loscat_hf.errors import LoscatError

    with pytest.raises(LoscatError, match="prepare"):
        train(*parse_train_args(["--dataset", str(tiny_dataset), "--output-dir", str(tmp_path / "o"),
                                         *FAST, "--task", "scores"]))
    with pytest.raises(LoscatError, match="^task must be"):
        parse_train_args(["--dataset", "d", "--output-dir", str(tmp_path), "--task", "severity"])
