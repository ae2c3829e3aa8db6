"""convert-timm: the study's timm checkpoint becomes a transformers folder that computes the same thing.

No timm here (it cannot install beside CPU torch): tests/timm_reference.py writes timm's forward pass out.
"""

import csv
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from timm_reference import hub_cache_with, random_timm_state, timm_forward

from loscat_hf.cli import main
from loscat_hf.errors import LoscatError
from loscat_hf.model.convert import convert_timm
from loscat_hf.model.study import IMAGENET_MEAN, IMAGENET_STD, STUDY_CLASS_CODES, STUDY_WEIGHTS_REPO
from loscat_hf.taxonomy import load_taxonomy

TINY = dict(dim=192, depth=12, patch=16)  # vit_tiny_patch16_*: 3 heads


@pytest.fixture(scope="module")
def study_like(tmp_path_factory):
    """A random checkpoint shaped like the study's (12 classes, 384 px) but tiny-width, and its conversion."""
    d = tmp_path_factory.mktemp("conv")
    state = random_timm_state(**TINY, image=384, seed=1)
    torch.save(state, d / "best_12cls_vit.pt")
    result = convert_timm(str(d / "best_12cls_vit.pt"), d / "model", arch="vit_tiny_patch16_384")
    return state, result.out_dir


def _normalise(img: Image.Image) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return ((x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1))[None]


def test_converted_model_gives_timm_logits(study_like):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    state, folder = study_like
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    x = torch.randn(3, 3, 384, 384, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(pixel_values=x).logits
    ref = timm_forward(state, x, heads=3)
    assert (ours - ref).abs().max().item() < 1e-4
    assert ref.std() > 0.5  # the comparison is not between two near-zero outputs
    assert type(model).__name__ == "ViTForImageClassification" and model.config.layer_norm_eps == 1e-6
    # stated, not guessed from a first batch
    assert model.config.problem_type == "single_label_classification"
    tax = load_taxonomy()
    assert [model.config.id2label[i] for i in range(12)] == [tax.parse(c).label for c in STUDY_CLASS_CODES]
    processor = AutoImageProcessor.from_pretrained(folder)
    assert (processor.size["height"], int(processor.resample)) == (384, 3)
    assert (list(processor.image_mean) == list(IMAGENET_MEAN)
            and list(processor.image_std) == list(IMAGENET_STD))
    card = (folder / "README.md").read_text()
    assert "convert-timm" in card and "local file (sha256 " in card and "SCFA -> head" in card
    assert "best_12cls_vit" not in card  # a local file's name is never published
    assert "Trained by its authors on their data, which `loscat-hf` did not see" in card
    assert "384x384 (bicubic),\nmean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)" in card
    assert str(folder.parent) not in (folder / "config.json").read_text()  # no local path recorded


def test_predict_gives_reference_probabilities(study_like, tmp_path):
    """A photo already at 384x384: loscat-hf predict = softmax of timm's forward on the study's
    preprocessing."""
    state, folder = study_like
    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    refs = {}
    for i, (h, w) in enumerate([(384, 384), (384, 384), (400, 500)]):  # the last one is resized: bicubic
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        img.save(photos / f"p{i}.png")
        refs[f"p{i}.png"] = timm_forward(state, _normalise(img.resize((384, 384), Image.BICUBIC)),
                                         heads=3).softmax(-1)[0]
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(folder), "--images", str(photos), "--out", str(out),
                 "--num-workers", "0"]) == 0
    codes = [load_taxonomy().parse(c).label for c in STUDY_CLASS_CODES]
    for row in csv.DictReader(out.open()):
        ref = refs[row["image"]]
        top = int(ref.argmax())
        assert row["region"] == codes[top]
        assert abs(float(row["probability"]) - ref[top].item()) < 1e-4
        for k in (2, 3):
            assert abs(float(row[f"top{k}_prob"]) - ref[codes.index(row[f"top{k}"])].item()) < 1e-4


def test_evaluate_resizes_with_the_models_filter(study_like, tmp_path):
    """`evaluate`'s loop (split_outputs) gives the logits of bicubic-resized, ImageNet-normalised photos."""
    from conftest import write_imagefolder
    from transformers import AutoModelForImageClassification

    from loscat_hf.data.dataset import load_packed_dataset
    from loscat_hf.evaluation.split_eval import split_outputs

    _, folder = study_like
    split = load_packed_dataset(write_imagefolder(tmp_path / "ds",
                                                  {"train": [1] * 12, "validation": [1] * 3}),
                                load_taxonomy())["validation"]
    got = split_outputs(str(folder), split, batch_size=4).logits
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    x = torch.cat([_normalise(img.convert("RGB").resize((384, 384), Image.BICUBIC))
                   for img in split["image"]])
    with torch.no_grad():
        want = model(pixel_values=x).logits.numpy()
    assert np.abs(got - want).max() < 1e-4


def test_every_decode_path_follows_the_models_resample(study_like, tmp_path):
    """Bicubic for the converted model, in prediction and in training's and evaluation's transform."""
    from loscat_hf.infer.predictor import RegionPredictor
    from loscat_hf.model.build import build_model_and_processor
    from loscat_hf.model.processor import processor_resample
    from loscat_hf.model.transforms import ImageTransform

    _, folder = study_like
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 500, 3), dtype=np.uint8))
    bicubic = np.asarray(img.resize((384, 384), Image.BICUBIC)).transpose(2, 0, 1)
    bilinear = np.asarray(img.resize((384, 384), Image.BILINEAR)).transpose(2, 0, 1)
    assert not np.array_equal(bicubic, bilinear)
    predictor = RegionPredictor.from_pretrained(folder)
    assert np.array_equal(predictor.pixels(img), bicubic)
    _, processor = build_model_and_processor(str(folder), load_taxonomy())
    t = ImageTransform(384, train=False, resample=processor_resample(processor))
    assert np.array_equal(t({"image": [img]})["pixel_values"][0].numpy(), bicubic)


def test_labels_in_another_order_and_head_reused_for_training(tmp_path):
    """--labels sets the output order; `train --model` keeps the trained head, rows reordered to the
    taxonomy."""
    from transformers import AutoModelForImageClassification

    from loscat_hf.model.build import build_model_and_processor

    torch.save(random_timm_state(dim=192, depth=12, patch=32, image=224, classes=12, seed=2),
               tmp_path / "c.pt")
    codes = ["FT", "LEG", "THI", "HND", "FRM", "ARM", "LBCK", "UBCK", "ABDM", "CHEST", "NECK", "SCFA"]
    assert main(["convert-timm", str(tmp_path / "c.pt"), "--out", str(tmp_path / "m"), "--arch",
                 "vit_tiny_patch32_224", "--labels", ",".join(codes)]) == 0
    converted = AutoModelForImageClassification.from_pretrained(tmp_path / "m").eval()
    assert converted.config.id2label[0] == "foot" and converted.config.id2label[11] == "head"
    net, _ = build_model_and_processor(str(tmp_path / "m"), load_taxonomy())
    net.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        a, b = converted(pixel_values=x).logits, net(pixel_values=x).logits
    tax = load_taxonomy()
    assert [net.config.id2label[i] for i in range(12)] == list(tax.classes)
    for i, name in enumerate(tax.classes):  # the same score for each class name: the head was kept, reordered
        assert torch.allclose(b[:, i], a[:, converted.config.label2id[name]])


def test_hub_reference_through_local_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    state = random_timm_state(dim=192, depth=12, patch=32, image=224, seed=3)
    home = hub_cache_with(tmp_path, STUDY_WEIGHTS_REPO, {"best_12cls_vit.pt": state})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    for ref, out in ((f"{STUDY_WEIGHTS_REPO}/best_12cls_vit.pt", "a"), (STUDY_WEIGHTS_REPO, "b")):
        result = convert_timm(ref, tmp_path / out, arch="vit_tiny_patch32_224")
        assert result.source == f"{STUDY_WEIGHTS_REPO}/best_12cls_vit.pt"
        config = json.loads((tmp_path / out / "config.json").read_text())
        assert config["loscat_source"]["study"] is True
        assert "Credit" in (tmp_path / out / "README.md").read_text()
        assert "Trained by the study's authors on their data" in (tmp_path / out / "README.md").read_text()
    for tuned, words in ((False, "Weights from the LoSCAT"),
                         (True, "Fine-tuned with `loscat-hf` from the weights")):
        if tuned:
            config = json.loads((tmp_path / "a" / "config.json").read_text())  # what `train` adds on saving
            config["loscat_run"] = {"dataset_sha256": "0" * 64, "taxonomy": "loscat-12", "task": "region"}
            (tmp_path / "a" / "config.json").write_text(json.dumps(config))
        assert main(["push", "--model", str(tmp_path / "a"), "--repo-id", "me/x", "--dry-run",
                     str(tmp_path / f"push-{tuned}")]) == 0
        card = (tmp_path / f"push-{tuned}" / "README.md").read_text()
        assert words in card and f"base_model: {STUDY_WEIGHTS_REPO}" in card and "license" not in card
        assert "Credit: the study's authors" in card
        # what the weights were trained on: the study's data as converted; fine-tuned since, with no training
        # record beside them (train writes one), not recorded
        said = "Not recorded: the model folder" if tuned else "The LoSCAT body-region study's authors' data"
        assert said in card.split("## Training data")[1] and "SYNTHETIC demo model" not in card
    home2 = hub_cache_with(tmp_path / "two", "org/two", {"a.pt": state, "vit/b.safetensors": b"x"})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home2 / "hub"))
    with pytest.raises(LoscatError, match=r"2 weights files: a\.pt, vit/b\.safetensors"):
        convert_timm("org/two", tmp_path / "c", arch="vit_tiny_patch32_224")
    with pytest.raises(LoscatError, match="not in the local HF cache"):
        convert_timm("org/absent/x.pt", tmp_path / "d")


def test_safetensors_and_wrapped_checkpoints(tmp_path):
    from safetensors.torch import save_file

    state = random_timm_state(dim=192, depth=12, patch=32, image=224, seed=4)
    save_file(state, tmp_path / "w.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        assert convert_timm(str(tmp_path / name), tmp_path / f"out-{name}",
                            arch="vit_tiny_patch32_224").n_tensors


class _Evil:
    def __reduce__(self):
        return (print, ("this ran",))


@pytest.mark.parametrize("make, arch, message", [
    (lambda s: {k: v for k, v in s.items() if k != "blocks.3.mlp.fc1.bias"}, "vit_tiny_patch32_224",
     r"missing blocks\.3\.mlp\.fc1\.bias"),
    (lambda s: {**s, "fc_norm.weight": torch.ones(192)}, "vit_tiny_patch32_224", r"extra fc_norm\.weight"),
    (lambda s: s, "vit_small_patch32_224",
     r"tensors are 192 wide, the architecture.s are 384 \(try arch .vit_tiny_patch32_224.\) \(--arch\)$"),
    (lambda s: s, "vit_large_patch32_224", r"\(24 blocks\): missing blocks\.12-23\.\*$"),
    (lambda s: s, "vit_huge", r"error: --arch 'vit_huge' is not a known timm ViT"),
    (lambda s: {("vit." + k): v for k, v in s.items()}, "vit_tiny_patch32_224", "already a transformers"),
    (lambda s: {"weights": torch.ones(3)}, "vit_tiny_patch32_224", "not a timm ViT state dict"),
    (lambda s: [1, 2], "vit_tiny_patch32_224", "not a state dict of tensors"),
    (lambda s: {**s, "x": _Evil()}, "vit_tiny_patch32_224", "refused"),
    # a tensor of the wrong rank or size: named, with the shape the architecture needs (not an IndexError)
    (lambda s: {**s, "head.weight": torch.tensor(0.5)}, "vit_tiny_patch32_224",
     r"tensor head\.weight has shape \[\], but timm vit_tiny_patch32_224 needs a matrix of shape "
     r"\[12, 192\]"),
    (lambda s: {**s, "blocks.4.attn.qkv.weight": torch.ones(576)}, "vit_tiny_patch32_224",
     r"tensor blocks\.4\.attn\.qkv\.weight has shape \[576\], .* needs a matrix of shape \[576, 192\]"),
    (lambda s: {**s, "cls_token": torch.tensor(1.0)}, "vit_tiny_patch32_224",
     r"tensor cls_token has shape \[\], .* needs a 3-d tensor of shape \[1, 1, 192\]"),
    (lambda s: {**s, "blocks.7.mlp.fc2.weight": torch.ones(192, 700)}, "vit_tiny_patch32_224",
     r"tensor blocks\.7\.mlp\.fc2\.weight has shape \[192, 700\], .* matrix of shape \[192, 768\]"),
    # values no trained network has: refused by name, never cast or converted
    (lambda s: {**s, "blocks.5.mlp.fc1.weight": s["blocks.5.mlp.fc1.weight"].index_fill(1, torch.tensor([3]),
                                                                                        float("nan"))},
     "vit_tiny_patch32_224", r"tensor blocks\.5\.mlp\.fc1\.weight holds NaN or infinite values"),
    (lambda s: {**s, "norm.bias": s["norm.bias"].index_fill(0, torch.tensor([3]), float("inf"))},
     "vit_tiny_patch32_224", r"tensor norm\.bias holds NaN or infinite values"),
    (lambda s: {**s, "head.bias": s["head.bias"].to(torch.complex64)}, "vit_tiny_patch32_224",
     r"tensor head\.bias is complex64, not real floating point"),
    (lambda s: {**s, "pos_embed": s["pos_embed"].long()}, "vit_tiny_patch32_224",
     r"tensor pos_embed is int64, not real floating point"),
])
def test_bad_checkpoints_are_refused_in_one_line(tmp_path, capsys, make, arch, message):
    state = random_timm_state(dim=192, depth=12, patch=32, image=224, seed=5)
    path = tmp_path / "bad.pt"
    torch.save(make(state), path)
    assert main(["convert-timm", str(path), "--out", str(tmp_path / "m"), "--arch", arch]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()[-1]
    assert err.startswith("loscat-hf: error:") and __import__("re").search(message, err), err
    assert "Traceback" not in captured.err and "this ran" not in captured.out
    assert [p.name for p in tmp_path.iterdir()] == ["bad.pt"]  # no folder, no .partial left behind


def test_bad_labels_and_existing_output(tmp_path, capsys):
    torch.save(random_timm_state(dim=192, depth=12, patch=32, image=224, seed=6), tmp_path / "c.pt")
    base = ["convert-timm", str(tmp_path / "c.pt"), "--arch", "vit_tiny_patch32_224", "--out"]
    assert main([*base, str(tmp_path / "a"), "--labels", "SCFA,NECK"]) == 2
    assert "12 outputs but 2 labels" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "a"), "--labels",
                 ",".join(["SCFA"] * 2 + list(STUDY_CLASS_CODES[2:]))]) == 2
    assert "more than once" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "a"), "--labels",
                 ",".join(["elbow"] + list(STUDY_CLASS_CODES[1:]))]) == 2
    assert "unknown region 'elbow'" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "a")]) == 0
    assert main([*base, str(tmp_path / "a")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_study_codes_are_taxonomy_synonyms():
    tax = load_taxonomy()
    assert [tax.parse(c).label for c in STUDY_CLASS_CODES] == list(tax.classes)
    assert tax.parse("Rt FRM").site == "right_forearm" and tax.parse("scfa").label == "head"


def test_pickle_refusal_is_torch_weights_only(tmp_path):
    """The refusal comes from torch's weights_only unpickler (not a check of ours that could miss a case)."""
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_a_head_for_twelve_other_classes_is_not_reused(tmp_path):
    """Same shape, other meaning: a 12-class head whose classes are not the taxonomy's is re-initialised."""
    from conftest import save_tiny_model
    from safetensors.torch import load_file

    from loscat_hf.model.build import build_model_and_processor

    other = {i: f"lesion_type_{i}" for i in range(12)}
    folder = save_tiny_model(tmp_path / "m", id2label=other, label2id={v: k for k, v in other.items()})
    saved = load_file(str(folder / "model.safetensors"))["classifier.weight"]
    net, _ = build_model_and_processor(str(folder), load_taxonomy())
    assert net.config.id2label[0] == "head"
    assert not torch.allclose(net.classifier.weight, saved) and float(net.classifier.bias.abs().max()) == 0.0
    same, _ = build_model_and_processor(str(save_tiny_model(tmp_path / "same")), load_taxonomy())
    assert torch.equal(same.classifier.weight, load_file(str(tmp_path / "same" / "model.safetensors"))[
        "classifier.weight"])


def test_seed_fixes_the_new_head_of_a_folder_model(tmp_path):
    """`train --model DIR --seed N` starts from the same head in every process (the head is drawn while
    loading, before the Trainer seeds anything)."""
    from transformers import ViTConfig, ViTForImageClassification

    from loscat_hf.model.build import PRESETS, build_model_and_processor

    folder = tmp_path / "m"  # a 5-class model: its head cannot be reused
    ViTForImageClassification(ViTConfig(**PRESETS["tiny"],
                                        id2label={i: f"c{i}" for i in range(5)})).save_pretrained(folder)
    build_model_and_processor("tiny", load_taxonomy())[1].save_pretrained(folder)
    heads = []
    for noise in (1, 2):
        torch.manual_seed(noise)  # whatever state the process is in
        heads.append(build_model_and_processor(str(folder), load_taxonomy(), seed=42)[0].classifier.weight)
    assert heads[0].shape[0] == 12 and torch.equal(heads[0], heads[1])
    other_seed = build_model_and_processor(str(folder), load_taxonomy(), seed=43)[0].classifier.weight
    assert not torch.equal(heads[0], other_seed)


def test_a_file_that_is_no_weights_file_is_named(tmp_path, capsys):
    (tmp_path / "notes.pt").write_text("hello")
    assert main(["convert-timm", str(tmp_path / "notes.pt"), "--out", str(tmp_path / "m")]) == 2
    assert "not a torch.save or safetensors weights file" in capsys.readouterr().err


@pytest.mark.parametrize("ref, message", [
    ("C:/Users/me/best.pt", "no such checkpoint file"),  # a Windows path, not the Hub repo "C:/Users"
    ("models/best.pt", "no such checkpoint file"),  # a mistyped local path, not the Hub repo "models/best.pt"
    ("a b/c", "cannot list the Hub repo a b/c"),  # not a valid repo id
    ("org/repo/../../etc/x.pt", "cannot download org/repo/../../etc/x.pt"),
])
def test_bad_references_are_one_line(tmp_path, capsys, ref, message):
    assert main(["convert-timm", ref, "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("loscat-hf: error:") and message in err[0], err


def test_network_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """Online but unreachable: huggingface_hub raises httpx's errors, which are not OSErrors."""
    import huggingface_hub

    class TransportError(Exception):
        pass

    def unreachable(*args, **kwargs):
        raise TransportError("[Errno 111] Connection refused")

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", unreachable)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    for ref in ("org/repo", "org/repo/best.pt"):
        assert main(["convert-timm", ref, "--out", str(tmp_path / "m")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Connection refused" in err[0], err


def test_a_local_checkpoints_name_and_folder_are_never_written(tmp_path):
    """A checkpoint named after a patient, in a folder named after them: neither name reaches any byte of the
    converted folder (config.json, card, weights) nor of what `push` would upload; its sha256 does."""
    import hashlib

    secret = tmp_path / "Doe_Jane_1984-03-02_MRN4471203"
    secret.mkdir()
    path = secret / "JaneDoe_MRN4471203_thigh.pt"
    torch.save(random_timm_state(dim=192, depth=12, patch=32, image=224, seed=8), path)
    assert main(["convert-timm", str(path), "--out", str(tmp_path / "m"),
                 "--arch", "vit_tiny_patch32_224"]) == 0
    assert main(["push", "--model", str(tmp_path / "m"), "--repo-id", "me/x", "--dry-run",
                 str(tmp_path / "push")]) == 0
    written = [p for root in ("m", "push") for p in (tmp_path / root).rglob("*") if p.is_file()]
    assert len(written) >= 6
    for p in written:
        data = p.read_bytes().lower()
        for part in ("doe_jane", "janedoe", "mrn4471203", "1984-03-02", "_thigh", str(tmp_path).lower()):
            assert part.encode() not in data, (p.name, part)
    source = json.loads((tmp_path / "m" / "config.json").read_text())["loscat_source"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert source["checkpoint"] == "local file" and source["sha256"] == digest and source["study"] is False
    assert f"local file (sha256 {digest[:16]})" in (tmp_path / "m" / "README.md").read_text()



def test_a_folder_converted_when_names_were_recorded_shows_and_pushes_no_name(tmp_path, capsys):
    """Older conversions wrote the local checkpoint's path into config.json: the card and the Space show
    "local file" instead, and `push` refuses the folder until it is converted again."""
    from loscat_hf.apps.space import model_description
    from loscat_hf.model.folder import SOURCE_KEY, read_model_folder

    path = tmp_path / "ckpt.pt"
    torch.save(random_timm_state(dim=192, depth=12, patch=32, image=224, seed=8), path)
    model = tmp_path / "m"
    assert main(["convert-timm", str(path), "--out", str(model), "--arch", "vit_tiny_patch32_224"]) == 0
    config = json.loads((model / "config.json").read_text())
    config[SOURCE_KEY] = {"checkpoint": "clinic/Doe_Jane/MRN4471203.pt", "arch": "vit_tiny_patch32_224",
                          "study": False}
    (model / "config.json").write_text(json.dumps(config))
    folder = read_model_folder(model)
    assert folder.source["checkpoint"] == "local file"
    assert "MRN4471203" not in model_description(folder, str(model))
    capsys.readouterr()
    assert main(["push", "--model", str(model), "--repo-id", "me/x", "--dry-run", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "convert the checkpoint again" in err and "MRN4471203" not in err
    assert not (tmp_path / "p").exists()
    # a Hub reference stays what it was: it is public
    config[SOURCE_KEY] = {"checkpoint": "org/repo/best.pt", "hub": True, "study": False}
    (model / "config.json").write_text(json.dumps(config))
    assert read_model_folder(model).source["checkpoint"] == "org/repo/best.pt"
