"""`predict --resume` keeps only rows that this model and these settings wrote, each still a possible answer;
a file name that is not UTF-8 still gets its row; the summary says when the model is uncalibrated."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image

from loscat_hf.cli import main
from loscat_hf.errors import LoscatError
from loscat_hf.infer.folder import predict_folder


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(5):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(folder / f"p{k}.png")
    return folder


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_resume_refuses_rows_of_another_model_or_other_settings(tmp_path, photos, model_dir, capsys):
    out = tmp_path / "out" / "predictions.csv"
    args = ["predict", "--model", str(model_dir), "--images", str(photos), "--out", str(out),
            "--num-workers", "0", "--backend", "torch"]
    assert main(args) == 0
    before = _files(out.parent)
    other = save_tiny_model(tmp_path / "other", seed=9)  # same labels and config, other weights
    refused = {
        "model": (["--model", str(other)], "the model's weights"),
        "tta": (["--tta"], "tta False then, True now"),
        "threshold": (["--min-confidence", "0.9"], "min_confidence 0.5 then, 0.9 now"),
    }
    for flags, reason in refused.values():
        capsys.readouterr()
        assert main([*args, "--resume", *flags]) == 2
        err = capsys.readouterr().err
        (line,) = [line for line in err.splitlines() if line.startswith("loscat-hf: error:")]  # one line
        assert reason in line and "another model or with other settings" in line and "--resume" in line
        assert "Traceback" not in err
        assert _files(out.parent) == before  # nothing written, nothing left behind
    assert main([*args, "--resume"]) == 0  # same model, same settings: every row kept
    assert "5 rows kept from an earlier run" in capsys.readouterr().out


def test_resume_refuses_an_output_without_a_record_or_changed_since(tmp_path, photos, predictor):
    out = tmp_path / "predictions.csv"
    predict_folder(predictor, photos, out, progress=False)
    record = out.with_name("predictions.csv.run.json")
    assert record.stat().st_mode & 0o777 == 0o600  # it names the model folder: private like the output
    text = out.read_text()
    out.write_text(text.replace("p0.png", "p1.png", 1))  # edited by hand (or by another program)
    with pytest.raises(LoscatError, match="changed since loscat-hf wrote it"):
        predict_folder(predictor, photos, out, resume=True, progress=False)
    out.write_text(text)
    record.unlink()  # an output from before run records, or moved without its record
    with pytest.raises(LoscatError, match="has no record of the model and settings"):
        predict_folder(predictor, photos, out, resume=True, progress=False)


@pytest.mark.parametrize(("column", "value", "problem"), [
    ("region", "spleen", "region 'spleen' is not one of the model's labels"),
    ("probability", "7", "probability '7' is not a number from 0 to 1"),
    ("top2_prob", "nan", "top2_prob 'nan' is not a number from 0 to 1"),
    ("image", "../outside.png", "'../outside.png' is not a file of this input"),
    ("image", "gone.png", "'gone.png' is not a file of this input"),
    ("status", "fine", "status 'fine' is not ok nor one of"),
    ("needs_review", "maybe", "needs_review 'maybe' is neither true nor false"),
])
def test_resume_refuses_a_row_that_is_not_a_possible_answer_by_its_row_number(tmp_path, photos, predictor,
                                                                            column, value, problem):
    out = tmp_path / "predictions.csv"
    predict_folder(predictor, photos, out, progress=False)
    rows = _read(out)
    rows[2][column] = value  # row 4 as a spreadsheet numbers it
    if column == "probability":
        rows[2]["top1_prob"] = value
    partial = tmp_path / "predictions.csv.partial"  # as a killed run leaves it
    _write(partial, rows)
    before = _files(tmp_path)
    with pytest.raises(LoscatError, match="resume") as caught:
        predict_folder(predictor, photos, out, resume=True, progress=False)
    assert f"{partial}, row 4: {problem}" in str(caught.value)
    assert _files(tmp_path) == before


def test_resume_refuses_an_edited_review_flag_or_top_k_order(tmp_path, photos, predictor):
    """Rows that this model's probabilities could not have given: a flipped needs_review, top-k out of
    order."""
    out = tmp_path / "predictions.csv"
    predict_folder(predictor, photos, out, progress=False)
    rows = _read(out)
    ok = next(i for i, r in enumerate(rows) if r["status"] == "ok"
              and abs(float(r["top1_prob"]) - predictor.min_confidence) > 0.01
              and abs(float(r["top1_prob"]) - float(r["top2_prob"]) - predictor.min_margin) > 0.01)
    partial = tmp_path / "predictions.csv.partial"
    for edit, problem in (({"needs_review": {"true": "false", "false": "true"}[rows[ok]["needs_review"]]},
                           "does not follow from top1_prob"),
                          ({"top3_prob": "0.9999", "top3": rows[ok]["top3"]}, "not in descending order")):
        edited = [dict(r) for r in rows]
        edited[ok].update(edit)
        _write(partial, edited)
        with pytest.raises(LoscatError, match="resume") as caught:
            predict_folder(predictor, photos, out, resume=True, progress=False)
        assert f"row {ok + 2}: " in str(caught.value) and problem in str(caught.value)


def test_a_fresh_run_over_an_old_output_never_resumes_the_old_rows(tmp_path, photos, predictor, monkeypatch):
    """Run 1 finished; run 2 (other settings, no resume) is killed: the old output is still there, but its
    rows are run 1's. Resuming run 2 keeps only run 2's rows and recomputes the rest."""
    out = tmp_path / "predictions.csv"
    predict_folder(predictor, photos, out, progress=False)
    fresh_tta = predict_folder(predictor, photos, tmp_path / "tta.csv", tta=True, progress=False)
    assert fresh_tta.total == 5
    calls = {"n": 0}
    real = predictor.logits

    def dies_at_second_batch(pixels, tta=False):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(pixels, tta=tta)

    monkeypatch.setattr(predictor, "logits", dies_at_second_batch)
    with pytest.raises(KeyboardInterrupt):
        predict_folder(predictor, photos, out, tta=True, batch_size=2, progress=False)
    monkeypatch.setattr(predictor, "logits", real)
    summary = predict_folder(predictor, photos, out, tta=True, batch_size=2, resume=True, progress=False)
    assert summary.resumed == 2  # the killed run's own batch, not the 5 rows of the old output
    assert _read(out) == _read(tmp_path / "tta.csv")


def test_a_file_name_that_is_not_utf8_gets_its_row(tmp_path, model_dir, capsys):
    """Linux allows any bytes in a name; the CSV is UTF-8. The photo is predicted like the others and named
    with its odd bytes as \\xNN (it used to crash the run, leaving the partial file)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(photos / "plain.png")
    odd = os.path.join(os.fsencode(photos), b"caf\xe9 \xff.png")  # Latin-1 bytes from an old archive
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(odd, format="PNG")
    out = tmp_path / "predictions.csv"
    args = ["predict", "--model", str(model_dir), "--images", str(photos), "--out", str(out),
            "--num-workers", "0", "--backend", "torch"]
    assert main(args) == 0
    rows = {r["image"]: r for r in _read(out)}
    assert set(rows) == {"plain.png", "caf\\xe9 \\xff.png"}
    assert rows["caf\\xe9 \\xff.png"]["status"] == "ok" and rows["caf\\xe9 \\xff.png"]["region"]
    assert not out.with_name("predictions.csv.partial").exists()
    assert main([*args, "--resume"]) == 0  # the escaped name is found again: nothing recomputed
    assert "2 rows kept from an earlier run" in capsys.readouterr().out


def test_the_summary_says_when_the_model_is_uncalibrated(tmp_path, photos, model_dir):
    from transformers import AutoConfig

    from loscat_hf.model.folder import record_temperature

    raw = predict_folder(str(model_dir), photos, tmp_path / "raw.csv", backend="torch", progress=False)
    assert not raw.calibrated
    assert ("The model is uncalibrated (no temperature fitted on labelled photos): its probabilities and the "
            f"review flags are not calibrated; run `loscat-hf calibrate --model {model_dir} --dataset") \
        in str(raw)
    fitted = save_tiny_model(tmp_path / "fitted", seed=3)
    config = AutoConfig.from_pretrained(fitted)
    record_temperature(config, 1.7, by="test", split="validation", n=36)
    config.save_pretrained(fitted)
    summary = predict_folder(str(fitted), photos, tmp_path / "fitted.csv", backend="torch", progress=False)
    assert summary.calibrated and "uncalibrated" not in str(summary)


def test_two_names_that_read_the_same_once_escaped_are_refused(tmp_path):
    from loscat_hf.infer.folder import list_inputs

    (tmp_path / "\\xff.png").write_bytes(b"x")  # a name with a literal backslash
    with open(os.path.join(os.fsencode(tmp_path), b"\xff.png"), "wb") as fh:
        fh.write(b"x")
    with pytest.raises(LoscatError, match=r"two files are both named '\\\\xff.png'"):
        list_inputs(tmp_path)
