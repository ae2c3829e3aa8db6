"""Multi-region models in `predict` and `link`: the `regions` columns follow from the sigmoid scores and the
per-class thresholds recorded in the model folder, resume writes what a fresh run writes, the torch-free ONNX
start carries the thresholds, and link files a photo under every region it shows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image

from loscat_hf.cli import main
from loscat_hf.errors import LoscatError
from loscat_hf.infer.folder import COLUMNS, REGIONS, REGIONS_PROB, predict_folder, row_regions
from loscat_hf.link import run_link
from loscat_hf.model.folder import MULTI_LABEL, config_json, record_thresholds
from loscat_hf.model.thresholds import needs_review_multi, sigmoid

# per class, set so that the scaled-up tiny model's photos show several regions, one, or none (a random head
# scores a few classes near 1 on every photo: theirs sit higher)
THRESHOLDS = dict(zip(("head", "neck", "chest", "abdomen", "upper_back", "lower_back", "arm", "forearm",
                       "hand", "thigh", "leg", "foot"),
                      (0.9, 0.5, 0.995, 0.99, 0.5, 0.995, 0.7, 0.9, 0.9, 0.9, 0.9, 0.96), strict=True))


def _set_thresholds(folder: Path, values: dict[str, float]) -> None:
    config = config_json(folder)
    record_thresholds(config, values, by="test", split="validation", n=10, rule="fixed")
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def _multi_model(folder: Path, seed: int = 5) -> Path:
    """A tiny multi-region model whose head is scaled up, so the sigmoid scores spread over (0, 1)."""
    from safetensors.torch import load_file, save_file

    save_tiny_model(folder, seed=seed, problem_type=MULTI_LABEL)
    state = load_file(folder / "model.safetensors")
    state["classifier.weight"] = state["classifier.weight"] * 20
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    _set_thresholds(folder, THRESHOLDS)
    return folder


@pytest.fixture(scope="module")
def multi_model(tmp_path_factory) -> Path:
    return _multi_model(tmp_path_factory.mktemp("multi") / "model")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for k in range(8):
        img = np.tile(np.linspace(0, 255, 120)[None, :, None], (90, 1, 3)) * rng.uniform(0.1, 1.0, 3)
        img = img + rng.normal(0, 25, (90, 120, 3))
        img[: 10 + 8 * k, : 30 + 5 * k] = rng.integers(0, 255, 3)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"p{k}.png")
    (folder / "notes.txt").write_text("not a photo")  # an error row: its regions stay empty
    return folder


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _torch(model: Path, **kw):
    from loscat_hf.infer.predictor import RegionPredictor

    return RegionPredictor.from_pretrained(model, backend="torch", device="cpu", **kw)


def test_multi_region_rows_follow_the_scores_and_the_recorded_thresholds(multi_model, photos, tmp_path):
    predictor = _torch(multi_model, min_margin=0.01)  # a narrow margin: some photos need no review
    out = tmp_path / "predictions.csv"
    summary = predict_folder(predictor, photos, out, batch_size=3, progress=False)
    rows = {r["image"]: r for r in _read(out)}
    assert list(next(iter(rows.values()))) == COLUMNS
    labels = predictor.labels
    thresholds = np.array([THRESHOLDS[c] for c in labels])  # from the test, not from the model folder
    several = none = 0
    for k in range(8):
        row = rows[f"p{k}.png"]
        pixels = predictor.pixels(predictor.load(photos / f"p{k}.png"))
        scores = sigmoid(predictor.logits(pixels[None]), predictor.temperature)[0]
        order = [i for i in np.argsort(-scores) if scores[i] >= thresholds[i]]
        assert row[REGIONS] == ";".join(labels[i] for i in order)
        assert row[REGIONS_PROB] == ";".join(f"{scores[i]:.4f}" for i in order)
        assert row["region"] == labels[int(np.argmax(scores))]  # the highest score, passing or not
        assert row["probability"] == f"{scores.max():.4f}"
        review = needs_review_multi(scores[None], thresholds, 0.01)[0]
        assert row["needs_review"] == str(bool(review)).lower()
        assert row_regions(row) == [(labels[i], float(f"{scores[i]:.4f}")) for i in order]
        several += len(order) > 1
        none += not order
    # the checks can fail: photos that show several regions, one, or none; flagged and not
    assert several and none and any(len(r[REGIONS].split(";")) == 1 for r in rows.values() if r[REGIONS])
    assert {r["needs_review"] for r in rows.values()} == {"true", "false", ""}
    assert rows["notes.txt"][REGIONS] == rows["notes.txt"][REGIONS_PROB] == ""
    assert (summary.multi_label, summary.several_regions, summary.no_region) == (True, several, none)
    assert f"{several} show several regions, {none} no region above its threshold" in str(summary)
    # uncalibrated sigmoids by design: what decides its regions is its fitted thresholds, not a temperature
    assert summary.thresholds_fitted and "calibrate" not in str(summary)


def test_a_multi_region_model_without_thresholds_uses_one_half_and_says_so(photos, tmp_path):
    model = save_tiny_model(tmp_path / "model", seed=2, problem_type=MULTI_LABEL)  # no loscat_thresholds
    predictor = _torch(model)
    assert predictor.folder.thresholds == (0.5,) * 12
    summary = predict_folder(predictor, photos, tmp_path / "p.csv", progress=False)
    for row in _read(tmp_path / "p.csv"):
        if row["status"] == "ok":
            scores = [float(x) for x in row[REGIONS_PROB].split(";") if x]
            assert all(p >= 0.5 for p in scores) and (float(row["top2_prob"]) < 0.5 or len(scores) >= 2)
    assert not summary.thresholds_fitted and "no fitted per-class thresholds" in str(summary)


def test_a_single_region_models_regions_are_its_region(predictor, photos, tmp_path):
    out = tmp_path / "predictions.csv"
    summary = predict_folder(predictor, photos, out, progress=False)
    rows = [r for r in _read(out) if r["status"] == "ok"]
    assert len(rows) == 8
    for r in rows:
        assert (r[REGIONS], r[REGIONS_PROB]) == (r["region"], r["probability"])
    assert not summary.multi_label and "several regions" not in str(summary)


def _kill_at_batch(predictor, monkeypatch, batch: int) -> None:
    run, calls = predictor.logits, []

    def logits(pixels, tta=False):
        calls.append(1)
        if len(calls) == batch:
            raise KeyboardInterrupt
        return run(pixels, tta=tta)

    monkeypatch.setattr(predictor, "logits", logits)


def test_resume_with_a_multi_region_model_writes_what_a_fresh_run_writes(multi_model, photos, tmp_path,
                                                                          monkeypatch):
    predictor = _torch(multi_model)
    fresh = tmp_path / "fresh.csv"
    predict_folder(predictor, photos, fresh, batch_size=2, progress=False)
    out = tmp_path / "resumed.csv"
    with monkeypatch.context() as mp:
        _kill_at_batch(predictor, mp, batch=3)
        with pytest.raises(KeyboardInterrupt):
            predict_folder(predictor, photos, out, batch_size=2, progress=False)
    assert len(_read(tmp_path / "resumed.csv.partial")) == 4  # two batches kept
    summary = predict_folder(predictor, photos, out, batch_size=2, resume=True, progress=False)
    assert summary.resumed == 4 and out.read_bytes() == fresh.read_bytes()
    again = predict_folder(predictor, photos, out, batch_size=2, resume=True, progress=False)
    assert again.resumed == 9 and out.read_bytes() == fresh.read_bytes()
    assert (again.several_regions, again.no_region) == (summary.several_regions, summary.no_region)


@pytest.mark.parametrize("edit", ["drop_a_region", "unflag_review"])
def test_resume_refuses_a_multi_region_row_its_scores_could_not_give(multi_model, photos, tmp_path, edit):
    predictor = _torch(multi_model)
    out = tmp_path / "predictions.csv"
    predict_folder(predictor, photos, out, progress=False)
    rows = _read(out)
    if edit == "drop_a_region":  # a photo of several regions whose second passing top-k class is dropped
        i = next(i for i, r in enumerate(rows) if len(r[REGIONS].split(";")) > 1
                 and r[REGIONS].split(";")[1] == r["top2"])
        rows[i][REGIONS] = rows[i][REGIONS].split(";")[0]
        rows[i][REGIONS_PROB] = rows[i][REGIONS_PROB].split(";")[0]
        problem = f"top2 {rows[i]['top2']} scores"
    else:  # a flagged photo whose top-1 lies within the margin of its threshold
        i = next(i for i, r in enumerate(rows) if r["status"] == "ok"
                 and abs(float(r["top1_prob"]) - THRESHOLDS[r["top1"]]) < 0.09)
        rows[i]["needs_review"] = "false"
        problem = "needs_review false, but"
    partial = tmp_path / "predictions.csv.partial"
    with open(partial, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(LoscatError, match="resume") as caught:
        predict_folder(predictor, photos, out, resume=True, progress=False)
    assert f"row {i + 2}: {problem}" in str(caught.value)


def _as_older_loscat_hf(out: Path, left: str, keep: int = 5, edit=None, model_record: bool = True) -> None:
    """`out` as a loscat-hf from before the `regions` columns left it: its first `keep` rows as the output or
    a killed run's partial file (`left`), and that run's record (its columns; `model_record`: a model record
    without the multi-region fields, which reads as today's for a single-region model)."""
    from loscat_hf.io.hashing import file_sha256

    old_columns = [c for c in COLUMNS if c not in (REGIONS, REGIONS_PROB)]
    rows = _read(out)[:keep]
    if edit is not None:
        edit(rows)
    target = out if left == "output" else out.with_name(out.name + ".partial")
    with open(target, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=old_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    if left == "partial":
        out.unlink()
    record_file = out.with_name(out.name + ".run.json")
    record = json.loads(record_file.read_text())
    record["settings"]["columns"] = old_columns
    for key in ("problem_type", "thresholds", "threshold_record") if model_record else ():
        record["model_record"].pop(key)
    record["output_sha256"] = file_sha256(out) if left == "output" else None
    record_file.write_text(json.dumps(record))


@pytest.mark.parametrize("left", ["output", "partial"])
def test_resume_gives_an_older_single_region_output_its_regions(predictor, photos, tmp_path, monkeypatch,
                                                                left):
    """A single-region model's output (or a killed run's partial file) of a loscat-hf that wrote no `regions`
    is kept: its rows get `regions` = `region`, and the run writes what a fresh run writes, today's header
    included; killed on the way, the rows kept wait in the partial file under today's header."""
    from loscat_hf.io.hashing import file_sha256

    out = tmp_path / "predictions.csv"
    partial, record_file = tmp_path / "predictions.csv.partial", tmp_path / "predictions.csv.run.json"
    predict_folder(predictor, photos, out, batch_size=2, progress=False)
    fresh = out.read_bytes()
    _as_older_loscat_hf(out, left)
    with monkeypatch.context() as mp:
        _kill_at_batch(predictor, mp, batch=2)
        with pytest.raises(KeyboardInterrupt):
            predict_folder(predictor, photos, out, batch_size=2, resume=True, progress=False)
    with open(partial, newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == COLUMNS and len(_read(partial)) == 7  # 5 kept, one batch of 2
    assert json.loads(record_file.read_text())["settings"]["columns"] == COLUMNS
    summary = predict_folder(predictor, photos, out, batch_size=2, resume=True, progress=False)
    assert summary.resumed == 7 and out.read_bytes() == fresh and not partial.exists()
    assert json.loads(record_file.read_text())["output_sha256"] == file_sha256(out)

    _as_older_loscat_hf(out, left)  # straight through this time
    summary = predict_folder(predictor, photos, out, batch_size=2, resume=True, progress=False)
    assert summary.resumed == 5 and out.read_bytes() == fresh


def test_an_older_single_region_outputs_rows_are_still_checked(predictor, photos, tmp_path):
    out = tmp_path / "predictions.csv"
    predict_folder(predictor, photos, out, progress=False)

    def edit(rows):
        rows[2]["probability"] = "1.5"

    _as_older_loscat_hf(out, "output", edit=edit)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(LoscatError, match="row 4: probability '1.5' is not a number from 0 to 1"):
        predict_folder(predictor, photos, out, resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("left", ["output", "partial"])
def test_resume_refuses_an_older_multi_region_output(multi_model, photos, tmp_path, left):
    """A multi-region model's regions cannot be rebuilt from its top-3: an output without the `regions`
    columns is refused in one line that names them, and only them, and nothing is touched."""
    predictor = _torch(multi_model)
    out = tmp_path / "predictions.csv"
    predict_folder(predictor, photos, out, progress=False)
    _as_older_loscat_hf(out, left, model_record=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(LoscatError, match="another model or with other settings") as caught:
        predict_folder(predictor, photos, out, resume=True, progress=False)
    message = str(caught.value)
    assert "it has no regions, regions_probability column" in message and "\n" not in message
    assert "the model's" not in message  # the same model: only the columns differ
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    summary = predict_folder(predictor, photos, out, progress=False)  # without resume: every photo again
    assert summary.resumed == 0 and summary.several_regions


def test_cli_summary_counts_photos_of_several_regions(multi_model, photos, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(multi_model), "--images", str(photos), "--out", str(out),
                 "--num-workers", "0", "--backend", "torch"]) == 0
    several = sum(len(r[REGIONS].split(";")) > 1 for r in _read(out))
    assert f"{several} show several regions" in capsys.readouterr().out


def test_explain_answers_with_a_multi_region_models_regions(multi_model, photos, tmp_path, capsys):
    """explain's answer for a multi-region model is every region at or above its threshold with its score
    (or none), as predict's `regions` are, not its top sigmoid score; the overlays are the same."""
    from loscat_hf.infer.explain import NONE_SHOWN, explain_folder

    files = sorted(photos.glob("p*.png"))
    result = explain_folder(str(multi_model), files, tmp_path / "x", backend="torch")
    preds = _torch(multi_model).predict([str(f) for f in files])
    assert result.multi_label and [p for p, *_ in result.explained] == files
    answers = {photo.name: (answer, scores) for photo, answer, scores, _ in result.answers()}
    several = none = 0
    for f, shown, pred in zip(files, result.regions, preds, strict=True):
        assert [c for c, _ in shown] == [c for c, _ in pred.regions]
        assert [p for _, p in shown] == pytest.approx([p for _, p in pred.regions], abs=1e-4)
        names = ";".join(c for c, _ in pred.regions)
        assert answers[f.name][0] == (names or NONE_SHOWN)
        assert answers[f.name][1] == (";".join(f"{p:.3f}" for _, p in shown) or "-")
        several += len(shown) > 1
        none += not shown
    assert several and none  # the checks can fail both ways
    assert all(o.is_file() for o in result.overlays)

    assert main(["explain", "--model", str(multi_model), "--images", *map(str, files), "--out",
                 str(tmp_path / "cli"), "--backend", "torch"]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert {Path(line[0]).name: (line[1], line[2]) for line in lines} == answers


def test_explain_of_a_single_region_model_prints_its_top_region(predictor, model_dir, photos, tmp_path,
                                                                capsys):
    assert main(["explain", "--model", str(model_dir), "--images", str(photos / "p0.png"), "--out",
                 str(tmp_path / "x"), "--backend", "torch"]) == 0
    pred = predictor.predict(str(photos / "p0.png"))
    photo, region, probability, overlay = capsys.readouterr().out.strip().split("\t")
    assert (photo, region, probability) == (str(photos / "p0.png"), pred.label, f"{pred.probability:.3f}")
    assert overlay == str(tmp_path / "x" / "p0.explain.png")


def _onnx_ready():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")


def test_onnx_gives_torchs_regions_and_a_changed_threshold_is_never_answered_from_the_cache(
        tmp_path, photos, monkeypatch):
    _onnx_ready()
    from loscat_hf.infer.backends import lean, onnx_cache
    from loscat_hf.infer.load import load_predictor

    monkeypatch.setenv("LOSCAT_HF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LOSCAT_BACKEND", raising=False)
    monkeypatch.setattr(lean, "gpu_present", lambda: False)  # as on a CPU machine, also on a GPU test host
    model = _multi_model(tmp_path / "model")

    def regions(predictor, name):
        predict_folder(predictor, photos, tmp_path / name, progress=False)
        return [row_regions(r) for r in _read(tmp_path / name)]

    def same(a, b):  # the same regions, their scores within the exactness threshold
        return all([n for n, _ in x] == [n for n, _ in y]
                   and np.allclose([p for _, p in x], [p for _, p in y], atol=1e-3)
                   for x, y in zip(a, b, strict=True))

    reference = regions(_torch(model), "torch.csv")
    exported = load_predictor(model, device="cpu")  # ONNX Runtime under the loaded model; fills the cache
    cached = load_predictor(model)  # the torch-free start, from the cached record
    assert exported.backend == "onnx" and isinstance(cached, lean.LeanPredictor)
    assert cached.folder.thresholds == exported.folder.thresholds == tuple(THRESHOLDS.values())
    assert cached.folder.multi_label
    assert same(regions(exported, "onnx.csv"), reference) and same(regions(cached, "lean.csv"), reference)
    assert any(len(r) > 1 for r in reference)

    # new thresholds in config.json: a new cache key, so the cached graph and record do not answer
    _set_thresholds(model, {c: 0.9 for c in THRESHOLDS})
    assert lean.lean_predictor(model) is None
    strict = load_predictor(model, device="cpu")
    assert strict.folder.thresholds == (0.9,) * 12
    assert load_predictor(model).folder.thresholds == (0.9,) * 12  # the new entry's record
    # a cached record that reads the model otherwise than its config.json (e.g. written without thresholds)
    (record_file,) = onnx_cache.entry(onnx_cache.folder_key(model)).glob(onnx_cache.RECORD_FILE)
    stale = json.loads(record_file.read_text())
    stale.update(problem_type=None, thresholds=[], threshold_record=None)
    record_file.write_text(json.dumps(stale))
    assert lean.lean_predictor(model) is None


def test_compare_backends_uses_the_sigmoid_scores(multi_model, photos):
    _onnx_ready()
    from loscat_hf.infer.compare import compare_backends, format_comparison

    result = compare_backends(str(multi_model), photos, candidates=["onnx:fp32"], progress=False)
    (cand,) = result.candidates
    assert result.multi_label and result.photos == 8
    assert cand.exact and cand.top1_changed == cand.regions_changed == 0
    assert "regions changed" in format_comparison(result) and "sigmoid score" in format_comparison(result)


# --- link ---------------------------------------------------------------------------------------------

def _csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


SCORE_HEADER = ["patient_id", "visit", "site", "erythema", "skin_thickness", "new_extension",
                "dermal_atrophy", "subcutaneous_atrophy", "dyspigmentation"]


@pytest.fixture
def clinic(tmp_path):
    header = ["image", "region", "probability", REGIONS, REGIONS_PROB, "needs_review", "status", "error"]
    preds = _csv(tmp_path / "predictions.csv", header, [
        ["a.jpg", "thigh", "0.91", "thigh;leg", "0.91;0.64", "false", "ok", ""],  # P1 V1: thigh and leg
        ["b.jpg", "chest", "0.80", "chest", "0.80", "false", "ok", ""],          # P1 V1: chest
        ["c.jpg", "leg", "0.40", "", "", "true", "ok", ""],                      # no class passed
        ["d.jpg", "", "", "", "", "", "unreadable", "broken"],
    ])
    meta = _csv(tmp_path / "meta.csv", ["image", "patient_id", "visit"],
                [["a.jpg", "P1", "V1"], ["b.jpg", "P1", "V1"], ["c.jpg", "P1", "V1"], ["d.jpg", "P1", "V1"]])
    scores = _csv(tmp_path / "scores.csv", SCORE_HEADER, [
        ["P1", "V1", "left_thigh", 1, 1, 0, 0, 0, 0],   # mLoSSI 2
        ["P1", "V1", "left_leg", 2, 0, 0, 0, 1, 0],     # mLoSSI 2, LoSDI 1
        ["P1", "V1", "right_leg", 1, 0, 0, 0, 0, 0],    # mLoSSI 1 -> leg at P1 V1: 3, 1
        ["P1", "V1", "abdomen", 1, 0, 0, 0, 0, 0],      # no photo of the abdomen
        ["P2", "V1", "chest", 1, 0, 0, 0, 0, 0],        # no photo of P2
    ])
    return preds, scores, meta


def test_link_files_a_photo_under_every_region_it_shows(clinic, tmp_path):
    preds, scores, meta = clinic
    result = run_link(preds, scores, meta, tmp_path / "out")
    s, out = result.summary, tmp_path / "out"
    assert "4 photos: 2 linked (1 under several regions), 1 unmatched" in str(result)
    assert (s["photos_total"], s["photos_linked"], s["photos_error"]) == (4, 2, 1)
    assert s["unmatched_photo_reasons"] == {"no_region_above_threshold": 1}
    assert s["photos_several_regions"] == 1
    assert {k: v for k, v in s["photos_per_region"].items() if v} == {"thigh": 1, "leg": 1, "chest": 1}
    linked = {(r["image"], r["region"]): r for r in _read(out / "linked_photos.csv")}
    assert set(linked) == {("a.jpg", "thigh"), ("a.jpg", "leg"), ("b.jpg", "chest")}
    thigh, leg = linked["a.jpg", "thigh"], linked["a.jpg", "leg"]
    assert (thigh["scored_sites"], thigh["mLoSSI"], thigh["probability"]) == ("left_thigh", "2.0", "0.91")
    assert (leg["scored_sites"], leg["mLoSSI"], leg["LoSDI"], leg["probability"]) == (
        "left_leg;right_leg", "3.0", "1.0", "0.64")
    assert thigh[REGIONS] == leg[REGIONS] == "thigh;leg"
    per_region = {r["region"]: r for r in _read(out / "photos_per_region.csv")}
    assert (per_region["thigh"]["photos"], per_region["leg"]["photos"]) == ("1", "1")
    assert per_region["leg"]["share_of_photos"] == "0.5"  # of the 2 photos linked: shares add up to 1.5
    assert per_region["leg"]["photos_with_region_scored"] == "1"
    (unmatched,) = _read(out / "unmatched_photos.csv")
    assert (unmatched["image"], unmatched["reason"]) == ("c.jpg", "no_region_above_threshold")
    # the abdomen was scored at a visit with photos, just not photographed: it stays out of unmatched_scores
    assert [r["patient_id"] for r in _read(out / "unmatched_scores.csv")] == ["P2"]
    assert (out / "body_map_photos.png").read_bytes()[:4] == b"\x89PNG"


def test_link_of_a_single_region_models_predictions_is_the_one_region_report(predictor, photos, tmp_path):
    """predict's CSV of a single-region model has `regions` = `region`: link writes, byte for byte, the
    report it writes for the CSV without the column."""
    out = tmp_path / "predictions.csv"
    predict_folder(predictor, photos, out, progress=False)
    rows = _read(out)
    old = _csv(tmp_path / "old.csv", [c for c in COLUMNS if c not in (REGIONS, REGIONS_PROB)],
               [[r[c] for c in COLUMNS if c not in (REGIONS, REGIONS_PROB)] for r in rows])
    meta = _csv(tmp_path / "meta.csv", ["image", "patient_id", "visit"],
                [[r["image"], f"P{k % 2}", "V1"] for k, r in enumerate(rows)])
    scores = _csv(tmp_path / "scores.csv", SCORE_HEADER,
                  [[f"P{k}", "V1", site, 1, 0, 0, 0, 0, 0] for k in (0, 1) for site in ("head", "chest")])
    report = tmp_path / "report"  # the same folder, so that summary.json's `out` is the same too
    before = run_link(old, scores, meta, report, plots=False).summary
    written = {p.name: p.read_bytes() for p in report.iterdir()}
    new = run_link(out, scores, meta, report, plots=False).summary
    assert new == before and "photos_several_regions" not in new and new["photos_linked"] == 8
    assert {p.name: p.read_bytes() for p in report.iterdir()} == written
    assert {"linked_photos.csv", "unmatched_photos.csv", "summary.json"} <= set(written)
    assert REGIONS not in _read(report / "linked_photos.csv")[0]
