"""Fine-tuning from pretrained weights, offline: a folder laid out like `google/vit-base-patch16-384`
(1000-class ImageNet head, legacy `vit.encoder.layer.N...` tensor names, mean = std = 0.5, bilinear) loads
with a fresh 12-class head and every backbone tensor intact, and phase 1 (head only) learns from those
features.

No Hub: the "pretrained" models are small ViTs built (and, for the phase-1 test, trained) right here.
"""

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from loscat_hf.taxonomy import load_taxonomy

SIZE, PATCH = 32, 8  # a 4 x 4 patch grid
GRID = SIZE // PATCH
HEAD = ("classifier.weight", "classifier.bias")

# transformers 5 parameter names -> legacy names of Google's Hub checkpoints (save_pretrained writes these).
_LEGACY = {"attention.q_proj": "attention.attention.query", "attention.k_proj": "attention.attention.key",
           "attention.v_proj": "attention.attention.value", "attention.o_proj": "attention.output.dense",
           "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}


def _config(num_labels: int = 1000):
    from transformers import ViTConfig

    id2label = {i: f"class_{i}" for i in range(num_labels)}  # ImageNet-style: 1000 names, none of ours
    return ViTConfig(image_size=SIZE, patch_size=PATCH, hidden_size=64, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=128, id2label=id2label,
                     label2id={v: k for k, v in id2label.items()})


def _legacy_name(name: str) -> str:
    if not name.startswith("vit.layers."):
        return name
    _, _, n, rest = name.split(".", 3)
    for new, old in _LEGACY.items():
        if rest.startswith(new + "."):
            rest = old + rest[len(new):]
    return f"vit.encoder.layer.{n}.{rest}"


def _save_google_style(model, folder: Path, layout: str = "save_pretrained") -> dict[str, torch.Tensor]:
    """Save `model` as a model folder; return its tensors under transformers 5 names (the reference).

    layout: "save_pretrained" (what transformers writes), "legacy" (safetensors written by hand with exactly
    the key names of Google's checkpoint, and Google's old-style preprocessor_config.json), or "v5-names"
    (safetensors with the transformers 5 parameter names).
    """
    from transformers import ViTImageProcessorPil

    model.save_pretrained(folder)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    processor = ViTImageProcessorPil(size={"height": SIZE, "width": SIZE}, image_mean=[0.5] * 3,
                                     image_std=[0.5] * 3, resample=2)  # as google/vit-*: PIL bilinear
    if layout == "save_pretrained":
        processor.save_pretrained(folder)
        return state
    names = _legacy_name if layout == "legacy" else (lambda k: k)
    save_file({names(k): v for k, v in state.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    if layout == "legacy":  # Google's file: a ViTFeatureExtractor config with an int size
        (folder / "preprocessor_config.json").write_text(json.dumps({
            "do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": SIZE}))
    else:
        processor.save_pretrained(folder)
    return state


def _saved_keys(folder: Path) -> set[str]:
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        return set(f.keys())


def _imagenet_model(seed: int):
    """A 1000-class ViT whose head is large (std 1), unlike a fresh head (std 0.02): a copied slice shows."""
    from transformers import ViTForImageClassification

    torch.manual_seed(seed)
    model = ViTForImageClassification(_config())
    with torch.no_grad():
        model.classifier.weight.normal_(0, 1)
        model.classifier.bias.normal_(0, 1)
    return model


def _check_backbone(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], what: str) -> None:
    """Every backbone tensor (all but the head) present and exactly equal to the folder's."""
    backbone = sorted(set(ref) - set(HEAD))
    assert sorted(set(got) - set(HEAD)) == backbone, f"{what}: backbone tensors missing or added"
    unequal = [k for k in backbone if not torch.equal(got[k], ref[k])]
    assert not unequal, f"{what}: backbone differs from the folder's in {unequal}"


def _check_new_head(net, ref: dict[str, torch.Tensor], taxonomy) -> None:
    n = len(taxonomy.classes)
    weight, bias = net.classifier.weight.detach(), net.classifier.bias.detach()
    assert weight.shape == (n, net.config.hidden_size) and bias.shape == (n,)
    assert net.config.num_labels == n
    assert net.config.id2label == taxonomy.id2label and net.config.label2id == taxonomy.label2id
    old_w, old_b = ref["classifier.weight"], ref["classifier.bias"]
    assert not (weight[:, None, :] == old_w[None]).all(-1).any(), "a row of the 1000-class head was kept"
    assert not torch.isin(bias, old_b).any(), "a bias of the 1000-class head was kept"
    assert weight.std() < 0.1 < old_w.std()  # freshly initialised (initializer_range 0.02), not copied


@pytest.mark.parametrize("layout", ["save_pretrained", "legacy", "v5-names"])
def test_imagenet_folder_loads_with_new_head_and_every_backbone_weight(tmp_path, layout):
    from transformers import ViTImageProcessorPil

    from loscat_hf.model.build import build_model_and_processor
    from loscat_hf.model.processor import processor_size

    folder = tmp_path / "vit-imagenet"
    ref = _save_google_style(_imagenet_model(seed=1), folder, layout)
    keys = _saved_keys(folder)
    if layout in ("save_pretrained", "legacy"):  # Google's names (transformers 5.24 still writes them)
        assert "vit.encoder.layer.0.attention.attention.query.weight" in keys
        assert not any(k.startswith("vit.layers.") for k in keys)
        assert keys == {_legacy_name(k) for k in ref}
    else:
        assert "vit.layers.0.attention.q_proj.weight" in keys
    taxonomy = load_taxonomy()
    net, processor = build_model_and_processor(str(folder), taxonomy)
    _check_backbone(net.state_dict(), ref, layout)
    _check_new_head(net, ref, taxonomy)
    # The processor is the folder's (size 32, not ViT's default 224), on the PIL backend.
    assert isinstance(processor, ViTImageProcessorPil)
    assert processor_size(processor) == SIZE == net.config.image_size
    assert list(processor.image_mean) == [0.5] * 3 and list(processor.image_std) == [0.5] * 3
    assert int(processor.resample) == 2 and processor.do_normalize and processor.do_resize


# --- Phase 1 on a frozen pretrained backbone learns what a frozen random one cannot -------------------------
#
# The task: which of the 12 border cells of the 4 x 4 patch grid holds a bright square on a noisy background.
# The square looks the same everywhere, so only position tells the classes apart. A randomly initialised ViT
# barely encodes position (position embeddings of std 0.02 against patch features ~10x larger): a linear head
# on its class token stays near chance. A ViT trained on square positions (all 16 cells: a related, not the
# same task) exposes them in its class token, and a linear head reads them off.

RING = [(r, c) for r in range(GRID) for c in range(GRID) if r in (0, GRID - 1) or c in (0, GRID - 1)]
ALL_CELLS = [(r, c) for r in range(GRID) for c in range(GRID)]
SEED = 0


@contextmanager
def _one_thread():
    """A tiny model gains nothing from threads, and 2 threads on 2 busy cores run ~15x slower (spin waits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def position_images(rng: np.random.Generator, cells, per_cell: int, noise: float = 40.0, square: int = 6):
    """uint8 (N, SIZE, SIZE, 3) images and labels: a square of 230 at a random offset in cell `labels[i]`."""
    labels = np.repeat(np.arange(len(cells)), per_cell)
    img = rng.normal(110, noise, (len(labels), SIZE, SIZE, 3))
    offsets = rng.integers(0, PATCH - square + 1, (len(labels), 2))
    for i, k in enumerate(labels):
        y, x = cells[k][0] * PATCH + offsets[i, 0], cells[k][1] * PATCH + offsets[i, 1]
        img[i, y:y + square, x:x + square] = 230
    return np.clip(img, 0, 255).astype(np.uint8), labels


def _pixels(images: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5  # mean = std = 0.5


def pretrain_backbone(seed: int, steps: int = 250):
    """A ViT trained end to end (plain torch) to tell all 16 square positions apart; returned with a
    1000-class head like an ImageNet checkpoint, and its test accuracy. Position embeddings start at std 0.5:
    from the default 0.02, 250 steps found position on 2 of 8 seeds; from 0.5 on 8 of 8 (accuracy 1.00). The
    larger start alone does not do it: a linear probe on an untrained ViT with position embeddings of std 0.5
    stays at chance (validation accuracy 0.08-0.09)."""
    from transformers import ViTForImageClassification

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    config = _config(len(ALL_CELLS))
    net = ViTForImageClassification(config)
    with torch.no_grad():
        net.vit.embeddings.position_embeddings.normal_(0, 0.5)
    images, labels = position_images(rng, ALL_CELLS, 128)
    x, y = _pixels(images), torch.from_numpy(labels)
    opt = torch.optim.AdamW(net.parameters(), 3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(net(pixel_values=x[idx]).logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    test_images, test_labels = position_images(rng, ALL_CELLS, 8)
    with torch.no_grad():
        acc = (net(pixel_values=_pixels(test_images)).logits.argmax(-1).numpy() == test_labels).mean()
    imagenet = _imagenet_model(seed + 1)
    imagenet.vit.load_state_dict(net.vit.state_dict())
    return imagenet, float(acc)


def write_position_dataset(root: Path, seed: int, train: int = 16, validation: int = 8) -> Path:
    """The packed layout (conftest's metadata.csv), one taxonomy class per border cell, PNG."""
    from conftest import write_split
    from PIL import Image

    rng = np.random.default_rng(seed + 1000)
    for split, per_cell in (("train", train), ("validation", validation)):
        images, labels = position_images(rng, RING, per_cell)
        write_split(root / split, split, [(Image.fromarray(img), int(k), i)
                                          for i, (img, k) in enumerate(zip(images, labels, strict=True))],
                    ".png")
    return root


def train_head_only(model_dir: Path, dataset: Path, out: Path, seed: int, monkeypatch, epochs: int = 8):
    """`loscat-hf train` with phase 1 covering the whole run: (summary, weights at the start, at the end)."""
    from transformers import ViTForImageClassification

    from loscat_hf import cli
    from loscat_hf.model.processor import processor_size
    from loscat_hf.training import run
    from loscat_hf.training.callbacks import TwoPhaseCallback

    start, built = {}, []
    real_build = run.build_trainer

    def build_and_snapshot(*args, **kwargs):
        trainer, ds = real_build(*args, **kwargs)
        start.update({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
        built.append(trainer)
        return trainer, ds

    monkeypatch.setattr(run, "build_trainer", build_and_snapshot)
    argv = ["train", "--model", str(model_dir), "--dataset", str(dataset), "--output-dir", str(out),
            "--num-train-epochs", str(epochs), "--phase1-epochs", str(epochs), "--augment", "false",
            "--learning-rate", "1e-2", "--per-device-train-batch-size", "32", "--dataloader-num-workers", "0",
            "--logging-steps", "50", "--seed", str(seed), "--disable-tqdm", "true"]
    assert cli.main(argv) == 0
    (trainer,) = built
    phases = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TwoPhaseCallback)]
    assert [cb.phase1_epochs for cb in phases] == [epochs] and trainer.state.epoch == epochs
    assert processor_size(trainer.processing_class) == SIZE  # the folder's processor, not a preset's
    assert all(p.requires_grad for p in trainer.model.parameters())  # unfrozen again at the end
    summary = json.loads((out / "train_summary.json").read_text())
    end = ViTForImageClassification.from_pretrained(out).state_dict()
    return summary, start, end


@pytest.mark.slow
def test_phase1_learns_from_a_pretrained_backbone_not_from_a_random_one(tmp_path, monkeypatch):
    from transformers import ViTForImageClassification

    with _one_thread():
        pretrained, pretrain_acc = pretrain_backbone(SEED)
        assert pretrain_acc >= 0.9, f"the test's own pretraining failed ({pretrain_acc:.2f})"
        torch.manual_seed(SEED + 2)
        folders = {"pretrained": (tmp_path / "pretrained", pretrained),
                   "random": (tmp_path / "random", ViTForImageClassification(_config()))}
        refs = {name: _save_google_style(model, folder) for name, (folder, model) in folders.items()}
        dataset = write_position_dataset(tmp_path / "ds", SEED)
        results = {}
        for name, (folder, _) in folders.items():
            out = tmp_path / f"out-{name}"
            summary, start, end = train_head_only(folder, dataset, out, SEED, monkeypatch)
            results[name] = summary
            # Trained from the folder's backbone; phase 1 froze it for the whole run; the head learnt.
            _check_backbone(start, refs[name], name + " (start)")
            _check_backbone(end, refs[name], name + " (end)")
            assert all(not torch.equal(start[k], end[k]) for k in HEAD), f"{name}: the head did not train"
    f1 = {name: s["macro_f1"] for name, s in results.items()}
    acc = {name: s["accuracy"] for name, s in results.items()}
    print(f"pretraining accuracy {pretrain_acc:.2f}; validation macro-F1 {f1}, accuracy {acc}")
    assert f1["pretrained"] >= 0.8 and acc["pretrained"] >= 0.8, results
    assert f1["random"] <= 0.4 and acc["random"] <= 0.4, results  # chance is 1/12
