"""The ONNX Runtime backend (`--backend`): fp32 answers, the switch in predict/explain/Space, int8 and
compare-backends. Needs the `onnx` extra (the `test` extra installs it)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_tiny_model
from PIL import Image

from loscat_hf.defaults import EXACT_PROB_DIFF
from loscat_hf.errors import LoscatError
from loscat_hf.infer.backends import choice, onnx_export
from loscat_hf.infer.predictor import RegionPredictor

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def peaky_model(tmp_path_factory) -> Path:
    """A tiny model whose head is scaled up: confident, unequal probabilities, so a numerical difference
    between backends shows in them (a random head gives ~1/12 everywhere, which hides it)."""
    from safetensors.torch import load_file, save_file

    d = save_tiny_model(tmp_path_factory.mktemp("peaky"), seed=5)
    state = load_file(d / "model.safetensors")
    state["classifier.weight"] = state["classifier.weight"] * 40
    save_file(state, d / "model.safetensors", metadata={"format": "pt"})
    return d


def _photos(n: int = 10) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        xx = np.linspace(0, 255, 120)[None, :, None]
        img = np.tile(xx, (90, 1, 3)) * rng.uniform(0.1, 1.0, 3) + rng.normal(0, 25, (90, 120, 3))
        img[: 10 + 5 * k, : 30] = rng.integers(0, 255, 3)
        out.append(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)))
    return out


def _probs(pred: RegionPredictor, photos) -> np.ndarray:
    return np.array([[p.probabilities[c] for c in pred.labels] for p in pred.predict(photos, batch_size=4)])


def test_onnx_backend_gives_torch_fp32_answers(peaky_model):
    torch_pred = RegionPredictor.from_pretrained(peaky_model, backend="torch", precision="fp32")
    onnx_pred = RegionPredictor.from_pretrained(peaky_model, backend="onnx", precision="fp32")
    assert (torch_pred.backend, onnx_pred.backend) == ("torch", "onnx")
    a, b = _probs(torch_pred, _photos()), _probs(onnx_pred, _photos())
    assert a.max() > 0.5  # confident answers: the comparison can see a difference
    assert np.abs(a - b).max() < EXACT_PROB_DIFF
    assert (a.argmax(1) == b.argmax(1)).all()
    assert onnx_pred.runner.exact and onnx_pred.runner.check["max_prob_diff"] < EXACT_PROB_DIFF


def test_auto_picks_onnx_on_cpu_and_torch_without_the_extra(peaky_model, monkeypatch):
    monkeypatch.delenv("LOSCAT_BACKEND", raising=False)
    assert RegionPredictor.from_pretrained(peaky_model, device="cpu").backend == "onnx"
    assert RegionPredictor.from_pretrained(peaky_model, device="cpu", precision="bf16").backend == "torch"
    monkeypatch.setenv("LOSCAT_BACKEND", "torch")  # what "auto" means on this machine
    assert RegionPredictor.from_pretrained(peaky_model, device="cpu").backend == "torch"
    monkeypatch.delenv("LOSCAT_BACKEND")
    monkeypatch.setattr(choice, "onnx_installed", lambda: False)
    assert RegionPredictor.from_pretrained(peaky_model, device="cpu").backend == "torch"
    for kwargs in ({"backend": "onnx"}, {"precision": "int8"}):
        with pytest.raises(LoscatError, match=r"loscat-hf\[onnx\]"):
            RegionPredictor.from_pretrained(peaky_model, device="cpu", **kwargs)


def test_combinations_that_cannot_run_are_refused(peaky_model):
    with pytest.raises(LoscatError, match="bf16"):
        RegionPredictor.from_pretrained(peaky_model, backend="onnx", precision="bf16")
    with pytest.raises(LoscatError, match="torch backend|ONNX Runtime backend only"):
        RegionPredictor.from_pretrained(peaky_model, backend="torch", precision="int8")
    with pytest.raises(LoscatError, match="GPU"):
        choice.choose_backend("onnx", torch.device("cuda"), "fp32")
    with pytest.raises(LoscatError, match="backend must be one of"):
        RegionPredictor.from_pretrained(peaky_model, backend="tensorrt")


def test_the_graph_is_exported_once_per_set_of_weights(peaky_model, tmp_path, monkeypatch):
    monkeypatch.setenv("LOSCAT_HF_CACHE", str(tmp_path / "cache"))
    first = RegionPredictor.from_pretrained(peaky_model, backend="onnx")
    graphs = sorted((tmp_path / "cache" / "onnx").glob("*/*.onnx"))
    assert [g.name for g in graphs] == ["logits.onnx"]

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "export_graph", no_export)
    again = RegionPredictor.from_pretrained(peaky_model, backend="onnx")
    assert np.allclose(_probs(first, _photos(2)), _probs(again, _photos(2)))
    # other weights: another cache entry (the key hashes the weights, not the folder name)
    other = save_tiny_model(tmp_path / "other", seed=9)
    with pytest.raises(LoscatError, match="exported again"):
        RegionPredictor.from_pretrained(other, backend="onnx")


def test_auto_falls_back_to_torch_when_the_export_fails(peaky_model, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LOSCAT_HF_CACHE", str(tmp_path / "cache"))

    def broken(model, path, attentions=False):
        path.parent.mkdir(parents=True, exist_ok=True)
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(onnx_export, "export_graph", broken)
    pred = RegionPredictor.from_pretrained(peaky_model, device="cpu")
    assert pred.backend == "torch" and "exporter failed" in caplog.text
    assert len(pred.predict(_photos(2))) == 2
    with pytest.raises(LoscatError, match="could not start.*exporter failed"):
        RegionPredictor.from_pretrained(peaky_model, backend="onnx")


def test_decoding_workers_keep_the_order_and_every_row(peaky_model, tmp_path):
    from loscat_hf.infer.folder import predict_folder

    photos = tmp_path / "photos"
    photos.mkdir()
    for k, img in enumerate(_photos(9)):
        img.resize((120 + 40 * (k % 3), 90)).save(photos / f"p{k}.jpg", quality=95)
    (photos / "p4.jpg").write_bytes(b"\xff\xd8\xff broken")
    pred = RegionPredictor.from_pretrained(peaky_model, backend="torch")
    one = predict_folder(pred, photos, tmp_path / "w0.csv", num_workers=0, batch_size=2, progress=False)
    two = predict_folder(pred, photos, tmp_path / "w2.csv", num_workers=2, batch_size=2, progress=False)
    assert one.by_status == two.by_status == {"ok": 8, "truncated": 1}
    assert (tmp_path / "w0.csv").read_text() == (tmp_path / "w2.csv").read_text()


def test_a_graph_that_is_not_exact_is_refused_or_replaced_by_torch(peaky_model, tmp_path, monkeypatch,
                                                                   caplog):
    monkeypatch.setenv("LOSCAT_HF_CACHE", str(tmp_path / "cache"))
    import loscat_hf.defaults

    monkeypatch.setattr(loscat_hf.defaults, "EXACT_PROB_DIFF", -1.0)  # nothing passes (read at each check)
    with pytest.raises(LoscatError, match="not exact"):
        RegionPredictor.from_pretrained(peaky_model, backend="onnx")
    assert RegionPredictor.from_pretrained(peaky_model, backend="auto", device="cpu").backend == "torch"
    assert "using torch" in caplog.text


def test_int8_runs_in_onnx_runtime_without_torch_quantisation(peaky_model, monkeypatch):
    def deprecated(*args, **kwargs):
        raise AssertionError("torch.ao.quantization.quantize_dynamic is deprecated")

    monkeypatch.setattr(torch.ao.quantization, "quantize_dynamic", deprecated)
    int8 = RegionPredictor.from_pretrained(peaky_model, precision="int8")
    assert int8.backend == "onnx" and int8.runner.int8
    photos = _photos(6)
    alone = np.array([_probs(int8, [p])[0] for p in photos])
    # a photo's answer does not depend on its batch
    assert np.allclose(alone, _probs(int8, photos), atol=1e-6)
    fp32 = _probs(RegionPredictor.from_pretrained(peaky_model, backend="torch"), photos)
    assert np.abs(alone - fp32).max() < 0.2 and (alone.argmax(1) == fp32.argmax(1)).mean() >= 0.8


def test_explain_maps_match_across_backends(peaky_model):
    from loscat_hf.infer.explain import explain

    ex_t = explain(RegionPredictor.from_pretrained(peaky_model, backend="torch"), _photos(3))
    ex_o = explain(RegionPredictor.from_pretrained(peaky_model, backend="onnx"), _photos(3))
    for a, b in zip(ex_t, ex_o, strict=True):
        assert np.abs(a.heat - b.heat).max() < 1e-3 and np.abs(a.logits - b.logits).max() < 1e-3


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "loscat_hf", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_predict_backend_switch_gives_the_same_rows(peaky_model, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for k, img in enumerate(_photos(6)):
        img.save(photos / f"p{k}.jpg", quality=95)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    rows = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.csv"
        r = _cli("predict", "--model", str(peaky_model), "--images", str(photos), "--out", str(out),
                 "--backend", backend, "--num-workers", "0")
        assert r.returncode == 0, r.stderr
        with open(out, newline="") as fh:
            rows[backend] = {row["image"]: row for row in csv.DictReader(fh)}
    assert rows["torch"].keys() == rows["onnx"].keys() and len(rows["torch"]) == 7
    for key, row in rows["torch"].items():
        other = rows["onnx"][key]
        assert (row["region"], row["status"], row["needs_review"]) == (other["region"], other["status"],
                                                                       other["needs_review"])
        if row["probability"]:
            assert abs(float(row["probability"]) - float(other["probability"])) <= 1e-3
    bad = _cli("predict", "--model", str(peaky_model), "--images", str(photos),
               "--out", str(tmp_path / "x.csv"), "--backend", "onnx", "--precision", "bf16")
    assert bad.returncode == 2 and "bf16" in bad.stderr and "Traceback" not in bad.stderr


def test_space_uses_the_switch(peaky_model, monkeypatch):
    from loscat_hf.apps.space import SpaceModel

    monkeypatch.delenv("LOSCAT_PRECISION", raising=False)
    monkeypatch.delenv("LOSCAT_BACKEND", raising=False)
    default = SpaceModel(str(peaky_model))
    assert (default.predictor.backend, default.predictor.precision) == ("onnx", "auto")  # exact by default
    monkeypatch.setenv("LOSCAT_BACKEND", "torch")
    assert SpaceModel(str(peaky_model)).predictor.backend == "torch"
    assert SpaceModel(str(peaky_model), backend="onnx").predictor.backend == "onnx"


def test_compare_backends_reports_counts_only(peaky_model, tmp_path):
    photos = tmp_path / "Erika Mustermann 1961"  # a folder name that must not reach the report
    photos.mkdir()
    for k, img in enumerate(_photos(5)):
        img.save(photos / f"Mustermann_{k}.jpg", quality=95)
    (photos / "notes.txt").write_text("not a photo")
    report = tmp_path / "report.json"
    r = _cli("compare-backends", "--model", str(peaky_model), "--images", str(photos), "--out", str(report))
    assert r.returncode == 0, r.stderr
    assert "onnx fp32" in r.stdout and "onnx int8" in r.stdout
    data = json.loads(report.read_text())
    assert data["photos"] == 5 and data["unreadable"] == 1
    by_name = {(c["backend"], c["precision"]): c for c in data["candidates"]}
    assert by_name[("onnx", "fp32")]["exact"] and by_name[("onnx", "fp32")]["top1_changed"] == 0
    assert by_name[("onnx", "int8")]["max_prob_diff"] > 0
    assert "Mustermann" not in report.read_text() and "Erika" not in report.read_text()
    assert data["model"] == peaky_model.name  # the folder's name, never its full path
    bad = _cli("compare-backends", "--model", str(peaky_model), "--images", str(photos),
               "--candidates", "gpu:fp8")
    assert bad.returncode == 2 and "BACKEND:PRECISION" in bad.stderr


def test_predict_starts_without_torch_once_the_graph_is_cached(peaky_model, tmp_path):
    """The first run exports (torch); the next one runs from the cached graph without importing torch or
    transformers, with the same rows; new weights in the folder are a new cache entry, never stale answers."""
    import shutil

    from loscat_hf.infer.answers import PredictorSettings
    from loscat_hf.infer.backends import lean

    photos = tmp_path / "photos"
    photos.mkdir()
    for k, img in enumerate(_photos(5)):
        img.save(photos / f"p{k}.jpg", quality=95)
    model = tmp_path / "model"
    shutil.copytree(peaky_model, model)
    cache = {"LOSCAT_HF_CACHE": str(tmp_path / "cache")}
    first = _cli("predict", "--model", str(model), "--images", str(photos), "--out", str(tmp_path / "a.csv"),
                 env_extra=cache)
    assert first.returncode == 0, first.stderr
    code = ("import sys; from loscat_hf.cli import main; "
            "rc = main(['predict', '--model', sys.argv[1], '--images', sys.argv[2], '--out', sys.argv[3]]); "
            "print('LOADED', sorted(m for m in ('torch', 'transformers') if m in sys.modules)); sys.exit(rc)")
    second = subprocess.run([sys.executable, "-c", code, str(model), str(photos), str(tmp_path / "b.csv")],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=str(ROOT), **cache))
    assert second.returncode == 0, second.stderr
    assert "LOADED []" in second.stdout
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    # a GPU machine, or other weights in the same folder: the torch predictor decides
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOSCAT_HF_CACHE", cache["LOSCAT_HF_CACHE"])
        mp.setattr(lean, "gpu_present", lambda: False)  # as on this CPU machine, also on a GPU test host
        assert isinstance(lean.lean_predictor(model), lean.LeanPredictor)
        mp.setattr(lean, "gpu_present", lambda: True)
        assert (lean.lean_predictor(model) is None
                and lean.lean_predictor(model, PredictorSettings(device="cpu")) is not None)
        mp.undo()
        mp.setenv("LOSCAT_HF_CACHE", cache["LOSCAT_HF_CACHE"])
        shutil.copy(save_tiny_model(tmp_path / "other", seed=11) / "model.safetensors",
                    model / "model.safetensors")
        assert lean.lean_predictor(model) is None
        assert lean.lean_predictor(model, PredictorSettings(backend="torch")) is None


def test_load_predictor_gives_one_interface_whichever_backend_runs(peaky_model, tmp_path, monkeypatch):
    """torch, ONNX Runtime over the loaded model, and the torch-free cached graph: the same Predictor, the
    same record of the model folder and the same answers; explain and compare-backends always get the loaded
    model."""
    from loscat_hf.infer.backends import lean
    from loscat_hf.infer.load import Predictor, load_predictor

    monkeypatch.setenv("LOSCAT_HF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LOSCAT_BACKEND", raising=False)
    monkeypatch.setattr(lean, "gpu_present", lambda: False)  # as on this CPU machine, also on a GPU test host
    on_torch = load_predictor(peaky_model, backend="torch")
    exported = load_predictor(peaky_model, device="cpu")  # exports the graph, runs it under the loaded model
    cached = load_predictor(peaky_model)  # the cached graph, without torch
    assert (on_torch.backend, exported.backend, cached.backend) == ("torch", "onnx", "onnx")
    assert isinstance(exported, RegionPredictor) and isinstance(cached, lean.LeanPredictor)
    photos = _photos(4)
    for pred in (on_torch, exported, cached):
        assert isinstance(pred, Predictor)
        assert pred.folder == on_torch.folder and pred.decoding == on_torch.decoding
        assert np.abs(_probs(pred, photos) - _probs(on_torch, photos)).max() < EXACT_PROB_DIFF
    assert load_predictor(cached) is cached  # a ready predictor is used as it is
    with pytest.raises(LoscatError, match="model must be a model folder, a Hub id or a loaded predictor"):
        load_predictor(object())
    assert isinstance(load_predictor(peaky_model, explain=True), RegionPredictor)


def test_the_cached_record_is_written_once_and_names_no_folder(peaky_model, tmp_path, monkeypatch):
    """Loading the same weights again leaves the cache entry untouched (a read-only or shared cache keeps
    working), and the entry does not say where the model folder was."""
    from loscat_hf.infer.backends import onnx_cache

    monkeypatch.setenv("LOSCAT_HF_CACHE", str(tmp_path / "cache"))
    RegionPredictor.from_pretrained(peaky_model, backend="onnx")
    (record,) = (tmp_path / "cache" / "onnx").glob(f"*/{onnx_cache.RECORD_FILE}")
    before = record.stat().st_mtime_ns

    def no_write(path, data):
        raise PermissionError(f"read-only cache: {path}")

    monkeypatch.setattr(onnx_cache, "write_json", no_write)
    again = RegionPredictor.from_pretrained(peaky_model, backend="onnx")
    assert again.backend == "onnx" and record.stat().st_mtime_ns == before
    assert str(peaky_model) not in record.read_text()
