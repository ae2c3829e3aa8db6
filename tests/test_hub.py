"""`push` hands huggingface_hub exactly the allow-listed files and a valid card; Hub ids load offline.

The upload itself is not exercised against the real Hub (no network, no token in tests): HfApi's methods
are replaced by recorders, so the test asserts what would be sent, which is the part this code controls.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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
    """A Hub id resolves from an HF cache laid out like huggingface_hub's (refs/main ->
    snapshots/<commit>)."""
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


# --- push-space: the same allow-list as push, and --dry-run -------------------------------------------------

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
    from loscat_hf.model.weights import weights_fingerprint

    (test_report / "evaluated.json").write_text(json.dumps({"model": "/home/Jane_Doe/m", "split": "test",
                                                            "weights_sha256": weights_fingerprint(d)}))
    stale = d / "eval_old_run"  # an evaluate report of other weights, left in the folder: not shown
    stale.mkdir()
    (stale / "evaluated.json").write_text(json.dumps({"split": "train", "weights_sha256": "0" * 64}))
    (stale / "metrics.json").write_text(json.dumps({"macro_f1": 0.99, "accuracy": 0.99, "n": 5}))
    sub = {"skin_tone": {"values": {"I": {"n": 12}, "V": {"n": 11}}, "min_n_for_gap": 10,
                         "macro_f1_gap": 0.21, "macro_f1_gap_between": {"worst": "V", "best": "I"},
                         "accuracy_gap": 0.15}}
    (test_report / "metrics.json").write_text(json.dumps({"macro_f1": 0.45, "accuracy": 0.55, "n": 23,
                                                          "subgroups": sub}))
    (d / "train_summary.json").write_text(json.dumps({
        "best_checkpoint": "/home/Jane_Doe/run/checkpoint-9", "train_runtime_s": 600,
        "hardware": "1 x NVIDIA H200",
        "hyperparameters": {"recipe": "fine-tuning", "epochs": 10, "learning_rates": {
            "head": 2e-4, "top_block": 1.5e-4, "bottom_block": 1.1e-5, "embeddings": 8.4e-6},
            "label_smoothing": 0.1,
            "augmentation": {"crop_scale": 0.55, "max_rotation": 15, "hflip": 0.5, "color_jitter": 0.2}},
        "phases": [{"phase": 1, "trains": "head", "trainable_parameters": 9228, "start_step": 0,
                    "start_epoch": 0, "end_step": 40, "end_epoch": 1.0}],
        "data": {"train": {"n": 5, "per_class": {"hand": 3, "foot": 2}}, "validation": {"n": 2, "per_class": {
            "hand": 2}}}}))
    card = model_card(d, "org/x")
    text = card.text
    splits = {r.dataset_split: r.metric_value for r in card.data.eval_results if r.metric_name == "macro-F1"}
    assert splits == {"validation": 0.5, "test": 0.45}
    assert ("| validation | 30 | 0.500 | 0.600 | - | - |" in text
            and "| test | 23 | 0.450 | 0.550 | - | - |" in text)
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
    # older run
    (d / "train_summary.json").write_text(json.dumps({"best_checkpoint": None, "temperature": 1.0}))
    config = json.loads((d / "config.json").read_text())
    config["loscat_score_components"] = ["mlossi_erythema", "losdi_atrophy"]
    (d / "config.json").write_text(json.dumps(config))
    (d / "eval").mkdir()
    (d / "eval" / "metrics.json").write_text(json.dumps({"macro_f1": 0.5, "accuracy": 0.6, "subgroups": {
        "camera": {"macro_f1_gap": 0.1},  # no n, no groups named: nothing printed as "None"
        "site_code": {"macro_f1_gap": 0.0,
                      "macro_f1_gap_between": {"worst": "A", "best": "A"}}}}))  # one group
    text = model_card(d, "org/x").text
    assert "written by an older loscat-hf and does not record the procedure" in text
    assert "**Score heads.**" in text and "mlossi_erythema, losdi_atrophy" in text
    assert "| validation | - | 0.500 |" in text and "- `camera`: macro-F1 gap 0.100." in text
    assert "None" not in text and "site_code" not in text


# --- the three pushes against a fake Hub: visibility, exact commits, dry runs -------------------------------

from fake_hub import TOKEN, FakeHub  # noqa: E402


@pytest.fixture
def hub(monkeypatch):
    return FakeHub().install(monkeypatch)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from test_packing import _items, _pack

    root = tmp_path_factory.mktemp("ds")
    _pack(_items(root / "photos"), root / "dataset")
    return root / "dataset"


def _push_argv(kind: str, model_dir: Path, dataset_dir: Path, repo: str) -> list[str]:
    return {"model": ["push", "--model", str(model_dir), "--repo-id", repo],
            "dataset": ["push-dataset", "--dataset", str(dataset_dir), "--repo-id", repo],
            "space": ["push-space", "--repo-id", repo, "--model", str(model_dir)]}[kind]


KINDS = ("model", "dataset", "space")
CASES = [  # (repo before the push, --public) -> repo visibility after, or None = refused, nothing uploaded
    (None, False, True), (None, True, False), (True, False, True), (True, True, True), (False, False, None),
    (False, True, False),
]


@pytest.mark.parametrize("kind", KINDS)
def test_visibility_is_checked_before_any_upload(kind, model_dir, dataset_dir, hub, capsys):
    """New repos are private unless --public; an existing public repo is refused without --public; an existing
    repo's visibility is never changed."""
    for i, (before, public, after) in enumerate(CASES):
        repo = f"org/r{i}"
        if before is not None:
            hub.add(repo, kind, private=before, files=["old.bin"])
        code = main(_push_argv(kind, model_dir, dataset_dir, repo) + (["--public"] if public else []))
        out = capsys.readouterr()
        case = (kind, before, public)
        if after is None:
            assert code == 2, case
            assert ("is public" in out.err and "nothing was uploaded" in out.err
                    and "--public" in out.err), case
            assert hub.repo(repo, kind)["files"] == {"old.bin": b"old"}, case  # untouched
            assert ("create_commit", repo) not in hub.calls and ("create_repo", repo) not in hub.calls, case
        else:
            assert code == 0, (case, out.err)
            assert hub.repo(repo, kind)["private"] is after, case
            assert (("create_repo", repo) in hub.calls) == (before is None), case
            assert ("private" if after else "PUBLIC") in out.out, case
            if before is True and public:
                assert "stays private" in out.out, case
        assert TOKEN not in out.out + out.err


@pytest.mark.parametrize("kind", KINDS)
def test_push_commits_exactly_the_dry_run_folder(kind, model_dir, dataset_dir, hub, tmp_path, capsys):
    """One commit makes the repo hold the dry run's files, byte for byte; anything else in it is deleted."""
    dry = tmp_path / "dry"
    assert main(_push_argv(kind, model_dir, dataset_dir, "org/r") + ["--dry-run", str(dry)]) == 0
    assert hub.calls == []  # a dry run talks to no Hub
    listed = capsys.readouterr().out
    assert str(dry) in listed and "metadata (README.md header):" in listed and "files:" in listed
    hub.add("org/r", kind, private=True, files=[".gitattributes", "old/stale.csv", "README.md"])
    assert main(_push_argv(kind, model_dir, dataset_dir, "org/r")) == 0
    staged = {p.relative_to(dry).as_posix(): p.read_bytes() for p in dry.rglob("*") if p.is_file()}
    assert hub.uploads() == 1
    commit = hub.commits[0]
    assert set(commit["added"]) == set(staged) and commit["deleted"] == ["old/stale.csv"]
    assert all(commit["added"][name] == data for name, data in staged.items() if name != "README.md")
    assert set(hub.repo("org/r", kind)["files"]) == set(staged) | {".gitattributes"}
    assert "deleted 1 file(s) outside the allow-list: old/stale.csv" in capsys.readouterr().out


def test_model_push_files_and_card(model_dir, hub, capsys):
    from huggingface_hub import ModelCard

    assert main(["push", "--model", str(model_dir), "--repo-id", "org/loscat-vit",
                 "--dataset", "org/photos"]) == 0
    files = hub.repo("org/loscat-vit")["files"]
    assert sorted(files) == [".gitattributes", "README.md", "config.json", "eval/confusion_matrix.png",
                             "model.safetensors", "preprocessor_config.json"]
    text = files["README.md"].decode()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["license"] == "apache-2.0" and meta["pipeline_tag"] == "image-classification"
    assert meta["datasets"] == ["org/photos"] and "loscat" in meta["tags"] and "base_model" not in meta
    card = ModelCard(text)  # huggingface_hub parses it back, model-index included
    assert ({r.metric_name: r.metric_value for r in card.data.eval_results}
            == {"macro-F1": 0.6123, "accuracy": 0.7})
    assert 'pipeline("image-classification", model="org/loscat-vit")' in text
    assert "| validation | 40 | 0.612 | 0.700 | 0.600 | - |" in text
    out = capsys.readouterr().out
    assert "datasets:\n  - org/photos" in out or "datasets:\n  - org/photos".replace("  -", "-") in out


def test_card_image_links_resolve_locally_and_pushed(model_dir, tmp_path):
    """Every image the card links exists at that path in the model folder and in the upload folder."""
    import re

    text = model_card(model_dir, "org/x").text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links, "the card shows the confusion matrix"
    assert push_model(model_dir, "org/x", dry_run=tmp_path / "up").dry_run
    for link in links:
        assert (model_dir / link).is_file() and (tmp_path / "up" / link).is_file(), link


def test_bad_ids_and_not_logged_in(model_dir, dataset_dir, hub, monkeypatch, capsys, tmp_path):
    import huggingface_hub

    for argv in (["push", "--model", str(model_dir), "--repo-id", "just-a-name"],
                 ["push", "--model", str(model_dir), "--repo-id", "org/x", "--dataset", "not a valid id"],
                 ["push-dataset", "--dataset", str(dataset_dir), "--repo-id", "org/x--y"],
                 ["push-space", "--repo-id", "org/s", "--dataset", "a/b/c"],
                 ["push-space", "--repo-id", "org/s", "--model", "./nowhere"]):
        assert main(argv) == 2, argv
        assert capsys.readouterr().err.startswith("loscat-hf: error:"), argv
    with pytest.raises(LoscatError, match="dataset_id"):
        push_model(model_dir, "org/x", dataset_id="not a valid id", dry_run=tmp_path / "d")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(LoscatError, match="not logged in"):
        push_model(model_dir, "org/x")
    assert hub.calls == []  # nothing sent


def test_hub_errors_are_one_line_without_the_token(model_dir, hub, monkeypatch):
    import huggingface_hub

    def fail(self, *a, **kw):
        raise RuntimeError(f"401 Unauthorized: invalid token {TOKEN}\nmore")

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", fail)
    with pytest.raises(LoscatError) as info:
        push_model(model_dir, "org/x")
    assert "401" in str(info.value) and TOKEN not in str(info.value) and "\n" not in str(info.value)


# --- push-space: metadata, model access, the same allow-list as push ----------------------------------------

def _space_meta(folder: Path) -> dict:
    return yaml.safe_load((folder / "README.md").read_text(encoding="utf-8").split("---")[1])


def test_space_metadata_links_its_model_and_dataset(model_dir, tmp_path):
    from importlib.metadata import version

    from loscat_hf.hub.space import build_space_folder
    from loscat_hf.model.study import STUDY_WEIGHTS_REPO

    hub_id = _space_meta(build_space_folder(tmp_path / "a", model="org/model", dataset_id="org/photos"))
    assert hub_id["models"] == ["org/model"] and hub_id["datasets"] == ["org/photos"]
    assert hub_id["sdk"] == "gradio" and hub_id["sdk_version"] == version("gradio")
    assert hub_id["app_file"] == "app.py"
    assert _space_meta(build_space_folder(tmp_path / "b"))["models"] == [STUDY_WEIGHTS_REPO]  # the default
    bundled = _space_meta(build_space_folder(tmp_path / "c", model=model_dir))
    assert "models" not in bundled and "datasets" not in bundled  # a bundled folder is not on the Hub


def test_space_refuses_a_gradio_other_than_the_pin(tmp_path, monkeypatch):
    import importlib.metadata

    from loscat_hf.hub.space import build_space_folder

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda d: "0.0.1" if d == "gradio" else real(d))
    with pytest.raises(LoscatError,
                       match="installed gradio 0.0.1 is not the one space/requirements.txt pins"):
        build_space_folder(tmp_path / "s")


def test_space_model_variable_follows_the_push(model_dir, hub, capsys):
    """A Hub model is set as LOSCAT_MODEL; a later push of a bundled folder removes it (else it would win)."""
    hub.add("org/model", "model", private=False)
    assert main(["push-space", "--repo-id", "org/s", "--model", "org/model"]) == 0
    assert hub.repo("org/s", "space")["variables"] == {"LOSCAT_MODEL": "org/model"}
    assert main(["push-space", "--repo-id", "org/s", "--model", str(model_dir)]) == 0
    assert hub.repo("org/s", "space")["variables"] == {}
    assert "model/config.json" in hub.repo("org/s", "space")["files"]
    assert main(["push-space", "--repo-id", "org/s", "--model", "org/missing"]) == 2
    assert "does not exist on the Hub or is not readable" in capsys.readouterr().err


def test_space_reads_a_private_model_through_a_secret(hub, monkeypatch, capsys):
    """The token goes from an environment variable to the Space secret HF_TOKEN: never argv, a file or stdout;
    it must read the model, and may not be the login token or a write token."""
    hub.add("org/private-model", "model", private=True)
    assert main(["push-space", "--repo-id", "org/s", "--model", "org/private-model"]) == 0
    out = capsys.readouterr().out
    assert "is private or gated: the Space loads it only with a secret HF_TOKEN" in out
    assert hub.repo("org/s", "space")["secrets"] == {}

    read_token = "hf_ReadOnlyForTheSpace99"
    hub.add_token(read_token, reads=["org/private-model"])
    monkeypatch.setenv("SPACE_READ_TOKEN", read_token)
    argv = ["push-space", "--repo-id", "org/s", "--model", "org/private-model",
            "--model-token-env", "SPACE_READ_TOKEN"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert hub.repo("org/s", "space")["secrets"] == {"HF_TOKEN": read_token}
    assert ("secret HF_TOKEN was set from $SPACE_READ_TOKEN" in out.out
            and "is private or gated" not in out.out)
    assert read_token not in out.out + out.err
    assert all(read_token.encode() not in data for data in hub.repo("org/s", "space")["files"].values())

    refusals = {"hf_CannotReadIt000": ("fineGrained", [], "that token cannot read org/private-model"),
                "hf_WriteEverything0": ("write", ["org/private-model"], "that token can write to every repo"),
                TOKEN: ("write", None, "holds the token you are logged in with")}
    for token, (role, reads, words) in refusals.items():
        if token != TOKEN:
            hub.add_token(token, role=role, reads=reads)
        monkeypatch.setenv("SPACE_READ_TOKEN", token)
        commits = hub.uploads()
        assert main(argv) == 2, token
        err = capsys.readouterr().err
        assert words in err and "--model-token-env" in err and token not in err, err
        assert hub.uploads() == commits and hub.repo("org/s", "space")["secrets"] == {"HF_TOKEN": read_token}
    hub.add("org/public-model", "model", private=False)
    monkeypatch.setenv("SPACE_READ_TOKEN", read_token)
    assert main(["push-space", "--repo-id", "org/s", "--model", "org/public-model",
                 "--model-token-env", "SPACE_READ_TOKEN"]) == 2
    assert "is public, so the Space needs no token" in capsys.readouterr().err
    monkeypatch.delenv("SPACE_READ_TOKEN")
    assert main(argv) == 2
    assert "--model-token-env names the environment variable SPACE_READ_TOKEN, which is not set" in \
        capsys.readouterr().err


def test_public_space_with_a_private_model_is_noted(hub, capsys):
    hub.add("org/private-model", "model", private=True)
    hub.add("org/s", "space", private=True)
    assert main(["push-space", "--repo-id", "org/s", "--model", "org/private-model", "--public"]) == 0
    out = capsys.readouterr().out
    assert "stays private" in out and "serves the answers of the private model" not in out  # it is private
    assert main(["push-space", "--repo-id", "org/t", "--model", "org/private-model", "--public"]) == 0
    assert ("this public Space serves the answers of the private model org/private-model"
            in capsys.readouterr().out)


def test_visibility_edge_cases(model_dir, hub, capsys):
    """Unknown visibility and a protected Space count as public; an organisation that forces public repos, a
    repo this token cannot read, and a `private` that is not a bool are refused; nothing is uploaded."""
    hub.add("org/unknown", "model", private=None)
    hub.add("org/protected", "space", private=True, visibility="protected")
    hub.add("other/hidden", "model", private=True)
    # this login reads no private repo of others
    hub.tokens[TOKEN]["reads"] = {"org/unknown", "org/protected"}
    cases = [(["push", "--model", str(model_dir), "--repo-id", "org/unknown"],
              "already exists and is public"),
             (["push-space", "--repo-id", "org/protected"], "already exists and is public"),
             (["push", "--model", str(model_dir), "--repo-id", "other/hidden"],
              "--repo-id other/hidden: the model repo exists but your token cannot read it")]
    for argv, words in cases:
        assert main(argv) == 2, argv
        assert words in capsys.readouterr().err, argv
    hub.force_public = True
    assert main(["push", "--model", str(model_dir), "--repo-id", "org/new"]) == 2
    assert "was created but is public: nothing was uploaded" in capsys.readouterr().err
    assert hub.uploads() == 0
    with pytest.raises(LoscatError, match="private must be True or False"):
        push_model(model_dir, "org/x", private=None)


def test_settings_fail_before_any_file_is_uploaded(model_dir, hub, monkeypatch):
    import huggingface_hub

    def broken(self, *a, **kw):
        raise RuntimeError("500 Server Error")

    monkeypatch.setattr(huggingface_hub.HfApi, "add_space_variable", broken)
    hub.add("org/model", "model", private=False)
    with pytest.raises(LoscatError, match="could not configure the Hub Space 'org/s': 500 Server Error"):
        from loscat_hf.hub.space import push_space

        push_space("org/s", model="org/model")
    assert hub.uploads() == 0


def test_hub_error_keeps_the_servers_reason(model_dir, hub, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError

    def rejected(self, *a, **kw):
        raise HfHubHTTPError("Bad request for commit endpoint:",
                             server_message="Invalid metadata in README.md",
                             response=SimpleNamespace(status_code=400, headers={}, request=None))

    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", rejected)
    with pytest.raises(LoscatError) as info:
        push_model(model_dir, "org/x")
    assert "Invalid metadata in README.md" in str(info.value) and "hf auth login" not in str(info.value)


def test_old_datasets_and_prepare_preflight(dataset_dir, hub, tmp_path, capsys):
    """A dataset from a prepare that did not write the licence and the phantom count is refused; prepare
    checks login and visibility before it packs anything."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(dataset_dir, old)
    (old / "LICENSE.md").unlink()
    assert main(["push-dataset", "--dataset", str(old), "--repo-id", "me/d"]) == 2
    assert "older loscat-hf" in capsys.readouterr().err
    uncounted = tmp_path / "uncounted"  # the licence is there, the report does not count phantoms
    shutil.copytree(dataset_dir, uncounted)
    report = json.loads((uncounted / "prepare_report.json").read_text())
    del report["phantom_photos"]
    (uncounted / "prepare_report.json").write_text(json.dumps(report))
    assert main(["push-dataset", "--dataset", str(uncounted), "--repo-id", "me/d"]) == 2
    assert "does not say whether its photos are SYNTHETIC" in capsys.readouterr().err
    assert hub.uploads() == 0
    hub.add("me/public", "dataset", private=False)
    out = tmp_path / "never"
    assert main(["prepare", "--annotations", str(tmp_path / "missing.csv"), "--images", str(tmp_path),
                 "--out", str(out), "--push-to-hub", "me/public"]) == 2
    assert "already exists and is public" in capsys.readouterr().err and not out.exists()
    assert main(["prepare", "--annotations", str(tmp_path / "missing.csv"), "--images", str(tmp_path),
                 "--out", str(out), "--public"]) == 2
    assert "--public publishes the pushed dataset: it needs --push-to-hub" in capsys.readouterr().err


def test_push_space_bundles_only_allow_listed_model_files(leaky_model, tmp_path):
    from loscat_hf.hub.model import upload_files
    from loscat_hf.hub.space import build_space_folder

    dry = build_space_folder(tmp_path / "dry", model=leaky_model)
    files = _files(dry)
    assert (sorted(f[len("model/"):] for f in files if f.startswith("model/"))
            == sorted(upload_files(leaky_model, tmp_path)))
    assert {"app.py", "requirements.txt", "README.md", "loscat_hf/apps/space.py"} <= set(files)
    for f in files:  # byte-search everything push-space would upload
        assert PLANTED not in (dry / f).read_bytes(), f


def test_train_refuses_the_trainers_own_push(tmp_path, capsys):
    """Trainer(push_to_hub=True) would create a public repo and upload the whole output folder at every
    save."""
    out = tmp_path / "model"
    code = main(["train", "--dataset", str(tmp_path / "ds"), "--output-dir", str(out), "--model", "tiny",
                 "--push-to-hub", "true", "--hub-model-id", "org/m"])
    err = capsys.readouterr().err
    assert code == 2 and "--push-to-hub would let the Trainer upload" in err and "loscat-hf push" in err
    assert not out.exists()


def test_push_uploads_config_json_rebuilt_from_allowed_records(model_dir, tmp_path):
    """Every loscat-hf record in the pushed config.json is rebuilt from allowed values: a patient's name put
    into any of them by hand (or an unknown loscat key) is not uploaded, and what is allowed reads back
    the same."""
    import shutil

    from transformers import AutoConfig

    from loscat_hf.model import folder as mf

    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    name = PLANTED.decode()
    data = mf.config_json(d)
    mf.record_temperature(data, 1.3, by="calibrate", split="validation", n=60, ece_before=0.2, ece_after=0.1,
                          note=name)
    mf.record_data(data, kind="clinical", photos=120)
    data[mf.DATA_KEY]["site"] = name
    mf.record_run(data, {"dataset_sha256": "a" * 64, "taxonomy": "loscat-12", "classes": ["head"],
                         "task": "regions", "dataset": f"/clinic/{name}"},
                  {"kind": "folder", "path": f"/home/{name}", "from": {"kind": "hub", "id": "google/vit-x"}})
    mf.record_source(data, {"checkpoint": f"/home/{name}.pt", "hub": True, "arch": "vit_base_patch16_384",
                            "labels": ["head", name + " x"], "study": False, "origin": name})
    mf.record_best_checkpoint(data, f"{name}/checkpoint-3")
    data["loscat_notes"] = name
    (d / "config.json").write_text(json.dumps(data))
    dry = tmp_path / "dry"
    assert main(["push", "--model", str(d), "--repo-id", "me/x", "--dry-run", str(dry)]) == 2  # the source
    mf.record_source(data, {"checkpoint": "local file", "sha256": "b" * 64, "arch": "vit_base_patch16_384",
                            "labels": ["head", name + " x"], "study": False, "origin": name})
    (d / "config.json").write_text(json.dumps(data))
    assert main(["push", "--model", str(d), "--repo-id", "me/x", "--dry-run", str(dry)]) == 0
    for path in dry.rglob("*"):
        if path.is_file():
            assert PLANTED not in path.read_bytes() and b"/clinic/" not in path.read_bytes(), path.name
    pushed, local = mf.read_model_folder(dry), mf.read_model_folder(d)
    assert pushed.temperature == local.temperature == 1.3 and pushed.calibrated
    assert pushed.calibration == {"by": "calibrate", "split": "validation", "n": 60, "ece_before": 0.2,
                                  "ece_after": 0.1}
    assert pushed.data == {"kind": "clinical", "photos": 120} and pushed.decoding == local.decoding
    assert pushed.run == {"dataset_sha256": "a" * 64, "taxonomy": "loscat-12", "classes": ["head"],
                          "task": "regions"}
    assert pushed.base_model == {"kind": "folder", "from": {"kind": "hub", "id": "google/vit-x"}}
    assert pushed.source["labels"] == ["head"] and pushed.source["sha256"] == "b" * 64
    assert AutoConfig.from_pretrained(dry).num_labels == 12  # plain transformers reads it


# --- a multi-region model (problem_type multi_label_classification): transformers, config.json, card -----

MULTI_RECORD = {"by": "train", "split": "validation", "n": 83, "rule": "per-class F1 maximum",
                "default_for": []}


@pytest.fixture(scope="module")
def multi_dir(tmp_path_factory):
    from loscat_hf.model.folder import MULTI_LABEL

    return save_tiny_model(tmp_path_factory.mktemp("multi") / "m", seed=4, problem_type=MULTI_LABEL)


def _smooth_photo(path: Path) -> Path:
    """A photo without fine detail: loscat-hf's decoding and the pipeline's resize see nearly the same
    pixels."""
    from PIL import Image

    yy, xx = np.mgrid[0:240, 0:320]
    rgb = np.stack([xx * 255 // 320, yy * 255 // 240, (xx + yy) * 255 // 560], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path, quality=95)
    return path


def _multi_copy(multi_dir: Path, dest: Path, values=None, temperature=None, **how) -> Path:
    import shutil

    from loscat_hf.model import folder as mf

    shutil.copytree(multi_dir, dest)
    config = mf.config_json(dest)
    if temperature:
        mf.record_temperature(config, temperature, by="calibrate", split="validation", n=50)
    if values is not None:
        mf.record_thresholds(config, values, **{**MULTI_RECORD, **how})
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def test_pipeline_gives_sigmoid_scores_for_a_multi_label_folder(multi_dir, tmp_path):
    """transformers picks the pipeline's function from config.problem_type: sigmoid for a multi-region model,
    each score in (0, 1), not summing to 1; the same weights without it give the softmax."""
    import torch
    from PIL import Image
    from transformers import pipeline

    image = Image.open(_smooth_photo(tmp_path / "photo.jpg"))
    classifier = pipeline("image-classification", model=str(multi_dir), device="cpu")
    scores = {s["label"]: s["score"] for s in classifier(image, top_k=12)}
    assert len(scores) == 12 and all(0 < s < 1 for s in scores.values())
    assert abs(sum(scores.values()) - 1) > 0.5
    with torch.no_grad():
        logits = classifier.model(**classifier.image_processor(image, return_tensors="pt")).logits[0]
    id2label = classifier.model.config.id2label
    expected = {id2label[i]: float(torch.sigmoid(logits[i])) for i in range(12)}
    assert scores == pytest.approx(expected, abs=1e-6)
    # the pipeline's default is 5 classes, also with top_k=None: the card asks for all 12 by number
    assert len(classifier(image)) == len(classifier(image, top_k=None)) == 5
    single = tmp_path / "single"
    single.mkdir()
    for name in ("config.json", "preprocessor_config.json", "model.safetensors"):
        (single / name).write_bytes((multi_dir / name).read_bytes())
    config = json.loads((single / "config.json").read_text())
    del config["problem_type"]
    (single / "config.json").write_text(json.dumps(config))
    softmax = pipeline("image-classification", model=str(single), device="cpu")(image, top_k=12)
    assert sum(s["score"] for s in softmax) == pytest.approx(1.0, abs=1e-5)


def test_pushed_config_keeps_problem_type_and_allowed_thresholds(multi_dir, tmp_path):
    """The thresholds record is rebuilt from allowed values (the model's class names, thresholds in (0, 1), a
    count, a known by/split/rule): a name planted anywhere in it reaches no byte of push or push-space."""
    from transformers import AutoConfig

    from loscat_hf.hub.space import build_space_folder
    from loscat_hf.model import folder as mf
    from loscat_hf.model.published import THRESHOLD_RULES, public_config
    from loscat_hf.model.thresholds import fit_thresholds
    from loscat_hf.taxonomy import load_taxonomy

    classes = load_taxonomy().classes
    name = PLANTED.decode()
    values = {c: round(0.3 + 0.01 * i, 2) for i, c in enumerate(classes)}
    d = _multi_copy(multi_dir, tmp_path / "m", {**values, name: 0.5}, default_for=["leg", name], note=name,
                    path=f"/clinic/{name}")
    config = mf.config_json(d)
    config[mf.THRESHOLDS_KEY]["values"] |= {"hand": 1.5, "foot": True}  # not thresholds (a hand edit)
    (d / "config.json").write_text(json.dumps(config))
    dry = tmp_path / "dry"
    assert main(["push", "--model", str(d), "--repo-id", "me/multi", "--dry-run", str(dry)]) == 0
    space = build_space_folder(tmp_path / "space", model=d)
    for folder in (dry, space / "model"):  # what push uploads; what push-space bundles of the model
        for path in folder.rglob("*"):
            if path.is_file():
                assert PLANTED not in path.read_bytes() and b"/clinic/" not in path.read_bytes(), path
    assert PLANTED not in (space / "README.md").read_bytes()
    pushed, local = mf.read_model_folder(dry), mf.read_model_folder(d)
    assert pushed.problem_type == local.problem_type == mf.MULTI_LABEL and pushed.multi_label
    assert pushed.thresholds == local.thresholds  # hand and foot: 0.5 in both
    allowed = {c: v for c, v in values.items() if c not in ("hand", "foot")}
    assert pushed.threshold_record == {"values": allowed, **MULTI_RECORD, "default_for": ["leg"]}
    assert mf.read_model_folder(space / "model").threshold_record == pushed.threshold_record
    assert AutoConfig.from_pretrained(dry).problem_type == mf.MULTI_LABEL  # plain transformers reads it
    # a record whose words are all planted keeps only its thresholds; one without a threshold goes
    how = {"by": name, "split": f"/home/{name}", "rule": name, "n": f"{name} 40", "default_for": [name]}
    out = public_config({**config, mf.THRESHOLDS_KEY: {"values": values, **how}})
    assert out[mf.THRESHOLDS_KEY] == {"values": values, "default_for": []} and name not in json.dumps(out)
    out = public_config({**config, mf.THRESHOLDS_KEY: {"values": {name: 0.5}, **MULTI_RECORD}})
    assert mf.THRESHOLDS_KEY not in out and out["problem_type"] == mf.MULTI_LABEL
    # `calibrate`'s record: the classes that kept their earlier threshold and the macro-F1, kept as they are
    how = {"by": "calibrate", "split": "validation", "n": 40, "rule": "per-class F1 maximum",
           "kept_for": ["foot", name], "macro_f1_before": 0.41, "macro_f1_after": 0.52}
    out = public_config({**config, mf.THRESHOLDS_KEY: {"values": values, **how}})
    assert out[mf.THRESHOLDS_KEY] == {"values": values, **how, "kept_for": ["foot"]}
    # the rule `train` and `calibrate` record is one the allow-list knows
    _, how = fit_thresholds(np.array([[0.9, 0.1]]), np.array([[1, 0]]), ["a", "b"])
    assert how["rule"] in THRESHOLD_RULES


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_multi_label_card_says_how_to_read_its_scores(multi_dir, model_dir, tmp_path):
    from loscat_hf.taxonomy import load_taxonomy

    classes = load_taxonomy().classes
    values = {c: round(0.3 + 0.01 * i, 2) for i, c in enumerate(classes) if c != "foot"}
    d = _multi_copy(multi_dir, tmp_path / "m", values, default_for=["leg"])
    card = model_card(d, "org/multi")
    text = _flat(card.text)
    assert card.data.to_dict()["pipeline_tag"] == "image-classification"
    assert "each of the 12 classes gets its own sigmoid score between 0 and 1" in text
    assert "not a distribution: they need not sum to 1" in text
    assert "not as the probability that the photo shows it" in text  # uncalibrated: said so
    assert "| head | 0.3 | | neck | 0.31 |" in text and "| leg | 0.4 |" in text and "| foot | 0.5 |" in text
    assert ("The thresholds were fitted by `loscat-hf train` on 83 labelled photos of the validation split "
            "(per-class F1 maximum).") in text
    assert "leg: none of those photos showed it" in text and "foot: no threshold recorded" in text
    assert 'classifier("photo.jpg", top_k=12)' in text and 'config.loscat_thresholds' not in text
    assert "Photos showing several regions get one label" not in text and "every class whose score" in text
    assert '.regions # [(class, score)]' in text
    refitted = _flat(model_card(_multi_copy(multi_dir, tmp_path / "c", values, by="calibrate", n=40,
                                            kept_for=["arm"]), "org/multi").text)
    assert "fitted by `loscat-hf calibrate` on 40 labelled photos of the validation split" in refitted
    assert "arm: none of those photos showed it, so it keeps its earlier threshold." in refitted
    single = _flat(model_card(model_dir, "org/x").text)  # a single-label card is as it was
    assert "How to read its scores" not in single and "sigmoid" not in single
    assert 'classifier("photo.jpg", top_k=3)' in single
    assert "photos showing several regions get one label" in single


@pytest.mark.parametrize("temperature", [None, 2.0])
def test_card_snippet_finds_the_regions_loscat_hf_finds(multi_dir, tmp_path, temperature):
    """The card's plain-transformers code, run as written on the folder, shows the regions loscat-hf shows
    (with a recorded temperature too: its thresholds then apply to sigmoid(logit / T))."""
    import re

    from loscat_hf.infer.predictor import RegionPredictor

    photo = _smooth_photo(tmp_path / "photo.jpg")
    d = _multi_copy(multi_dir, tmp_path / "m", temperature=temperature)
    predictor = RegionPredictor.from_pretrained(d, device="cpu", backend="torch")
    scores = predictor.predict(str(photo)).probabilities
    chosen = set(sorted(scores, key=scores.get)[-3:])
    values = {c: round(s - 0.15 if c in chosen else s + 0.15, 4) for c, s in scores.items()}
    d = _multi_copy(multi_dir, tmp_path / "m2", values, temperature=temperature)
    pred = RegionPredictor.from_pretrained(d, device="cpu", backend="torch").predict(str(photo))
    assert {c for c, _ in pred.regions} == chosen and not pred.needs_review
    text = model_card(d).text
    code = re.search(r"With plain `transformers`.*?```python\n(.*?)```", text, re.S).group(1)
    assert ("def plain(t)" in code) == (temperature is not None)
    namespace: dict = {}
    exec(code.replace("PATH_OR_REPO", str(d)).replace('"photo.jpg"', repr(str(photo))), namespace)
    assert set(namespace["regions"]) == chosen


def _eval_folder(model: Path, name: str, split: str, metrics: dict) -> None:
    from loscat_hf.model.weights import weights_fingerprint

    (model / name).mkdir()
    (model / name / "metrics.json").write_text(json.dumps(metrics))
    (model / name / "evaluated.json").write_text(json.dumps({"split": split,
                                                             "weights_sha256": weights_fingerprint(model)}))


MULTI_METRICS = {"multi_label": True, "n": 60, "n_photos_several_regions": 25, "macro_f1": 0.41,
                 "accuracy": 0.3, "exact_match": 0.3, "hamming_loss": 0.08, "mean_average_precision": 0.52,
                 "ece": 0.12}


def test_multi_region_card_shows_its_own_evaluation_and_model_index(multi_dir, tmp_path):
    """A multi-region report (metrics.json multi_label): macro-F1, exact match, Hamming loss, mAP and the mean
    per-class ECE under their own names, in the table and the model-index; exact match never as accuracy."""
    d = _multi_copy(multi_dir, tmp_path / "m")
    sub = {"skin_tone": {"values": {"I": {"n": 12}, "V": {"n": 11}}, "min_n_for_gap": 10,
                         "macro_f1_gap": 0.21, "macro_f1_gap_between": {"worst": "V", "best": "I"},
                         "accuracy_gap": 0.15}}
    _eval_folder(d, "eval_validation", "validation", {**MULTI_METRICS, "subgroups": sub})
    _eval_folder(d, "eval_test", "test", {**MULTI_METRICS, "n": 40, "n_photos_several_regions": 9,
                                          "mean_average_precision": None, "ece": None})  # scored from sets
    card = model_card(d, "org/multi")
    text = card.text
    assert ("| split | photos | showing several regions | macro-F1 | exact match | Hamming loss | "
            "mean average precision | mean per-class ECE |") in text
    assert "| validation | 60 | 25 | 0.410 | 0.300 | 0.080 | 0.520 | 0.120 |" in text
    assert "| test | 40 | 9 | 0.410 | 0.300 | 0.080 | - | - |" in text
    assert "balanced accuracy" not in text and "| accuracy |" not in text
    assert "mean per-class ECE: each class's score read as the probability" in _flat(text)
    assert "macro-F1 gap 0.210" in text and "exact-match gap 0.150" in text and "accuracy gap" not in text
    meta = card.data.to_dict()
    assert meta["metrics"] == ["f1", "exact_match"]
    results = meta["model-index"][0]["results"]
    by_split = {r["dataset"]["split"]: {m["type"]: (m["name"], m["value"]) for m in r["metrics"]}
                for r in results}
    assert by_split["validation"] == {"f1": ("macro-F1", 0.41), "exact_match": ("exact match", 0.3),
                                      "hamming_loss": ("Hamming loss", 0.08),
                                      "mean_average_precision": ("mean average precision", 0.52)}
    assert set(by_split["test"]) == {"f1", "exact_match", "hamming_loss"}  # mAP not measured: not published
    assert all(m["type"] != "accuracy" for r in results for m in r["metrics"])
    from huggingface_hub import ModelCard

    reread = ModelCard(str(card))  # the Hub's own parser reads the model-index back
    assert {(r.dataset_split, r.metric_type) for r in reread.data.eval_results} == {
        (s, t) for s, types in by_split.items() for t in types}


def test_single_region_reports_keep_their_table_beside_a_multi_region_one(tmp_path):
    """Each report gets the table of its kind; a single-label report of a multi-region dataset says how many
    photos showing several regions it left out."""
    d = _card_folder(tmp_path)
    _eval_folder(d, "eval_validation", "validation", {"macro_f1": 0.5, "accuracy": 0.6, "n": 30,
                                                      "n_left_out_several_regions": 7})
    _eval_folder(d, "eval_test", "test", MULTI_METRICS)  # e.g. predictions scored against sets
    card = model_card(d, "org/x")
    text = card.text
    assert "| validation | 30 | 0.500 | 0.600 | - | - |" in text
    assert "| test | 60 | 25 | 0.410 | 0.300 | 0.080 | 0.520 | 0.120 |" in text
    assert ("7 photos of the validation split showing several regions were left out: a single-region model "
            "is scored on the single-region photos.") in _flat(text)
    assert card.data.to_dict()["metrics"] == ["f1", "accuracy", "exact_match"]
    types = {(r.dataset_split, r.metric_type) for r in card.data.eval_results}
    assert ("validation", "accuracy") in types and ("test", "accuracy") not in types
