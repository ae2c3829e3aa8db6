# Local `evaluate` metric for the LoSCAT region classifier, loaded by path so it works offline:
#     evaluate.load("<...>/loscat_hf/evaluation/metrics/loscat_classification", num_labels=12)
# The Hub metrics ("accuracy", "f1") cannot be loaded without internet, hence this module.
# Keep ONE module per import statement: evaluate scans this file line by line to check its
# dependencies, and "import a, b" makes it look for a module named "a,". A parenthesised
# "from x import (...)" is fine: only its first line is read, and it names one module.

import warnings

import datasets
import evaluate
import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

_DESCRIPTION = (
    "Accuracy, macro-F1, balanced accuracy, per-class precision/recall/F1/support and the confusion matrix "
    "of a single-label multi-class classifier (scikit-learn definitions). The per-class lists and the "
    "confusion matrix cover every class 0..num_labels-1, so a class absent from the data still has a row."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    num_labels (int, optional): number of classes; given to evaluate.load(...) or to compute(...).
        Without it, max(id) + 1 over predictions and references.
Returns:
    accuracy (float), macro_f1 (float, over classes present in references or predictions, as
    scikit-learn's default), balanced_accuracy (float, mean recall over classes present in references),
    precision, recall, f1 (list of float, one per class, 0.0 where undefined), support (list of int),
    confusion_matrix (list of list of int, rows = true class, columns = predicted class).
Example:
    >>> m = evaluate.load("loscat_hf/evaluation/metrics/loscat_classification", num_labels=3)
    >>> m.compute(predictions=[0, 1, 1], references=[0, 1, 2])["accuracy"]
    0.6666666666666666
"""

_CITATION = """\
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class LoscatClassification(evaluate.Metric):
    """Classification metrics with a fixed label set (`num_labels`), for the LoSCAT region classes."""

    def __init__(self, num_labels=None, **kwargs):
        super().__init__(**kwargs)
        self.num_labels = num_labels

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def _compute(self, predictions, references, num_labels=None):
        y_pred = np.asarray(predictions, dtype=np.int64)
        y_true = np.asarray(references, dtype=np.int64)
        k = num_labels or self.num_labels
        if k is None:
            k = int(max(y_pred.max(initial=-1), y_true.max(initial=-1))) + 1
        k = int(k)
        if len(y_true) == 0:
            raise ValueError("no predictions/references to compute metrics on")
        bad = sorted({int(v) for v in np.concatenate([y_pred, y_true]) if v < 0 or v >= k})
        if bad:
            raise ValueError(f"class ids {bad} are outside 0..{k - 1} (num_labels={k})")
        labels = list(range(k))
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=0.0
        )
        with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected on small subsets
            warnings.simplefilter("ignore", UserWarning)
            balanced = float(balanced_accuracy_score(y_true, y_pred))
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0.0)),
            "balanced_accuracy": balanced,
            "precision": [float(v) for v in precision],
            "recall": [float(v) for v in recall],
            "f1": [float(v) for v in f1],
            "support": [int(v) for v in support],
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).astype(int).tolist(),
        }
