"""Outline primitives in body coordinates (ellipses, limb tubes, 2-D vector helpers).

Body, lesions and the camera all build polygons from these; keeping them apart means none of those needs
another just for geometry.
"""

from __future__ import annotations

import math

import numpy as np

_CIRCLES: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosines and sines of n angles round a circle, cached: every photo draws hundreds of ellipses."""
    if n not in _CIRCLES:
        a = np.linspace(0, 2 * np.pi, n, endpoint=False)
        _CIRCLES[n] = (np.cos(a), np.sin(a))
    return _CIRCLES[n]


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 28) -> np.ndarray:
    co, si = _circle(n)
    x, y = rx * co, ry * si
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def _tube(knots: list[tuple[float, float, float]], n_sub: int = 4, n_cap: int = 7) -> np.ndarray:
    """Outline of a limb: a centre line with radii, round caps at both ends."""
    k = np.asarray(knots, float)
    f = np.linspace(0, len(k) - 1, (len(k) - 1) * n_sub + 1)
    i = np.minimum(f.astype(int), len(k) - 2)
    w = (f - i)[:, None]
    p = k[i] * (1 - w) + k[i + 1] * w
    xy, r = p[:, :2], p[:, 2]
    d = np.empty_like(xy)
    d[1:-1] = xy[2:] - xy[:-2]
    d[0], d[-1] = xy[1] - xy[0], xy[-1] - xy[-2]
    d /= np.hypot(d[:, 0], d[:, 1])[:, None] + 1e-9
    nrm = np.stack([-d[:, 1], d[:, 0]], 1)
    left, right = xy + nrm * r[:, None], xy - nrm * r[:, None]
    th = np.linspace(0, np.pi, n_cap + 2)[1:-1]
    a_end = math.atan2(nrm[-1, 1], nrm[-1, 0]) - th
    a_start = math.atan2(nrm[0, 1], nrm[0, 0]) + np.pi - th
    end = xy[-1] + r[-1] * np.stack([np.cos(a_end), np.sin(a_end)], 1)
    start = xy[0] + r[0] * np.stack([np.cos(a_start), np.sin(a_start)], 1)
    return np.concatenate([left, end, right[::-1], start])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + 1e-9)


def _rot(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])
