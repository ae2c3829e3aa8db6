"""Batch labelling (`loscat-hf predict` / predict_folder): one row per file, resume, atomic output, API."""

from __future__ import annotations

import csv
import io
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image

from loscat_hf.cli import main
from loscat_hf.infer.folder import COLUMNS, predict_folder
from loscat_hf.infer.predictor import RegionPredictor

ROOT = Path(__file__).resolve().parents[1]


def _photo(seed: int, size=(90, 70)) -> Image.Image:
    """An asymmetric picture (gradient + noise) so mirroring or rotating it changes the model's output."""
    rng = np.random.default_rng(seed)
    w, h = size
    xx = np.linspace(0, 255, w)[None, :, None]
    img = np.tile(xx, (h, 1, 3)) * np.array([1.0, 0.4, 0.1]) + rng.normal(0, 30, (h, w, 3))
    img[: h // 3, : w // 4] = [20, 200, 40]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def _bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1x1 PNG whose IHDR (correct CRC) claims width x height: a few bytes, no memory needed."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def archive(tmp_path) -> tuple[Path, dict[str, str]]:
    """A folder of photos with every kind of trouble; returns (folder, expected status per relative path)."""
    d = tmp_path / "archive"
    (d / "visit1").mkdir(parents=True)
    (d / ".thumbs").mkdir()
    good = _jpeg(_photo(0))
    (d / "visit1" / "good.jpg").write_bytes(good)
    (d / "visit1" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.txt").write_text("patient was seen on Monday\n")
    (d / "bomb.png").write_bytes(_bomb_png())
    _photo(1).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    rgba = _photo(2).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(d / "rgba.png")
    Image.fromarray((np.arange(60 * 80).reshape(60, 80) * 13).astype(np.uint16)).save(d / "gray16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: the upright photo is this one turned 90 degrees clockwise
    _photo(3).transpose(Image.Transpose.ROTATE_90).save(d / "visit1" / "rotated.png", exif=exif.tobytes())
    (d / ".DS_Store").write_bytes(b"\x00\x01junk")
    (d / ".thumbs" / "x.jpg").write_bytes(good)
    expected = {"visit1/good.jpg": "ok", "visit1/truncated.jpg": "truncated", "empty.jpg": "zero_byte",
                "notes.txt": "not_an_image", "bomb.png": "decompression_bomb", "cmyk.jpg": "ok",
                "rgba.png": "ok", "gray16.png": "ok", "visit1/rotated.png": "ok"}
    return d, expected


def test_every_file_gets_one_row_with_its_status(archive, predictor, tmp_path):
    folder, expected = archive
    out = tmp_path / "out" / "predictions.csv"
    summary = predict_folder(predictor, folder, out, batch_size=4, progress=False)
    rows = _read(out)
    assert list(rows[0]) == COLUMNS
    assert {r["image"]: r["status"] for r in rows} == expected  # hidden files/folders skipped, no duplicates
    assert len(rows) == len(expected)
    for r in rows:
        if r["status"] == "ok":
            assert r["region"] == r["top1"] in predictor.labels and r["error"] == ""
            probs = [float(r[f"top{k}_prob"]) for k in (1, 2, 3)]
            assert probs == sorted(probs, reverse=True) and float(r["probability"]) == probs[0]
            assert r["needs_review"] in ("true", "false")
        else:
            assert r["region"] == "" and r["error"]
    assert summary.by_status["ok"] == 5 and summary.total == 9
    assert summary.needs_review == sum(r["needs_review"] == "true" for r in rows)
    assert not list(out.parent.glob("*.partial")) and not list(out.parent.glob("*.tmp"))
    # and the record of what wrote it, for --resume (owner-only: it names the model folder)
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.csv", "predictions.csv.run.json"]
    assert (out.parent / "predictions.csv.run.json").stat().st_mode & 0o777 == 0o600


def test_exif_rotated_file_is_predicted_upright(archive, predictor, tmp_path):
    folder, _ = archive
    rows = {r["image"]: r for r in _read(_run(predictor, folder, tmp_path))}
    upright = predictor.predict(_photo(3))
    sideways = predictor.predict(_photo(3).transpose(Image.Transpose.ROTATE_90))
    rotated = rows["visit1/rotated.png"]
    assert float(rotated["probability"]) == pytest.approx(upright.probability, abs=1e-3)
    assert rotated["region"] == upright.label
    # the check can fail: the model does see a difference between the two orientations
    assert max(abs(upright.probabilities[k] - sideways.probabilities[k]) for k in predictor.labels) > 1e-3


def _run(predictor, images, tmp_path, **kw) -> Path:
    out = tmp_path / "p.csv"
    predict_folder(predictor, images, out, progress=False, **kw)
    return out


def test_workers_return_error_records(archive, model_dir, tmp_path):
    folder, expected = archive
    out = tmp_path / "w.csv"
    predict_folder(str(model_dir), folder, out, num_workers=1, batch_size=3, device="cpu", progress=False)
    assert {r["image"]: r["status"] for r in _read(out)} == expected


def test_csv_input_relative_absolute_and_missing(tmp_path, predictor):
    (tmp_path / "photos").mkdir()
    _photo(4).save(tmp_path / "photos" / "a.jpg")
    _photo(5).save(tmp_path / "b.png")
    listing = tmp_path / "lists" / "batch.csv"
    listing.parent.mkdir()
    listing.write_text(f"image,patient\n../photos/a.jpg,P1\n{tmp_path / 'b.png'},P2\n../photos/gone.jpg,P3\n")
    rows = _read(_run(predictor, listing, tmp_path))
    assert [(r["image"], r["status"]) for r in rows] == [
        ("../photos/a.jpg", "ok"), (str(tmp_path / "b.png"), "ok"), ("../photos/gone.jpg", "missing_image")]
    assert rows[0]["region"] == predictor.predict(tmp_path / "photos" / "a.jpg").label


def test_csv_without_image_column_is_a_user_error(tmp_path, model_dir, capsys):
    listing = tmp_path / "l.csv"
    listing.write_text("path\nx.jpg\n")
    rc = main(["predict", "--model", str(model_dir), "--images", str(listing),
               "--out", str(tmp_path / "o.csv")])
    assert rc == 2 and "no 'image' column" in capsys.readouterr().err


class _Counting:
    """Wraps a predictor: counts photos sent to the model, and can die at a given batch like a killed run."""

    def __init__(self, inner: RegionPredictor, die_at_batch: int | None = None):
        self.run = RegionPredictor.logits.__get__(inner)  # the real method, not a patched attribute
        self.die_at_batch, self.photos, self.batches = die_at_batch, 0, 0

    def logits(self, pixels, tta=False):
        self.batches += 1
        if self.batches == self.die_at_batch:
            raise KeyboardInterrupt
        self.photos += len(pixels)
        return self.run(pixels, tta=tta)


def _counting_predictor(predictor, monkeypatch, die_at_batch=None) -> _Counting:
    counter = _Counting(predictor, die_at_batch)
    monkeypatch.setattr(predictor, "logits", counter.logits)
    return counter


def test_killed_run_keeps_checkpoint_and_resume_skips_done_rows(tmp_path, predictor, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(7):
        _photo(10 + i).save(folder / f"p{i}.png")
    out = tmp_path / "p.csv"
    counter = _counting_predictor(predictor, monkeypatch, die_at_batch=3)
    with pytest.raises(KeyboardInterrupt):
        predict_folder(predictor, folder, out, batch_size=2, progress=False)
    assert not out.exists()  # never a half-written output
    partial = _read(tmp_path / "p.csv.partial")
    assert [r["image"] for r in partial] == ["p0.png", "p1.png", "p2.png", "p3.png"]  # two batches flushed

    # mark the checkpointed rows: if resume recomputed them, the mark would be gone
    # (probability and top1_prob alike: resume refuses a row whose region is not its top-1)
    text = (tmp_path / "p.csv.partial").read_text().replace(partial[0]["probability"], "0.4242", 2)
    (tmp_path / "p.csv.partial").write_text(text)
    assert _read(tmp_path / "p.csv.partial")[0]["top1_prob"] == "0.4242"
    counter = _counting_predictor(predictor, monkeypatch)
    summary = predict_folder(predictor, folder, out, batch_size=2, resume=True, progress=False)
    assert counter.photos == 3 and summary.resumed == 4
    rows = _read(out)
    assert [r["image"] for r in rows] == [f"p{i}.png" for i in range(7)]
    assert rows[0]["probability"] == "0.4242"
    assert not (tmp_path / "p.csv.partial").exists()

    # resume on a finished output with one new photo: only that photo is computed
    _photo(99).save(folder / "new.png")
    counter = _counting_predictor(predictor, monkeypatch)
    predict_folder(predictor, folder, out, batch_size=2, resume=True, progress=False)
    rows = {r["image"]: r for r in _read(out)}
    assert counter.photos == 1 and len(rows) == 8 and rows["p0.png"]["probability"] == "0.4242"

    # without --resume everything is recomputed
    counter = _counting_predictor(predictor, monkeypatch)
    predict_folder(predictor, folder, out, batch_size=2, progress=False)
    rows = {r["image"]: r for r in _read(out)}
    assert counter.photos == 8 and rows["p0.png"]["probability"] != "0.4242"


def test_failed_run_leaves_previous_output_intact(tmp_path, predictor, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        _photo(20 + i).save(folder / f"p{i}.png")
    out = _run(predictor, folder, tmp_path)
    before = out.read_bytes()
    _counting_predictor(predictor, monkeypatch, die_at_batch=2)
    with pytest.raises(KeyboardInterrupt):
        predict_folder(predictor, folder, out, batch_size=1, progress=False)
    assert out.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))


def test_tta_is_mirror_invariant(tmp_path, predictor):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _photo(7).save(folder / "a.png")
    _photo(7).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "b.png")
    plain = _read(_run(predictor, folder, tmp_path))
    assert plain[0]["top1_prob"] != plain[1]["top1_prob"]  # the model does tell the mirror apart
    tta = _read(_run(predictor, folder, tmp_path, tta=True))
    for col in ("region", "top1", "top2", "top3"):
        assert tta[0][col] == tta[1][col]
    for col in ("top1_prob", "top2_prob", "top3_prob"):
        assert float(tta[0][col]) == pytest.approx(float(tta[1][col]), abs=2e-4)


def test_cli_predict_and_bad_model(archive, model_dir, tmp_path, capsys):
    folder, expected = archive
    out = tmp_path / "cli.csv"
    rc = main(["predict", "--model", str(model_dir), "--images", str(folder), "--out", str(out),
               "--num-workers", "0", "--batch-size", "5", "--device", "cpu", "--precision", "fp32",
               "--min-confidence", "0.0", "--min-margin", "0.0"])
    assert rc == 0
    rows = _read(out)
    assert len(rows) == len(expected)
    assert all(r["needs_review"] == "false" for r in rows if r["status"] == "ok")  # thresholds reach the rows
    printed = capsys.readouterr().out
    assert "ok 5" in printed and str(out) in printed

    rc = main(["predict", "--model", str(tmp_path / "no-such-model"), "--images", str(folder),
               "--out", str(out)])
    assert rc == 2 and "cannot load model" in capsys.readouterr().err
    (tmp_path / "not-a-model").mkdir()
    rc = main(["predict", "--model", str(tmp_path / "not-a-model"), "--images", str(folder),
               "--out", str(out)])
    assert rc == 2 and "cannot load model" in capsys.readouterr().err
    rc = main(["predict", "--model", str(model_dir), "--images", str(tmp_path / "nowhere"),
               "--out", str(out)])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_plain_transformers_pipeline_agrees(model_dir, predictor, tmp_path):
    """A saved folder loads in plain transformers (no loscat_hf import) and gives the same answer."""
    photo = tmp_path / "photo.png"
    _photo(8, size=(64, 64)).save(photo)  # at the model's input size: both paths see identical pixels
    script = ("import json, sys\nfrom transformers import pipeline\n"
              "clf = pipeline('image-classification', model=sys.argv[1], device='cpu')\n"
              "print(json.dumps(clf(sys.argv[2], top_k=3)))\n"
              "assert 'loscat_hf' not in sys.modules\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", script, str(model_dir), str(photo)], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    import json

    theirs = json.loads(res.stdout.strip().splitlines()[-1])
    ours = predictor.predict(photo)
    assert theirs[0]["label"] == ours.label
    for item in theirs:
        assert item["score"] == pytest.approx(ours.probabilities[item["label"]], abs=1e-3)


def test_folder_saved_without_processor_config(tmp_path, model_dir):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in model_dir.iterdir():
        if f.name != "preprocessor_config.json":
            (bare / f.name).write_bytes(f.read_bytes())
    folder = tmp_path / "imgs"
    folder.mkdir()
    _photo(30).save(folder / "a.png")
    out = tmp_path / "bare.csv"
    summary = predict_folder(str(bare), folder, out, device="cpu", progress=False)
    assert summary.by_status == {"ok": 1}


def _docs_python_block() -> str:
    """The Python example of docs/predict.md's "The same from Python" (it moved there from the README)."""
    text = (ROOT / "docs" / "predict.md").read_text()
    section = text.split("<!-- section: predict-python -->", 1)[1].split("<!-- section:", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_docs_python_example_runs_as_written(tmp_path, model_dir, monkeypatch, capsys):
    (tmp_path / "quickstart").mkdir()
    (tmp_path / "quickstart" / "model").symlink_to(model_dir, target_is_directory=True)
    (tmp_path / "archive" / "visit1").mkdir(parents=True)
    _photo(40).save(tmp_path / "archive" / "visit1" / "photo_001.jpg")
    _photo(41).save(tmp_path / "archive" / "visit1" / "photo_002.jpg")
    (tmp_path / "archive" / "visit1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 nope")
    monkeypatch.chdir(tmp_path)
    exec(compile(_docs_python_block(), "docs/predict.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "'ok': 2" in printed and "'truncated': 1" in printed
    assert len(_read(tmp_path / "predictions.csv")) == 3


def test_int8_answer_for_a_photo_does_not_depend_on_its_batch(model_dir):
    """Dynamic int8 scales activations per forward pass; loscat-hf runs int8 photos singly, so a photo's
    probabilities are the same alone and among other photos (batched int8 would move them)."""
    int8 = RegionPredictor.from_pretrained(model_dir, device="cpu", precision="int8")
    photo = _photo(7)
    companions = [Image.fromarray(np.clip(np.asarray(_photo(20 + k)) * (k + 2.0), 0, 255).astype(np.uint8))
                  for k in range(5)]
    alone = int8.predict(photo).probabilities
    in_batch = int8.predict([photo, *companions], batch_size=6)[0].probabilities
    assert alone == in_batch
    # the model really is quantised (else this test would prove nothing): int8 differs from fp32
    fp32 = RegionPredictor.from_pretrained(model_dir, device="cpu", precision="fp32").predict(photo)
    assert fp32.probabilities != alone
    assert max(abs(fp32.probabilities[k] - alone[k]) for k in alone) < 0.05


# --- a broken model folder or output path is a one-line error before any photo runs --------

def _copy_model(model_dir: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(model_dir, dst)
    return dst


def _one_photo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir(exist_ok=True)
    _photo(50).save(folder / "a.png")
    return folder


@pytest.mark.parametrize("damage", ["truncated", "header", "empty"])
def test_predict_with_a_corrupt_weights_file_is_a_clear_error(tmp_path, model_dir, capsys, damage):
    bad = _copy_model(model_dir, tmp_path / "model")
    weights = bad / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) * 2 // 3], "header": b"\xff" * 64 + data[64:],
                         "empty": b""}[damage])
    out = tmp_path / "o.csv"
    rc = main(["predict", "--model", str(bad), "--images", str(_one_photo_folder(tmp_path)),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and str(weights) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob("o.csv*"))


def test_predict_with_nan_weights_is_a_clear_error(tmp_path, model_dir, capsys):
    """safetensors has no checksum: a damaged tensor can still parse; non-finite weights are caught."""
    from safetensors.torch import load_file, save_file

    bad = _copy_model(model_dir, tmp_path / "model")
    tensors = load_file(str(bad / "model.safetensors"))
    tensors["classifier.weight"][0, 0] = float("nan")
    save_file(tensors, str(bad / "model.safetensors"), metadata={"format": "pt"})
    rc = main(["predict", "--model", str(bad), "--images", str(_one_photo_folder(tmp_path)),
               "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "NaN" in err and str(bad) in err and not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("edit", ["fewer_labels", "more_labels", "num_labels_only", "gap_in_ids"])
def test_predict_with_a_config_that_disagrees_with_the_head_is_a_clear_error(tmp_path, model_dir, capsys,
                                                                            edit):
    import json

    bad = _copy_model(model_dir, tmp_path / "model")
    cfg = json.loads((bad / "config.json").read_text())
    if edit == "fewer_labels":
        cfg["id2label"] = {k: v for k, v in cfg["id2label"].items() if k != "11"}
        cfg["label2id"] = {v: int(k) for k, v in cfg["id2label"].items()}
    elif edit == "more_labels":
        cfg["id2label"]["12"] = "tail"
        cfg["label2id"]["tail"] = 12
    elif edit == "num_labels_only":
        cfg.pop("id2label")
        cfg.pop("label2id")
        cfg["num_labels"] = 5
    else:  # 12 labels, but ids 0..10 and 12: no label for output 11
        cfg["id2label"]["12"] = cfg["id2label"].pop("11")
    (bad / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "o.csv"
    rc = main(["predict", "--model", str(bad), "--images", str(_one_photo_folder(tmp_path)),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "config.json" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_predict_out_that_is_a_folder_fails_before_any_photo_runs(tmp_path, predictor, monkeypatch):
    from loscat_hf.errors import LoscatError

    folder = _one_photo_folder(tmp_path)
    counter = _counting_predictor(predictor, monkeypatch)
    taken = tmp_path / "results"
    taken.mkdir()
    with pytest.raises(LoscatError, match="results") as exc:
        predict_folder(predictor, folder, taken, progress=False)
    assert str(exc.value).startswith("out ") and "folder" in str(exc.value) and exc.value.params == ("out",)
    assert counter.batches == 0 and list(taken.iterdir()) == []
    assert not list(tmp_path.glob("*.partial"))


def test_predict_out_whose_parent_cannot_hold_it_fails_before_any_photo_runs(tmp_path, predictor,
                                                                            monkeypatch):
    from loscat_hf.errors import LoscatError

    folder = _one_photo_folder(tmp_path)
    counter = _counting_predictor(predictor, monkeypatch)
    a_file = tmp_path / "report.txt"
    a_file.write_text("x")
    with pytest.raises(LoscatError, match="report.txt"):
        predict_folder(predictor, folder, a_file / "sub" / "p.csv", progress=False)
    assert counter.batches == 0 and a_file.read_text() == "x"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_predict_out_in_a_read_only_folder_fails_before_any_photo_runs(tmp_path, predictor, monkeypatch):
    from loscat_hf.errors import LoscatError

    folder = _one_photo_folder(tmp_path)
    counter = _counting_predictor(predictor, monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(LoscatError, match="locked"):
            predict_folder(predictor, folder, locked / "p.csv", progress=False)
    finally:
        locked.chmod(0o755)
    assert counter.batches == 0


def test_predict_out_in_an_unwritable_folder_is_a_clear_error(tmp_path, predictor, monkeypatch):
    """The same check as above where the tests run as root: the folder answers os.access with False."""
    from loscat_hf.errors import LoscatError

    folder = _one_photo_folder(tmp_path)
    counter = _counting_predictor(predictor, monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access",
                        lambda p, mode, **kw: False if Path(p) == locked else real_access(p, mode))
    with pytest.raises(LoscatError, match="locked"):
        predict_folder(predictor, folder, locked / "p.csv", progress=False)
    assert counter.batches == 0 and list(locked.iterdir()) == []


# --- spreadsheet formula injection -------------------------------------------------------

def test_predictions_csv_neutralises_formulas_and_resume_still_finds_them(tmp_path, predictor, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = ["=HYPERLINK(1).png", "+cmd.png", "-x.png", "@SUM(A1).png", "plain.png"]
    for i, name in enumerate(names):
        _photo(60 + i).save(folder / name, format="PNG")
    out = tmp_path / "p.csv"
    _counting_predictor(predictor, monkeypatch, die_at_batch=3)
    with pytest.raises(KeyboardInterrupt):
        predict_folder(predictor, folder, out, batch_size=2, progress=False)
    partial = _read(tmp_path / "p.csv.partial")
    assert [r["image"] for r in partial] == ["'+cmd.png", "'-x.png", "'=HYPERLINK(1).png", "'@SUM(A1).png"]
    counter = _counting_predictor(predictor, monkeypatch)
    summary = predict_folder(predictor, folder, out, batch_size=2, resume=True, progress=False)
    assert counter.photos == 1 and summary.resumed == 4 and summary.total == 5  # nothing run twice
    rows = _read(out)
    assert [r["image"] for r in rows] == ["'+cmd.png", "'-x.png", "'=HYPERLINK(1).png", "'@SUM(A1).png",
                                          "plain.png"]
    assert all(not v.startswith(("=", "+", "-", "@")) for r in rows for v in r.values())
    assert all(float(r["probability"]) > 0 for r in rows)  # numbers stay numbers
    # and a finished output read back by --resume keeps every row, computing nothing
    counter = _counting_predictor(predictor, monkeypatch)
    predict_folder(predictor, folder, out, batch_size=2, resume=True, progress=False)
    assert counter.photos == 0 and [r["image"] for r in _read(out)] == [r["image"] for r in rows]


def test_photos_are_decoded_for_the_model_input_size_never_above_the_packing_size(tmp_path):
    """A camera JPEG decodes at the coarsest DCT scale that still covers the model's input, never larger than
    the size its training photos were packed at; a photo that would not be resampled at the packing size (a
    PNG, or a JPEG with no fitting scale) is not resampled now either; a folder without the record falls back
    to prepare's default packing size."""
    from transformers import AutoModelForImageClassification

    from loscat_hf.defaults import MAX_SIDE, SIZE_SLACK
    from loscat_hf.infer.predictor import RegionPredictor

    camera = tmp_path / "camera.jpg"
    Image.new("RGB", (2000, 1500), (120, 80, 60)).save(camera)
    plain = RegionPredictor.from_pretrained(save_tiny_model(tmp_path / "plain"))  # 64 px input, no record
    assert plain.decoding.max_side == MAX_SIDE and plain.image_size == 64
    assert plain.load(camera).size == (250, 188)  # 1/8 scale: covers 64 px, no resample
    small_png = tmp_path / "small.png"
    Image.new("RGB", (500, 400), (120, 80, 60)).save(small_png)
    assert plain.load(small_png).size == (500, 400)  # under the packing size: as packing would keep it
    # a model trained on 128 px packing: a large photo still comes out at most 128 px on the shorter side
    model = AutoModelForImageClassification.from_pretrained(
        save_tiny_model(tmp_path / "m128", loscat_max_side=128))
    big_input = RegionPredictor(model, image_size=160, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                backend="torch")
    assert big_input.decoding.max_side == 128
    assert (1 - SIZE_SLACK) * 128 <= min(big_input.load(camera).size) <= 128
