"""loscat-hf: LoSCAT body-region recognition for clinical photos of localized scleroderma.

Imports stay lazy so that `import loscat_hf` (and the CLI's --help) is fast and torch-free.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {  # the plain-Python API: one function per pipeline step, each returning a result object
    "load_taxonomy": "loscat_hf.taxonomy",
    "Taxonomy": "loscat_hf.taxonomy",
    "LoscatError": "loscat_hf.errors",
    "prepare": "loscat_hf.data.prepare",
    "PrepareResult": "loscat_hf.data.prepare",
    "load_packed_dataset": "loscat_hf.data.dataset",
    "LoscatArguments": "loscat_hf.training.arguments",
    "train_arguments": "loscat_hf.training.arguments",
    "parse_train_args": "loscat_hf.training.arguments",
    "train": "loscat_hf.training.run",
    "TrainResult": "loscat_hf.training.run",
    "evaluate": "loscat_hf.evaluation.split_eval",
    "EvaluationResult": "loscat_hf.evaluation.split_eval",
    "evaluate_predictions": "loscat_hf.evaluation.predictions",
    "model_card": "loscat_hf.model.card",
    "convert_timm": "loscat_hf.model.convert",
    "ConvertResult": "loscat_hf.model.convert",
    "RegionPredictor": "loscat_hf.infer.predictor",
    "RegionPrediction": "loscat_hf.infer.predictor",
    "predict_folder": "loscat_hf.infer.folder",
    "PredictSummary": "loscat_hf.infer.folder",
    "explain_folder": "loscat_hf.infer.explain",
    "quickstart": "loscat_hf.demo.quickstart",
    "generate_demo_data": "loscat_hf.demo.phantom",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'loscat_hf' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
