"""Morphea lesions: random plaque shapes along a site's skin area, and painting them by LoSCAT severity.

A model can only learn scores that change the picture, so each of the six LoSCAT components drives one visual
feature here (see `_paint_lesion`); shape parameters are drawn in the plan, pixels only at render time.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from loscat_hf.demo.phantom.camera import _Camera
from loscat_hf.demo.phantom.shapes import _circle, _ellipse, _unit


def _lesion_geometry(rng: np.random.Generator, cls: str, lesion_seed: int) -> dict:
    """Plaque shapes for one site (linear morphea on limbs and the head, round plaques elsewhere), pigment."""
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
            p = dict(kind="plaque", t0=float(rng.uniform(0.3, 0.7)),
                     u0=float(rng.uniform(-0.3, 0.3)) * (1 - b),
                     a=a, b=b, angle=float(rng.uniform(0, np.pi)), harmonics=harm)
        p["ext_angle"] = float(rng.uniform(0, 2 * np.pi)) if i == 0 else None
        plaques.append(p)
    pigment = str(rng.choice(["hyper", "hypo", "mixed"], p=[0.55, 0.25, 0.2]))
    return dict(plaques=plaques, pigment=pigment, seed=lesion_seed)


def _span_lesion_geometry(rng: np.random.Generator, t_border: float, pigment: str, lesion_seed: int) -> dict:
    """One linear streak along two adjacent sites' joint segment (anatomy._span_segment), crossing their
    border at `t_border` by a clear margin on each side, so that the photo shows it in both sites."""
    harm = [(k, float(rng.uniform(0, 0.1)), float(rng.uniform(0, 2 * np.pi))) for k in (2, 3, 5)]
    p = dict(kind="linear", t0=float(rng.uniform(max(0.03, t_border - 0.38), t_border - 0.12)),
             t1=float(rng.uniform(t_border + 0.12, min(0.97, t_border + 0.38))),
             u0=float(rng.uniform(-0.18, 0.18)), b=float(rng.uniform(0.16, 0.26)),
             wiggle=float(rng.uniform(0.02, 0.08)), freq=float(rng.uniform(4, 10)),
             phase=float(rng.uniform(0, 6.3)), harmonics=harm, ext_angle=float(rng.uniform(0, 2 * np.pi)))
    return dict(plaques=[p], pigment=pigment, seed=lesion_seed)



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



def _soft(size: tuple[int, int], polys: list[list[float]], radius: float) -> np.ndarray:
    """Soft-edged mask of polygons; a true Gaussian (lesion crops are small, and gradients need
    smoothness)."""
    img = Image.new("L", size, 0)
    d = ImageDraw.Draw(img)
    for p in polys:
        d.polygon(p, fill=255)
    if radius >= 0.5:
        img = img.filter(ImageFilter.GaussianBlur(float(radius)))
    return np.asarray(img, dtype=np.float32) * (1 / 255.0)



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

    def soft(polys: list[np.ndarray], blur: float) -> np.ndarray:  # blur in body units
        return _soft(size, [cam.px(p, off) for p in polys], blur * r)

    im = img[y0:y1, x0:x1].astype(np.float32) * (1 / 255.0)
    sk = skin[y0:y1, x0:x1].astype(np.float32) * (1 / 255.0)
    M = soft(plaques, 0.015) * sk  # the plaque
    if M.max() < 1e-3:
        return
    C = soft(cores, 0.035) * M  # its sclerotic centre
    R = np.clip((M - C) * 1.6, 0, 1)  # its rim
    blobs, vessels, rad = _texture(lesion, seg)
    sx, sy = (-light_dir * 0.2 * rad * r).astype(int)
    spot = np.roll(C, (int(sy), int(sx)), axis=(0, 1)) * C  # highlight offset towards the light

    if dp > 0:
        _dyspigmentation(im, dp, M, C, soft(blobs, 0.03), lesion["pigment"], skin_rgb)
    if t > 0:
        _thickening(im, t, C, spot, skin_rgb)
    if da > 0:
        vimg = Image.new("L", size, 0)
        vd = ImageDraw.Draw(vimg)
        for v in vessels:
            vd.line(cam.px(v, off), fill=255, width=cam.width(0.012), joint="curve")
        V = np.asarray(vimg, np.float32) / 255.0 * C
        _dermal_atrophy(im, da, C, V, spot, skin_rgb)
    if sa > 0:
        D = soft(plaques, 0.05) * sk
        _depression(im, sa, D, light_dir, 0.05 * r)
    if e > 0:
        _erythema(im, e, R, C)
    if ne > 0 and ext:
        _new_extension(im, ne, soft(ext, 0.025) * sk, R, C)
    img[y0:y1, x0:x1] = np.clip(im * 255 + 0.5, 0, 255).astype(np.uint8)


def _texture(lesion: dict, seg: tuple) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Pigment blobs and small vessels around the first plaque, from the lesion's own seed (same every
    visit)."""
    lrng = np.random.default_rng(lesion["seed"])
    start, end, r0, r1 = seg
    axis = end - start
    nrm = _unit(np.array([-axis[1], axis[0]]))
    rad = 0.5 * (r0 + r1)
    P0 = lesion["plaques"][0]

    def seg_pt(tt: float, uu: float) -> np.ndarray:
        return start + tt * axis + uu * rad * nrm

    blobs = [_ellipse(*seg_pt(P0["t0"] + lrng.normal(0, 0.12), P0["u0"] + lrng.normal(0, 0.35)),
                      (0.06 + 0.08 * lrng.random()) * rad, (0.06 + 0.06 * lrng.random()) * rad,
                      lrng.random() * 3)
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
    return blobs, vessels, rad


# Each painter below changes the float RGB crop `im` in place; the masks are floats in 0..1 of the crop's
# size.


def _dyspigmentation(im: np.ndarray, dp: float, M: np.ndarray, C: np.ndarray, mot: np.ndarray, pigment: str,
                     skin_rgb: np.ndarray) -> None:
    """Mottled brown (hyper) and/or whitish (hypo) patches; `mot` is the mask of the pigment blobs."""
    Pm = np.clip(0.55 * M + 0.7 * mot * M, 0, 1)[..., None]
    if pigment in ("hyper", "mixed"):
        im *= 1 - dp * 0.62 * Pm * (1 - np.array([0.62, 0.5, 0.42], np.float32))
    if pigment in ("hypo", "mixed"):
        pale = np.minimum(1, skin_rgb * 1.25 + 0.18).astype(np.float32)
        k = dp * 0.6 * (Pm if pigment == "hypo" else Pm * (1 - C[..., None]))
        im += (pale - im) * k


def _thickening(im: np.ndarray, t: float, C: np.ndarray, spot: np.ndarray, skin_rgb: np.ndarray) -> None:
    """Waxy ivory centre with a broad shine."""
    ivory = (0.55 * np.array([0.95, 0.92, 0.84]) + 0.45 * np.minimum(1, skin_rgb * 1.45)).astype(np.float32)
    im += (ivory - im) * (0.75 * t * C)[..., None]
    im += (1 - im) * (0.35 * t * spot**2)[..., None]


def _dermal_atrophy(im: np.ndarray, da: float, C: np.ndarray, V: np.ndarray, spot: np.ndarray,
                    skin_rgb: np.ndarray) -> None:
    """Thin, translucent, shiny centre through which the vessels `V` show."""
    thin = np.array([0.8, 0.68, 0.82], np.float32) * im + np.array([0.1, 0.06, 0.1], np.float32)
    im += (thin - im) * (0.7 * da * C)[..., None]
    vessel = np.array([0.55, 0.18, 0.3], np.float32) * (0.5 + 0.5 * float(skin_rgb.mean()))
    im += (vessel - im) * (0.85 * da * V)[..., None]
    glint = np.clip(spot * 1.3 - 0.4, 0, 1)
    im += (1 - im) * (0.55 * da * glint)[..., None]


def _depression(im: np.ndarray, sa: float, D: np.ndarray, light_dir: np.ndarray, depth: float) -> None:
    """Subcutaneous atrophy: the plaque `D` sinks in, so its side facing the light falls into shadow."""
    gy, gx = np.gradient(D)
    slope = (gx * light_dir[0] + gy * light_dir[1]) * depth
    im *= np.clip(1 + sa * (1.6 * slope - 0.18 * D), 0.3, 1.5)[..., None]


def _erythema(im: np.ndarray, e: float, R: np.ndarray, C: np.ndarray) -> None:
    """Lilac ring on the rim `R`, pink centre."""
    violet = np.array([0.92, 0.5, 0.74], np.float32)
    im *= 1 - (e * 0.85 * R)[..., None] * (1 - violet)
    im *= 1 - (e * 0.3 * C)[..., None] * (1 - np.array([1.0, 0.72, 0.78], np.float32))


def _new_extension(im: np.ndarray, ne: float, E: np.ndarray, R: np.ndarray, C: np.ndarray) -> None:
    """Bright red, active: the spreading zone `E` beyond the plaque and, more faintly, its rim."""
    k = ne * np.clip(0.9 * E * (1 - 0.5 * C) + 0.35 * R, 0, 1)
    im *= 1 - k[..., None] * (1 - np.array([1.0, 0.42, 0.5], np.float32))
