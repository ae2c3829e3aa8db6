"""Hugging Face Hub: model push with its card, the Space bundle, the dataset push (allow-lists only)."""
