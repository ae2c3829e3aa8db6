"""PNG plots of an evaluation: confusion matrix, per-class F1, training curves, reliability diagram, score
agreement; a multi-region model's errors by true region and per-region calibration.

Figures are built with `matplotlib.figure.Figure` and the Agg canvas, never through pyplot: no global
figure registry, no backend switch in the caller's process (a notebook keeps its inline backend), and
nothing left open when many reports are written in one run. Every function returns the path it wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 150


def _figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", bbox_inches="tight", pad_inches=0.1)
    return path


def _class_grid(ax, names: Sequence[str], totals: Sequence[int], neighbours, font: float, xlabel: str,
                ylabel: str) -> None:
    """A class x class matrix's axes: names (rows with their n), a white cell grid, anatomical neighbours
    outlined dashed orange (the confusion matrix and the error co-occurrence share it)."""
    k = len(names)
    if neighbours is not None:
        from matplotlib.patches import Rectangle

        for i, j in ((i, j) for i in range(k) for j in range(k) if i != j and neighbours(names[i], names[j])):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#d95f02", linewidth=1.3,
                                   linestyle="--"))
    ax.set_xticks(range(k), names, rotation=45, ha="right", rotation_mode="anchor", fontsize=font)
    ax.set_yticks(range(k), [f"{n} ({t})" for n, t in zip(names, totals, strict=True)], fontsize=font)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(np.arange(-0.5, k, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, k, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.tick_params(which="minor", length=0)


def plot_confusion_matrix(
    cm: np.ndarray | Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | Path,
    normalize: bool = True,
    title: str = "Confusion matrix",
    neighbours: Callable[[str, str], bool] | None = None,
) -> Path:
    """Heatmap of true (rows) vs predicted (columns) classes; with `normalize`, each row is a share of its
    class.

    Row-normalising makes rare regions as readable as common ones; the count of each true class is kept in
    its row label, and cells show the percentage over the count. Cells whose classes are anatomical
    neighbours (per `neighbours(a, b)`) get a dashed outline, so "near misses" stand out from gross errors.
    """
    counts = np.asarray(cm, dtype=np.int64)
    names = [str(c) for c in class_names]
    k = len(names)
    if counts.shape != (k, k):
        raise ValueError(f"confusion matrix has shape {counts.shape}, expected ({k}, {k})")
    totals = counts.sum(axis=1)
    if normalize:
        values = np.divide(counts, totals[:, None], out=np.zeros(counts.shape), where=totals[:, None] > 0)
    else:
        values = counts.astype(np.float64)
    vmax = 1.0 if normalize else max(float(values.max()), 1.0)

    size = max(6.0, 0.5 * k + 2.0)  # 9 x 8 inches at 12 classes
    fig = _figure((size + 1.0, size))
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, aspect="equal")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02,
                 label="share of the true class" if normalize else "count")
    font = 9 if k <= 12 else max(5, int(9 * 12 / k))
    for i in range(k):
        for j in range(k):
            if counts[i, j] == 0:
                continue
            colour = "white" if values[i, j] > 0.55 * vmax else "black"
            if normalize:
                text = f"{values[i, j]:.0%}\n{counts[i, j]}"
            else:
                text = f"{counts[i, j]}"
            ax.text(j, i, text, ha="center", va="center", color=colour,
                    fontsize=font - 1 if normalize else font,
                    linespacing=0.95, fontweight="bold" if i == j else "normal")
    _class_grid(ax, names, [int(t) for t in totals], neighbours, font, "predicted region", "true region (n)")
    subtitle = "cells: % of the true class, then count" if normalize else "cells: count"
    if neighbours is not None:
        subtitle += "; dashed orange = anatomical neighbours"
    ax.set_title(f"{title}\n{subtitle}", fontsize=11)
    return _save(fig, path)


def plot_per_class_f1(per_class: Sequence[Mapping[str, Any]], path: str | Path, macro_f1: float | None = None,
                      title: str = "F1 per region") -> Path:
    """Horizontal F1 bars, best class on top, with the macro-F1 as a vertical line (the mean when not given).

    Each bar is labelled with its F1 and support, since a low F1 on 3 photos means less than on 300.
    """
    rows = sorted(per_class, key=lambda r: (r["f1"], r["class"]))
    names = [str(r["class"]) for r in rows]
    f1 = np.array([float(r["f1"]) for r in rows])
    support = [int(r.get("support", 0)) for r in rows]
    if macro_f1 is None:
        present = [float(r["f1"]) for r in rows if int(r.get("support", 1)) > 0]
        macro_f1 = float(np.mean(present)) if present else 0.0
    fig = _figure((7.5, max(3.0, 0.42 * len(rows) + 1.4)))
    ax = fig.add_subplot()
    colours = ["#bdbdbd" if s == 0 else "#3182bd" for s in support]
    ax.barh(range(len(rows)), f1, color=colours, height=0.7)
    for y, (v, s) in enumerate(zip(f1, support, strict=True)):
        ax.text(min(v + 0.01, 0.98), y, f"{v:.2f}  (n={s})", va="center",
                ha="left" if v < 0.85 else "right", color="black" if v < 0.85 else "white", fontsize=8)
    ax.axvline(macro_f1, color="#d95f02", linestyle="--", linewidth=1.5, label=f"macro-F1 {macro_f1:.3f}")
    ax.set_yticks(range(len(rows)), names, fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_training_curves(log_history: Sequence[Mapping[str, Any]], path: str | Path,
                         phase_switch: float | None = None, phase1_trains: str = "head") -> Path:
    """Train loss, eval loss and eval macro-F1/accuracy from `Trainer.state.log_history`.

    The x axis is the epoch when logged (comparable across batch sizes), else the step; `phase_switch` (an
    epoch) shades phase 1 (training `phase1_trains`, e.g. "head") and marks where phase 2 (whole model)
    starts. A history without any of these values still gives a PNG, saying so, so report folders are always
    complete.
    """
    def x_of(entry: Mapping[str, Any]) -> float | None:
        return entry.get("epoch", entry.get("step"))

    use_epoch = any("epoch" in e for e in log_history)
    train = [(x_of(e), e["loss"]) for e in log_history if "loss" in e and x_of(e) is not None]
    eval_loss = [(x_of(e), e["eval_loss"]) for e in log_history if "eval_loss" in e and x_of(e) is not None]
    scores = {key: [(x_of(e), e[f"eval_{key}"]) for e in log_history
                    if f"eval_{key}" in e and x_of(e) is not None]
              for key in ("macro_f1", "accuracy", "balanced_accuracy")}
    xlabel = "epoch" if use_epoch else "step"

    fig = _figure((11, 4.2))
    ax_loss, ax_score = fig.subplots(1, 2)
    if train:
        ax_loss.plot(*zip(*train, strict=True), color="#3182bd", linewidth=1.2, alpha=0.9, label="train loss")
    if eval_loss:
        ax_loss.plot(*zip(*eval_loss, strict=True), color="#d95f02", marker="o", markersize=4,
                     label="eval loss")
    ax_loss.set_xlabel(xlabel)
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title("Loss")
    styles = {"macro_f1": ("#d95f02", "o"), "accuracy": ("#7570b3", "s"),
              "balanced_accuracy": ("#1b9e77", "^")}
    for key, points in scores.items():
        if points:
            colour, marker = styles[key]
            ax_score.plot(*zip(*points, strict=True), color=colour, marker=marker, markersize=4,
                          label=f"eval {key}")
    if scores["macro_f1"]:
        bx, by = max(scores["macro_f1"], key=lambda t: t[1])
        ax_score.annotate(f"best {by:.3f}", (bx, by), textcoords="offset points", xytext=(0, 8),
                          ha="center", fontsize=8, color="#d95f02")
    ax_score.set_ylim(0, 1.05)
    ax_score.set_xlabel(xlabel)
    ax_score.set_title("Validation")
    for ax, has in ((ax_loss, train or eval_loss), (ax_score, any(scores.values()))):
        if phase_switch is not None and use_epoch:
            ax.axvline(phase_switch, color="#636363", linestyle="--", linewidth=1,
                       label=f"phase 2 (whole model) from epoch {phase_switch:g}")
            ax.axvspan(0, phase_switch, color="#bdbdbd", alpha=0.25, label=f"phase 1 ({phase1_trains} only)")
        ax.grid(alpha=0.3)
        if has:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "nothing logged", transform=ax.transAxes, ha="center", va="center",
                    color="grey")
    return _save(fig, path)


def _plot_reliability_bins(bins: Sequence[Mapping[str, Any]], path: str | Path,
                           title: str = "Reliability diagram") -> Path:
    """Reliability diagram from `calibration.reliability_bins` output (also used from a saved report)."""
    from loscat_hf.model.calibration import ece_from_bins

    bins = list(bins)
    lower = np.array([b["lower"] for b in bins])
    width = np.array([b["upper"] - b["lower"] for b in bins])
    count = np.array([b["count"] for b in bins])
    acc = np.array([b["accuracy"] if b["count"] else 0.0 for b in bins])
    conf = np.array([b["confidence"] if b["count"] else 0.0 for b in bins])
    ece = ece_from_bins(bins)

    fig = _figure((5.5, 6.2))
    ax, ax_hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = count > 0
    ax.bar(lower[filled], acc[filled], width=width[filled], align="edge", color="#3182bd", edgecolor="white",
           label="accuracy")
    gap_bottom = np.minimum(acc, conf)[filled]
    ax.bar(lower[filled], np.abs(conf - acc)[filled], bottom=gap_bottom, width=width[filled], align="edge",
           color="#d95f02", alpha=0.35, edgecolor="#d95f02", hatch="//", label="gap to confidence")
    ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}\nECE {ece:.3f} over {len(bins)} bins, n={int(count.sum())}" if np.isfinite(ece)
                 else f"{title}\n(no samples)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    ax_hist.bar(lower, count, width=width, align="edge", color="#969696", edgecolor="white")
    ax_hist.set_xlabel("top-class confidence")
    ax_hist.set_ylabel("photos")
    ax_hist.grid(alpha=0.3)
    return _save(fig, path)


def plot_reliability(probs: np.ndarray, labels: np.ndarray, path: str | Path, n_bins: int = 15,
                     title: str = "Reliability diagram") -> Path:
    """Accuracy vs confidence per bin, with the share of photos per bin below: shows over-confidence at a
    glance."""
    from loscat_hf.model.calibration import reliability_bins

    return _plot_reliability_bins(reliability_bins(probs, labels, n_bins), path, title=title)


def plot_error_cooccurrence(counts: np.ndarray, class_names: Sequence[str], path: str | Path,
                            n_true: Sequence[int], title: str = "Errors by true region",
                            neighbours: Callable[[str, str], bool] | None = None) -> Path:
    """A multi-region model's errors, one row per region a photo shows: the diagonal counts the photos where
    that region was missed (orange), a cell off it the photos where the column's region was added though the
    photo does not show it (blue). Colour is the share of the row's photos, so rare regions read as well;
    anatomical neighbours (`neighbours(a, b)`) are outlined: a region added next to a true one is a near
    miss."""
    counts = np.asarray(counts, dtype=np.int64)
    names = [str(c) for c in class_names]
    k = len(names)
    if counts.shape != (k, k):
        raise ValueError(f"error matrix has shape {counts.shape}, expected ({k}, {k})")
    totals = np.asarray(n_true, dtype=np.float64)  # photos showing each region
    share = np.divide(counts, totals[:, None], out=np.zeros(counts.shape), where=totals[:, None] > 0)
    diagonal = np.eye(k, dtype=bool)
    size = max(6.0, 0.5 * k + 2.0)
    fig = _figure((size + 1.0, size))
    ax = fig.add_subplot()
    added = ax.imshow(np.ma.masked_where(diagonal, share), cmap="Blues", vmin=0, vmax=1, aspect="equal")
    ax.imshow(np.ma.masked_where(~diagonal, share), cmap="Oranges", vmin=0, vmax=1, aspect="equal")
    fig.colorbar(added, ax=ax, fraction=0.046, pad=0.02, label="share of the row's photos")
    font = 9 if k <= 12 else max(5, int(9 * 12 / k))
    for i, j in zip(*np.nonzero(counts), strict=True):
        ax.text(j, i, f"{counts[i, j]}", ha="center", va="center", fontsize=font,
                color="white" if share[i, j] > 0.55 else "black", fontweight="bold" if i == j else "normal")
    _class_grid(ax, names, [int(t) for t in totals], neighbours, font,
                "region added by the model (not on the photo)", "region the photo shows (n photos)")
    legend = "; dashed = anatomical neighbours" if neighbours else ""
    ax.set_title(f"{title}\norange diagonal: photos where the region was missed; blue: photos where the "
                 f"column's region was wrongly added{legend}", fontsize=10)
    return _save(fig, path)


def plot_reliability_per_class(bins: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path,
                               ece: Mapping[str, float | None] | None = None,
                               thresholds: Mapping[str, float] | None = None,
                               title: str = "Per-region calibration: score vs share of photos showing it",
                               ) -> Path:
    """One small panel per class (`multi_label.binary_reliability` bins): the share of photos showing the
    region against the mean score per bin, dots sized by photos, the class's threshold dotted; on the
    diagonal a score can be taken at its word."""
    names = list(bins)
    cols = min(4, max(1, len(names)))
    rows = -(-len(names) // cols)
    fig = _figure((2.6 * cols, 2.5 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    for ax in axes[len(names):]:
        ax.set_visible(False)
    ticks = [0, 0.5, 1]
    for ax, name in zip(axes, names, strict=False):
        filled = [b for b in bins[name] if b["count"]]
        most = max([b["count"] for b in filled], default=1)
        ax.plot([0, 1], [0, 1], color="#636363", linestyle="--", linewidth=0.8)
        ax.scatter([b["score"] for b in filled], [b["positive_rate"] for b in filled],
                   s=[12 + 60 * b["count"] / most for b in filled], color="#3182bd", alpha=0.8,
                   edgecolors="none")
        if (thresholds or {}).get(name) is not None:
            ax.axvline(thresholds[name], color="#d95f02", linestyle=":", linewidth=1)
        value = (ece or {}).get(name)
        ax.set_title(f"{name}" + ("" if value is None else f"  ECE {value:.3f}"), fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    fig.supxlabel("mean score in the bin", fontsize=8)
    fig.supylabel("share of photos showing the region", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _identity(ax, low: float, high: float) -> None:
    ax.plot([low, high], [low, high], color="#636363", linestyle="--", linewidth=1,
            label="identity (perfect)")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)


def _fmt_stat(value: Any) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.2f}"


def plot_score_agreement(pred: np.ndarray, true: np.ndarray, components: Sequence[str], path: str | Path,
                         stats: Mapping[str, Mapping[str, Any]] | None = None,
                         title: str = "Predicted vs rated LoSCAT score per photo") -> Path:
    """One panel per component: predicted (y) vs rated (x, jittered: ratings are whole points) with the
    identity line and the mean prediction per rated level, which shows a bias (a model always 1 point high) at
    a glance. Photos without a rated score are left out; each panel's title gives its n, MAE and Pearson r."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    cols = min(3, len(components))
    rows = -(-len(components) // cols)
    fig = _figure((3.3 * cols, 3.3 * rows + 0.4))
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, size=len(true))
    for j, name in enumerate(components):
        ax = fig.add_subplot(rows, cols, j + 1)
        keep = ~(np.isnan(true[:, j]) | np.isnan(pred[:, j]))
        t, p = true[keep, j], pred[keep, j]
        ax.scatter(t + jitter[keep], p, s=12, alpha=0.45, color="#3182bd", edgecolors="none", label="photo")
        levels = np.unique(t)
        ax.plot(levels, [p[t == v].mean() for v in levels], "D-", color="#d95f02", markersize=5, linewidth=1,
                label="mean prediction")
        _identity(ax, -0.5, 3.5)
        s = (stats or {}).get(name, {})
        ax.set_title(f"{name}\nn={int(keep.sum())}, MAE {_fmt_stat(s.get('mae'))}, "
                     f"r {_fmt_stat(s.get('pearson'))}",
                     fontsize=9)
        ax.set_xlabel("rated", fontsize=8)
        ax.set_ylabel("predicted", fontsize=8)
        if j == 0:
            ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_visit_totals(visits: Any, path: str | Path, title: str = "Predicted vs rated visit totals") -> Path:
    """mLoSSI and LoSDI per visit, predicted (y) vs rated (x) with the identity line: whole visits (filled; a
    visit whose rated total has an empty cell is left out) and the sites both photographed and scored (open).
    `visits` is `score_metrics.visit_table`'s frame; only its numbers are drawn, never a patient or visit
    id."""
    fig = _figure((8.0, 4.2))
    for j, (total, label) in enumerate((("mlossi", "mLoSSI (activity)"), ("losdi", "LoSDI (damage)"))):
        ax = fig.add_subplot(1, 2, j + 1)
        whole = visits[[f"{total}_true", f"{total}_pred"]].dropna().to_numpy(float)
        shared = visits[[f"{total}_true_photographed", f"{total}_pred_photographed"]].dropna().to_numpy(float)
        ax.scatter(whole[:, 0], whole[:, 1], s=22, alpha=0.7, color="#3182bd", edgecolors="none",
                   label=f"whole visit (n={len(whole)})")
        ax.scatter(shared[:, 0], shared[:, 1], s=26, facecolors="none", edgecolors="#d95f02",
                   label=f"photographed sites (n={len(shared)})")
        high = max(float(np.max(np.r_[whole.ravel(), shared.ravel(), 1.0])), 1.0) * 1.08 + 0.5
        _identity(ax, -0.5, high)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("rated total", fontsize=8)
        ax.set_ylabel("predicted total", fontsize=8)
        ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)
