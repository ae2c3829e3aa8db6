"""`loscat-hf demo-data`: SYNTHETIC phantom "clinical photos" of localized scleroderma, with messy rater labels.

Real patient photos cannot ship, yet every step of the pipeline (prepare, train, evaluate, batch labelling)
needs something realistic to run on. The phantom draws a simple child's body (front or back view) in a
camera frame around one LoSCAT site, paints morphea plaques whose look follows LoSCAT severities, and writes
what a clinic archive really looks like: identifying file names, EXIF with GPS and a patient name, several
raters who spell sites in their own way and sometimes disagree. Everything is marked SYNTHETIC.

Deterministic: a plan is drawn from `seed` in the main process; each photo is then rendered from its own
RNG seeded with (seed, photo index), so the same arguments give the same bytes with any number of workers.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import shutil
import sys
import time
from collections import Counter
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont
from PIL.TiffImagePlugin import IFDRational

from loscat_hf.data.score_tables import COMPONENTS
from loscat_hf.errors import LoscatError
from loscat_hf.taxonomy import load_taxonomy

SEVERITY_COLUMNS = tuple(COMPONENTS)  # the LoSCAT score components, in the score table's order
SKIN_TONES = ("I", "II", "III", "IV", "V", "VI")
WORK_SIDE = 416  # photos are drawn with this long side, then resized to image_size: speed over detail
RATERS = ("R1", "R2", "R3", "R4")
# How far a clinician's framing strays from the site centre: zoom range of the short image side, centre shift
# (sd, share of the frame), camera roll (sd, radians) and the share of clearly tilted shots.
FRAMING = dict(zoom=(0.88, 1.25), shift=0.09, roll=0.09, tilt_p=0.06)
# Files and folders this module writes; --overwrite removes only these.
OUTPUTS = ("images", "unlabeled", "annotations.csv", "loscat_scores.csv", "photos_truth.csv",
           "unlabeled_metadata.csv", "unlabeled_truth.csv", "README.md", "SYNTHETIC")

# Share of photos per class, like a paediatric morphea archive: limbs and trunk common, neck and foot rare.
_CLASS_WEIGHTS = {
    "head": 0.08, "neck": 0.03, "chest": 0.09, "abdomen": 0.10, "upper_back": 0.09, "lower_back": 0.07,
    "arm": 0.11, "forearm": 0.10, "hand": 0.05, "thigh": 0.12, "leg": 0.12, "foot": 0.04,
}
_FITZPATRICK_RGB = {
    "I": (246, 222, 205), "II": (236, 196, 166), "III": (214, 168, 128),
    "IV": (180, 128, 88), "V": (128, 85, 58), "VI": (82, 55, 40),
}
_TONE_P = (0.10, 0.24, 0.24, 0.20, 0.13, 0.09)
_HAIR = {"black": (28, 24, 22), "dark brown": (55, 38, 28), "brown": (92, 62, 40),
         "light brown": (138, 100, 62), "blonde": (200, 164, 104), "red": (148, 70, 36)}
_EYES = ((70, 45, 30), (45, 30, 22), (70, 110, 150), (80, 110, 70), (110, 85, 50))
_CLOTH = ((235, 235, 238), (40, 50, 90), (120, 120, 125), (220, 150, 170), (140, 180, 215),
          (30, 30, 32), (190, 60, 60), (90, 150, 110))
_WALLS = ((232, 230, 222), (214, 226, 214), (206, 216, 230), (233, 222, 200), (205, 205, 205), (240, 240, 240))
_DRAPES = ((70, 118, 168), (78, 140, 120), (236, 236, 236), (222, 222, 210), (120, 160, 200))
_FLOORS = ((150, 150, 146), (182, 166, 140), (128, 140, 150), (196, 190, 180))
_CAMERAS = (("Apple", "iPhone 13", True), ("Apple", "iPhone SE (2nd generation)", True),
            ("samsung", "SM-G991B", True), ("Canon", "Canon EOS 250D", False),
            ("NIKON CORPORATION", "NIKON D5600", False), ("FUJIFILM", "X-T30", False))
_FIRST = ("Jane", "John", "Amelia", "Noah", "Olivia", "Liam", "Emma", "Lucas", "Mia", "Ethan", "Sofia", "Leo",
          "Aisha", "Omar", "Chloe", "Mateo", "Priya", "Kenji", "Zara", "Felix", "Nora", "Hugo", "Ines", "Tariq")
_LAST = ("Doe", "Roe", "Smith", "Jones", "Garcia", "Nguyen", "Okafor", "Muller", "Rossi", "Kowalski",
         "Haddad", "Tanaka", "Silva", "Dubois", "Novak", "Larsen", "Costa", "Patel", "Kim", "Moreau")

# How raters write site names; every form must parse with `Taxonomy.parse` (tests check all of them).
_BASE_WORDS = {
    "head": ("head", "Head", "HEAD", "face", "Face", "scalp", "forehead", "Head and face"),
    "neck": ("neck", "Neck", "NECK"),
    "chest": ("chest", "Chest", "CHEST", "thorax", "anterior chest", "Anterior trunk"),
    "abdomen": ("abdomen", "Abdomen", "ABDOMEN", "belly", "stomach"),
    "upper_back": ("upper back", "Upper Back", "upper-back", "UPPER_BACK", "upper_back", "back upper",
                   "Back (upper)"),
    "lower_back": ("lower back", "Lower Back", "lower-back", "LOWER_BACK", "lumbar", "low back", "Back (lower)"),
    "arm": ("arm", "Arm", "upper arm", "Upper arm"),
    "forearm": ("forearm", "Forearm", "lower arm"),
    "hand": ("hand", "Hand"),
    "thigh": ("thigh", "Thigh", "upper leg"),
    "leg": ("leg", "Leg", "lower leg", "shin", "calf"),
    "foot": ("foot", "Foot"),
}
_SIDE_FORMATS = {  # rater style -> formats; {s}=left, {S}=L, {St}=Lt, {base}
    "plain": ("{s} {base}", "{sc} {Base}"),
    "abbrev": ("{S} {base}", "{St}. {Base}", "{St} {base}"),
    "suffix": ("{base} ({s})", "{Base}, {s}", "{s}-{hbase}", "{base} ({S})"),
    "export": ("{SU}_{BASEU}", "{sc} {Base}", "{base} {S}"),
}
_STYLES = tuple(_SIDE_FORMATS)
_RATER_STYLE = {"R1": "plain", "R2": "abbrev", "R3": "suffix", "R4": "export"}
_RATER_ACCURACY = {"R1": 0.93, "R2": 0.91, "R3": 0.89, "R4": 0.84}
_CODES = ("unclear", "Unclear", "multiple", "Multiple sites", "not gradable", "Not gradable", "ungradable")


# ----------------------------------------------------------------------------------------------------------
# Spellings


def _side_parts(site: str) -> tuple[str | None, str]:
    if site.startswith(("left_", "right_")):
        side, base = site.split("_", 1)
        return side, base
    return None, site


def spelling_variants(site: str) -> list[str]:
    """Every spelling the simulated raters may write for an 18-site canonical name (for tests and docs)."""
    side, cls = _side_parts(site)
    bases = _BASE_WORDS[cls]
    if side is None:
        return sorted({*bases, cls.upper()})
    out = []
    for formats in _SIDE_FORMATS.values():
        for fmt in formats:
            for base in bases:
                out.append(_format_side(fmt, side, base))
    return sorted(set(out))


def _format_side(fmt: str, side: str, base: str) -> str:
    return fmt.format(
        s=side, sc=side.capitalize(), S=side[0].upper(), St=("Lt" if side == "left" else "Rt"),
        SU=side.upper(), base=base.lower(), Base=base.capitalize(), hbase=base.lower().replace(" ", "-"),
        BASEU=base.upper().replace(" ", "_"),
    )


def _spell(site: str, rater: str, rng: np.random.Generator) -> str:
    """One rater's spelling of a site: mostly their own habit, sometimes anything."""
    side, cls = _side_parts(site)
    style = _RATER_STYLE[rater] if rng.random() < 0.75 else _STYLES[int(rng.integers(len(_STYLES)))]
    bases = _BASE_WORDS[cls]
    base = bases[0] if rng.random() < 0.55 else bases[int(rng.integers(len(bases)))]
    if side is None:
        if style == "export" and rng.random() < 0.6:
            return cls.upper()
        return base
    formats = _SIDE_FORMATS[style]
    return _format_side(formats[int(rng.integers(len(formats)))], side, base)



# ----------------------------------------------------------------------------------------------------------
# Body geometry (units: one head height; y grows downwards from the top of the head; x=0 the midline)


_CIRCLES: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _circle(n: int) -> tuple[np.ndarray, np.ndarray]:
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


def _keypoints(body: dict) -> dict:
    """Joint positions of one patient; limbs keyed by x-sign (+1: viewer's right)."""
    T, wf, lf = body["T"], body["wf"], body["lf"]
    B = T - 1

    def y(f: float) -> float:
        return 1 + f * B

    sw = (0.30 + 0.095 * T) * wf
    kp: dict[str, Any] = dict(T=T, sh=y(0.055), nip=y(0.145), waist=y(0.26), navel=y(0.29), hip=y(0.37),
                              crotch=y(0.45), knee=y(0.72), ankle=y(0.955), sole=T, sw=sw,
                              ww=0.66 * sw * body["waist"], hw=0.74 * sw * body["hips"], nw=0.13 + 0.01 * T,
                              lf=lf)
    lua, lfa, lh = 0.23 * B, 0.19 * B, 0.12 * B + 0.05
    kp.update(lua=lua, lfa=lfa, lh=lh)
    for s in (1, -1):
        th = body["arm_angle"][s > 0]
        J = np.array([s * (sw - 0.13), kp["sh"] + 0.1])
        d1 = np.array([s * math.sin(th), math.cos(th)])
        E = J + lua * d1
        d2 = np.array([s * math.sin(th + body["elbow_bend"]), math.cos(th + body["elbow_bend"])])
        W = E + lfa * d2
        dh = _rot(d2, -s * 0.05)
        H = np.array([s * 0.5 * kp["hw"], kp["hip"] + 0.05])
        st = body["stance"]
        K = np.array([s * 0.48 * kp["hw"] * st, kp["knee"]])
        A = np.array([s * 0.44 * kp["hw"] * st, kp["ankle"]])
        kp[s] = dict(J=J, E=E, W=W, d1=d1, d2=d2, dh=dh, H=H, K=K, A=A)
    return kp


def _site_segment(site_cls: str, kp: dict, s: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(start, end, radius at start, radius at end) of the skin area a site covers; lesions live in it."""
    L, lf = kp.get(s, {}), kp["lf"]
    if site_cls == "head":
        return np.array([0, 0.2]), np.array([0, 0.92]), 0.3, 0.25
    if site_cls == "neck":
        return np.array([0, 1.0]), np.array([0, kp["sh"]]), kp["nw"] * 0.8, kp["nw"] * 0.9
    if site_cls in ("chest", "upper_back"):
        return np.array([0, kp["sh"] + 0.1]), np.array([0, kp["nip"] + 0.35]), 0.72 * kp["sw"], 0.7 * kp["sw"]
    if site_cls in ("abdomen", "lower_back"):
        return np.array([0, kp["nip"] + 0.45]), np.array([0, kp["hip"] - 0.02]), 0.85 * kp["ww"], 0.85 * kp["hw"]
    if site_cls == "arm":
        return L["J"] + 0.12 * L["d1"], L["E"] - 0.05 * L["d1"], 0.18 * lf, 0.14 * lf
    if site_cls == "forearm":
        return L["E"] + 0.05 * L["d2"], L["W"], 0.15 * lf, 0.1 * lf
    if site_cls == "hand":
        return L["W"] + 0.03 * L["dh"], L["W"] + 0.55 * kp["lh"] * L["dh"], 0.1, 0.12
    if site_cls == "thigh":
        return L["H"] + np.array([0, 0.25]), L["K"] - np.array([0, 0.1]), 0.45 * kp["hw"] * lf, 0.2 * lf
    if site_cls == "leg":
        return L["K"] + np.array([0, 0.12]), L["A"] - np.array([0, 0.02]), 0.19 * lf, 0.1 * lf
    if site_cls == "foot":
        return L["A"] + np.array([0, 0.04]), np.array([L["A"][0], kp["sole"] + 0.06]), 0.1, 0.15
    raise ValueError(site_cls)


def _site_frame(site_cls: str, kp: dict, s: int) -> tuple[np.ndarray, float]:
    """Where a clinician centres the camera for a site, and how much body the short image side spans."""
    L = kp.get(s, {})
    if site_cls == "head":
        return np.array([0, 0.56]), 1.45
    if site_cls == "neck":
        return np.array([0, 1.12]), 1.05
    if site_cls in ("chest", "upper_back"):  # framed from the chin / the hairline down
        return np.array([0, kp["nip"] - 0.22]), 1.75 * kp["sw"]
    if site_cls in ("abdomen", "lower_back"):
        return np.array([0, 0.5 * (kp["navel"] + kp["hip"])]), 1.55 * kp["sw"]
    if site_cls == "arm":
        return 0.5 * (L["J"] + L["E"]), 0.95 * kp["lua"]
    if site_cls == "forearm":
        return 0.5 * (L["E"] + L["W"]) + 0.05 * L["d2"], 1.05 * kp["lfa"]
    if site_cls == "hand":
        return L["W"] + 0.5 * kp["lh"] * L["dh"], 1.1 * kp["lh"]
    if site_cls == "thigh":
        return 0.42 * L["H"] + 0.58 * L["K"], 0.9 * (L["K"][1] - L["H"][1])
    if site_cls == "leg":
        return 0.5 * (L["K"] + L["A"]) + np.array([0, 0.08]), 0.95 * (L["A"][1] - L["K"][1])
    if site_cls == "foot":
        return np.array([L["A"][0], kp["sole"] - 0.08]), 0.95
    raise ValueError(site_cls)


class _Ops:
    """Drawing operations in body coordinates, in painter's order, split by layer.

    All points live in one array so that a photo transforms them with a single matrix product.
    """

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.n = 0
        self.base: list[tuple] = []  # (span, colour or "skin", outline width or 0)
        self.shadow: list[tuple] = []  # (span, line width or 0 for filled, strength 0..1)
        self.light: list[tuple] = []
        self.top: list[tuple] = []  # (kind, span, colour, width)
        self.points = np.zeros((0, 2))

    def _span(self, pts: np.ndarray) -> tuple[int, int]:
        pts = np.asarray(pts, float)
        self.chunks.append(pts)
        self.n += len(pts)
        return self.n - len(pts), self.n

    def skin(self, pts: np.ndarray, outline: float = 0.012) -> None:
        self.base.append((self._span(pts), "skin", outline))

    def fill(self, pts: np.ndarray, colour: Any, outline: float = 0.0) -> None:
        self.base.append((self._span(pts), colour, outline))

    def shade(self, pts: np.ndarray, width: float, strength: float) -> None:
        self.shadow.append((self._span(pts), width, strength))

    def lit(self, pts: np.ndarray, width: float, strength: float) -> None:
        self.light.append((self._span(pts), width, strength))

    def feature(self, kind: str, pts: np.ndarray, colour: Any, width: float) -> None:
        self.top.append((kind, self._span(pts), colour, width))

    def freeze(self) -> _Ops:
        self.points = np.concatenate(self.chunks)
        self.chunks = []
        return self


def _body_ops(body: dict, kp: dict, view: str) -> _Ops:
    """The whole body for one view: silhouettes, relief (shadows/highlights) and surface features."""
    o = _Ops()
    front = view == "front"
    T, sw, ww, hw, nw, lf = kp["T"], kp["sw"], kp["ww"], kp["hw"], kp["nw"], kp["lf"]
    hair, cloth = body["hair_rgb"], body["cloth_rgb"]
    sh, nip, hip, crotch = kp["sh"], kp["nip"], kp["hip"], kp["crotch"]

    # floor and foot shadows (drawn as base, not skin)
    o.fill(np.array([[-20, T - 0.32], [20, T - 0.32], [20, T + 20], [-20, T + 20]]), "floor")
    o.fill(np.array([[-20, T - 0.34], [20, T - 0.34], [20, T - 0.30], [-20, T - 0.30]]), "skirting")
    for s in (1, -1):
        A = kp[s]["A"]
        o.fill(_ellipse(A[0] + s * 0.03, T + 0.09, 0.2, 0.05), "floor_shadow")

    # legs and feet
    for s in (1, -1):
        L = kp[s]
        H, K, A = L["H"], L["K"], L["A"]
        knots = [(H[0] - s * 0.02, H[1] - 0.12, 0.52 * hw * lf), (*(H + 0.4 * (K - H)), 0.44 * hw * lf),
                 (*(K - np.array([0, 0.12])), 0.2 * lf), (*K, 0.175 * lf), (*(K + 0.28 * (A - K)), 0.19 * lf),
                 (*(A - np.array([0, 0.12])), 0.115 * lf), (*A, 0.1 * lf)]
        o.skin(_tube(knots))
        med = -s  # medial direction (towards the midline)
        if front:
            foot = np.array([[A[0] - 0.1, A[1]], [A[0] + 0.1, A[1]], [A[0] + s * 0.19 + med * 0.0, T + 0.02],
                             [A[0] + s * 0.15, T + 0.1], [A[0] + med * 0.16, T + 0.11],
                             [A[0] + med * 0.17, T + 0.0]])
            o.skin(foot)
            toes = ((-0.125, 0.046), (-0.045, 0.034), (0.02, 0.031), (0.075, 0.028), (0.12, 0.024))
            for i, (dx, r) in enumerate(toes):
                cx, cy = A[0] - med * dx + s * 0.01, T + 0.105 - 0.02 * i / 4
                o.skin(_ellipse(cx, cy, r, r * 1.25), outline=0.008)
                o.feature("poly", _ellipse(cx, cy + r * 0.5, r * 0.55, r * 0.5), "nail", 0)
                o.shade(_ellipse(cx, cy - r * 1.1, r * 0.8, r * 0.35), 0, 0.5)
            o.lit(_ellipse(A[0] + s * 0.08, A[1] + 0.02, 0.04, 0.05), 0, 0.6)  # malleolus
            o.lit(_ellipse(A[0] - s * 0.08, A[1] - 0.02, 0.04, 0.05), 0, 0.5)
            o.shade(np.array([[A[0] - 0.08, A[1] + 0.09], [A[0] + 0.08, A[1] + 0.09]]), 0.025, 0.35)
        else:
            foot = np.array([[A[0] - 0.1, A[1]], [A[0] + 0.1, A[1]], [A[0] + 0.12, T - 0.05],
                             [A[0] + 0.08, T + 0.04], [A[0] - 0.08, T + 0.04], [A[0] - 0.12, T - 0.05]])
            o.skin(foot)
            o.skin(_ellipse(A[0], T - 0.04, 0.115, 0.095))  # heel
            o.lit(_ellipse(A[0], T - 0.05, 0.06, 0.05), 0, 0.6)
            for dx in (-0.035, 0.035):  # Achilles tendon
                o.shade(np.array([[A[0] + dx, A[1] - 0.25], [A[0] + dx * 0.8, T - 0.12]]), 0.02, 0.5)
        # knee
        if front:
            o.lit(_ellipse(K[0], K[1] - 0.02, 0.09 * lf, 0.11 * lf), 0, 0.75)
            o.shade(_ellipse(K[0], K[1] + 0.13, 0.08, 0.03), 0, 0.6)
            o.shade(_ellipse(K[0] - s * 0.02, K[1] - 0.15, 0.11, 0.03), 0, 0.4)
        else:
            o.shade(np.array([[K[0] - 0.13, K[1] - 0.01], [K[0], K[1] + 0.02], [K[0] + 0.13, K[1] - 0.01]]),
                             0.022, 0.75)
            o.lit(_ellipse(*(K + 0.3 * (A - K)), 0.1, 0.22), 0, 0.45)  # calf
        o.shade(np.array([[H[0] + s * 0.1, H[1] + 0.4], [K[0] + s * 0.12, K[1] - 0.3]]), 0.07, 0.15)

    rx, ry, cy = 0.39 * body["head_w"], 0.5, 0.5
    if front and body["hair_style"] == "long":  # falls behind the shoulders
        o.fill(np.array([[-rx * 1.1, 0.3], [-rx * 1.3, 1.25], [-rx * 0.9, sh + 0.15], [rx * 0.9, sh + 0.15],
                         [rx * 1.3, 1.25], [rx * 1.1, 0.3]]), hair)
    # torso
    side = []
    for s in (1, -1):
        side.append([[s * nw, sh - 0.09], [s * sw * 0.8, sh - 0.02], [s * sw, sh + 0.12],
                     [s * sw * 0.88, sh + 0.4], [s * sw * 0.84, nip + 0.15], [s * ww, kp["waist"]],
                     [s * hw, hip], [s * hw * 1.01, crotch], [s * 0.1, crotch + 0.05]])
    torso = np.array(side[0] + side[1][::-1])
    o.skin(torso)
    # neck (no outline across the chest: drawn as fill plus two side lines)
    neck = np.array([[-nw, 0.82], [nw, 0.82], [nw * 1.05, sh - 0.02], [nw * 1.6, sh + 0.02],
                     [-nw * 1.6, sh + 0.02], [-nw * 1.05, sh - 0.02]])
    o.skin(neck, outline=0)
    for s in (1, -1):
        o.fill(np.array([[s * nw, 0.9], [s * nw * 1.04, sh - 0.05], [s * nw * 1.5, sh]]), "outline_line")

    # head
    a = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    fx, fy = rx * np.sin(a), cy - ry * np.cos(a)
    low = np.clip((fy - cy) / ry, 0, 1)
    fx = fx * (1 - body["jaw"] * low**2)
    face = np.stack([fx, fy], 1)
    if front:
        if body["hair_style"] == "long":
            o.fill(_ellipse(0, cy - 0.05, rx * 1.1, ry * 1.0), hair)
        else:
            o.fill(_ellipse(0, cy - 0.08, rx * 1.06, ry * 0.92), hair)
        for s in (1, -1):
            o.skin(_ellipse(s * rx * 0.98, 0.55, 0.065, 0.12), outline=0.01)
        o.skin(face)
        # fringe / hairline
        hl = body["hairline"]
        xs = np.linspace(-rx * 1.08, rx * 1.08, 15)
        wave = hl + 0.03 * np.sin(xs * 17 + body["hair_phase"]) + 0.18 * (xs / rx) ** 4
        arc = _ellipse(0, cy - 0.05, rx * 1.08, ry * 1.0, n=40)[20:][::-1]  # right -> over the top -> left
        cap = np.concatenate([np.stack([xs, wave], 1), arc])
        o.feature("poly", cap, hair, 0)
        for s in (1, -1):
            ex, ey = s * 0.16 * body["head_w"], 0.5
            o.feature("line", np.array([[ex - 0.08, 0.43], [ex, 0.405], [ex + 0.08, 0.42]]), hair, 0.025)
            o.feature("poly", _ellipse(ex, ey, 0.085, 0.04), (240, 238, 232), 0)
            o.feature("poly", _ellipse(ex, ey, 0.038, 0.038), body["eye_rgb"], 0)
            o.feature("poly", _ellipse(ex, ey, 0.016, 0.016), (12, 10, 10), 0)
            o.feature("line", _ellipse(ex, ey, 0.085, 0.04)[14:28], "outline_dark", 0.012)
            o.shade(_ellipse(s * 0.035, 0.67, 0.02, 0.013), 0, 0.9)  # nostrils
        o.shade(np.array([[0.03, 0.5], [0.045, 0.64]]), 0.025, 0.35)  # nose side
        o.lit(_ellipse(0, 0.6, 0.025, 0.07), 0, 0.5)
        o.feature("poly", _ellipse(0, 0.79, 0.1, 0.032), "lips", 0)
        o.feature("line", np.array([[-0.1, 0.79], [0, 0.795], [0.1, 0.79]]), "outline_dark", 0.01)
        o.shade(_ellipse(0, 0.9, 0.08, 0.02), 0, 0.3)  # under lip / chin
        o.shade(_ellipse(0, 1.03, rx * 0.7, 0.06), 0, 0.85)  # jaw shadow on the neck
        # clavicles and sternal notch
        o.shade(_ellipse(0, sh - 0.01, 0.045, 0.03), 0, 0.7)
        for s in (1, -1):
            clav = np.array([[s * 0.07, sh + 0.0], [s * sw * 0.4, sh + 0.02], [s * sw * 0.8, sh - 0.0]])
            o.lit(clav + np.array([0, -0.015]), 0.03, 0.8)
            o.shade(clav + np.array([0, 0.045]), 0.04, 0.75)
            o.shade(np.array([[s * nw * 0.7, 1.03], [s * 0.05, sh - 0.04]]), 0.025, 0.35)  # SCM
            # chest: pectoral fold and nipples
            o.shade(np.array([[s * sw * 0.15, nip + 0.12], [s * sw * 0.45, nip + 0.14],
                                       [s * sw * 0.8, nip + 0.02]]), 0.05, 0.3)
            nx = s * 0.42 * sw
            o.feature("poly", _ellipse(nx, nip, 0.075, 0.068), "areola", 0)
            o.feature("poly", _ellipse(nx, nip, 0.024, 0.024), "nipple", 0)
        o.shade(np.array([[0, nip + 0.25], [0, kp["navel"] - 0.06]]), 0.04, 0.2)  # linea alba
        for s in (1, -1):  # costal margins
            o.shade(np.array([[s * 0.08, nip + 0.3], [s * ww * 0.6, nip + 0.45],
                                       [s * ww * 0.95, nip + 0.52]]), 0.04, 0.2)
        navel = kp["navel"]
        o.shade(_ellipse(0, navel, 0.065, 0.08), 0, 0.8)
        o.feature("poly", _ellipse(0, navel + 0.005, 0.03, 0.042), "navel", 0)
        o.lit(_ellipse(0, navel + 0.05, 0.04, 0.015), 0, 0.6)
        # underwear (front): waistband below the navel, leg openings
        top_y = hip - 0.02
        pants = np.array([[-hw * 1.03, top_y], [hw * 1.03, top_y], [hw * 1.05, crotch + 0.08],
                          [0.12, crotch + 0.22], [-0.12, crotch + 0.22], [-hw * 1.05, crotch + 0.08]])
        o.feature("poly", pants, cloth, 0)
        o.feature("line", np.array([[-hw * 1.03, top_y + 0.02], [hw * 1.03, top_y + 0.02]]), "cloth_dark", 0.03)
        o.feature("line", np.array([[-hw * 0.55, top_y + 0.04], [-hw * 0.3, crotch - 0.02], [0, crotch + 0.05],
                                    [hw * 0.3, crotch - 0.02], [hw * 0.55, top_y + 0.04]]), "cloth_dark", 0.015)
        bow = np.array([[0, top_y + 0.035], [-0.06, top_y + 0.005], [-0.06, top_y + 0.065], [0, top_y + 0.035],
                        [0.06, top_y + 0.065], [0.06, top_y + 0.005]])
        o.feature("poly", bow, "bow", 0)  # the bow at the front of children's underwear
    else:
        for s in (1, -1):
            o.skin(_ellipse(s * rx * 0.98, 0.55, 0.065, 0.12), outline=0.01)
        o.skin(face)
        # the back of the head is all hair down to the nape (long hair tied up for the photo)
        nape = {"long": 1.02, "short": 0.93, "crop": 0.88}[body["hair_style"]]
        wide = 1.12 if body["hair_style"] == "long" else 1.05
        upper = _ellipse(0, cy - 0.03, rx * wide, ry * 1.02, n=40)[20:]  # left -> over the top -> right
        lower = np.array([[rx * wide * 0.98, cy + 0.1], [rx * 0.85, nape - 0.08], [rx * 0.45, nape],
                          [-rx * 0.45, nape], [-rx * 0.85, nape - 0.08], [-rx * wide * 0.98, cy + 0.1]])
        o.fill(np.concatenate([upper, lower]), hair)
        o.shade(_ellipse(0, 1.0, rx * 0.5, 0.04), 0, 0.4)
        # spine, paraspinal muscles, shoulder blades
        spine = np.array([[0, sh - 0.12], [0, nip], [0, kp["waist"]], [0, hip]])
        o.shade(spine, 0.16, 0.45)  # the valley between the paraspinal muscles
        o.shade(spine, 0.06, 0.9)
        for s in (1, -1):
            o.lit(np.array([[s * 0.14, nip - 0.1], [s * 0.15, kp["waist"]], [s * 0.14, hip - 0.05]]),
                  0.1, 0.7)
            blade = np.array([[s * 0.18, sh + 0.06], [s * 0.2, nip], [s * 0.3, nip + 0.2],
                              [s * sw * 0.62, nip - 0.05], [s * sw * 0.8, sh + 0.15]])
            o.shade(blade[:4], 0.065, 0.95)
            o.lit(_ellipse(s * (0.2 + sw * 0.6) / 2, nip - 0.12, sw * 0.22, 0.24, s * 0.2), 0, 0.7)
            o.shade(np.array([[s * 0.2, sh + 0.02], [s * sw * 0.85, sh + 0.1]]), 0.035, 0.45)  # spine of scapula
            o.shade(_ellipse(s * 0.12, hip - 0.09, 0.03, 0.025), 0, 0.7)  # dimples of Venus
        o.shade(np.array([[0, hip - 0.07], [0, crotch]]), 0.03, 0.9)  # buttock cleft
        top_y = hip + 0.04  # low-rise at the back: the top of the cleft shows
        pants = np.array([[-hw * 1.03, top_y], [-0.03, top_y + 0.03], [0.03, top_y + 0.03], [hw * 1.03, top_y],
                          [hw * 1.06, crotch + 0.12], [0.1, crotch + 0.2], [-0.1, crotch + 0.2],
                          [-hw * 1.06, crotch + 0.12]])
        o.feature("poly", pants, cloth, 0)
        o.feature("line", np.array([[-hw * 1.03, top_y + 0.02], [hw * 1.03, top_y + 0.02]]), "cloth_dark", 0.03)
        o.feature("line", np.array([[0, top_y + 0.06], [0, crotch + 0.18]]), "cloth_dark", 0.012)
        for s in (1, -1):  # buttocks: lit lobes, shadowed folds below
            o.lit(_ellipse(s * 0.45 * hw, 0.5 * (hip + crotch) + 0.03, 0.3 * hw, 0.12), 0, 0.6)
            o.shade(np.array([[s * 0.04, crotch + 0.02], [s * 0.45 * hw, crotch + 0.1], [s * 0.9 * hw, crotch + 0.04]]),
                    0.05, 0.8)

    # arms, hands
    for s in (1, -1):
        L = kp[s]
        J, E, W, d1, d2, dh = L["J"], L["E"], L["W"], L["d1"], L["d2"], L["dh"]
        lua, lfa, lh = kp["lua"], kp["lfa"], kp["lh"]
        knots = [(*(J - 0.05 * d1), 0.2 * lf), (*(J + 0.3 * lua * d1), 0.185 * lf), (*(J + 0.75 * lua * d1), 0.16 * lf),
                 (*E, 0.14 * lf), (*(E + 0.25 * lfa * d2), 0.15 * lf), (*(E + 0.7 * lfa * d2), 0.12 * lf),
                 (*W, 0.092 * lf), (*(W + 0.25 * lh * dh), 0.12), (*(W + 0.45 * lh * dh), 0.12)]
        o.skin(_tube(knots))  # arm, forearm and palm in one outline: no seam at the wrist
        lat = np.array([dh[1], -dh[0]]) * (1 if s > 0 else -1)  # points away from the body
        if lat[0] * s < 0:
            lat = -lat
        crease = np.array([E - 0.09 * lat, E + 0.02 * d1, E + 0.09 * lat])
        if front:
            o.shade(crease, 0.025, 0.8)  # antecubital crease
            o.lit(_ellipse(*(J + 0.35 * lua * d1), 0.09, 0.25, math.atan2(d1[1], d1[0]) - np.pi / 2), 0, 0.35)
        else:
            o.lit(_ellipse(*E, 0.05, 0.05), 0, 0.8)  # olecranon
            for k in (-1, 1):
                o.shade(np.array([E + 0.08 * k * d1 - 0.05 * lat, E + 0.08 * k * d1 + 0.05 * lat]),
                                 0.015, 0.6)
        # hand: palm, fingers, thumb
        base = W + 0.47 * lh * dh
        for k, (u, ln) in enumerate(((0.085, 0.47), (0.03, 0.53), (-0.028, 0.5), (-0.08, 0.38))):
            fd = _rot(dh, -s * (-0.04 + 0.14 * (1.5 - k)))
            p0 = base + u * lat - 0.05 * dh
            tip = p0 + ln * lh * fd
            o.skin(_tube([(*p0, 0.036), (*tip, 0.03)], n_sub=2), outline=0.01)
            if not front:
                o.feature("poly", _ellipse(*(tip - 0.04 * fd), 0.022, 0.03,
                                                math.atan2(fd[1], fd[0]) - np.pi / 2), "nail", 0)
            for f in (0.4, 0.7):
                q = p0 + f * ln * lh * fd
                o.shade(np.array([q - 0.028 * lat, q + 0.028 * lat]), 0.01, 0.6)
        td = _rot(dh, -s * 0.6) if lat[0] * s > 0 else _rot(dh, s * 0.6)
        t0 = W + 0.12 * lh * dh + 0.07 * lat
        if np.dot(td, lat) < 0:
            td = _rot(dh, s * 0.6)
        o.skin(_tube([(*t0, 0.045), (*(t0 + 0.38 * lh * td), 0.034)], n_sub=2), outline=0.01)
        for off in (0.02, 0.06):  # wrist creases
            q = W + off * dh
            o.shade(np.array([q - 0.08 * lat, q + 0.08 * lat]), 0.012, 0.7 if front else 0.3)
        if front:
            o.shade(np.array([W + 0.28 * lh * dh - 0.1 * lat, W + 0.2 * lh * dh + 0.02 * lat,
                                       W + 0.05 * lh * dh + 0.07 * lat]), 0.012, 0.6)  # palm crease
        else:
            for k in range(4):
                o.lit(_ellipse(*(base + (0.085 - 0.055 * k) * lat), 0.02, 0.02), 0, 0.6)  # knuckles
    return o.freeze()


# ----------------------------------------------------------------------------------------------------------
# Rendering one photo


class _Camera:
    """Body coordinates -> pixels: scale, rotation about the frame centre."""

    def __init__(self, w: int, h: int, centre: np.ndarray, short_side_units: float, angle: float):
        self.w, self.h = w, h
        self.scale = float(min(w, h) / short_side_units)
        c, s = math.cos(angle), math.sin(angle)
        self.m = self.scale * np.array([[c, -s], [s, c]])
        self.centre = np.asarray(centre, float)

    def xy(self, pts: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        return (np.asarray(pts, float) - self.centre) @ self.m.T + (self.w / 2 - offset[0], self.h / 2 - offset[1])

    def px(self, pts: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)) -> list[float]:
        return self.xy(pts, offset).ravel().tolist()

    def width(self, units: float) -> int:
        return max(1, round(units * self.scale))


def _blur(img: Image.Image, radius: float) -> Image.Image:
    """Gaussian blur; wide radii are blurred at reduced resolution (same look, a fraction of the time)."""
    if radius < 0.5:
        return img
    f = int(min(8, radius // 2.5, min(img.size) // 8))
    if f < 2:
        return img.filter(ImageFilter.GaussianBlur(float(radius)))
    small = img.reduce(f).filter(ImageFilter.GaussianBlur(float(radius / f)))
    return small.resize(img.size, Image.BILINEAR)


def _soft(size: tuple[int, int], polys: list[list[float]], radius: float) -> np.ndarray:
    """Soft-edged mask of polygons; a true Gaussian (lesion crops are small, and gradients need smoothness)."""
    img = Image.new("L", size, 0)
    d = ImageDraw.Draw(img)
    for p in polys:
        d.polygon(p, fill=255)
    if radius >= 0.5:
        img = img.filter(ImageFilter.GaussianBlur(float(radius)))
    return np.asarray(img, dtype=np.float32) * (1 / 255.0)


def _lesion_polys(lesion: dict, seg: tuple) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Plaque outlines, their sclerotic cores and the new-extension zone, in body coordinates."""
    start, end, r0, r1 = seg
    axis = end - start
    n = _unit(np.array([-axis[1], axis[0]]))

    def to_body(t: np.ndarray, u: np.ndarray) -> np.ndarray:
        r = r0 + (r1 - r0) * np.clip(t, 0, 1)
        return start + t[:, None] * axis + (u * r)[:, None] * n

    plaques, cores, ext = [], [], []
    co, si = _circle(36)
    a = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    for p in lesion["plaques"]:
        wob = 1 + sum(amp * np.cos(k * a + ph) for k, amp, ph in p["harmonics"])
        if p["kind"] == "linear":
            t = p["t0"] + (p["t1"] - p["t0"]) * (0.5 - 0.5 * co)
            u = p["u0"] + p["b"] * si * wob + p["wiggle"] * np.sin(t * p["freq"] + p["phase"])
            tc = p["t0"] + (p["t1"] - p["t0"]) * (0.5 - 0.42 * co)
            uc = p["u0"] + 0.6 * p["b"] * si + p["wiggle"] * np.sin(tc * p["freq"] + p["phase"])
        else:
            c, s = math.cos(p["angle"]), math.sin(p["angle"])
            x, y = p["a"] * co * wob, p["b"] * si * wob
            t, u = p["t0"] + c * x - s * y, p["u0"] + s * x + c * y
            tc, uc = p["t0"] + 0.7 * (c * x - s * y), p["u0"] + 0.7 * (s * x + c * y)
        plaques.append(to_body(t, u))
        cores.append(to_body(tc, uc))
        if p.get("ext_angle") is not None:
            k = int(p["ext_angle"] / (2 * np.pi) * len(a)) % len(a)
            # a spreading edge at one side of the plaque, and a small new satellite lesion beyond it
            ext.append(to_body(t[k] + 0.5 * (t - p["t0"]), u[k] + 0.5 * (u - p["u0"])))
            ext.append(to_body(t[k] + 1.0 * (t[k] - p["t0"]) + 0.25 * (t - p["t0"]),
                               u[k] + 1.0 * (u[k] - p["u0"]) + 0.25 * (u - p["u0"])))
    return plaques, cores, ext


def _paint_lesion(img: np.ndarray, skin: np.ndarray, cam: _Camera, lesion: dict, seg: tuple, sev: tuple,
                  light_dir: np.ndarray, skin_rgb: np.ndarray) -> None:
    """Paint morphea into `img` (uint8 RGB, in place, only around the plaque); each LoSCAT component drives
    one visual feature.

    erythema: violaceous/red ring and pink centre; skin_thickness: waxy ivory centre with a broad shine;
    new_extension: a red-violet zone spreading beyond the plaque; dermal_atrophy: translucent shiny centre
    with visible vessels; subcutaneous_atrophy: a depression (shadow on the side facing the light);
    dyspigmentation: mottled brown (hyper) or whitish (hypo) patches. Strength grows with severity/3.
    """
    if not any(sev):
        return
    e, t, ne, da, sa, dp = (v / 3.0 for v in sev)
    plaques, cores, ext = _lesion_polys(lesion, seg)
    r = cam.scale
    allp = np.concatenate([cam.xy(p) for p in plaques + ext])
    pad = 0.18 * r
    x0, y0 = max(0, int(allp[:, 0].min() - pad)), max(0, int(allp[:, 1].min() - pad))
    x1, y1 = min(cam.w, int(allp[:, 0].max() + pad) + 1), min(cam.h, int(allp[:, 1].max() + pad) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    off, size = (x0, y0), (x1 - x0, y1 - y0)
    im = img[y0:y1, x0:x1].astype(np.float32) * (1 / 255.0)
    sk = skin[y0:y1, x0:x1].astype(np.float32) * (1 / 255.0)
    M = _soft(size, [cam.px(p, off) for p in plaques], 0.015 * r) * sk
    if M.max() < 1e-3:
        return
    C = _soft(size, [cam.px(p, off) for p in cores], 0.035 * r) * M
    R = np.clip((M - C) * 1.6, 0, 1)
    lrng = np.random.default_rng(lesion["seed"])
    start, end, r0, r1 = seg
    axis = end - start
    nrm = _unit(np.array([-axis[1], axis[0]]))
    rad = 0.5 * (r0 + r1)
    P0 = lesion["plaques"][0]

    def seg_pt(tt: float, uu: float) -> np.ndarray:
        return start + tt * axis + uu * rad * nrm

    blobs = [_ellipse(*seg_pt(P0["t0"] + lrng.normal(0, 0.12), P0["u0"] + lrng.normal(0, 0.35)),
                      (0.06 + 0.08 * lrng.random()) * rad, (0.06 + 0.06 * lrng.random()) * rad, lrng.random() * 3)
             for _ in range(7)]
    vessels = []
    for _ in range(8):
        p = seg_pt(P0["t0"] + lrng.normal(0, 0.08), P0["u0"] + lrng.normal(0, 0.25))
        pts, ang = [p], lrng.random() * 2 * np.pi
        for _ in range(8):
            ang += lrng.normal(0, 0.6)
            p = p + 0.08 * rad * np.array([math.cos(ang), math.sin(ang)])
            pts.append(p)
        vessels.append(np.array(pts))
    sx, sy = (-light_dir * 0.2 * rad * r).astype(int)
    spot = np.roll(C, (int(sy), int(sx)), axis=(0, 1)) * C  # highlight offset towards the light

    if dp > 0:
        mot = _soft(size, [cam.px(b, off) for b in blobs], 0.03 * r)
        Pm = np.clip(0.55 * M + 0.7 * mot * M, 0, 1)[..., None]
        if lesion["pigment"] in ("hyper", "mixed"):
            im *= 1 - dp * 0.62 * Pm * (1 - np.array([0.62, 0.5, 0.42], np.float32))
        if lesion["pigment"] in ("hypo", "mixed"):
            pale = np.minimum(1, skin_rgb * 1.25 + 0.18).astype(np.float32)
            k = dp * 0.6 * (Pm if lesion["pigment"] == "hypo" else Pm * (1 - C[..., None]))
            im += (pale - im) * k
    if t > 0:
        ivory = (0.55 * np.array([0.95, 0.92, 0.84]) + 0.45 * np.minimum(1, skin_rgb * 1.45)).astype(np.float32)
        im += (ivory - im) * (0.75 * t * C)[..., None]
        im += (1 - im) * (0.35 * t * spot**2)[..., None]
    if da > 0:
        thin = np.array([0.8, 0.68, 0.82], np.float32) * im + np.array([0.1, 0.06, 0.1], np.float32)
        im += (thin - im) * (0.7 * da * C)[..., None]
        vimg = Image.new("L", size, 0)
        vd = ImageDraw.Draw(vimg)
        for v in vessels:
            vd.line(cam.px(v, off), fill=255, width=cam.width(0.012), joint="curve")
        V = np.asarray(vimg, np.float32) / 255.0 * C
        vessel = np.array([0.55, 0.18, 0.3], np.float32) * (0.5 + 0.5 * float(skin_rgb.mean()))
        im += (vessel - im) * (0.85 * da * V)[..., None]
        glint = np.clip(spot * 1.3 - 0.4, 0, 1)
        im += (1 - im) * (0.55 * da * glint)[..., None]
    if sa > 0:
        D = _soft(size, [cam.px(p, off) for p in plaques], 0.05 * r) * sk
        gy, gx = np.gradient(D)
        slope = (gx * light_dir[0] + gy * light_dir[1]) * (0.05 * r)
        im *= np.clip(1 + sa * (1.6 * slope - 0.18 * D), 0.3, 1.5)[..., None]
    violet = np.array([0.92, 0.5, 0.74], np.float32)
    if e > 0:
        im *= 1 - (e * 0.85 * R)[..., None] * (1 - violet)  # lilac ring
        im *= 1 - (e * 0.3 * C)[..., None] * (1 - np.array([1.0, 0.72, 0.78], np.float32))  # pink centre
    if ne > 0 and ext:
        E = _soft(size, [cam.px(p, off) for p in ext], 0.025 * r) * sk
        k = ne * np.clip(0.9 * E * (1 - 0.5 * C) + 0.35 * R, 0, 1)
        im *= 1 - k[..., None] * (1 - np.array([1.0, 0.42, 0.5], np.float32))  # bright red, active
    img[y0:y1, x0:x1] = np.clip(im * 255 + 0.5, 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _watermark(W: int, H: int) -> tuple[Image.Image, Image.Image]:
    """White "SYNTHETIC" with a dark shadow, for the bottom-right corner: an image and its paste mask."""
    fsize = max(8, round(min(W, H) / 32))
    font = ImageFont.load_default(size=fsize)
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), "SYNTHETIC", font=font)
    m = fsize // 2
    size = (x1 - x0 + m + 1, y1 + m + 1)
    mask = Image.new("L", size, 0)
    colour = Image.new("RGB", size, (0, 0, 0))
    ImageDraw.Draw(mask).text((1 - x0, 1), "SYNTHETIC", fill=255, font=font)
    ImageDraw.Draw(mask).text((-x0, 0), "SYNTHETIC", fill=255, font=font)
    ImageDraw.Draw(colour).text((-x0, 0), "SYNTHETIC", fill=(255, 255, 255), font=font)
    return colour, mask


def _palette(skin: np.ndarray, spec: dict) -> dict[str, tuple[int, int, int]]:
    s = skin * 255
    floor = np.array(spec["floor_rgb"], float)
    table = {
        "skin": s, "outline_line": s * 0.8, "outline_dark": s * 0.45, "areola": s * np.array([0.78, 0.6, 0.58]),
        "nipple": s * np.array([0.66, 0.48, 0.46]), "navel": s * 0.4, "lips": s * np.array([0.9, 0.6, 0.6]),
        "nail": np.minimum(255, s * 0.75 + np.array([70, 55, 55])), "floor": floor, "skirting": floor * 0.6,
        "floor_shadow": floor * 0.7, "cloth_dark": np.array(spec["patient"]["body"]["cloth_rgb"]) * 0.7,
        "bow": np.array(spec["patient"]["body"]["cloth_rgb"]) * 0.55 + np.array([110, 40, 60]),
    }
    return {k: tuple(int(v) for v in np.clip(c, 0, 255)) for k, c in table.items()}


_OPS_CACHE: dict[tuple, tuple[dict, _Ops]] = {}


def _ops_for(spec: dict) -> tuple[dict, _Ops]:
    """Body geometry per patient and view; workers see a patient's photos in a row, so cache a few."""
    key = (spec["view"], repr(spec["patient"]["body"]))
    if key not in _OPS_CACHE:
        if len(_OPS_CACHE) > 32:
            _OPS_CACHE.clear()
        kp = _keypoints(spec["patient"]["body"])
        _OPS_CACHE[key] = (kp, _body_ops(spec["patient"]["body"], kp, spec["view"]))
    return _OPS_CACHE[key]


def render_photo(spec: dict) -> Image.Image:
    """Render one upright photo (before EXIF rotation) at its final size; deterministic given `spec`."""
    rng = np.random.default_rng([spec["seed"], spec["index"], 11])
    W, H = spec["upright_size"]
    k = min(1.0, spec.get("work_side", WORK_SIDE) / max(W, H))
    w, h = max(32, round(W * k)), max(32, round(H * k))
    patient = spec["patient"]
    cls, xs = spec["class"], spec["x_sign"]
    kp, ops = _ops_for(spec)
    centre, short = _site_frame(cls, kp, xs)
    j = FRAMING
    short *= rng.uniform(*j["zoom"])
    centre = centre + rng.normal(0, j["shift"], 2) * short
    angle = rng.normal(0, j["roll"]) + (rng.choice([-1, 1]) * rng.uniform(0.2, 0.4) if rng.random() < j["tilt_p"] else 0)
    cam = _Camera(w, h, centre, short, angle)
    skin_rgb = np.array(patient["skin_rgb"], np.float32) / 255.0
    pal = _palette(skin_rgb, spec)

    # background: clinic wall, maybe a drape with folds
    base = Image.new("RGB", (w, h), tuple(spec["wall_rgb"]))
    bd = ImageDraw.Draw(base)
    if spec["drape_rgb"] is not None:
        x0, x1 = sorted(rng.uniform(-0.3, 1.3, 2) * w)
        bd.rectangle([x0, -1, x1, h + 1], fill=tuple(spec["drape_rgb"]))
        period = w / rng.uniform(3, 7)
        dark = tuple(int(v * 0.86) for v in spec["drape_rgb"])
        for xf in np.arange(x0 + rng.uniform(0, period), x1, period):
            bd.line([xf, -1, xf + rng.normal(0, 4), h + 1], fill=dark, width=max(2, int(period / 5)))

    # pass 1: silhouettes (skin with outlines, hair behind the head, floor)
    mask = Image.new("L", (w, h), 0)
    md = ImageDraw.Draw(mask)
    skin_col, edge_col = pal["skin"], pal["outline_line"]
    P = cam.xy(ops.points)

    def at(span: tuple[int, int]) -> list[float]:
        return P[span[0]:span[1]].ravel().tolist()

    for span, col, outline in ops.base:
        xy = at(span)
        if col == "skin":
            bd.polygon(xy, fill=skin_col, outline=edge_col if outline else None,
                       width=cam.width(outline) if outline else 1)
            md.polygon(xy, fill=255)
        elif col == "outline_line":
            bd.line(xy[:6], fill=edge_col, width=cam.width(0.012))
        else:
            bd.polygon(xy, fill=pal[col] if isinstance(col, str) else tuple(col))
            md.polygon(xy, fill=0)
    arr = np.array(base)
    skin8 = np.asarray(mask)

    light_dir = _unit(np.array([math.cos(spec["light_angle"]), math.sin(spec["light_angle"])]))
    if spec["lesion"] is not None:
        seg = _site_segment(cls, kp, xs)
        _paint_lesion(arr, skin8, cam, spec["lesion"], seg, tuple(spec["severity"]), light_dir, skin_rgb)

    # pass 2: surface features (eyes, hair, nipples, navel, underwear, nails), then a ruler now and then
    top = Image.fromarray(arr)
    td = ImageDraw.Draw(top)
    for kind, span, col, width in ops.top:
        c = pal[col] if isinstance(col, str) else tuple(col)
        if kind == "poly":
            td.polygon(at(span), fill=c)
        else:
            td.line(at(span), fill=c, width=cam.width(width), joint="curve")
    if spec["ruler"]:
        rx0, ry0 = rng.uniform(0.05, 0.6) * w, rng.uniform(0.8, 0.9) * h
        length, thick = 0.35 * w, max(4, h // 30)
        td.rectangle([rx0, ry0, rx0 + length, ry0 + thick], fill=(245, 245, 240), outline=(120, 120, 120))
        for i in range(16):
            x = rx0 + i * length / 16
            td.line([x, ry0, x, ry0 + thick * (0.6 if i % 5 == 0 else 0.35)], fill=(40, 40, 40), width=1)

    # one luminance map: body volume (darker towards silhouette edges), skin blotchiness, anatomical
    # relief (clavicles, spine, knee cap ...), light gradient and vignette
    vol = np.asarray(_blur(mask, 0.09 * cam.scale), np.float32) * (1 / 255.0)
    tex = Image.fromarray(rng.normal(0, 1, (h // 24 + 3, w // 24 + 3)).astype(np.float32), mode="F")
    tex = np.asarray(tex.resize((w, h), Image.BILINEAR), np.float32)

    def relief(items: list) -> np.ndarray:
        layer = Image.new("L", (w, h), 0)
        d = ImageDraw.Draw(layer)
        for span, width, strength in items:
            v = int(255 * strength)
            if width:
                d.line(at(span), fill=v, width=cam.width(width), joint="curve")
            else:
                d.polygon(at(span), fill=v)
        return np.asarray(_blur(layer, 0.025 * cam.scale), np.float32) * (1 / 255.0)

    body_shade = (0.5 + 0.5 * np.sqrt(vol)) * (1 + 0.025 * tex) * (1 - 0.42 * relief(ops.shadow)) \
        * (1 + 0.3 * relief(ops.light))
    lum = 1 + skin8 * (1 / 255.0) * (body_shade - 1)
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    lx, ly = light_dir
    lum = lum * (1 + spec["light_grad"] * ((0.5 - xx) * lx + (0.5 - yy) * ly) * 2)
    lum = lum * (1 - spec["vignette"] * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2)
    lum += rng.standard_normal((h, w), dtype=np.float32) * spec["noise"]  # sensor noise (luminance)
    # lum (0..2 stored as 0..255) times the picture, then white balance and exposure by lookup table
    lum8 = Image.fromarray(np.clip(lum * 127.5 + 0.5, 0, 255).astype(np.uint8))
    out = ImageChops.multiply(top, Image.merge("RGB", (lum8, lum8, lum8)))
    gain = np.array(spec["white_balance"]) * spec["exposure"] * 2
    lut = np.clip(np.arange(256)[None, :] * gain[:, None] + 0.5, 0, 255).astype(np.uint8)
    out = out.point(lut.ravel().tolist())
    # polygons are not anti-aliased: soften their stair steps before the upscale shows them
    out = out.filter(ImageFilter.GaussianBlur(0.012 * max(w, h)) if spec["defect"] == "blur" else ImageFilter.SMOOTH)
    if (w, h) != (W, H):
        out = out.resize((W, H), Image.BILINEAR)
    mark, mask_ = _watermark(W, H)  # every pixel of this archive is synthetic
    out.paste(mark, (W - mark.width, H - mark.height), mask_)
    return out


_STORE_OP = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def _exif(spec: dict) -> Image.Exif:
    ex = Image.Exif()
    meta = spec["exif"]
    ex[0x010E] = meta["description"]
    ex[0x010F], ex[0x0110] = meta["make"], meta["model"]
    ex[0x0131] = "loscat-hf phantom (SYNTHETIC)"
    ex[0x0132] = meta["datetime"]
    if spec["orientation"]:
        ex[0x0112] = spec["orientation"]
    sub = ex.get_ifd(0x8769)
    sub[0x9003] = sub[0x9004] = meta["datetime"]
    if meta["gps"] is not None:
        lat, lon = meta["gps"]
        gps = ex.get_ifd(0x8825)
        gps[0] = b"\x02\x03\x00\x00"
        gps[1], gps[3] = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
        gps[2], gps[4] = _dms(abs(lat)), _dms(abs(lon))
        gps[29] = meta["datetime"][:10]
    return ex


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    d = int(value)
    m = int((value - d) * 60)
    s = round(((value - d) * 60 - m) * 60 * 100)
    return IFDRational(d, 1), IFDRational(m, 1), IFDRational(s, 100)


def _render_and_save(spec: dict) -> str:
    """Worker: render, rotate the pixels for the EXIF orientation, write a JPEG with identifying EXIF."""
    img = render_photo(spec)
    op = _STORE_OP.get(spec["orientation"] or 1)
    if op is not None:
        img = img.transpose(op)
    path = Path(spec["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=spec.get("quality", 88), exif=_exif(spec).tobytes())
    return spec["path"]


# ----------------------------------------------------------------------------------------------------------
# The plan: patients, visits, lesions, photos, raters


def _severity_trajectory(rng: np.random.Generator, n_visits: int) -> list[tuple[int, ...]]:
    """Activity (erythema, thickness, new extension) fades with treatment; damage only stays or grows."""
    active = rng.random() < 0.7
    ch = rng.choice
    e = int(ch(4, p=[0.08, 0.32, 0.36, 0.24])) if active else int(ch(2, p=[0.7, 0.3]))
    t = int(ch(4, p=[0.08, 0.3, 0.38, 0.24])) if active else int(ch(3, p=[0.5, 0.35, 0.15]))
    ne = 3 if active and rng.random() < 0.35 else 0
    da = int(ch(4, p=[0.35, 0.33, 0.22, 0.1]))
    sa = int(ch(4, p=[0.45, 0.3, 0.17, 0.08]))
    dp = int(ch(4, p=[0.15, 0.33, 0.3, 0.22]))
    if not any((e, t, ne, da, sa, dp)):
        dp = 1
    rows = [(e, t, ne, da, sa, dp)]
    for _ in range(1, n_visits):
        if rng.random() < 0.12:  # flare
            e, t, ne = min(3, e + 1), min(3, t + 1), 3
        else:
            e, t = max(0, e - int(rng.integers(0, 3))), max(0, t - int(rng.integers(0, 2)))
            ne = 3 if rng.random() < 0.08 else 0
        da = min(3, da + int(rng.random() < 0.25))
        sa = min(3, sa + int(rng.random() < 0.15))
        dp = min(3, dp + int(rng.random() < 0.25))
        rows.append((e, t, ne, da, sa, dp))
    return rows


def _lesion_geometry(rng: np.random.Generator, cls: str, lesion_seed: int) -> dict:
    limb = cls in ("arm", "forearm", "thigh", "leg")
    linear = (limb and rng.random() < 0.5) or (cls == "head" and rng.random() < 0.6)
    n = 2 if (cls in ("chest", "abdomen", "upper_back", "lower_back", "thigh") and rng.random() < 0.25) else 1
    plaques = []
    for i in range(n):
        harm = [(k, float(rng.uniform(0, 0.13)), float(rng.uniform(0, 2 * np.pi))) for k in (2, 3, 5)]
        if linear and i == 0:
            t0 = float(rng.uniform(0.02, 0.25)) if cls != "head" else float(rng.uniform(-0.05, 0.05))
            t1 = float(rng.uniform(0.65, 0.98)) if cls != "head" else float(rng.uniform(0.35, 0.55))
            p = dict(kind="linear", t0=t0, t1=t1, u0=float(rng.uniform(-0.35, 0.35)),
                     b=float(rng.uniform(0.16, 0.3)), wiggle=float(rng.uniform(0.03, 0.12)),
                     freq=float(rng.uniform(4, 10)), phase=float(rng.uniform(0, 6.3)), harmonics=harm)
        else:
            a, b = float(rng.uniform(0.12, 0.26)), float(rng.uniform(0.28, 0.5))
            p = dict(kind="plaque", t0=float(rng.uniform(0.3, 0.7)), u0=float(rng.uniform(-0.3, 0.3)) * (1 - b),
                     a=a, b=b, angle=float(rng.uniform(0, np.pi)), harmonics=harm)
        p["ext_angle"] = float(rng.uniform(0, 2 * np.pi)) if i == 0 else None
        plaques.append(p)
    pigment = str(rng.choice(["hyper", "hypo", "mixed"], p=[0.55, 0.25, 0.2]))
    return dict(plaques=plaques, pigment=pigment, seed=lesion_seed)


def _make_patient(rng: np.random.Generator, index: int, pid: str, seed: int, sites: tuple[str, ...],
                  site_p: np.ndarray) -> dict:
    age = float(rng.uniform(2, 17.5))
    tone = SKIN_TONES[int(rng.choice(6, p=_TONE_P))]
    skin = np.array(_FITZPATRICK_RGB[tone], float) * rng.uniform(0.95, 1.04, 3)
    dark = SKIN_TONES.index(tone) >= 3
    hair_names = list(_HAIR)
    hp = [0.5, 0.35, 0.1, 0.03, 0.01, 0.01] if dark else [0.1, 0.22, 0.25, 0.2, 0.15, 0.08]
    hair = _HAIR[hair_names[int(rng.choice(6, p=hp))]]
    T = 4.6 + 0.15 * age + rng.normal(0, 0.12)
    body = dict(
        T=float(T), wf=float(rng.uniform(0.88, 1.15)), lf=float(rng.uniform(0.92, 1.1) + 0.03 * max(0, 6 - age)),
        waist=float(rng.uniform(0.92, 1.08)), hips=float(rng.uniform(0.92, 1.1) + (0.06 if age > 12 else 0)),
        arm_angle={True: float(rng.uniform(0.16, 0.34)), False: float(rng.uniform(0.16, 0.34))},
        elbow_bend=float(rng.uniform(-0.1, 0.06)), stance=float(rng.uniform(0.95, 1.35)),
        present_angle=float(rng.uniform(0.6, 1.15)), present_bend=float(rng.uniform(-0.15, 0.25)),
        head_w=float(rng.uniform(0.94, 1.06)), jaw=float(rng.uniform(0.18, 0.32)),
        hair_rgb=tuple(int(v) for v in np.array(hair) * rng.uniform(0.9, 1.1)),
        hair_style=str(rng.choice(["short", "long", "crop"], p=[0.45, 0.4, 0.15])),
        hairline=float(rng.uniform(0.18, 0.3)), hair_phase=float(rng.uniform(0, 6.3)),
        eye_rgb=_EYES[int(rng.integers(2 if dark else len(_EYES)))],
        cloth_rgb=_CLOTH[int(rng.integers(len(_CLOTH)))],
    )
    if body["hair_style"] == "crop":
        body["hairline"] = float(rng.uniform(0.12, 0.18))
    n_visits = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    start = dt.date(2020, 1, 6) + dt.timedelta(days=int(rng.integers(0, 5 * 365)))
    dates = [start]
    for _ in range(1, n_visits):
        dates.append(dates[-1] + dt.timedelta(days=int(rng.integers(80, 220))))
    n_sites = int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))
    affected = list(dict.fromkeys(str(s) for s in rng.choice(sites, size=n_sites, p=site_p)))
    lesions, sev = {}, {}
    for site in affected:
        cls = _side_parts(site)[1]
        si = sites.index(site)
        lesions[site] = _lesion_geometry(rng, cls, lesion_seed=seed * 1_000_003 + index * 101 + si)
        for v, row in enumerate(_severity_trajectory(rng, n_visits)):
            sev[(f"V{v + 1}", site)] = row
    return dict(
        pid=pid, index=index, age=round(age, 1), skin_tone=tone, skin_rgb=tuple(int(v) for v in np.clip(skin, 0, 255)),
        body=body, visits=[f"V{i + 1}" for i in range(n_visits)], dates=dates, lesions=lesions, severity=sev,
        first=_FIRST[int(rng.integers(len(_FIRST)))], last=_LAST[int(rng.integers(len(_LAST)))],
        mrn=int(rng.integers(10000, 99999)), affected=affected,
    )


def _site_probabilities(sites: tuple[str, ...], site_to_class: dict[str, str]) -> np.ndarray:
    per_class = Counter(site_to_class[s] for s in sites)
    p = np.array([_CLASS_WEIGHTS[site_to_class[s]] / per_class[site_to_class[s]] for s in sites])
    return p / p.sum()


def _photo_spec(rng: np.random.Generator, seed: int, index: int, patient: dict, visit: str, site: str,
                image_size: tuple[int, int], path: Path, number: int) -> dict:
    cls = _side_parts(site)[1]
    side = _side_parts(site)[0]
    if cls in ("chest", "abdomen", "head", "neck"):
        view = "front"
    elif cls in ("upper_back", "lower_back"):
        view = "back"
    else:
        view = "front" if rng.random() < (0.9 if cls == "foot" else 0.7) else "back"
    # front view: the patient's right is on the viewer's left (x<0); from behind, the other way round
    x_sign = (-1 if side == "right" else 1) * (1 if view == "front" else -1)
    if side is None:
        x_sign = 1
    body = patient["body"]
    if cls in ("arm", "forearm", "hand"):  # the patient holds the arm out for the photo
        body = {**body, "arm_angle": {**body["arm_angle"], x_sign > 0: body["present_angle"]},
                "elbow_bend": body["present_bend"]}
    orientation = int(rng.choice([6, 8, 3, 1], p=[0.5, 0.25, 0.1, 0.15])) if rng.random() < 0.2 else 0
    W, H = image_size
    upright = (H, W) if orientation in (6, 8) else (W, H)
    make, model, phone = _CAMERAS[int(rng.integers(len(_CAMERAS)))]
    vdate = patient["dates"][patient["visits"].index(visit)]
    stamp = dt.datetime.combine(vdate, dt.time(int(rng.integers(8, 17)), int(rng.integers(60)), int(rng.integers(60))))
    gps = (round(float(rng.uniform(35, 60)), 5), round(float(rng.uniform(-10, 25)), 5)) if phone else None
    u = rng.random()
    defect = "blur" if u < 0.03 else ("dark" if u < 0.05 else None)  # what raters then mark poor
    sev = patient["severity"].get((visit, site), (0, 0, 0, 0, 0, 0))
    lesion = patient["lesions"].get(site) if any(sev) else None
    return dict(
        seed=seed, index=index, path=str(path), upright_size=upright, orientation=orientation,
        patient={"pid": patient["pid"], "body": body, "skin_rgb": patient["skin_rgb"]}, view=view, site=site, **{"class": cls},
        x_sign=x_sign, lesion=lesion, severity=sev, wall_rgb=_WALLS[int(rng.integers(len(_WALLS)))],
        drape_rgb=_DRAPES[int(rng.integers(len(_DRAPES)))] if rng.random() < 0.5 else None,
        floor_rgb=_FLOORS[int(rng.integers(len(_FLOORS)))], ruler=bool(rng.random() < 0.15),
        light_angle=float(rng.uniform(-2.6, -0.5)), light_grad=float(rng.uniform(0.0, 0.22)),
        vignette=float(rng.uniform(0, 0.3)), exposure=float(rng.uniform(0.88, 1.1)) * (0.45 if defect == "dark" else 1),
        white_balance=tuple(float(v) for v in rng.uniform(0.94, 1.06, 3)), noise=float(rng.uniform(0.006, 0.02)),
        defect=defect,
        exif=dict(make=make, model=model, datetime=stamp.strftime("%Y:%m:%d %H:%M:%S"), gps=gps,
                  description=f"SYNTHETIC phantom - {patient['last']}, {patient['first']} MRN{patient['mrn']} "
                              f"{visit} {site.replace('_', ' ')} IMG_{number:04d}"),
    )


def _file_name(patient: dict, visit: str, number: int) -> str:
    date = patient["dates"][patient["visits"].index(visit)].isoformat()
    return f"{patient['last']}_{patient['first']}_MRN{patient['mrn']}_{date}_IMG_{number:04d}.jpg"


def _neighbour_site(rng: np.random.Generator, site: str, taxonomy, classes_neighbours: dict) -> str:
    side, cls = _side_parts(site)
    options = classes_neighbours.get(cls) or [cls]
    other = options[int(rng.integers(len(options)))]
    if other in taxonomy.site_to_class:
        return other
    s = side or ("left" if rng.random() < 0.5 else "right")
    return f"{s}_{other}"


def _ratings(rng: np.random.Generator, truth_site: str, defect: str | None, taxonomy,
             neighbours: dict) -> list[tuple[str, str, str]]:
    """1-3 raters: (rater, region as written, quality)."""
    n = int(rng.choice([1, 2, 3], p=[0.3, 0.42, 0.28]))
    raters = sorted(str(r) for r in rng.choice(RATERS, size=n, replace=False, p=[0.34, 0.3, 0.22, 0.14]))
    out = []
    for r in raters:
        u = rng.random()
        p_code = 0.3 if defect else 0.025
        if u < p_code:
            region = _CODES[int(rng.integers(len(_CODES)))]
        elif u < p_code + (1 - _RATER_ACCURACY[r]):
            region = _spell(_neighbour_site(rng, truth_site, taxonomy, neighbours), r, rng)
        else:
            site = truth_site
            side, cls = _side_parts(site)
            if side and rng.random() < 0.03:  # left/right slip: same class
                site = f"{'left' if side == 'right' else 'right'}_{cls}"
            region = _spell(site, r, rng)
        q = rng.random()
        if defect:
            quality = "poor" if q < 0.55 else ("exclude" if q < 0.7 else "good")
        else:
            quality = "poor" if q < 0.02 else ("exclude" if q < 0.03 else "good")
        out.append((r, region, quality))
    return out


# ----------------------------------------------------------------------------------------------------------
# Public entry point


def _check_args(out: Any, n_patients: Any, n_photos: Any, image_size: Any, n_unlabeled: Any, seed: Any,
                num_workers: Any) -> tuple[Path, tuple[int, int]]:
    def is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(n_patients) or n_patients < 1:
        raise LoscatError(f"--patients must be a whole number >= 1, got {n_patients!r}")
    if not is_int(n_photos) or n_photos < n_patients:
        raise LoscatError(f"--photos must be >= --patients ({n_patients}): every patient needs a photo; got {n_photos!r}")
    n_classes = len(load_taxonomy().classes)
    if n_photos < n_classes:
        raise LoscatError(f"--photos must be at least {n_classes} so that every class appears; got {n_photos}")
    if not is_int(n_unlabeled) or n_unlabeled < 0:
        raise LoscatError(f"--unlabeled must be a whole number >= 0, got {n_unlabeled!r}")
    if not is_int(seed) or seed < 0:
        raise LoscatError(f"--seed must be a whole number >= 0, got {seed!r}")
    if num_workers is not None and (not is_int(num_workers) or num_workers < 1):
        raise LoscatError(f"--num-workers must be >= 1, got {num_workers!r}")
    try:
        size = tuple(int(v) for v in image_size)
    except (TypeError, ValueError):
        raise LoscatError(f"--image-size must be two whole numbers W H, got {image_size!r}") from None
    if len(size) != 2 or not all(32 <= v <= 8192 for v in size):
        raise LoscatError(f"--image-size must be two numbers W H between 32 and 8192, got {image_size!r}")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise LoscatError(f"output {root} exists and is not a folder")
    return root, (size[0], size[1])


def _prepare_out(root: Path, overwrite: bool) -> None:
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise LoscatError(f"output folder {root} exists and is not empty; pass --overwrite or another folder")
        for name in OUTPUTS:  # only what demo-data writes: never a user's other files
            p = root / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
    root.mkdir(parents=True, exist_ok=True)


def _plan(n_patients: int, n_photos: int, n_unlabeled: int, image_size: tuple[int, int], seed: int,
          root: Path) -> tuple[list[dict], list[dict], list[dict], list[dict], list[dict]]:
    """Patients, photo specs, rating rows, truth rows; everything random is drawn here from `seed`."""
    tax = load_taxonomy()
    sites = tax.sites
    site_p = _site_probabilities(sites, tax.site_to_class)
    neighbours: dict[str, list[str]] = {}
    for pair in sorted(tuple(sorted(p)) for p in tax.neighbours):
        a, b = pair
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)

    rng = np.random.default_rng([seed, 1])
    patients = [_make_patient(rng, i, f"P{i + 1:04d}", seed, sites, site_p) for i in range(n_patients)]
    weights = rng.lognormal(0, 0.8, n_patients)
    counts = 1 + rng.multinomial(n_photos - n_patients, weights / weights.sum())
    assign: list[tuple[int, str, str]] = []  # (patient index, visit, site)
    for pi, c in enumerate(counts):
        pat = patients[pi]
        for _ in range(int(c)):
            visit = pat["visits"][int(rng.integers(len(pat["visits"])))]
            if rng.random() < 0.8:
                site = pat["affected"][int(rng.integers(len(pat["affected"])))]
            else:  # comparison photo of another (usually unaffected) site
                site = str(rng.choice(sites, p=site_p))
            assign.append((pi, visit, site))
    # every class present: re-aim photos from the most common classes at the missing ones
    for cls in tax.classes:
        have = Counter(tax.site_to_class[s] for _, _, s in assign)
        if have[cls]:
            continue
        big = have.most_common(1)[0][0]
        j = max(i for i, (_, _, s) in enumerate(assign) if tax.site_to_class[s] == big)
        options = [s for s in sites if tax.site_to_class[s] == cls]
        pi, visit, _ = assign[j]
        assign[j] = (pi, visit, options[int(rng.integers(len(options)))])

    specs, rating_rows, truth_rows = [], [], []
    number = 1000 + int(rng.integers(0, 3000))
    for idx, (pi, visit, site) in enumerate(assign):
        pat = patients[pi]
        number += 1 + int(rng.integers(0, 4))
        rel = f"{pat['pid']}/{visit}/{_file_name(pat, visit, number)}"
        spec = _photo_spec(rng, seed, idx, pat, visit, site, image_size, root / "images" / rel, number)
        specs.append(spec)
        sev = spec["severity"]
        truth_rows.append(dict(image=rel, patient_id=pat["pid"], visit=visit, site=site,
                               label=tax.site_to_class[site], **dict(zip(SEVERITY_COLUMNS, sev, strict=True)),
                               view=spec["view"], skin_tone=pat["skin_tone"], orientation=spec["orientation"],
                               defect=spec["defect"] or ""))
        for rater, region, quality in _ratings(rng, site, spec["defect"], tax, neighbours):
            rating_rows.append(dict(image=rel, patient_id=pat["pid"], visit=visit, region=region, rater=rater,
                                    quality=quality, skin_tone=pat["skin_tone"]))

    # unlabeled photos: other patients, drawn from their own stream so labelled output does not depend on it
    urng = np.random.default_rng([seed, 2])
    n_up = max(1, math.ceil(n_unlabeled / 4)) if n_unlabeled else 0
    upatients = [_make_patient(urng, n_patients + i, f"P{n_patients + i + 1:04d}", seed, sites, site_p)
                 for i in range(n_up)]
    unl_rows = []
    for j in range(n_unlabeled):
        pat = upatients[j % n_up]
        visit = pat["visits"][int(urng.integers(len(pat["visits"])))]
        site = (pat["affected"][int(urng.integers(len(pat["affected"])))] if urng.random() < 0.8
                else str(urng.choice(sites, p=site_p)))
        number += 1 + int(urng.integers(0, 4))
        rel = _file_name(pat, visit, number)
        spec = _photo_spec(urng, seed, n_photos + j, pat, visit, site, image_size, root / "unlabeled" / rel, number)
        specs.append(spec)
        unl_rows.append(dict(image=rel, patient_id=pat["pid"], visit=visit, site=site,
                             label=tax.site_to_class[site], **dict(zip(SEVERITY_COLUMNS, spec["severity"], strict=True)),
                             view=spec["view"], skin_tone=pat["skin_tone"], orientation=spec["orientation"],
                             defect=spec["defect"] or ""))

    # LoSCAT score table: every affected site at every visit, plus photographed unaffected sites (all zero)
    score_rows: dict[tuple[str, str, str], tuple[int, ...]] = {}
    for pat in patients + upatients:
        for (visit, site), sev in pat["severity"].items():
            score_rows[(pat["pid"], visit, site)] = sev
    for row in truth_rows + unl_rows:
        key = (row["patient_id"], row["visit"], row["site"])
        score_rows.setdefault(key, tuple(row[c] for c in SEVERITY_COLUMNS))
    order = {s: i for i, s in enumerate(sites)}
    scores = [dict(patient_id=p, visit=v, site=s, **dict(zip(SEVERITY_COLUMNS, sev, strict=True)))
              for (p, v, s), sev in sorted(score_rows.items(), key=lambda kv: (kv[0][0], kv[0][1], order[kv[0][2]]))]
    return specs, rating_rows, truth_rows, unl_rows, scores


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


_README = """# SYNTHETIC phantom data (loscat-hf demo-data)

**Every image, name, record number, date, GPS position and score in this folder is SYNTHETIC.**
No real patient is shown. The photos are drawn by `loscat_hf.demo.phantom` (seed {seed}) so that the
pipeline can be run and tested without clinical data. The identifying-looking file names and EXIF
(patient name in ImageDescription, GPS, camera, capture date) are fake on purpose: they let you check
that `loscat-hf prepare` de-identifies photos before anything is trained or shared.

- `images/<patient>/<visit>/*.jpg`: {n_photos} labelled photos of {n_patients} patients, one LoSCAT site each
  ({image_size[0]}x{image_size[1]}; about 20% stored rotated with an EXIF orientation tag).
- `annotations.csv`: one row per rating (image relative to `images/`, patient_id, visit, region as the
  rater wrote it, rater, quality, skin_tone): {n_ratings} rows by raters R1-R4, with messy spellings,
  neighbour-site disagreements, ties, "unclear"/"multiple"/"not gradable" and poor/exclude quality marks.
- `loscat_scores.csv`: LoSCAT component scores per patient, visit and site (erythema, skin_thickness,
  new_extension, dermal_atrophy, subcutaneous_atrophy, dyspigmentation); the painted plaques follow them.
- `photos_truth.csv`: ground truth per photo (the site the phantom camera aimed at, its class, severities).
- `unlabeled/`: {n_unlabeled} photos of other patients without labels; `unlabeled_metadata.csv` maps each
  file to patient_id and visit; `unlabeled_truth.csv` holds their true sites for checking batch labels.

Next step:

    loscat-hf prepare --annotations {out}/annotations.csv --images {out}/images --out DATASET \\
        --scores {out}/loscat_scores.csv

Per class (truth): {per_class}
"""


def generate_demo_data(out: str | Path, n_patients: int = 60, n_photos: int = 600,
                       image_size: tuple[int, int] = (1024, 768), n_unlabeled: int = 40, seed: int = 0,
                       overwrite: bool = False, num_workers: int | None = None) -> dict:
    """Write a SYNTHETIC clinic archive to `out` (photos, rater CSV, LoSCAT scores, truth) and return a summary.

    Same arguments give the same bytes. Raises LoscatError on bad arguments or a non-empty `out` without
    `overwrite` (which then replaces only what this function writes).
    """
    t0 = time.perf_counter()
    root, size = _check_args(out, n_patients, n_photos, image_size, n_unlabeled, seed, num_workers)
    specs, ratings, truth, unl, scores = _plan(n_patients, n_photos, n_unlabeled, size, seed, root)
    _prepare_out(root, overwrite)
    (root / "images").mkdir()
    if n_unlabeled:
        (root / "unlabeled").mkdir()

    workers = num_workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(specs) // 8 or 1))
    from tqdm import tqdm

    bar = tqdm(total=len(specs), desc="phantom photos", unit="photo", file=sys.stderr, mininterval=0.5,
               disable=len(specs) < 50)
    try:
        if workers == 1:
            for spec in specs:
                _render_and_save(spec)
                bar.update()
        else:
            with get_context().Pool(workers) as pool:
                for _ in pool.imap_unordered(_render_and_save, specs, chunksize=4):
                    bar.update()
    finally:
        bar.close()

    _write_csv(root / "annotations.csv", ratings,
               ["image", "patient_id", "visit", "region", "rater", "quality", "skin_tone"])
    truth_cols = ["image", "patient_id", "visit", "site", "label", *SEVERITY_COLUMNS, "view", "skin_tone",
                  "orientation", "defect"]
    _write_csv(root / "photos_truth.csv", truth, truth_cols)
    _write_csv(root / "loscat_scores.csv", scores, ["patient_id", "visit", "site", *SEVERITY_COLUMNS])
    if n_unlabeled:
        _write_csv(root / "unlabeled_metadata.csv", unl, ["image", "patient_id", "visit"])
        _write_csv(root / "unlabeled_truth.csv", unl, truth_cols)
    classes = load_taxonomy().classes
    per_class = Counter(r["label"] for r in truth)
    per_class_d = {c: per_class.get(c, 0) for c in classes}
    (root / "SYNTHETIC").write_text("Everything in this folder is SYNTHETIC phantom data made by loscat-hf "
                                    "demo-data. No real patient data.\n", encoding="utf-8")
    (root / "README.md").write_text(_README.format(
        seed=seed, n_photos=n_photos, n_patients=n_patients, image_size=size, n_ratings=len(ratings),
        n_unlabeled=n_unlabeled, out=root, per_class=", ".join(f"{c} {n}" for c, n in per_class_d.items()),
    ), encoding="utf-8")
    seconds = time.perf_counter() - t0
    summary = dict(
        out=str(root), images=str(root / "images"), annotations=str(root / "annotations.csv"),
        scores=str(root / "loscat_scores.csv"), truth=str(root / "photos_truth.csv"),
        unlabeled=str(root / "unlabeled") if n_unlabeled else None, n_patients=n_patients, n_photos=n_photos,
        n_ratings=len(ratings), n_unlabeled=n_unlabeled, n_score_rows=len(scores), per_class=per_class_d,
        per_skin_tone=dict(sorted(Counter(r["skin_tone"] for r in truth).items())),
        n_exif_orientation=sum(1 for r in truth if r["orientation"]), seconds=round(seconds, 1),
    )
    print(f"SYNTHETIC phantom data: {n_photos} photos of {n_patients} patients, {len(ratings)} ratings, "
          f"{n_unlabeled} unlabeled photos in {seconds:.1f} s -> {root}")
    print("  per class: " + ", ".join(f"{c} {n}" for c, n in per_class_d.items()))
    print(f"  {root / 'annotations.csv'}, {root / 'loscat_scores.csv'}, {root / 'photos_truth.csv'}, "
          f"{root / 'images'}" + (f", {root / 'unlabeled'}" if n_unlabeled else ""))
    print(f"  next: loscat-hf prepare --annotations {root / 'annotations.csv'} --images {root / 'images'} "
          f"--out DATASET --scores {root / 'loscat_scores.csv'} --keep-columns skin_tone")
    return summary
