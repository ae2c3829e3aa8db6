"""Smoke test of scripts/benchmark.py --quick: every benchmark runs and reports positive rates."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # runs every benchmark of scripts/benchmark.py on tiny inputs (~30 s)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_all_writes_json_with_positive_rates(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "out"
    bench.main(["all", "--quick", "--workers", "1", "--plain-steps", "2", "--work", str(tmp_path / "work"),
                "--out", str(out)])
    inp = json.loads((out / "input.json").read_text())
    assert {r["path"] for r in inp["rows"]} == {"loscat-hf", "plain-hf"}
    assert all(r["images_per_s"] > 0 and r["images_per_s_per_core"] > 0 for r in inp["rows"])
    assert inp["speedup_vs_best_plain"] > 0 and inp["image_size"] == 64
    train = json.loads((out / "train.json").read_text())
    assert {(r["preset"], r["path"]) for r in train["rows"]} == {("tiny", "loscat-hf"), ("tiny", "plain-hf")}
    for r in train["rows"]:
        assert r["images_per_s"] > 0 and 0.0 <= r["input_wait_share"] < 1.0 and 0.0 < r["mfu"] < 1.0
    # --plain-steps shortens only the input-bound plain path (--quick: 3 steps)
    assert {(r["path"], r["steps"]) for r in train["rows"]} == {("loscat-hf", 3), ("plain-hf", 2)}
    assert train["matmul_peak_tflops"]["fp32"] > 0 and train["mfu_reference"] in ("fp32", "bf16")
    label = json.loads((out / "label.json").read_text())
    paths = {r["path"] for r in label["rows"]}
    assert paths == {"pipeline", "loscat-hf"}
    for r in label["rows"]:
        assert r["images_per_s"] > 0 and 0.0 <= r["top1_agree"] <= 1.0
    # same weights, same decode size: loscat-hf fp32 labels must match the pipeline on most photos
    fp32 = [r for r in label["rows"] if r["path"] == "loscat-hf"][0]
    assert "speedup" in fp32 and fp32["top1_agree"] >= 0.5
    # photo-like inputs by default: camera grain puts them near camera JPEGs' entropy (smooth renders: ~0.3)
    assert label["photos"]["photo_like"] and label["photos"]["bits_per_pixel"]["camera"] > 1.0
    stages = {r["stage"]: r for r in json.loads((out / "stages.json").read_text())["rows"]}
    assert stages["entropy decoding (1/8-scale decode)"]["ms_per_photo"] > 0
    assert (any(k.startswith("model onnx fp32") for k in stages)
            and any(k.startswith("squash") for k in stages))
    process = {r["command"]: r for r in json.loads((out / "process.json").read_text())["rows"]}
    assert (process["loscat-hf predict"]["photos"] == 12
            and process["transformers.pipeline script"]["seconds"] > 0)
    assert process["loscat-hf predict"]["speedup_vs_pipeline"] > 0


def test_quick_mode_shrinks_the_run(bench):
    args = bench.parse(["label", "--quick"])
    assert args.photos == 12 and args.size == 64 and args.base_images == 0 and args.base_steps == 0


def test_gpu_recipe_runs_on_cpu(bench, tmp_path, monkeypatch):
    """The GPU recipe (bf16 autocast, fused AdamW) goes through the same code on CPU, so it is not
    untested."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "out"
    bench.main(["train", "--quick", "--bf16", "true", "--workers", "1", "--profile", "2", "--work",
                str(tmp_path / "work"), "--out", str(out)])
    rows = json.loads((out / "train.json").read_text())["rows"]
    ours = [r for r in rows if r["path"] == "loscat-hf"]
    assert ours and all(r["bf16"] and r["optim"] == "adamw_torch_fused" and r["images_per_s"] > 0
                        for r in ours)
    assert all(r["attn"] == "sdpa" for r in ours)  # the attention implementation the model really runs
    # --profile: a separate profiled run's op table, where a GPU run shows where a step's time goes
    table = (out / "profile_tiny.txt").read_text()
    assert "Self CPU" in table and "aten::" in table


def test_vit_flop_count_matches_the_known_vit_b_figure(bench):
    from transformers import ViTConfig

    from loscat_hf.model.build import PRESETS

    # ~110 GFLOP per ViT-B/16-384 forward (the figure; 55.5 G multiply-adds)
    assert 108 < bench.vit_forward_gflops(ViTConfig(**PRESETS["vit-base-384-random"])) < 113


def test_label_benchmark_takes_your_own_model_folder(bench, tmp_path, monkeypatch):
    from conftest import save_tiny_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = save_tiny_model(tmp_path / "my_model", seed=5)
    out = tmp_path / "out"
    bench.main(["label", "--quick", "--label-model", str(model), "--precisions", "int8",
                "--label-workers", "0", "--work", str(tmp_path / "work"), "--out", str(out)])
    rows = json.loads((out / "label.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {str(model)}
    ours = {tuple(r["setting"].split()[:2]): r for r in rows if r["path"] == "loscat-hf"}
    # torch fp32 always runs first: the reference of agree_fp32; int8 runs in ONNX Runtime
    assert set(ours) == {("torch", "fp32"), ("onnx", "int8")}
    assert ours[("torch", "fp32")]["agree_fp32"] == 1.0 and 0.0 <= ours[("onnx", "int8")]["agree_fp32"] <= 1.0


def test_label_model_that_is_not_a_model_folder_is_refused(bench, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse(["label", "--label-model", str(tmp_path / "nothing")])
    assert exc.value.code == 2 and "is not a model folder" in capsys.readouterr().err


def test_processes_benchmark_compares_launches_on_the_same_photos(tmp_path, monkeypatch):
    """scripts/bench_processes.py (bench_gpu.sh's multi-process rows) runs a plain predict and a 2-process
    `accelerate launch` on the same photos, and says whether their CSVs agree."""
    spec = importlib.util.spec_from_file_location("bench_processes", ROOT / "scripts" / "bench_processes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "out"
    result = mod.main(["--photos", "12", "--camera", "160x120", "--configs", "1x1", "2x1", "--batch-size",
                       "2", "--workers", "0", "--work", str(tmp_path / "work"), "--out", str(out)])
    assert json.loads((out / "processes.json").read_text()) == result
    assert [(r["processes"], r["threads_each"]) for r in result["rows"]] == [(1, 1), (2, 1)]
    assert all(r["seconds"] > 0 and r["one_photo_s"] > 0 and r["photos_per_s"] > 0 for r in result["rows"])
    assert all(r["same_csv"] and r["same_regions"] for r in result["rows"])
    assert "cores; " in result["cpu"] and result["photos"] == 12
