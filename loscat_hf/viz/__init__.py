"""Figures: confusion matrices, per-class F1, training curves, reliability diagrams, the body map."""
