"""Rendering one phantom photo from its spec: background, body, lesion, lighting, camera response, watermark.

Deterministic given the spec: all randomness comes from an RNG seeded with (seed, photo index), so any worker
renders the same pixels. Photos are drawn small (WORK_SIDE) and resized, trading detail for speed.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from loscat_hf.demo.phantom.anatomy import _keypoints, _site_frame, _site_segment, _span_frame, _span_segment
from loscat_hf.demo.phantom.body import _body_ops, _Ops
from loscat_hf.demo.phantom.camera import _aim_camera, _Camera
from loscat_hf.demo.phantom.lesions import _paint_lesion
from loscat_hf.demo.phantom.shapes import _unit

WORK_SIDE = 416  # photos are drawn with this long side, then resized to image_size: speed over detail


def render_photo(spec: dict) -> Image.Image:
    """Render one upright photo (before EXIF rotation) at its final size; deterministic given `spec`."""
    rng = np.random.default_rng([spec["seed"], spec["index"], 11])
    W, H = spec["upright_size"]
    k = min(1.0, spec.get("work_side", WORK_SIDE) / max(W, H))
    w, h = max(32, round(W * k)), max(32, round(H * k))
    patient = spec["patient"]
    cls, xs = spec["class"], spec["x_sign"]
    kp, ops = _ops_for(spec)
    pair = spec.get("span")  # two adjacent sites framed together, a lesion across their border
    cam = _aim_camera(rng, w, h, *(_span_frame(pair, kp, xs) if pair else _site_frame(cls, kp, xs)))
    skin_rgb = np.array(patient["skin_rgb"], np.float32) / 255.0
    pal = _palette(skin_rgb, spec)
    P = cam.xy(ops.points)

    base = _background(rng, spec, w, h)
    mask = _silhouettes(base, ops, P, cam, pal)  # pass 1: skin with outlines, hair behind the head, floor
    arr = np.array(base)
    skin8 = np.asarray(mask)

    light_dir = _unit(np.array([math.cos(spec["light_angle"]), math.sin(spec["light_angle"])]))
    if spec["lesion"] is not None:
        seg = _span_segment(pair, kp, xs)[0] if pair else _site_segment(cls, kp, xs)
        _paint_lesion(arr, skin8, cam, spec["lesion"], seg, tuple(spec["severity"]), light_dir, skin_rgb)

    # pass 2: surface features (eyes, hair, nipples, navel, underwear, nails), then a ruler now and then
    top = Image.fromarray(arr)
    td = ImageDraw.Draw(top)
    _features(td, ops, P, cam, pal)
    if spec["ruler"]:
        _ruler(rng, td, w, h)
    lum = _luminance(rng, spec, mask, skin8, ops, P, cam, light_dir)
    return _develop(top, lum, spec, (w, h), (W, H))


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


def _palette(skin: np.ndarray, spec: dict) -> dict[str, tuple[int, int, int]]:
    """The named colours body ops refer to, derived from this patient's skin, floor and clothes."""
    s = skin * 255
    floor = np.array(spec["floor_rgb"], float)
    table = {
        "skin": s, "outline_line": s * 0.8, "outline_dark": s * 0.45,
        "areola": s * np.array([0.78, 0.6, 0.58]),
        "nipple": s * np.array([0.66, 0.48, 0.46]), "navel": s * 0.4, "lips": s * np.array([0.9, 0.6, 0.6]),
        "nail": np.minimum(255, s * 0.75 + np.array([70, 55, 55])), "floor": floor, "skirting": floor * 0.6,
        "floor_shadow": floor * 0.7, "cloth_dark": np.array(spec["patient"]["body"]["cloth_rgb"]) * 0.7,
        "bow": np.array(spec["patient"]["body"]["cloth_rgb"]) * 0.55 + np.array([110, 40, 60]),
    }
    return {k: tuple(int(v) for v in np.clip(c, 0, 255)) for k, c in table.items()}


def _at(P: np.ndarray, span: tuple[int, int]) -> list[float]:
    """The pixel coordinates of one op's points, flat, as PIL wants them."""
    return P[span[0]:span[1]].ravel().tolist()


def _background(rng: np.random.Generator, spec: dict, w: int, h: int) -> Image.Image:
    """Clinic wall, maybe a drape with folds."""
    base = Image.new("RGB", (w, h), tuple(spec["wall_rgb"]))
    bd = ImageDraw.Draw(base)
    if spec["drape_rgb"] is not None:
        x0, x1 = sorted(rng.uniform(-0.3, 1.3, 2) * w)
        bd.rectangle([x0, -1, x1, h + 1], fill=tuple(spec["drape_rgb"]))
        period = w / rng.uniform(3, 7)
        dark = tuple(int(v * 0.86) for v in spec["drape_rgb"])
        for xf in np.arange(x0 + rng.uniform(0, period), x1, period):
            bd.line([xf, -1, xf + rng.normal(0, 4), h + 1], fill=dark, width=max(2, int(period / 5)))
    return base


def _silhouettes(base: Image.Image, ops: _Ops, P: np.ndarray, cam: _Camera, pal: dict) -> Image.Image:
    """Draw the base layer onto `base`; return the skin mask (what lesions and shading may touch)."""
    bd = ImageDraw.Draw(base)
    mask = Image.new("L", base.size, 0)
    md = ImageDraw.Draw(mask)
    skin_col, edge_col = pal["skin"], pal["outline_line"]
    for span, col, outline in ops.base:
        xy = _at(P, span)
        if col == "skin":
            bd.polygon(xy, fill=skin_col, outline=edge_col if outline else None,
                       width=cam.width(outline) if outline else 1)
            md.polygon(xy, fill=255)
        elif col == "outline_line":
            bd.line(xy[:6], fill=edge_col, width=cam.width(0.012))
        else:
            bd.polygon(xy, fill=pal[col] if isinstance(col, str) else tuple(col))
            md.polygon(xy, fill=0)
    return mask


def _features(td: ImageDraw.ImageDraw, ops: _Ops, P: np.ndarray, cam: _Camera, pal: dict) -> None:
    for kind, span, col, width in ops.top:
        c = pal[col] if isinstance(col, str) else tuple(col)
        if kind == "poly":
            td.polygon(_at(P, span), fill=c)
        else:
            td.line(_at(P, span), fill=c, width=cam.width(width), joint="curve")


def _ruler(rng: np.random.Generator, td: ImageDraw.ImageDraw, w: int, h: int) -> None:
    """A paper ruler near the bottom, as clinicians lay next to a lesion."""
    rx0, ry0 = rng.uniform(0.05, 0.6) * w, rng.uniform(0.8, 0.9) * h
    length, thick = 0.35 * w, max(4, h // 30)
    td.rectangle([rx0, ry0, rx0 + length, ry0 + thick], fill=(245, 245, 240), outline=(120, 120, 120))
    for i in range(16):
        x = rx0 + i * length / 16
        td.line([x, ry0, x, ry0 + thick * (0.6 if i % 5 == 0 else 0.35)], fill=(40, 40, 40), width=1)


def _blur(img: Image.Image, radius: float) -> Image.Image:
    """Gaussian blur; wide radii are blurred at reduced resolution (same look, a fraction of the time)."""
    if radius < 0.5:
        return img
    f = int(min(8, radius // 2.5, min(img.size) // 8))
    if f < 2:
        return img.filter(ImageFilter.GaussianBlur(float(radius)))
    small = img.reduce(f).filter(ImageFilter.GaussianBlur(float(radius / f)))
    return small.resize(img.size, Image.BILINEAR)


def _relief(items: list, P: np.ndarray, cam: _Camera) -> np.ndarray:
    """One relief layer (shadows or highlights) as a blurred 0..1 map."""
    layer = Image.new("L", (cam.w, cam.h), 0)
    d = ImageDraw.Draw(layer)
    for span, width, strength in items:
        v = int(255 * strength)
        if width:
            d.line(_at(P, span), fill=v, width=cam.width(width), joint="curve")
        else:
            d.polygon(_at(P, span), fill=v)
    return np.asarray(_blur(layer, 0.025 * cam.scale), np.float32) * (1 / 255.0)


def _luminance(rng: np.random.Generator, spec: dict, mask: Image.Image, skin8: np.ndarray, ops: _Ops,
               P: np.ndarray, cam: _Camera, light_dir: np.ndarray) -> np.ndarray:
    """One luminance map: body volume (darker towards silhouette edges), skin blotchiness, anatomical relief
    (clavicles, spine, knee cap ...), light gradient, vignette and sensor noise."""
    w, h = cam.w, cam.h
    vol = np.asarray(_blur(mask, 0.09 * cam.scale), np.float32) * (1 / 255.0)
    tex = Image.fromarray(rng.normal(0, 1, (h // 24 + 3, w // 24 + 3)).astype(np.float32), mode="F")
    tex = np.asarray(tex.resize((w, h), Image.BILINEAR), np.float32)
    body_shade = (0.5 + 0.5 * np.sqrt(vol)) * (1 + 0.025 * tex) * (1 - 0.42 * _relief(ops.shadow, P, cam)) \
        * (1 + 0.3 * _relief(ops.light, P, cam))
    lum = 1 + skin8 * (1 / 255.0) * (body_shade - 1)
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    lx, ly = light_dir
    lum = lum * (1 + spec["light_grad"] * ((0.5 - xx) * lx + (0.5 - yy) * ly) * 2)
    lum = lum * (1 - spec["vignette"] * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2)
    lum += rng.standard_normal((h, w), dtype=np.float32) * spec["noise"]  # sensor noise (luminance)
    return lum


def _develop(top: Image.Image, lum: np.ndarray, spec: dict, work: tuple[int, int],
             final: tuple[int, int]) -> Image.Image:
    """Like a camera's processing: apply luminance, white balance and exposure, soften, resize, watermark."""
    # lum (0..2 stored as 0..255) times the picture, then white balance and exposure by lookup table
    lum8 = Image.fromarray(np.clip(lum * 127.5 + 0.5, 0, 255).astype(np.uint8))
    out = ImageChops.multiply(top, Image.merge("RGB", (lum8, lum8, lum8)))
    gain = np.array(spec["white_balance"]) * spec["exposure"] * 2
    lut = np.clip(np.arange(256)[None, :] * gain[:, None] + 0.5, 0, 255).astype(np.uint8)
    out = out.point(lut.ravel().tolist())
    # polygons are not anti-aliased: soften their stair steps before the upscale shows them
    out = out.filter(ImageFilter.GaussianBlur(0.012 * max(work)) if spec["defect"] == "blur"
                     else ImageFilter.SMOOTH)
    W, H = final
    if work != final:
        out = out.resize((W, H), Image.BILINEAR)
    mark, mask_ = _watermark(W, H)  # every pixel of this archive is synthetic
    out.paste(mark, (W - mark.width, H - mark.height), mask_)
    return out


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
