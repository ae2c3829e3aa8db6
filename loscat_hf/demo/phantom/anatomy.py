"""Where things are on a phantom body: joints, the skin area of each LoSCAT site, where a clinician aims.

Units: one head height; y grows downwards from the top of the head; x=0 is the midline. Drawing (body),
lesion placement (lesions) and framing (render) all read positions from here, so they agree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from loscat_hf.demo.phantom.shapes import _rot


def _side_parts(site: str) -> tuple[str | None, str]:
    """Split a canonical site name: left_arm -> ("left", "arm"), neck -> (None, "neck")."""
    if site.startswith(("left_", "right_")):
        side, base = site.split("_", 1)
        return side, base
    return None, site


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
        return (np.array([0, kp["nip"] + 0.45]), np.array([0, kp["hip"] - 0.02]), 0.85 * kp["ww"],
                0.85 * kp["hw"])
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


# Adjacent sites one photo may show with a lesion running across their border (`multi_region`), proximal
# first (the taxonomy's order too). Head and neck are the taxonomy's midline sites ("face"/"scalp" are only
# spellings of head), so a frontal linear streak (en coup de sabre) runs from head into neck.
SPAN_PAIRS = (("thigh", "leg"), ("arm", "forearm"), ("forearm", "hand"), ("chest", "abdomen"),
              ("head", "neck"))


def _span_segment(pair: tuple[str, str], kp: dict, s: int) -> tuple[tuple, float]:
    """The skin area of two adjacent sites as one straight segment (start of the first, end of the second),
    and where along it (0..1) the first site ends: a spanning lesion crosses that point."""
    a0, a1, ra, _ = _site_segment(pair[0], kp, s)
    b0, b1, _, rb = _site_segment(pair[1], kp, s)
    axis = b1 - a0
    border = 0.5 * (a1 + b0)
    t_border = float(np.dot(border - a0, axis) / np.dot(axis, axis))
    return (a0, b1, ra, rb), t_border


def _span_frame(pair: tuple[str, str], kp: dict, s: int) -> tuple[np.ndarray, float]:
    """A camera frame showing both sites of a pair: centred between their frames, wide enough for both."""
    ca, sa = _site_frame(pair[0], kp, s)
    cb, sb = _site_frame(pair[1], kp, s)
    short = max(sa, sb, 0.9 * (float(np.linalg.norm(cb - ca)) + 0.5 * (sa + sb)))
    return 0.5 * (ca + cb), short
