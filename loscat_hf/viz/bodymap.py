"""A schematic front/back body outline with the 12 LoSCAT classes as shaded polygons.

Used by the link report (photos and mLoSSI per region) and by the Space (the predicted region lit up; every
region a multi-region model finds in the photo).
Drawn from hard-coded polygons with matplotlib's Agg canvas only: no image files to ship, no pyplot
global state, and fast enough (~0.1 s) to redraw on every Space request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from loscat_hf.errors import LoscatError

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

REGIONS: tuple[str, ...] = ("head", "neck", "chest", "abdomen", "upper_back", "lower_back",
                            "arm", "forearm", "hand", "thigh", "leg", "foot")
FRONT_ONLY = frozenset({"chest", "abdomen"})
BACK_ONLY = frozenset({"upper_back", "lower_back"})
BACK_OFFSET = 1.0  # x shift of the back view in data units
HIGHLIGHT_COLOUR = "#1f5fbf"

Poly = list[tuple[float, float]]
Highlight = str | Sequence[str] | None  # one region, several (a photo spanning thigh and leg), or none


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 32) -> Poly:
    return [(cx + rx * math.cos(2 * math.pi * i / n), cy + ry * math.sin(2 * math.pi * i / n))
            for i in range(n)]


# One side of the body (viewer's left, x < 0); limbs are mirrored. y runs from 0 (soles) to ~1.9 (crown).
_LIMBS: dict[str, Poly] = {
    "arm": [(-0.22, 1.50), (-0.31, 1.48), (-0.35, 1.20), (-0.26, 1.20), (-0.22, 1.36)],
    "forearm": [(-0.35, 1.20), (-0.26, 1.20), (-0.30, 0.95), (-0.38, 0.95)],
    "hand": [(-0.38, 0.95), (-0.30, 0.95), (-0.30, 0.86), (-0.34, 0.80), (-0.40, 0.84)],
    "thigh": [(-0.19, 0.95), (-0.01, 0.95), (-0.03, 0.55), (-0.15, 0.55)],
    "leg": [(-0.15, 0.55), (-0.03, 0.55), (-0.05, 0.12), (-0.13, 0.12)],
    "foot": [(-0.13, 0.12), (-0.05, 0.12), (-0.04, 0.03), (-0.16, 0.03), (-0.16, 0.07)],
}
_TRUNK: dict[str, Poly] = {
    "head": _ellipse(0.0, 1.73, 0.11, 0.14),
    "neck": [(-0.05, 1.60), (0.05, 1.60), (0.06, 1.51), (-0.06, 1.51)],
    "upper": [(-0.22, 1.51), (0.22, 1.51), (0.22, 1.36), (0.20, 1.22), (-0.20, 1.22), (-0.22, 1.36)],
    "lower": [(-0.20, 1.22), (0.20, 1.22), (0.19, 0.95), (-0.19, 0.95)],
}


def region_polygons() -> dict[str, list[Poly]]:
    """Polygons (data coordinates) of each region on the front (x around 0) and back (x around 1) views.

    Public so that tests and callers can locate a region on the drawn figure (`ax.transData`).
    """
    out: dict[str, list[Poly]] = {r: [] for r in REGIONS}
    for view, dx in (("front", 0.0), ("back", BACK_OFFSET)):
        trunk = {"head": _TRUNK["head"], "neck": _TRUNK["neck"],
                 ("chest" if view == "front" else "upper_back"): _TRUNK["upper"],
                 ("abdomen" if view == "front" else "lower_back"): _TRUNK["lower"]}
        for name, poly in trunk.items():
            out[name].append([(x + dx, y) for x, y in poly])
        for name, poly in _LIMBS.items():
            out[name].append([(x + dx, y) for x, y in poly])
            out[name].append([(-x + dx, y) for x, y in poly])
    return out


def _lit(highlight: Highlight) -> frozenset[str]:
    """The regions to light: a str is one region's name (never its letters), a sequence several."""
    if highlight is None:
        return frozenset()
    return frozenset({highlight} if isinstance(highlight, str) else (str(h) for h in highlight))


def _check(values: Mapping[str, float] | None, highlight: Highlight) -> None:
    names = set(values or {}) | _lit(highlight)
    unknown = sorted(str(n) for n in names - set(REGIONS))
    if unknown:
        raise LoscatError(f"unknown body-map region(s) {unknown}; valid: {', '.join(REGIONS)}")


def body_map_figure(values: Mapping[str, float] | None = None, highlight: Highlight = None,
                    title: str = "", cmap: str = "Reds", figsize: tuple[float, float] = (6.0, 6.0),
                    dpi: int = 100) -> Figure:
    """Front and back outline; regions shaded by `values` (with a colorbar), the `highlight` region (a name,
    or a sequence of names: all lit alike) drawn strongly.

    Regions missing from `values` (or NaN) stay light grey, so "no data" is not confused with zero.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Polygon

    _check(values, highlight)
    lit = _lit(highlight)
    clean = {k: float(v) for k, v in (values or {}).items() if v is not None and not math.isnan(float(v))}
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    top = 0.92 if title else 0.98
    ax = fig.add_axes((0.0, 0.02, 0.84 if values is not None else 1.0, top - 0.02))
    ax.set_xlim(-0.5, BACK_OFFSET + 0.5)
    ax.set_ylim(-0.05, 1.95)
    ax.set_aspect("equal")
    ax.axis("off")
    colour_map = matplotlib.colormaps[cmap]
    vmax = max(clean.values(), default=0.0)
    vmin = min(0.0, min(clean.values(), default=0.0))
    norm = Normalize(vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1.0)
    for name, polys in region_polygons().items():
        if name in lit and values is None:
            face, edge, lw, z = HIGHLIGHT_COLOUR, "black", 2.5, 3
        else:
            face = colour_map(norm(clean[name])) if name in clean else "#e6e6e6"
            edge, lw, z = ("black", 3.0, 3) if name in lit else ("#555555", 0.8, 2)
        for poly in polys:
            ax.add_patch(Polygon(poly, closed=True, facecolor=face, edgecolor=edge, linewidth=lw, zorder=z))
    ax.text(0.0, -0.03, "front", ha="center", va="top", fontsize=9)
    ax.text(BACK_OFFSET, -0.03, "back", ha="center", va="top", fontsize=9)
    if title:
        fig.suptitle(title, y=0.985, fontsize=11)
    if values is not None:
        cax = fig.add_axes((0.86, 0.15, 0.03, 0.65))
        fig.colorbar(ScalarMappable(norm=norm, cmap=colour_map), cax=cax)
    return fig


def body_map_image(values: Mapping[str, float] | None = None, highlight: Highlight = None, title: str = "",
                   size: tuple[int, int] = (480, 480)) -> Image.Image:
    """The body map as an RGB PIL image of exactly `size` pixels (for the Gradio Space)."""
    from PIL import Image

    dpi = 100
    fig = body_map_figure(values, highlight, title, figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    fig.canvas.draw()
    rgba = fig.canvas.buffer_rgba()
    img = Image.frombuffer("RGBA", fig.canvas.get_width_height(), rgba, "raw", "RGBA", 0, 1).convert("RGB")
    return img if img.size == tuple(size) else img.resize(tuple(size))


def plot_body_map(values: Mapping[str, float] | None, path: str | Path, title: str = "",
                  highlight: Highlight = None) -> Path:
    """Write the body map as a PNG and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body_map_figure(values, highlight, title, dpi=150).savefig(path, format="png")
    return path
