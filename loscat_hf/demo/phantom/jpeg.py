"""One phantom photo on disk: pixels turned for a random EXIF orientation, identifying EXIF, a JPEG.

Clinic archives hold rotated phone photos with names, dates and GPS in their EXIF; the phantom writes the
same so that `loscat-hf prepare` is tested on upright-ing and de-identifying them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from loscat_hf.demo.phantom.render import render_photo
from loscat_hf.io.images import PHANTOM_SOFTWARE

# EXIF orientation -> how the upright render is turned for storage (exif_transpose turns it back)
_STORE_OP = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def _exif(spec: dict) -> Image.Exif:
    """Camera, capture time, orientation, GPS (phones only), the patient's name in ImageDescription and the
    phantom mark in Software."""
    ex = Image.Exif()
    meta = spec["exif"]
    ex[0x010E] = meta["description"]
    ex[0x010F], ex[0x0110] = meta["make"], meta["model"]
    ex[0x0131] = PHANTOM_SOFTWARE  # Software: how `prepare` tells a phantom from a patient's photo
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
    """Decimal degrees -> EXIF GPS degrees, minutes, seconds (to 1/100 s)."""
    d = int(value)
    m = int((value - d) * 60)
    s = round(((value - d) * 60 - m) * 60 * 100)
    return IFDRational(d, 1), IFDRational(m, 1), IFDRational(s, 100)


def camera_grain(img: Image.Image, rng: np.random.Generator, sigma: float = 4.0) -> Image.Image:
    """What a camera adds at full resolution that the smooth render lacks: fine skin/fabric texture (noise
    correlated over ~2 px), per-pixel luminance noise and weaker colour noise. JPEG decoding cost follows the
    entropy this adds: phantoms go from ~0.3 to ~2-3 bits per pixel at quality 90-95, like camera photos."""
    w, h = img.size
    arr = np.asarray(img, np.float32)
    texture = rng.standard_normal((h // 2 + 1, w // 2 + 1), dtype=np.float32)
    texture = np.repeat(np.repeat(texture, 2, 0), 2, 1)[:h, :w]
    luma = rng.standard_normal((h, w), dtype=np.float32)
    chroma = rng.standard_normal((h, w, 3), dtype=np.float32)
    arr += (sigma * (0.6 * texture + 0.8 * luma))[..., None] + 0.5 * sigma * chroma
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def _render_and_save(spec: dict) -> str:
    """Worker: render, rotate the pixels for the EXIF orientation, write a JPEG with identifying EXIF."""
    img = render_photo(spec)
    if spec.get("camera_grain"):
        img = camera_grain(img, np.random.default_rng([spec["seed"], spec["index"], 13]))
    op = _STORE_OP.get(spec["orientation"] or 1)
    if op is not None:
        img = img.transpose(op)
    path = Path(spec["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=spec.get("quality", 88), exif=_exif(spec).tobytes())
    return spec["path"]
