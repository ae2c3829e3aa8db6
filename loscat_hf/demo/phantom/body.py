"""The phantom child's body as drawing operations: silhouettes, relief (shadows, highlights), surface
features.

Built once per patient and view in body coordinates (see anatomy) and cached by render, so that each photo
only transforms the points and paints. One function per body part; the call order is the painter's order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from loscat_hf.demo.phantom.shapes import _ellipse, _rot, _tube

_HEAD_CY, _HEAD_RY = 0.5, 0.5  # centre height and half height of the head: one head height tall


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
    """The whole body for one view: floor, legs, torso and neck, head (with chest or back), arms."""
    o = _Ops()
    front = view == "front"
    _floor(o, kp)
    for s in (1, -1):
        _leg(o, kp, s, front)
    rx = 0.39 * body["head_w"]
    if front and body["hair_style"] == "long":  # falls behind the shoulders
        sh = kp["sh"]
        o.fill(np.array([[-rx * 1.1, 0.3], [-rx * 1.3, 1.25], [-rx * 0.9, sh + 0.15], [rx * 0.9, sh + 0.15],
                         [rx * 1.3, 1.25], [rx * 1.1, 0.3]]), body["hair_rgb"])
    _torso_and_neck(o, kp)
    face = _face_outline(body, rx)
    if front:
        _head_front(o, body, rx, face)
        _chest_and_belly(o, kp)
        _underwear_front(o, kp, body["cloth_rgb"])
    else:
        _head_back(o, body, rx, face)
        _back(o, kp)
        _underwear_back(o, kp, body["cloth_rgb"])
    for s in (1, -1):
        _arm(o, kp, s, front)
    return o.freeze()


# ----------------------------------------------------------------------------------------------------------
# Floor and legs


def _floor(o: _Ops, kp: dict) -> None:
    """Floor, skirting board and the shadows under the feet (base colours, not skin)."""
    T = kp["T"]
    o.fill(np.array([[-20, T - 0.32], [20, T - 0.32], [20, T + 20], [-20, T + 20]]), "floor")
    o.fill(np.array([[-20, T - 0.34], [20, T - 0.34], [20, T - 0.30], [-20, T - 0.30]]), "skirting")
    for s in (1, -1):
        A = kp[s]["A"]
        o.fill(_ellipse(A[0] + s * 0.03, T + 0.09, 0.2, 0.05), "floor_shadow")


def _leg(o: _Ops, kp: dict, s: int, front: bool) -> None:
    """One leg (x-sign s) from hip to ankle, its foot and knee, and the thigh's side shadow."""
    L, hw, lf = kp[s], kp["hw"], kp["lf"]
    H, K, A = L["H"], L["K"], L["A"]
    knots = [(H[0] - s * 0.02, H[1] - 0.12, 0.52 * hw * lf), (*(H + 0.4 * (K - H)), 0.44 * hw * lf),
             (*(K - np.array([0, 0.12])), 0.2 * lf), (*K, 0.175 * lf), (*(K + 0.28 * (A - K)), 0.19 * lf),
             (*(A - np.array([0, 0.12])), 0.115 * lf), (*A, 0.1 * lf)]
    o.skin(_tube(knots))
    if front:
        _foot_front(o, kp, s)
    else:
        _foot_back(o, kp, s)
    _knee(o, kp, s, front)
    o.shade(np.array([[H[0] + s * 0.1, H[1] + 0.4], [K[0] + s * 0.12, K[1] - 0.3]]), 0.07, 0.15)


def _foot_front(o: _Ops, kp: dict, s: int) -> None:
    """Instep with toes and nails, ankle bones lit, the ankle crease."""
    T, A = kp["T"], kp[s]["A"]
    med = -s  # medial direction (towards the midline)
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


def _foot_back(o: _Ops, kp: dict, s: int) -> None:
    """Foot seen from behind: sole outline, lit heel, the Achilles tendon."""
    T, A = kp["T"], kp[s]["A"]
    foot = np.array([[A[0] - 0.1, A[1]], [A[0] + 0.1, A[1]], [A[0] + 0.12, T - 0.05],
                     [A[0] + 0.08, T + 0.04], [A[0] - 0.08, T + 0.04], [A[0] - 0.12, T - 0.05]])
    o.skin(foot)
    o.skin(_ellipse(A[0], T - 0.04, 0.115, 0.095))  # heel
    o.lit(_ellipse(A[0], T - 0.05, 0.06, 0.05), 0, 0.6)
    for dx in (-0.035, 0.035):  # Achilles tendon
        o.shade(np.array([[A[0] + dx, A[1] - 0.25], [A[0] + dx * 0.8, T - 0.12]]), 0.02, 0.5)


def _knee(o: _Ops, kp: dict, s: int, front: bool) -> None:
    """Knee cap and its folds from the front; the knee pit and the calf from behind."""
    L, lf = kp[s], kp["lf"]
    K, A = L["K"], L["A"]
    if front:
        o.lit(_ellipse(K[0], K[1] - 0.02, 0.09 * lf, 0.11 * lf), 0, 0.75)
        o.shade(_ellipse(K[0], K[1] + 0.13, 0.08, 0.03), 0, 0.6)
        o.shade(_ellipse(K[0] - s * 0.02, K[1] - 0.15, 0.11, 0.03), 0, 0.4)
    else:
        o.shade(np.array([[K[0] - 0.13, K[1] - 0.01], [K[0], K[1] + 0.02], [K[0] + 0.13, K[1] - 0.01]]),
                0.022, 0.75)
        o.lit(_ellipse(*(K + 0.3 * (A - K)), 0.1, 0.22), 0, 0.45)  # calf


# ----------------------------------------------------------------------------------------------------------
# Torso, neck, head


def _torso_and_neck(o: _Ops, kp: dict) -> None:
    """Torso outline, then the neck (no outline across the chest: a fill plus two side lines)."""
    sw, ww, hw, nw = kp["sw"], kp["ww"], kp["hw"], kp["nw"]
    sh, nip, hip, crotch = kp["sh"], kp["nip"], kp["hip"], kp["crotch"]
    side = []
    for s in (1, -1):
        side.append([[s * nw, sh - 0.09], [s * sw * 0.8, sh - 0.02], [s * sw, sh + 0.12],
                     [s * sw * 0.88, sh + 0.4], [s * sw * 0.84, nip + 0.15], [s * ww, kp["waist"]],
                     [s * hw, hip], [s * hw * 1.01, crotch], [s * 0.1, crotch + 0.05]])
    torso = np.array(side[0] + side[1][::-1])
    o.skin(torso)
    neck = np.array([[-nw, 0.82], [nw, 0.82], [nw * 1.05, sh - 0.02], [nw * 1.6, sh + 0.02],
                     [-nw * 1.6, sh + 0.02], [-nw * 1.05, sh - 0.02]])
    o.skin(neck, outline=0)
    for s in (1, -1):
        o.fill(np.array([[s * nw, 0.9], [s * nw * 1.04, sh - 0.05], [s * nw * 1.5, sh]]), "outline_line")


def _face_outline(body: dict, rx: float) -> np.ndarray:
    """An ellipse narrowed towards the chin by the patient's jaw shape."""
    cy, ry = _HEAD_CY, _HEAD_RY
    a = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    fx, fy = rx * np.sin(a), cy - ry * np.cos(a)
    low = np.clip((fy - cy) / ry, 0, 1)
    fx = fx * (1 - body["jaw"] * low**2)
    return np.stack([fx, fy], 1)


def _ears_and_face(o: _Ops, rx: float, face: np.ndarray) -> None:
    for s in (1, -1):
        o.skin(_ellipse(s * rx * 0.98, 0.55, 0.065, 0.12), outline=0.01)
    o.skin(face)


def _head_front(o: _Ops, body: dict, rx: float, face: np.ndarray) -> None:
    """Hair behind the face, the face, the hairline, then eyes, nose, lips and the jaw's shadow on the
    neck."""
    cy, ry, hair = _HEAD_CY, _HEAD_RY, body["hair_rgb"]
    if body["hair_style"] == "long":
        o.fill(_ellipse(0, cy - 0.05, rx * 1.1, ry * 1.0), hair)
    else:
        o.fill(_ellipse(0, cy - 0.08, rx * 1.06, ry * 0.92), hair)
    _ears_and_face(o, rx, face)
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


def _head_back(o: _Ops, body: dict, rx: float, face: np.ndarray) -> None:
    """The back of the head is all hair down to the nape (long hair tied up for the photo)."""
    cy, ry = _HEAD_CY, _HEAD_RY
    _ears_and_face(o, rx, face)
    nape = {"long": 1.02, "short": 0.93, "crop": 0.88}[body["hair_style"]]
    wide = 1.12 if body["hair_style"] == "long" else 1.05
    upper = _ellipse(0, cy - 0.03, rx * wide, ry * 1.02, n=40)[20:]  # left -> over the top -> right
    lower = np.array([[rx * wide * 0.98, cy + 0.1], [rx * 0.85, nape - 0.08], [rx * 0.45, nape],
                      [-rx * 0.45, nape], [-rx * 0.85, nape - 0.08], [-rx * wide * 0.98, cy + 0.1]])
    o.fill(np.concatenate([upper, lower]), body["hair_rgb"])
    o.shade(_ellipse(0, 1.0, rx * 0.5, 0.04), 0, 0.4)


# ----------------------------------------------------------------------------------------------------------
# Trunk surface and underwear


def _chest_and_belly(o: _Ops, kp: dict) -> None:
    """Clavicles and sternal notch, neck muscles, pectoral folds and nipples, linea alba, ribs, navel."""
    sw, ww, nw, sh, nip = kp["sw"], kp["ww"], kp["nw"], kp["sh"], kp["nip"]
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


def _underwear_front(o: _Ops, kp: dict, cloth: Any) -> None:
    """Waistband below the navel, leg openings and the bow of children's underwear."""
    hw, hip, crotch = kp["hw"], kp["hip"], kp["crotch"]
    top_y = hip - 0.02
    pants = np.array([[-hw * 1.03, top_y], [hw * 1.03, top_y], [hw * 1.05, crotch + 0.08],
                      [0.12, crotch + 0.22], [-0.12, crotch + 0.22], [-hw * 1.05, crotch + 0.08]])
    o.feature("poly", pants, cloth, 0)
    o.feature("line", np.array([[-hw * 1.03, top_y + 0.02], [hw * 1.03, top_y + 0.02]]), "cloth_dark", 0.03)
    o.feature("line", np.array([[-hw * 0.55, top_y + 0.04], [-hw * 0.3, crotch - 0.02], [0, crotch + 0.05],
                                [hw * 0.3, crotch - 0.02], [hw * 0.55, top_y + 0.04]]), "cloth_dark", 0.015)
    bow = np.array([[0, top_y + 0.035], [-0.06, top_y + 0.005], [-0.06, top_y + 0.065], [0, top_y + 0.035],
                    [0.06, top_y + 0.065], [0.06, top_y + 0.005]])
    o.feature("poly", bow, "bow", 0)


def _back(o: _Ops, kp: dict) -> None:
    """Spine, paraspinal muscles, shoulder blades, dimples of Venus, the top of the buttock cleft."""
    sw, sh, nip, hip, crotch = kp["sw"], kp["sh"], kp["nip"], kp["hip"], kp["crotch"]
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


def _underwear_back(o: _Ops, kp: dict, cloth: Any) -> None:
    """Low-rise at the back (the top of the cleft shows), then the buttocks' lit lobes and shadowed folds."""
    hw, hip, crotch = kp["hw"], kp["hip"], kp["crotch"]
    top_y = hip + 0.04
    pants = np.array([[-hw * 1.03, top_y], [-0.03, top_y + 0.03], [0.03, top_y + 0.03], [hw * 1.03, top_y],
                      [hw * 1.06, crotch + 0.12], [0.1, crotch + 0.2], [-0.1, crotch + 0.2],
                      [-hw * 1.06, crotch + 0.12]])
    o.feature("poly", pants, cloth, 0)
    o.feature("line", np.array([[-hw * 1.03, top_y + 0.02], [hw * 1.03, top_y + 0.02]]), "cloth_dark", 0.03)
    o.feature("line", np.array([[0, top_y + 0.06], [0, crotch + 0.18]]), "cloth_dark", 0.012)
    for s in (1, -1):
        o.lit(_ellipse(s * 0.45 * hw, 0.5 * (hip + crotch) + 0.03, 0.3 * hw, 0.12), 0, 0.6)
        o.shade(np.array([[s * 0.04, crotch + 0.02], [s * 0.45 * hw, crotch + 0.1],
                          [s * 0.9 * hw, crotch + 0.04]]),
                0.05, 0.8)


# ----------------------------------------------------------------------------------------------------------
# Arms and hands


def _arm(o: _Ops, kp: dict, s: int, front: bool) -> None:
    """Arm, forearm and palm in one outline (no seam at the wrist), the elbow, then the hand."""
    L, lf = kp[s], kp["lf"]
    J, E, W, d1, d2, dh = L["J"], L["E"], L["W"], L["d1"], L["d2"], L["dh"]
    lua, lfa, lh = kp["lua"], kp["lfa"], kp["lh"]
    knots = [(*(J - 0.05 * d1), 0.2 * lf), (*(J + 0.3 * lua * d1), 0.185 * lf),
             (*(J + 0.75 * lua * d1), 0.16 * lf),
             (*E, 0.14 * lf), (*(E + 0.25 * lfa * d2), 0.15 * lf), (*(E + 0.7 * lfa * d2), 0.12 * lf),
             (*W, 0.092 * lf), (*(W + 0.25 * lh * dh), 0.12), (*(W + 0.45 * lh * dh), 0.12)]
    o.skin(_tube(knots))
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
    _hand(o, kp, s, lat, front)


def _hand(o: _Ops, kp: dict, s: int, lat: np.ndarray, front: bool) -> None:
    """Fingers (nails from behind), thumb, wrist creases; palm crease from the front, knuckles from behind."""
    W, dh, lh = kp[s]["W"], kp[s]["dh"], kp["lh"]
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
