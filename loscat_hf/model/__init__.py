"""Stage 2, model: build the classifier and its processor, transforms, calibration, batched inference.

Everything here is needed both to train and to serve, so it must never import `training/`.
"""
