"""loscat-hf: LoSCAT body-region recognition for clinical photos of localized scleroderma.

Imports stay lazy so that `import loscat_hf` (and the CLI's --help) is fast and torch-free.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_taxonomy": "loscat_hf.regions",
    "Taxonomy": "loscat_hf.regions",
    "LoscatError": "loscat_hf.errors",
    "RegionPredictor": "loscat_hf.predict",
    "RegionPrediction": "loscat_hf.predict",
    "predict_folder": "loscat_hf.batch",
    "PredictSummary": "loscat_hf.batch",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'loscat_hf' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
