"""`loscat-hf calibrate`: a temperature fitted on the clinic's own labelled photos, reported (ECE, review
flags) and recorded in config.json with how it was fitted; bad input is one line, exit 2, nothing written."""

import hashlib
import json

import numpy as np
import pytest
from conftest import save_tiny_model, write_imagefolder

from loscat_hf.cli import main
from loscat_hf.errors import LoscatError
from loscat_hf.evaluation.calibrate import MIN_PHOTOS, calibrate

PLANTED = "Jane_Doe_MRN123456"


@pytest.fixture(scope="module")
def clinic_dataset(tmp_path_factory):
    """A packed dataset under a folder named after a patient: 60 validation photos (5 per class)."""
    root = tmp_path_factory.mktemp("data") / PLANTED
    return write_imagefolder(root, {"train": [2] * 12, "validation": [5] * 12}, seed=1)


def _overconfident_model(d):
    """A tiny random model whose logits are scaled up: confidently wrong, as an uncalibrated checkpoint is."""
    import torch
    from transformers import AutoModelForImageClassification

    save_tiny_model(d)
    model = AutoModelForImageClassification.from_pretrained(d)
    with torch.no_grad():
        model.classifier.weight.mul_(200.0)
        model.classifier.bias.mul_(200.0)
    model.save_pretrained(d)
    return d


@pytest.fixture()
def model(tmp_path_factory):
    return _overconfident_model(tmp_path_factory.mktemp("model") / "m")


def _files(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def test_calibrate_fits_reports_and_records_how(model, clinic_dataset):
    from loscat_hf.model.folder import read_model_folder

    before = _files(model)
    assert not read_model_folder(model).calibrated
    result = calibrate(str(model), str(clinic_dataset), split="validation")
    assert result.n == 60 and result.split == "validation" and result.temperature_before == 1.0
    assert result.temperature > 1.5  # the scaled-up logits were over-confident
    assert result.ece_after < result.ece_before
    # only config.json changed: the weights and the processor are untouched, no temp file is left
    after = _files(model)
    assert set(after) == set(before) and after["model.safetensors"] == before["model.safetensors"]
    assert [k for k in after if after[k] != before[k]] == ["config.json"]
    record = read_model_folder(model)
    assert record.calibrated and record.temperature == pytest.approx(result.temperature)
    assert record.calibration == {"by": "calibrate", "split": "validation", "n": 60,
                                  "ece_before": result.ece_before, "ece_after": result.ece_after,
                                  "temperature_before": 1.0}
    text = (model / "config.json").read_text()
    assert PLANTED not in text and str(clinic_dataset) not in text
    # every other key as it was
    old = json.loads(text)
    assert old["id2label"]["0"] == "head" and old["model_type"] == "vit"
    # the review thresholds' effect: raw over-confident probabilities flag fewer photos than calibrated ones
    assert result.review_before["flagged"] < result.review_after["flagged"]
    for review in (result.review_before, result.review_after):
        assert 0 <= review["flagged"] <= 60
    lines = result.summary().splitlines()
    assert "calibrated on 60 labelled photos of the validation split" in lines[0] and "ECE" in lines[0]
    assert f"before {result.review_before['flagged']} of 60 flagged" in lines[1]


def test_recalibration_starts_from_the_recorded_temperature(model, clinic_dataset):
    first = calibrate(str(model), str(clinic_dataset))
    second = calibrate(str(model), str(clinic_dataset))
    assert second.temperature_before == pytest.approx(first.temperature, rel=1e-5)
    assert second.ece_before == pytest.approx(first.ece_after, abs=1e-4)


def test_review_rule_is_predicts_rule():
    """calibrate counts the photos `predict` and the Space would flag, at their default thresholds."""
    import inspect

    from loscat_hf.infer.answers import PredictorSettings, to_predictions
    from loscat_hf.model.calibration import apply_temperature, needs_review

    params = inspect.signature(calibrate).parameters
    settings = PredictorSettings.of()
    assert (params["min_confidence"].default, params["min_margin"].default) == (settings.min_confidence,
                                                                                settings.min_margin)
    logits = np.random.default_rng(0).normal(0, 2, (500, 12))
    labels = [str(i) for i in range(12)]
    for t, conf, margin in ((1.0, 0.5, 0.1), (3.0, 0.3, 0.05), (0.5, 0.9, 0.2)):
        flags = [p.needs_review for p in to_predictions(logits, labels, t, conf, margin)]
        assert needs_review(apply_temperature(logits, t), conf, margin).tolist() == flags
        assert 0 < sum(flags) < len(flags)


def test_cli_prints_the_effect(model, clinic_dataset, capsys):
    assert main(["calibrate", "--model", str(model), "--dataset", str(clinic_dataset)]) == 0
    out = capsys.readouterr().out
    assert "calibrated on 60 labelled photos" in out
    assert "needs review (top-1 below 0.5 or top two within 0.1)" in out
    assert main(["calibrate", "--model", str(model), "--dataset", str(clinic_dataset),
                 "--min-confidence", "0.7", "--min-margin", "0.2"]) == 0  # predict's own thresholds
    assert "needs review (top-1 below 0.7 or top two within 0.2)" in capsys.readouterr().out


def _refused(argv, capsys, model):
    before = _files(model)
    capsys.readouterr()
    assert main(["calibrate", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loscat-hf: error: ") and err.count("\n") == 1, err
    assert _files(model) == before  # nothing written
    return err


def test_bad_input_is_one_line_and_writes_nothing(model, clinic_dataset, tiny_dataset, tmp_path, capsys):
    ds = str(clinic_dataset)
    err = _refused(["--model", str(tmp_path / "nowhere"), "--dataset", ds], capsys, model)
    assert "--model" in err and "no such folder" in err
    err = _refused(["--model", "org/model", "--dataset", ds], capsys, model)  # a Hub id: nothing to write to
    assert "no such folder" in err
    err = _refused(["--model", str(model), "--dataset", str(tmp_path / "nodata")], capsys, model)
    assert err.startswith("loscat-hf: error: --dataset") and "no such folder" in err
    err = _refused(["--model", str(model), "--dataset", ds, "--split", "test"], capsys, model)
    assert "no split 'test'" in err
    # 36 validation photos: too few to fit on
    err = _refused(["--model", str(model), "--dataset", str(tiny_dataset)], capsys, model)
    assert f"has 36 labelled photos; calibrate needs at least {MIN_PHOTOS}" in err and "(--split)" in err
    # a model of other classes than the dataset's
    other = save_tiny_model(tmp_path / "other", id2label={i: f"class{i}" for i in range(12)},
                            label2id={f"class{i}": i for i in range(12)})
    err = _refused(["--model", str(other), "--dataset", ds], capsys, other)
    assert "not the dataset's classes" in err
    # a read-only model folder: refused before the pass over the photos, not after it (os.access is asked,
    # as the tests may run as root, who may write anywhere)
    import os

    real_access = os.access
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "access", lambda path, mode: mode != os.W_OK and real_access(path, mode))
        mp.setattr("loscat_hf.evaluation.split_eval.split_outputs", _never)
        err = _refused(["--model", str(model), "--dataset", ds], capsys, model)
    assert "cannot write its config.json" in err


def _never(*args, **kwargs):
    raise AssertionError("the photos ran before the model folder was found read-only")


def test_calibrate_api_errors_name_parameters(tmp_path, clinic_dataset):
    with pytest.raises(LoscatError, match="^model .*no such folder") as caught:
        calibrate(str(tmp_path / "missing"), str(clinic_dataset))
    assert caught.value.params == ("model",)


def test_card_says_whether_and_how_the_model_is_calibrated(model, clinic_dataset):
    from loscat_hf.model.card import model_card

    text = model_card(model, "org/x").text
    assert "**Not calibrated.**" in text and "loscat-hf calibrate --model" in text
    calibrate(str(model), str(clinic_dataset))
    text = model_card(model, "org/x").text
    assert "**Not calibrated.**" not in text
    assert "fitted by `loscat-hf calibrate` on 60 labelled photos of the validation split" in text
    assert "expected calibration error" in text
    # a config.json is not trusted: planted values in the record do not reach the card
    config = json.loads((model / "config.json").read_text())
    config["loscat_calibration"] = {"by": PLANTED, "split": f"/home/{PLANTED}", "n": 60,
                                    "ece_before": "x", "ece_after": 0.1}
    (model / "config.json").write_text(json.dumps(config))
    text = model_card(model, "org/x").text
    assert PLANTED not in text and "on 60 labelled photos" in text


def test_calibrating_on_the_test_split_warns_that_test_metrics_are_then_biased(model, tmp_path, caplog):
    data = write_imagefolder(tmp_path / "d", {"train": [2] * 12, "validation": [5] * 12, "test": [5] * 12},
                             seed=2)
    calibrate(str(model), str(data), split="validation")
    assert "test split" not in caplog.text
    calibrate(str(model), str(data), split="test")
    assert "calibrating on the test split" in caplog.text


def test_a_whole_photo_model_is_warned_that_packed_photos_are_not_its_inputs(model, clinic_dataset, caplog):
    from loscat_hf.model.folder import DECODING_KEY, FULL

    calibrate(str(model), str(clinic_dataset))
    assert "decodes whole photos" not in caplog.text
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, DECODING_KEY: FULL}))
    calibrate(str(model), str(clinic_dataset))
    assert "decodes whole photos" in caplog.text
