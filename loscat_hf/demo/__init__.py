"""SYNTHETIC demo data (phantom photos, rater labels, score tables) and the one-command quickstart."""
