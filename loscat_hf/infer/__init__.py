"""Stage 5, inference: per-photo prediction, folder labelling, explanation maps.

Serving code: imports data and model only, never `training/` or `evaluation/` (a test checks this), so
the Space and a collaborator's install stay free of training code paths.
"""
