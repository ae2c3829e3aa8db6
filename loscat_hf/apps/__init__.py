"""Gradio apps: the Space demo (and, when present, the labelling app)."""
