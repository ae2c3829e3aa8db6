"""loscat-hf: LoSCAT body-region recognition for clinical photos of localized scleroderma.

Imports stay lazy so that `import loscat_hf` (and the CLI's --help) is fast and torch-free: each public name
is imported from its module on first use (`__getattr__`), and `dir(loscat_hf)` lists them without importing
any.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {  # the plain-Python API: one function per pipeline step, each returning a result object
    "load_taxonomy": "loscat_hf.taxonomy",
    "Taxonomy": "loscat_hf.taxonomy",
    "LoscatError": "loscat_hf.errors",
    "prepare": "loscat_hf.data.prepare",
    "PrepareResult": "loscat_hf.data.prepare",
    "load_packed_dataset": "loscat_hf.data.dataset",
    "LoscatArguments": "loscat_hf.training.arguments",
    "train_arguments": "loscat_hf.training.parse",
    "parse_train_args": "loscat_hf.training.parse",
    "train": "loscat_hf.training.run",
    "TrainResult": "loscat_hf.training.run",
    "evaluate": "loscat_hf.evaluation.split_eval",
    "EvaluationResult": "loscat_hf.evaluation.split_eval",
    "evaluate_predictions": "loscat_hf.evaluation.predictions",
    "calibrate": "loscat_hf.evaluation.calibrate",
    "CalibrationResult": "loscat_hf.evaluation.calibrate",
    "PredictionsEvaluation": "loscat_hf.evaluation.predictions",
    "model_card": "loscat_hf.model.card",
    "convert_timm": "loscat_hf.model.convert",
    "ConvertResult": "loscat_hf.model.convert",
    "read_model_folder": "loscat_hf.model.folder",
    "ModelFolder": "loscat_hf.model.folder",
    "load_predictor": "loscat_hf.infer.load",
    "Predictor": "loscat_hf.infer.load",
    "RegionPredictor": "loscat_hf.infer.predictor",
    "RegionPrediction": "loscat_hf.infer.predictor",
    "predict_folder": "loscat_hf.infer.folder",
    "PredictSummary": "loscat_hf.infer.folder",
    "explain_folder": "loscat_hf.infer.explain",
    "ExplainResult": "loscat_hf.infer.explain",
    "run_link": "loscat_hf.link",
    "LinkResult": "loscat_hf.link",
    "quickstart": "loscat_hf.demo.quickstart",
    "QuickstartResult": "loscat_hf.demo.quickstart",
    "PushResult": "loscat_hf.hub.repo",
    "generate_demo_data": "loscat_hf.demo.phantom",
}

if TYPE_CHECKING:  # what type checkers and IDEs see: the names of _LAZY, re-exported (`X as X`)
    from loscat_hf.data.dataset import load_packed_dataset as load_packed_dataset
    from loscat_hf.data.prepare import PrepareResult as PrepareResult
    from loscat_hf.data.prepare import prepare as prepare
    from loscat_hf.demo.phantom import generate_demo_data as generate_demo_data
    from loscat_hf.demo.quickstart import QuickstartResult as QuickstartResult
    from loscat_hf.demo.quickstart import quickstart as quickstart
    from loscat_hf.errors import LoscatError as LoscatError
    from loscat_hf.evaluation.calibrate import CalibrationResult as CalibrationResult
    from loscat_hf.evaluation.calibrate import calibrate as calibrate
    from loscat_hf.evaluation.predictions import PredictionsEvaluation as PredictionsEvaluation
    from loscat_hf.evaluation.predictions import evaluate_predictions as evaluate_predictions
    from loscat_hf.evaluation.split_eval import EvaluationResult as EvaluationResult
    from loscat_hf.evaluation.split_eval import evaluate as evaluate
    from loscat_hf.hub.repo import PushResult as PushResult
    from loscat_hf.infer.explain import ExplainResult as ExplainResult
    from loscat_hf.infer.explain import explain_folder as explain_folder
    from loscat_hf.infer.folder import PredictSummary as PredictSummary
    from loscat_hf.infer.folder import predict_folder as predict_folder
    from loscat_hf.infer.load import Predictor as Predictor
    from loscat_hf.infer.load import load_predictor as load_predictor
    from loscat_hf.infer.predictor import RegionPrediction as RegionPrediction
    from loscat_hf.infer.predictor import RegionPredictor as RegionPredictor
    from loscat_hf.link import LinkResult as LinkResult
    from loscat_hf.link import run_link as run_link
    from loscat_hf.model.card import model_card as model_card
    from loscat_hf.model.convert import ConvertResult as ConvertResult
    from loscat_hf.model.convert import convert_timm as convert_timm
    from loscat_hf.model.folder import ModelFolder as ModelFolder
    from loscat_hf.model.folder import read_model_folder as read_model_folder
    from loscat_hf.taxonomy import Taxonomy as Taxonomy
    from loscat_hf.taxonomy import load_taxonomy as load_taxonomy
    from loscat_hf.training.arguments import LoscatArguments as LoscatArguments
    from loscat_hf.training.parse import parse_train_args as parse_train_args
    from loscat_hf.training.parse import train_arguments as train_arguments
    from loscat_hf.training.run import TrainResult as TrainResult
    from loscat_hf.training.run import train as train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'loscat_hf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = ["__version__", *_LAZY]
