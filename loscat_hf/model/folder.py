"""The model folder: what loscat-hf records in a saved model's config.json, and the one way it is read back.

A model folder is what `save_pretrained` writes; plain transformers loads it and ignores the `loscat_*`
attributes below. This module owns them: writers set them through the `record_*` functions, readers get a
`ModelFolder` (`read_model_folder`, `folder_from_config`) or use the accessors, which take a config object or
the parsed config.json alike. One fact, one name:

| attribute | field | what |
|---|---|---|
| loscat_temperature | temperature | calibration temperature fitted on labelled photos (1.0 when absent) |
| loscat_calibration | calibration | how that temperature was fitted: by, split, n, ece_before, ece_after |
| loscat_max_side | decoding.max_side | `--max-side` the training data was packed at: photos decode at it |
| loscat_decoding | decoding.mode | "packed" (as packing does, then resize) or "full" (`convert-timm`) |
| loscat_data | data | what the model was last trained on: kind (synthetic, clinical, ...) and photos |
| loscat_run | run | dataset fingerprint, taxonomy and task (`train --resume` checks it) |
| loscat_base_model | base_model | where training started: Hub id, preset or folder record, never a path |
| loscat_preset | preset | the preset a model was built from scratch with |
| loscat_source | source | where converted weights came from (`convert-timm`) |
| loscat_score_components | components | the LoSCAT score components the score heads predict |
| loscat_best_checkpoint | - | the checkpoint folder the saved weights were restored from |
| loscat_thresholds | thresholds | a multi-region model's per-class thresholds, and how they were fitted |

A multi-region model has transformers' own `problem_type` "multi_label_classification" (sigmoid scores, one
per class; `pipeline` reads it) and `loscat_thresholds`: a class is shown when its score passes its threshold.

`preprocessor_config.json` gives the input size, mean, std and resample filter (processor.py reads it).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loscat_hf.data.dataset import MULTI_LABEL  # transformers' problem_type of a multi-region model
from loscat_hf.defaults import MAX_SIDE
from loscat_hf.errors import LoscatError
from loscat_hf.model.processor import BILINEAR, processor_stats

logger = logging.getLogger(__name__)

TEMPERATURE_KEY = "loscat_temperature"
CALIBRATION_KEY = "loscat_calibration"
MAX_SIDE_KEY = "loscat_max_side"
DECODING_KEY = "loscat_decoding"
DATA_KEY = "loscat_data"
RUN_KEY = "loscat_run"
BASE_KEY = "loscat_base_model"
PRESET_KEY = "loscat_preset"
SOURCE_KEY = "loscat_source"
SCORE_KEY = "loscat_score_components"
BEST_CHECKPOINT_KEY = "loscat_best_checkpoint"
THRESHOLDS_KEY = "loscat_thresholds"
KEYS = (TEMPERATURE_KEY, CALIBRATION_KEY, MAX_SIDE_KEY, DECODING_KEY, DATA_KEY, RUN_KEY, BASE_KEY,
        PRESET_KEY, SOURCE_KEY, SCORE_KEY, BEST_CHECKPOINT_KEY, THRESHOLDS_KEY)
PACKED = "packed"  # decode as packing does (shorter side <= max_side), then squash to the input size
FULL = "full"  # decode the whole photo, one squash-resize to the input size (the study's inference script)
DECODING_MODES = (PACKED, FULL)


@dataclass(frozen=True)
class Decoding:
    """How a photo becomes model input, as in training. `mode` PACKED: decoded with its shorter side at most
    `max_side` (the size the training data was packed at), then squashed to `image_size` with the `resample`
    filter. FULL: the whole photo decoded and squashed once (`max_side` unused), as the study's script
    does."""

    max_side: int
    image_size: int
    resample: int = BILINEAR
    mode: str = PACKED


@dataclass(frozen=True)
class ModelFolder:
    """Everything prediction, evaluation and the cards read from a model folder, each under one name."""

    name: str
    labels: tuple[str, ...]
    decoding: Decoding
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    temperature: float = 1.0
    components: tuple[str, ...] = ()
    source: dict = field(default_factory=dict)
    base_model: dict | None = None
    run: dict | None = None
    preset: str | None = None
    calibration: dict | None = None
    calibrated: bool = False
    data: dict | None = None
    problem_type: str | None = None  # transformers' config.problem_type
    thresholds: tuple[float, ...] = ()  # a multi-region model's, one per label (`threshold_record`)
    threshold_record: dict | None = None  # how the thresholds were fitted: by, split, n, rule

    @property
    def image_size(self) -> int:
        return self.decoding.image_size

    @property
    def multi_label(self) -> bool:
        """Sigmoid scores, one per class, each compared with its threshold: a photo may show several."""
        return self.problem_type == MULTI_LABEL

    @property
    def fine_tuned(self) -> bool:
        """Trained by loscat-hf (`train` records its run in every model it saves)."""
        return bool(self.run)

    def to_dict(self) -> dict:
        """What the ONNX cache keeps beside a graph, to predict without loading the model: JSON types only
        (lists, not tuples: a record read back compares equal), and no `name` (an entry is keyed by the
        files' contents, so the same weights in another folder share it; a local path stays out of it)."""
        return json.loads(json.dumps({k: v for k, v in asdict(self).items() if k != "name"}))

    @classmethod
    def from_dict(cls, data: Mapping, name: str = "") -> ModelFolder:
        values = {**dict(data), "name": str(name)}
        values["decoding"] = Decoding(**values["decoding"])
        for key in ("labels", "image_mean", "image_std", "components", "thresholds"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)


CONFIG_NAME = "config.json"


def config_json(folder: str | os.PathLike) -> dict:
    """A local model folder's config.json as a dict, without transformers (the card, `--resume` and the run
    record read it so); OSError or ValueError when it is missing or not JSON."""
    return json.loads((Path(folder) / CONFIG_NAME).read_text(encoding="utf-8"))


def _get(config: Any, key: str) -> Any:
    return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)


def temperature(config: Any) -> float:
    """The calibration temperature saved with a model, 1.0 when absent or invalid."""
    try:
        t = float(_get(config, TEMPERATURE_KEY) or 1.0)
    except (TypeError, ValueError):
        return 1.0
    return t if math.isfinite(t) and t > 0 else 1.0


def calibrated(config: Any) -> bool:
    """A temperature was fitted on labelled photos (by `train` on validation, or by `calibrate`); a converted
    or foreign checkpoint's probabilities are raw softmax."""
    value = _get(config, TEMPERATURE_KEY)
    try:
        return value is not None and math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False


def calibration(config: Any) -> dict | None:
    """How the temperature was fitted (by, split, n, ece_before, ece_after); None when not recorded."""
    value = _get(config, CALIBRATION_KEY)
    return dict(value) if isinstance(value, Mapping) else None


def decoding_mode(config: Any) -> str:
    """As recorded; without a record, FULL for converted weights loscat-hf never trained (converted before
    the record existed: the study's script decodes so), else PACKED."""
    value = _get(config, DECODING_KEY)
    if value in DECODING_MODES:
        return value
    return FULL if source(config) and not run_record(config) and value is None else PACKED


def data_record(config: Any) -> dict | None:
    """What the model was last trained on ({"kind": "synthetic"|"mixed"|"clinical", "photos": n}); None for
    a model loscat-hf did not train."""
    value = _get(config, DATA_KEY)
    return dict(value) if isinstance(value, Mapping) else None


def max_side(config: Any) -> int:
    """The packing size training saw (`defaults.MAX_SIDE` for a folder without the record: another
    trainer)."""
    try:
        return int(_get(config, MAX_SIDE_KEY) or MAX_SIDE)
    except (TypeError, ValueError):
        return MAX_SIDE


def score_components(config: Any) -> tuple[str, ...]:
    """The score components a `--task scores` model predicts; () for a region-only model."""
    return tuple(_get(config, SCORE_KEY) or ())


LOCAL_CHECKPOINT = "local file"  # what `convert-timm` records of a local checkpoint: never its name
_HUB_FILE = re.compile(r"[\w-][\w.-]*/[\w-][\w.-]*(/[\w-][\w.-]*)+")  # ORG/REPO/PATH, no path-like start


def _public_checkpoint(value: Mapping) -> bool:
    """The recorded checkpoint may be shown: a local file by that phrase only, or a Hub reference recorded
    as one (older conversions recorded a local file's path, which may name a patient)."""
    from loscat_hf.model.study import STUDY_WEIGHTS_REPO

    checkpoint = value.get("checkpoint")
    if checkpoint is None or checkpoint == LOCAL_CHECKPOINT:
        return True
    hub_ref = isinstance(checkpoint, str) and _HUB_FILE.fullmatch(checkpoint) is not None
    return hub_ref and (value.get("hub") is True or checkpoint.startswith(STUDY_WEIGHTS_REPO + "/"))


def source(config: Any) -> dict:
    """Where converted weights came from ({} for weights loscat-hf did not convert). A checkpoint name that
    is not known to be public reads as LOCAL_CHECKPOINT: cards and the Space show only this."""
    value = _get(config, SOURCE_KEY)
    if not isinstance(value, Mapping):
        return {}
    return dict(value) if _public_checkpoint(value) else {**value, "checkpoint": LOCAL_CHECKPOINT}


def source_is_public(config: Any) -> bool:
    """config.json itself (as `push` uploads it) names no local checkpoint."""
    value = _get(config, SOURCE_KEY)
    return not isinstance(value, Mapping) or _public_checkpoint(value)


def run_record(config: Any) -> dict | None:
    value = _get(config, RUN_KEY)
    return dict(value) if isinstance(value, Mapping) else None


def base_record(config: Any) -> dict | None:
    value = _get(config, BASE_KEY)
    return dict(value) if isinstance(value, Mapping) else None


def thresholds(config: Any) -> dict | None:
    """The per-class thresholds record ({"values": {class: t}, "by", "split", "n", "rule"}), or None."""
    value = _get(config, THRESHOLDS_KEY)
    return dict(value) if isinstance(value, Mapping) and isinstance(value.get("values"), Mapping) else None


def threshold_values(config: Any, labels) -> tuple[float, ...]:
    """The thresholds in label order; 0.5 (the sigmoid's midpoint) for a multi-label model without a record
    (or a class it lacks), () for a single-label model."""
    if _get(config, "problem_type") != MULTI_LABEL:
        return ()
    values = (thresholds(config) or {}).get("values", {})
    out = []
    for label in labels:
        value = values.get(label)
        out.append(float(value) if isinstance(value, (int, float)) and 0.0 < value < 1.0 else 0.5)
    return tuple(out)


def record_thresholds(config: Any, values: Mapping[str, float], **how: Any) -> None:
    """A multi-region model's per-class thresholds (each in (0, 1)) and how they were fitted (`how`: JSON)."""
    bad = {k: v for k, v in values.items() if not 0.0 < float(v) < 1.0}
    if bad:
        raise ValueError(f"thresholds must lie in (0, 1): {bad}")
    _set(config, THRESHOLDS_KEY, {"values": {k: float(v) for k, v in values.items()}, **how})


def preset(config: Any) -> str | None:
    return _get(config, PRESET_KEY)


def _set(config: Any, key: str, value: Any) -> None:
    """Writers take a config object or the parsed config.json (`calibrate`, `push`'s public copy)."""
    if isinstance(config, dict):
        config[key] = value
    else:
        setattr(config, key, value)


def record_temperature(config: Any, value: float, **how: Any) -> None:
    """The fitted temperature, and how it was fitted (`how`: by, split, n, ece_before, ece_after; JSON
    values)."""
    _set(config, TEMPERATURE_KEY, float(value))
    _set(config, CALIBRATION_KEY, dict(how) or None)


def record_decoding(config: Any, mode: str, max_side: int | None = None) -> None:
    if mode not in DECODING_MODES:
        raise ValueError(f"decoding mode {mode!r} is not one of {DECODING_MODES}")
    _set(config, DECODING_KEY, mode)
    if max_side:
        _set(config, MAX_SIDE_KEY, int(max_side))


def record_data(config: Any, *, kind: str, photos: int | None) -> None:
    _set(config, DATA_KEY, {"kind": str(kind), "photos": None if photos is None else int(photos)})


def record_training(config: Any, *, run: dict, base_model: dict, max_side: int | None) -> None:
    """What `train` writes into every checkpoint it saves: its run, where it started, the packing size (and
    PACKED decoding: a converted study checkpoint's FULL record is not what this training saw); a temperature
    inherited from the base model is dropped."""
    record_run(config, run, base_model)
    record_decoding(config, PACKED, max_side)
    # a calibrated base model's temperature (or thresholds) is not these weights': until `train` fits its own
    for key in (TEMPERATURE_KEY, CALIBRATION_KEY, THRESHOLDS_KEY):
        if hasattr(config, key):
            delattr(config, key)


def record_run(config: Any, run: dict | None, base_model: dict | None) -> None:
    _set(config, RUN_KEY, run)
    _set(config, BASE_KEY, base_model)


def best_checkpoint(config: Any) -> str | None:
    return _get(config, BEST_CHECKPOINT_KEY)


def record_best_checkpoint(config: Any, name: str | None) -> None:
    _set(config, BEST_CHECKPOINT_KEY, name)


def record_preset(config: Any, name: str) -> None:
    _set(config, PRESET_KEY, name)


def record_source(config: Any, value: dict) -> None:
    _set(config, SOURCE_KEY, dict(value))


def record_components(config: Any, components) -> None:
    _set(config, SCORE_KEY, list(components))


def check_labels(config: Any, where: str = "the model config") -> None:
    """id2label must name every output 0..num_labels-1 once: else predictions would carry wrong or no
    names."""
    n = int(config.num_labels)
    id2label = {int(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
    if n < 1 or set(id2label) != set(range(n)):
        raise LoscatError(f"{where} has num_labels {n} but id2label ids {sorted(id2label)}: each of the {n} "
                          "outputs needs one class name; restore the config.json saved with the model")
    if len(set(id2label.values())) != n:
        raise LoscatError(f"{where} names a class twice in id2label; restore the config.json saved with the "
                          "model")


def folder_from_config(config: Any, *, name: str, image_size: int, image_mean, image_std,
                       resample: int = BILINEAR) -> ModelFolder:
    """A ModelFolder from a loaded config (and the processor's statistics): labels checked, one name each."""
    check_labels(config)
    labels = tuple(config.id2label[i] for i in range(config.num_labels))
    return ModelFolder(
        name=str(name), labels=labels,
        decoding=Decoding(max_side=max_side(config), image_size=int(image_size), resample=int(resample),
                          mode=decoding_mode(config)),
        image_mean=tuple(float(v) for v in image_mean), image_std=tuple(float(v) for v in image_std),
        temperature=temperature(config), components=score_components(config), source=source(config),
        base_model=base_record(config), run=run_record(config), preset=preset(config),
        calibration=calibration(config), calibrated=calibrated(config), data=data_record(config),
        problem_type=_get(config, "problem_type"), thresholds=threshold_values(config, labels),
        threshold_record=thresholds(config))


# a Hub id: 'name' or 'owner/name', each part letters, digits, '-', '_', '.' (huggingface_hub's rule)
_HUB_ID = re.compile(r"(?!.*(--|\.\.))[\w.-]{1,96}(/[\w.-]{1,96})?")


def looks_local(name: str) -> bool:
    """A path rather than a Hub id 'owner/name': it exists, starts like a path, or no Hub id is spelled so."""
    return (name.startswith(("/", ".", "~")) or "\\" in name or os.path.exists(name)
            or not _HUB_ID.fullmatch(name) or name.endswith("."))


def refuse_missing_folder(name: str) -> None:
    """A model name that looks like a path but names nothing is "no such folder": never looked up on the
    Hub (huggingface_hub would retry it for ~25 s, then blame the connection)."""
    if looks_local(name) and not os.path.exists(name):
        raise LoscatError(f"cannot load model {name!r}: no such folder (and not a Hub id 'owner/name')")


def load_config(name_or_path: str | os.PathLike):
    """The transformers config of a folder or Hub id (the HF cache works offline), labels checked; errors are
    one line naming the model. An unreachable Hub fails within seconds (`hub_access.hub_unreachable`)."""
    from transformers import AutoConfig

    from loscat_hf.model.hub_access import OFFLINE_SET, hub_unreachable

    name = os.path.expanduser(str(name_or_path))
    refuse_missing_folder(name)
    offline = None if os.path.exists(name) else hub_unreachable()
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        if offline and isinstance(exc, OSError):  # transformers' "couldn't find them in the cached files"
            raise LoscatError(f"cannot load model {name!r}: no such folder in {os.getcwd()}, and as a Hub id "
                              f"it is not in the local HF cache while the Hub cannot be used ({offline}); "
                              "pass the path of a model folder, or load the Hub model once where the Hub "
                              "is reachable (the HF cache keeps it)", param="model") from None
        raise LoscatError(f"cannot load model {name!r}: {str(exc).splitlines()[0]}") from None
    if offline not in (None, OFFLINE_SET):
        logger.warning("the Hub cannot be used (%s): model %s comes from the local HF cache", offline, name)
    check_labels(config, config_path(name))
    return config


def config_path(name: str) -> str:
    """Where a model's config.json is, for messages."""
    return os.path.join(name, CONFIG_NAME) if os.path.isdir(name) else f"{name}'s {CONFIG_NAME}"


def read_model_folder(name_or_path: str | os.PathLike, config: Any = None,
                      require_processor: bool = False) -> ModelFolder:
    """Read a model folder or Hub id without loading its weights. `config`: one already loaded.
    `require_processor`: refuse a folder without preprocessor_config.json instead of assuming google/vit-*'s
    (evaluation: numbers measured on guessed normalisation would be silently wrong)."""
    name = os.path.expanduser(str(name_or_path))
    config = load_config(name) if config is None else config
    return folder_from_config(config, name=name, **processor_stats(name, config, require_processor))
