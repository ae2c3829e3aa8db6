"""Stage 3, evaluation: metrics, reports, ensembles and score agreement for any model folder.

It measures a model whoever trained it, so it does not import `training/`; training imports it for the
validation report.
"""
