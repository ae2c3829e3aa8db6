"""The phantom camera: how a clinician frames a site (with human sloppiness), and body units -> pixels.

Kept apart from render so that lesions can map their outlines to pixels without depending on the renderer.
"""

from __future__ import annotations

import math

import numpy as np

# How far a clinician's framing strays from the site centre: zoom range of the short image side, centre shift
# (sd, share of the frame), camera roll (sd, radians) and the share of clearly tilted shots.
FRAMING = dict(zoom=(0.88, 1.25), shift=0.09, roll=0.09, tilt_p=0.06)


class _Camera:
    """Body coordinates -> pixels: scale, rotation about the frame centre."""

    def __init__(self, w: int, h: int, centre: np.ndarray, short_side_units: float, angle: float):
        self.w, self.h = w, h
        self.scale = float(min(w, h) / short_side_units)
        c, s = math.cos(angle), math.sin(angle)
        self.m = self.scale * np.array([[c, -s], [s, c]])
        self.centre = np.asarray(centre, float)

    def xy(self, pts: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        return ((np.asarray(pts, float) - self.centre) @ self.m.T
                + (self.w / 2 - offset[0], self.h / 2 - offset[1]))

    def px(self, pts: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)) -> list[float]:
        return self.xy(pts, offset).ravel().tolist()

    def width(self, units: float) -> int:
        return max(1, round(units * self.scale))



def _aim_camera(rng: np.random.Generator, w: int, h: int, centre: np.ndarray, short: float) -> _Camera:
    """A w x h camera on a site frame (centre, body units across the short side), jittered as in FRAMING."""
    j = FRAMING
    short *= rng.uniform(*j["zoom"])
    centre = centre + rng.normal(0, j["shift"], 2) * short
    angle = rng.normal(0, j["roll"]) + (rng.choice([-1, 1]) * rng.uniform(0.2, 0.4)
                                        if rng.random() < j["tilt_p"] else 0)
    return _Camera(w, h, centre, short, angle)
