"""`push` hands huggingface_hub exactly the allow-listed files and a valid card; Hub ids load offline.

The upload itself is not exercised against the real Hub (no network, no token in tests): HfApi's methods
are replaced by recorders, so the test asserts what would be sent, which is the part this code controls.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import save_tiny_model

from loscat_hf.cli import main
from loscat_hf.errors import LoscatError
from loscat_hf.hub.model import push_model
from loscat_hf.model.card import card_template, model_card

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hf_DoNotPrintMe123"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from loscat_hf.taxonomy import load_taxonomy
    from loscat_hf.viz.plots import plot_confusion_matrix

    tax = load_taxonomy()
    d = save_tiny_model(tmp_path_factory.mktemp("model"), loscat_temperature=1.25)
    (d / "eval").mkdir()
    (d / "eval" / "metrics.json").write_text(json.dumps({"macro_f1": 0.61234, "accuracy": 0.70001, "n": 40,
                                                         "split_size": 40, "balanced_accuracy": 0.6}))
    plot_confusion_matrix(np.eye(12, dtype=int), tax.classes, d / "eval" / "confusion_matrix.png")
    # things that must never leave the machine
    (d / "training_args.bin").write_bytes(b"pickle")
    (d / "train_summary.json").write_text("{}")
    (d / "checkpoint-10").mkdir()
    (d / "checkpoint-10" / "optimizer.pt").write_bytes(b"adam")
    (d / "eval" / "per_class.csv").write_text("class,f1\n")
    return d


def test_template_in_wheel_matches_repo_root():
    assert (ROOT / "model_card.md").read_text(encoding="utf-8") == card_template()


@pytest.fixture
def recorder(monkeypatch):
    import huggingface_hub

    calls = {}

    def create_repo(self, repo_id, **kw):
        calls["create"] = {"repo_id": repo_id, **kw}
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kw):
        folder = Path(kw["folder_path"])
        calls["upload"] = kw
        calls["files"] = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        calls["readme"] = (folder / "README.md").read_text(encoding="utf-8")

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: SECRET)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    return calls


def test_push_sends_allow_listed_files_and_valid_card(model_dir, recorder, capsys):
    from huggingface_hub import ModelCard

    assert main(["push", "--model", str(model_dir), "--repo-id", "org/loscat-vit"]) == 0
    assert recorder["create"]["private"] is True and recorder["create"]["repo_id"] == "org/loscat-vit"
    assert recorder["upload"]["repo_id"] == "org/loscat-vit"
    assert recorder["files"] == ["README.md", "config.json", "confusion_matrix.png", "model.safetensors",
                                 "preprocessor_config.json"]
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err

    text = recorder["readme"]
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["license"] == "apache-2.0" and meta["pipeline_tag"] == "image-classification"
    assert "base_model" not in meta and "loscat" in meta["tags"]  # a tiny preset: nothing pretrained
    assert "**Trained from scratch**" in text and "preset `tiny`" in text
    results = meta["model-index"][0]["results"][0]
    assert {m["name"]: m["value"] for m in results["metrics"]} == {"macro-F1": 0.6123, "accuracy": 0.7}
    card = ModelCard(text)  # huggingface_hub parses it back, model-index included
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == {"macro-F1": 0.6123, "accuracy": 0.7}
    assert 'pipeline("image-classification", model="org/loscat-vit")' in text
    assert "Not a diagnostic device" in text and "one centre" in text and "SYNTHETIC" in text
    assert "| validation | 40 | 0.612 | 0.700 | 0.600 | - |" in text
    assert "![Confusion matrix](confusion_matrix.png)" in text


def test_public_flag_and_not_logged_in(model_dir, recorder, monkeypatch):
    assert main(["push", "--model", str(model_dir), "--repo-id", "org/x", "--public"]) == 0
    assert recorder["create"]["private"] is False
    import huggingface_hub

    recorder.clear()
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(LoscatError, match="not logged in"):
        push_model(model_dir, "org/x")
    assert recorder == {}  # nothing sent


def test_card_without_metrics_and_bad_folders(tmp_path, model_dir):
    d = tmp_path / "m"
    d.mkdir()
    for name in ("config.json", "preprocessor_config.json", "model.safetensors"):
        (d / name).write_bytes((model_dir / name).read_bytes())
    card = model_card(d, "org/n")
    assert "model-index" not in card.data.to_dict() and "No evaluation report" in card.text
    (d / "model.safetensors").unlink()
    with pytest.raises(LoscatError, match="no model.safetensors"):
        push_model(d, "org/n", dry_run=tmp_path / "dry")
    with pytest.raises(LoscatError, match="ORG/NAME"):
        push_model(model_dir, "just-a-name")


def test_hub_id_loads_offline_from_cache(model_dir, tmp_path):
    """A Hub id resolves from an HF cache laid out like huggingface_hub's (refs/main -> snapshots/<commit>)."""
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--org--tiny-loscat"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name in ("config.json", "preprocessor_config.json", "model.safetensors"):
        (snap / name).write_bytes((model_dir / name).read_bytes())
    code = (
        "from transformers import AutoModelForImageClassification\n"
        "from loscat_hf.infer.predictor import RegionPredictor\n"
        "m = AutoModelForImageClassification.from_pretrained('org/tiny-loscat')\n"
        "p = RegionPredictor.from_pretrained('org/tiny-loscat')\n"
        "print(m.config.num_labels, p.image_size)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "home"),
            "TRANSFORMERS_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-2:] == ["12", "64"]


# --- push-space: the same allow-list as push, and --dry-run ----------------------------------------------------

PLANTED = b"Roe_Richard_MRN999"


@pytest.fixture
def leaky_model(model_dir, tmp_path):
    """The model folder plus files with a patient's name and local paths that must never reach a Space."""
    import shutil

    d = tmp_path / "model"
    shutil.copytree(model_dir, d)
    (d / "training_args.bin").write_bytes(b"\x80\x04pickle /data/" + PLANTED)
    (d / "train_summary.json").write_text(json.dumps({"dataset": "/clinic/" + PLANTED.decode()}))
    (d / "eval" / "predictions.csv").write_bytes(b"file,label\n" + PLANTED + b".jpg,head\n")
    (d / "runs").mkdir()
    (d / "runs" / "events.out").write_bytes(PLANTED)
    return d


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_push_space_dry_run_stages_only_allow_listed_model_files(leaky_model, recorder, tmp_path, capsys):
    from loscat_hf.hub.model import upload_files

    dry = tmp_path / "dry"
    assert main(["push-space", "--repo-id", "org/space", "--model", str(leaky_model), "--dry-run", str(dry)]) == 0
    assert recorder == {}  # nothing sent
    assert str(dry) in capsys.readouterr().out
    files = _files(dry)
    assert sorted(f[len("model/"):] for f in files if f.startswith("model/")) == sorted(upload_files(leaky_model))
    assert {"app.py", "requirements.txt", "README.md", "loscat_hf/apps/space.py"} <= set(files)
    for f in files:  # byte-search everything push-space would upload
        assert PLANTED not in (dry / f).read_bytes(), f


def test_push_space_uploads_exactly_the_dry_run(leaky_model, recorder, tmp_path):
    from loscat_hf.hub.space import build_space_folder

    assert main(["push-space", "--repo-id", "org/space", "--model", str(leaky_model)]) == 0
    assert recorder["create"]["repo_type"] == "space" and recorder["create"]["private"] is True
    assert recorder["files"] == _files(build_space_folder(tmp_path / "staged", model=leaky_model))
    assert "model/training_args.bin" not in recorder["files"]
    assert "model/*" in recorder["upload"]["delete_patterns"]  # files an older push-space left are removed


def test_push_space_leaves_out_stray_files_in_space_folder(tmp_path, monkeypatch):
    """A local run of space/app.py can leave gradio's cache or flagged photos there: never uploaded."""
    import shutil

    from loscat_hf.hub import space as space_push

    space = tmp_path / "space"
    shutil.copytree(space_push.SPACE_DIR, space)
    for stray in (".gradio/flagged/photo.jpg", "flagged/log.csv", "examples/patient.png", "notes.txt"):
        (space / stray).parent.mkdir(parents=True, exist_ok=True)
        (space / stray).write_bytes(PLANTED)
    monkeypatch.setattr(space_push, "SPACE_DIR", space)
    out = space_push.build_space_folder(tmp_path / "out")
    assert all(PLANTED not in (out / f).read_bytes() for f in _files(out))
    assert (out / "app.py").is_file() and sorted((out / "examples").glob("SYNTHETIC_*.jpg"))


def _card_folder(tmp_path, base=None, preset=True):
    d = save_tiny_model(tmp_path / "m")
    config = json.loads((d / "config.json").read_text())
    if not preset:
        config.pop("loscat_preset")
    if base is not None:
        config["loscat_base_model"] = base
    config["loscat_run"] = {"task": "regions"}
    (d / "config.json").write_text(json.dumps(config))
    return d


def test_card_states_where_training_started(tmp_path):
    cases = [({"kind": "scratch", "preset": "tiny"}, True, None, "**Trained from scratch**"),
             ({"kind": "folder", "from": {"kind": "scratch", "preset": "tiny"}}, True, None,
              "no pretrained weights; trained further with `loscat-hf` from that run's local model folder"),
             ({"kind": "hub", "id": "google/vit-base-patch16-384"}, False, "google/vit-base-patch16-384",
              "Fine-tuned from [`google/vit-base-patch16-384`]"),
             ({"kind": "folder", "from": {"kind": "hub", "id": "org/base"}}, False, "org/base",
              "(through a local model folder)"),
             ({"kind": "folder"}, False, None, "from a local model folder whose origin was not recorded"),
             (None, False, None, "starting point of these weights was not recorded")]
    for i, (base, preset, hub_id, words) in enumerate(cases):
        card = model_card(_card_folder(tmp_path / str(i), base, preset), "org/x")
        assert card.data.to_dict().get("base_model") == hub_id, base
        assert words in card.text, (base, card.text[:800])


def test_card_shows_the_training_record_and_every_report(tmp_path):
    d = _card_folder(tmp_path, {"kind": "hub", "id": "google/vit-base-patch16-384"}, preset=False)
    (d / "eval").mkdir()
    (d / "eval" / "metrics.json").write_text(json.dumps({"macro_f1": 0.5, "accuracy": 0.6, "n": 30}))
    test_report = d / "eval_test"
    test_report.mkdir()
    from loscat_hf.model.checkpoints import weights_fingerprint

    (test_report / "evaluated.json").write_text(json.dumps({"model": "/home/Jane_Doe/m", "split": "test",
                                                            "weights_sha256": weights_fingerprint(d)}))
    stale = d / "eval_old_run"  # an evaluate report of other weights, left in the folder: not shown
    stale.mkdir()
    (stale / "evaluated.json").write_text(json.dumps({"split": "train", "weights_sha256": "0" * 64}))
    (stale / "metrics.json").write_text(json.dumps({"macro_f1": 0.99, "accuracy": 0.99, "n": 5}))
    sub = {"skin_tone": {"values": {"I": {"n": 12}, "V": {"n": 11}}, "min_n_for_gap": 10, "macro_f1_gap": 0.21,
                         "macro_f1_gap_between": {"worst": "V", "best": "I"}, "accuracy_gap": 0.15}}
    (test_report / "metrics.json").write_text(json.dumps({"macro_f1": 0.45, "accuracy": 0.55, "n": 23,
                                                          "subgroups": sub}))
    (d / "train_summary.json").write_text(json.dumps({
        "best_checkpoint": "/home/Jane_Doe/run/checkpoint-9", "train_runtime_s": 600, "hardware": "1 x NVIDIA H200",
        "hyperparameters": {"recipe": "fine-tuning", "epochs": 10, "learning_rates": {
            "head": 2e-4, "top_block": 1.5e-4, "bottom_block": 1.1e-5, "embeddings": 8.4e-6}, "label_smoothing": 0.1,
            "augmentation": {"crop_scale": 0.55, "max_rotation": 15, "hflip": 0.5, "color_jitter": 0.2}},
        "phases": [{"phase": 1, "trains": "head", "trainable_parameters": 9228, "start_step": 0, "start_epoch": 0,
                    "end_step": 40, "end_epoch": 1.0}],
        "data": {"train": {"n": 5, "per_class": {"hand": 3, "foot": 2}}, "validation": {"n": 2, "per_class": {
            "hand": 2}}}}))
    card = model_card(d, "org/x")
    text = card.text
    splits = {r.dataset_split: r.metric_value for r in card.data.eval_results if r.metric_name == "macro-F1"}
    assert splits == {"validation": 0.5, "test": 0.45}
    assert "| validation | 30 | 0.500 | 0.600 | - | - |" in text and "| test | 23 | 0.450 | 0.550 | - | - |" in text
    assert "- `skin_tone`: macro-F1 gap 0.210 between `V` (n = 11, worst) and `I` (n = 12, best)" in text
    assert "| hand | 3 | 2 |\n| foot | 2 | 0 |" in text and "| **total** | **5** | **2** |" in text
    assert "on 1 x NVIDIA H200 in 10.0 min" in text and "| label smoothing | 0.1 |" in text
    assert "head 0.0002, top block 0.00015, bottom block 1.1e-05, embeddings 8.4e-06" in text
    assert "rotation up to 15 degrees, horizontal flip with probability 0.5" in text
    assert "- phase 1: head trainable (9,228 parameters), steps 0-40 (epochs 0.00-1.00)" in text
    assert "LoSCAT body-region" in text and "github.com/caoyuanyuan-tz/LoSCAT_BodyRec" in text
    assert "Jane_Doe" not in str(card)
    assert "0.990" not in text
    with pytest.raises(LoscatError, match="no evaluation report"):
        model_card(d, "org/x", reports=[tmp_path / "nowhere"])
    with pytest.raises(LoscatError, match="records other weights"):  # named explicitly: refused
        model_card(d, "org/x", reports=[stale])


def test_card_of_older_or_score_models(tmp_path):
    d = _card_folder(tmp_path, {"kind": "hub", "id": "org/base"}, preset=False)
    (d / "train_summary.json").write_text(json.dumps({"best_checkpoint": None, "temperature": 1.0}))  # older run
    config = json.loads((d / "config.json").read_text())
    config["loscat_score_components"] = ["mlossi_erythema", "losdi_atrophy"]
    (d / "config.json").write_text(json.dumps(config))
    (d / "eval").mkdir()
    (d / "eval" / "metrics.json").write_text(json.dumps({"macro_f1": 0.5, "accuracy": 0.6, "subgroups": {
        "camera": {"macro_f1_gap": 0.1},  # no n, no groups named: nothing printed as "None"
        "site_code": {"macro_f1_gap": 0.0, "macro_f1_gap_between": {"worst": "A", "best": "A"}}}}))  # one group
    text = model_card(d, "org/x").text
    assert "written by an older loscat-hf and does not record the procedure" in text
    assert "**Score heads.**" in text and "mlossi_erythema, losdi_atrophy" in text
    assert "| validation | - | 0.500 |" in text and "- `camera`: macro-F1 gap 0.100." in text
    assert "None" not in text and "site_code" not in text
