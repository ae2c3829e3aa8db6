"""Plots are written as real PNGs of a readable size, without touching pyplot's global state."""

import warnings

import numpy as np
import pytest
from PIL import Image

from loscat_hf.viz.plots import (
    plot_confusion_matrix,
    plot_per_class_f1,
    plot_reliability,
    plot_training_curves,
)

NAMES = ["head", "neck", "chest", "abdomen", "upper_back", "lower_back",
         "arm", "forearm", "hand", "thigh", "leg", "foot"]


def _png_size(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_all_plots_are_pngs_and_leave_pyplot_alone(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 5, (12, 12)) + np.diag(rng.integers(10, 40, 12))
    cm[11] = 0  # a class without any photo: no division warning, an empty row
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = plot_confusion_matrix(cm, NAMES, tmp_path / "cm.png",
                                  neighbours=lambda a, b: {a, b} in ({"hand", "forearm"}, {"head", "neck"}))
    w, h = _png_size(p)
    assert 1000 < w < 2000 and 1000 < h < 2000  # ~9 x 8 in at 150 dpi
    _png_size(plot_confusion_matrix(cm, NAMES, tmp_path / "cm_counts.png", normalize=False))

    per_class = [{"class": c, "f1": float(f), "support": 10}
                 for c, f in zip(NAMES, rng.random(12), strict=True)]
    _png_size(plot_per_class_f1(per_class, tmp_path / "f1.png", macro_f1=0.5))

    history = [{"loss": 2.0 / s, "epoch": s / 2, "step": s} for s in range(1, 9)]
    history += [{"eval_loss": 1.5 / e, "eval_macro_f1": 0.2 * e, "eval_accuracy": 0.2 * e, "epoch": e}
                for e in range(1, 5)]
    history.append({"train_loss": 0.5, "epoch": 4.0, "step": 8})
    _png_size(plot_training_curves(history, tmp_path / "curves.png"))
    # phase 1 shaded, switch drawn
    marked = plot_training_curves(history, tmp_path / "phases.png", phase_switch=1.0)
    with Image.open(tmp_path / "curves.png") as plain, Image.open(marked) as shaded:
        assert plain.size == shaded.size
        diff = np.abs(np.asarray(plain.convert("L"), float) - np.asarray(shaded.convert("L"), float)) > 30
        assert diff.any(axis=0).sum() > 20  # columns changed: the shading and the line at epoch 1
    _png_size(plot_training_curves([], tmp_path / "empty.png"))

    probs = rng.dirichlet(np.ones(12) * 0.3, 200)
    _png_size(plot_reliability(probs, rng.integers(0, 12, 200), tmp_path / "sub" / "rel.png"))

    assert plt.get_fignums() == []
    assert matplotlib.get_backend() == backend


def test_confusion_matrix_shape_must_match_names(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        plot_confusion_matrix(np.zeros((3, 3)), NAMES, tmp_path / "x.png")
