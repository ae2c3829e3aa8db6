"""model/folder.py: what a model folder records is read back under one name, from the object or the JSON."""

from __future__ import annotations

import json

import pytest
from conftest import save_tiny_model

from loscat_hf.defaults import MAX_SIDE
from loscat_hf.errors import LoscatError
from loscat_hf.model import folder as mf


def _recorded(tmp_path):
    """A tiny model folder with every record `train` and `convert-timm` write."""
    from loscat_hf.model.build import build_model_and_processor
    from loscat_hf.taxonomy import load_taxonomy

    model, processor = build_model_and_processor("tiny", load_taxonomy())
    mf.record_training(model.config, run={"task": "region"}, base_model={"kind": "scratch", "preset": "tiny"},
                       max_side=128)
    mf.record_temperature(model.config, 1.7)
    mf.record_source(model.config, {"checkpoint": "org/repo/x.pt", "hub": True, "study": False})
    mf.record_best_checkpoint(model.config, "checkpoint-3")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    return tmp_path


def test_read_model_folder_returns_every_record_under_one_name(tmp_path):
    record = mf.read_model_folder(_recorded(tmp_path))
    assert record.decoding == mf.Decoding(max_side=128, image_size=64, resample=record.decoding.resample)
    assert record.temperature == pytest.approx(1.7) and record.run == {"task": "region"} and record.fine_tuned
    assert record.base_model == {"kind": "scratch", "preset": "tiny"} and record.preset == "tiny"
    assert record.source["checkpoint"] == "org/repo/x.pt" and record.components == ()
    assert len(record.labels) == 12 and len(record.image_mean) == 3
    # the parsed config.json answers the same through the accessors (the card and --resume read JSON)
    config = json.loads((tmp_path / "config.json").read_text())
    assert mf.max_side(config) == 128 and mf.temperature(config) == pytest.approx(1.7)
    assert mf.run_record(config) == record.run and mf.source(config) == record.source
    assert config[mf.BEST_CHECKPOINT_KEY] == "checkpoint-3"


def test_the_record_survives_json(tmp_path):
    """The ONNX cache keeps the record as JSON beside a graph: it must come back equal."""
    record = mf.read_model_folder(_recorded(tmp_path))
    kept = record.to_dict()
    assert json.loads(json.dumps(kept)) == kept  # JSON types only: a record read back compares equal
    assert str(tmp_path) not in json.dumps(kept)  # no local path in the cache
    assert mf.ModelFolder.from_dict(json.loads(json.dumps(kept)), name=record.name) == record


def test_a_folder_without_records_gets_the_documented_defaults(tmp_path, caplog):
    model = save_tiny_model(tmp_path / "m")
    (model / "preprocessor_config.json").unlink()
    record = mf.read_model_folder(model)
    assert record.decoding.max_side == MAX_SIDE and record.temperature == 1.0 and not record.fine_tuned
    assert record.image_mean == (0.5, 0.5, 0.5) and "no image processor" in caplog.text
    assert (mf.temperature({mf.TEMPERATURE_KEY: "nan"}) == 1.0
            and mf.temperature({mf.TEMPERATURE_KEY: -2}) == 1.0)
    with pytest.raises(LoscatError, match="preprocessor_config.json"):  # evaluation never guesses
        mf.read_model_folder(model, require_processor=True)


def test_bad_folders_are_one_line_errors(tmp_path):
    with pytest.raises(LoscatError, match="no such folder"):
        mf.read_model_folder(tmp_path / "missing")
    model = save_tiny_model(tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    config["id2label"] = {"0": "head", "1": "head"}
    config["label2id"] = {"head": 0}
    config["num_labels"] = 2
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(LoscatError, match="id2label"):
        mf.read_model_folder(model)


def test_training_records_packed_decoding_over_an_inherited_full_one():
    """A model fine-tuned from the converted study checkpoint saw packed photos: its inherited FULL decoding
    record must not survive `train`, or prediction would decode unlike its training."""
    from transformers import ViTConfig

    config = ViTConfig()
    mf.record_decoding(config, mf.FULL)
    assert mf.decoding_mode(config) == mf.FULL
    mf.record_training(config, run={"task": "region"}, base_model={"kind": "converted"}, max_side=256)
    assert mf.decoding_mode(config) == mf.PACKED and mf.max_side(config) == 256
    assert mf.decoding_mode({}) == mf.PACKED and mf.decoding_mode({mf.DECODING_KEY: "other"}) == mf.PACKED
    with pytest.raises(ValueError):
        mf.record_decoding(config, "bicubic")


def test_calibrated_means_a_temperature_was_fitted_and_says_how(tmp_path):
    assert not mf.calibrated({}) and mf.calibration({}) is None
    assert not mf.calibrated({mf.TEMPERATURE_KEY: "nan"}) and not mf.calibrated({mf.TEMPERATURE_KEY: -1})
    assert mf.calibrated({mf.TEMPERATURE_KEY: 1.0})  # a fitted 1.0 is still fitted
    model = save_tiny_model(tmp_path / "m")
    record = mf.read_model_folder(model)
    assert not record.calibrated and record.calibration is None and record.data is None
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model)
    mf.record_temperature(config, 1.4, by="calibrate", split="validation", n=40, ece_before=0.2,
                          ece_after=0.05)
    mf.record_data(config, kind="synthetic", photos=120)
    config.save_pretrained(model)
    record = mf.read_model_folder(model)
    assert record.calibrated and record.temperature == pytest.approx(1.4)
    assert record.calibration == {"by": "calibrate", "split": "validation", "n": 40, "ece_before": 0.2,
                                  "ece_after": 0.05}
    assert record.data == {"kind": "synthetic", "photos": 120}
    assert mf.ModelFolder.from_dict(record.to_dict(), name=record.name) == record


def test_a_checkpoint_converted_before_the_decoding_record_decodes_full():
    converted = {mf.SOURCE_KEY: {"arch": "vit_base_patch16_384", "study": True}}
    assert mf.decoding_mode(converted) == mf.FULL
    assert mf.decoding_mode({**converted, mf.RUN_KEY: {"task": "region"}}) == mf.PACKED  # fine-tuned since


def test_training_drops_a_temperature_inherited_from_the_base_model():
    """Fine-tuning from a calibrated folder: the base's temperature was fitted for other weights, so the
    checkpoints `train` saves are uncalibrated until it fits its own."""
    from transformers import ViTConfig

    config = ViTConfig()
    mf.record_temperature(config, 1.9, by="calibrate", split="validation", n=80)
    mf.record_training(config, run={"task": "region"}, base_model={"kind": "folder"}, max_side=256)
    assert not mf.calibrated(config) and mf.calibration(config) is None and mf.temperature(config) == 1.0
    assert mf.TEMPERATURE_KEY not in config.to_dict()


def test_only_a_hub_reference_recorded_as_one_is_shown():
    shown = {"checkpoint": "org/repo/best.pt", "hub": True}
    assert mf.source({mf.SOURCE_KEY: shown})["checkpoint"] == "org/repo/best.pt"
    for hidden in ("/home/jane_doe/x.pt", "~/jane/x.pt", "../jane/x.pt", "jane_doe.pt", "a/../b/c.pt"):
        record = {mf.SOURCE_KEY: {"checkpoint": hidden, "hub": True}}
        assert mf.source(record)["checkpoint"] == mf.LOCAL_CHECKPOINT and not mf.source_is_public(record)
