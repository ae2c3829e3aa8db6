"""Evaluation metrics of the region classifier: one report for people, a flat dict for the Trainer.

Re-exports only: the report, the Trainer's `compute_metrics` and the report files are in report.py; the
`evaluate` metric they compute with is the `loscat_classification/` folder (loaded by path, offline); a
multi-region model's report (sklearn's multi-label metrics) is in multi_label.py.
"""

from loscat_hf.evaluation.metrics.multi_label import multi_label_report, write_multi_label_report
from loscat_hf.evaluation.metrics.report import (
    METRIC_DIR,
    MetricsInputError,
    classification_report,
    compute_metrics_fn,
    load_classification_metric,
    per_class_table,
    write_report,
)

__all__ = [
    "METRIC_DIR",
    "MetricsInputError",
    "classification_report",
    "compute_metrics_fn",
    "load_classification_metric",
    "multi_label_report",
    "per_class_table",
    "write_multi_label_report",
    "write_report",
]
