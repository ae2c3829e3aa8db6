"""Safe photo loading: one place that turns any clinical photo file into a clean, upright RGB image.

Packing, batch prediction and the demo all go through `open_image`, so a photo looks the same to the
model at training and at inference time (EXIF orientation applied, same colour handling, same resize),
and every way a file can be broken is reported as one `ImageProblemError` kind instead of a traceback.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageFile, UnidentifiedImageError

from loscat_hf.errors import LoscatError

PROBLEM_KINDS = ("missing_image", "zero_byte", "not_an_image", "truncated", "decompression_bomb",
                 "unreadable")
DEFAULT_MAX_PIXELS = 80_000_000  # a 100 MP medium-format photo is rare; a 1e10-pixel header is an attack
# The EXIF Software tag of every `loscat-hf demo-data` phantom photo, stated once: the phantom writer
# (demo/phantom/jpeg.py) sets it, packing reads it (`is_phantom`) to count a dataset's SYNTHETIC photos. The
# tag travels with a photo copied anywhere; packing re-encodes photos without EXIF, so the count is the
# record.
PHANTOM_SOFTWARE = "loscat-hf phantom (SYNTHETIC)"

# Magic numbers of formats Pillow reads: a file that starts like one but cannot be parsed is damaged,
# which is a different fix for the user than "this is not a photo at all".
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"RIFF", "WEBP"),
)
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")

# same mapping as ImageOps.exif_transpose
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
RESAMPLE = Image.Resampling.LANCZOS
REDUCING_GAP = 3.0

_SRGB: ImageCms.ImageCmsProfile | None = None


class ImageProblemError(LoscatError):
    """A photo that cannot be used; `kind` is one of PROBLEM_KINDS and counts exclusions by reason."""

    def __init__(self, kind: str, source: str, reason: str):
        if kind not in PROBLEM_KINDS:
            raise ValueError(f"unknown image problem kind {kind!r}")
        self.kind = kind
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


def _sniff(head: bytes) -> str | None:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftyphevc", b"ftypmif1"):
        return "HEIC"
    return None


def read_image_bytes(source: str | os.PathLike | bytes | BinaryIO) -> tuple[bytes, str]:
    """All bytes of a photo and a name for messages (packing hashes them); a missing/unreadable file raises
    ImageProblemError."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageProblemError("missing_image", name, "file not found") from None
        except IsADirectoryError:
            raise ImageProblemError("unreadable", name, "is a folder, not a photo file") from None
        except PermissionError:
            raise ImageProblemError("unreadable", name, "permission denied when reading the file") from None
        except OSError as exc:
            raise ImageProblemError("unreadable", name,
                                    f"cannot read the file: {exc.strerror or exc}") from None
        return data, name
    name = str(getattr(source, "name", "<stream>"))
    try:
        data = source.read()
    except OSError as exc:
        raise ImageProblemError("unreadable", name, f"cannot read the stream: {exc}") from None
    if not isinstance(data, (bytes, bytearray)):
        raise ImageProblemError("unreadable", name, "the stream is not opened in binary mode")
    return bytes(data), name


def is_phantom(data: bytes) -> bool:
    """Whether a photo file is a `loscat-hf demo-data` phantom: its EXIF Software tag is PHANTOM_SOFTWARE.

    A byte search first (a clinic's photo never holds the string, so it costs no decode), then the EXIF tag
    itself: the string in a comment or a file name inside XMP does not make a photo a phantom."""
    if PHANTOM_SOFTWARE.encode() not in data:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:  # the header only: no pixel is decoded
                return img.getexif().get(ExifTags.Base.Software) == PHANTOM_SOFTWARE
    except Exception:  # noqa: BLE001 - a damaged header is open_image's to report, not a phantom
        return False


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """16/32-bit grayscale -> 8 bit by scaling the range: Pillow's convert('L') clips everything > 255 to
    white."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        scaled = arr.astype(np.float32) / 257.0  # 65535 -> 255
    elif img.mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 255:
        scaled = arr.astype(np.float32)
    elif img.mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        scaled = arr.astype(np.float32) / 257.0  # 16-bit data stored as 32-bit ints
    else:  # float or unusual int range: stretch what is there
        arr = arr.astype(np.float64)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _normalise_mode(img: Image.Image) -> Image.Image:
    """Any mode -> 'RGB', 'RGBA', 'L' or 'CMYK' (8 bit), keeping transparency so it can go on white."""
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        return _to_8bit_gray(img)
    if mode == "1":
        return img.convert("L")
    if mode in _ALPHA_MODES:
        return img.convert("RGBA")
    if mode in ("P", "L", "RGB") and "transparency" in img.info:
        return img.convert("RGBA")
    if mode in ("L", "RGB", "CMYK"):
        return img
    return img.convert("RGB")  # P without transparency, YCbCr, LAB, HSV, ...


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """Apply an embedded non-sRGB colour profile (phones write Display P3) before the profile is stripped."""
    global _SRGB
    if not icc:
        return img
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(profile).lower().replace(" ", ""):
            return img
        if _SRGB is None:
            _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(img, profile, _SRGB, outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return img  # a broken or mismatched profile: the pixels as stored are the best guess


def _draft_request(size: tuple[int, int], target: tuple[int, int], max_side: int, slack: float,
                   min_side: int | None = None) -> tuple[int, int]:
    """The size to ask `Image.draft` for: the target, or a coarser DCT scale that is within the slack (or,
    when the caller needs only `min_side` < max_side, the coarsest scale that still covers min_side)."""
    w, h = size
    if min_side:
        for scale in (8, 4, 2):
            # libjpeg rounds scaled sizes up; never below: no upsampling
            if -(-min(w, h) // scale) >= min_side:
                return max(1, w // scale), max(1, h // scale)
        return target
    if slack > 0 and max_side:
        for scale in (8, 4, 2):
            short = -(-min(w, h) // scale)  # libjpeg rounds scaled sizes up
            if (1.0 - slack) * max_side <= short <= max_side:
                return max(1, w // scale), max(1, h // scale)  # floor: draft picks exactly this scale
    return target


def _target_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    w, h = size
    if not max_side or min(w, h) <= max_side:
        return w, h
    scale = max_side / min(w, h)
    # the shorter side lands exactly on max_side; the longer keeps the aspect ratio
    return (max_side, max(1, round(h * scale))) if w <= h else (max(1, round(w * scale)), max_side)


def open_image(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    max_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    size_slack: float = 0.0,
    min_side: int | None = None,
) -> Image.Image:
    """Decode a photo fully into a metadata-free, upright RGB image whose shorter side is <= max_side.

    With `size_slack` s > 0 a JPEG whose 1/2, 1/4 or 1/8-scale decode lands the shorter side between
    (1 - s) * max_side and max_side is taken as is, skipping the resample (about half the time per photo);
    otherwise the shorter side is exactly max_side (LANCZOS). With `min_side` (a model's input size, smaller
    than max_side) a JPEG decodes at the coarsest DCT scale whose shorter side is still at least min_side
    (never upsampled), and is resampled only if that is above max_side: nothing is resampled that would not
    have been.

    Raises ImageProblemError (kind in PROBLEM_KINDS) for anything that is not a complete, decodable
    photo of at most `max_pixels` pixels; never touches Pillow's global settings.
    """
    if max_side is not None and max_side < 1:
        raise ValueError("max_side must be a positive number of pixels")
    if not 0.0 <= size_slack < 1.0:
        raise ValueError("size_slack must be in [0, 1)")
    data, name = read_image_bytes(source)
    if not data:
        raise ImageProblemError("zero_byte", name, "the file is empty (0 bytes)")
    kind = _sniff(data[:16])
    with warnings.catch_warnings():
        # our own max_pixels check below is the authority, whatever Image.MAX_IMAGE_PIXELS is
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageProblemError("decompression_bomb", name, f"refused to decode: {exc}") from None
        except UnidentifiedImageError:
            if kind == "HEIC":
                raise ImageProblemError(
                    "not_an_image", name, "HEIC photo (iPhone default): Pillow cannot read it; export as JPEG"
                ) from None
            if kind:
                raise ImageProblemError(
                    "truncated", name, f"starts like a {kind} file but its header is incomplete or damaged"
                ) from None
            raise ImageProblemError(
                "not_an_image", name, f"not an image format Pillow can read (starts with {data[:8]!r})"
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
            raise _decode_problem(name, exc) from None
        w, h = img.size
        if w < 1 or h < 1:
            raise ImageProblemError("unreadable", name, f"the header gives an empty size {w}x{h}")
        if w * h > max_pixels:
            raise ImageProblemError(
                "decompression_bomb", name,
                f"the header claims {w}x{h} = {w * h:,} pixels, more than the limit of {max_pixels:,}",
            )
        target = _target_size((w, h), max_side)
        if img.format in ("JPEG", "MPO") and target != (w, h):
            try:  # let libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT scaling): several times faster
                img.draft("RGB", _draft_request((w, h), target, max_side or 0, size_slack, min_side))
            except (OSError, ValueError):
                pass
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            raise LoscatError(
                "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set by some other code: truncated photos "
                "cannot be detected; unset it"
            )
        try:
            img.load()
        except Image.DecompressionBombError as exc:
            raise ImageProblemError("decompression_bomb", name, f"refused to decode: {exc}") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
            raise _decode_problem(name, exc) from None
    icc = img.info.get("icc_profile")
    orientation = _orientation(img)
    try:
        img = _normalise_mode(img)
        size = _target_size(img.size, max_side)
        if size != img.size:
            img = img.resize(size, RESAMPLE, reducing_gap=REDUCING_GAP)
        if orientation in _TRANSPOSE:  # after the resize: rotating the small image is cheaper, same result
            img = img.transpose(_TRANSPOSE[orientation])
        img = _to_srgb(img, icc)
        if img.mode == "RGBA":
            background = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, img)
        if img.mode != "RGB":
            img = img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise _decode_problem(name, exc) from None
    return _strip(img)


def _orientation(img: Image.Image) -> int:
    """EXIF orientation tag (1 = upright); a malformed EXIF block must not cost the photo."""
    try:
        return int(img.getexif().get(ExifTags.Base.Orientation, 1) or 1)
    except Exception:  # noqa: BLE001
        return 1


def _decode_problem(name: str, exc: BaseException) -> ImageProblemError:
    text = str(exc) or type(exc).__name__
    if "truncat" in text.lower() or isinstance(exc, EOFError):
        return ImageProblemError("truncated", name,
                                 f"the file ends early (incomplete copy or download): {text}")
    return ImageProblemError("unreadable", name, f"cannot decode the image: {text}")


def _strip(img: Image.Image) -> Image.Image:
    """A fresh image with the same pixels and an empty info dict: no EXIF, ICC, XMP or comment survives."""
    clean = Image.frombytes("RGB", img.size, img.tobytes())
    clean.info = {}
    return clean


def resize_eval(img: Image.Image, size: int, resample: int = Image.BILINEAR) -> Image.Image:
    """Deterministic squash to size x size with the model's own resample filter (its preprocessor_config's
    `resample`: bilinear for google/vit-*, bicubic for the study's converted model), as its processor does.
    Training's eval transform and prediction both use it."""
    return (img if img.mode == "RGB" else img.convert("RGB")).resize((size, size), resample)


def save_clean_jpeg(img: Image.Image, path: str | os.PathLike, quality: int = 95) -> None:
    """Write `img` as a baseline JPEG carrying no EXIF, ICC profile or comment (only the JFIF header)."""
    if img.mode != "RGB" or img.info:
        img = _strip(img.convert("RGB"))
    img.save(path, format="JPEG", quality=quality, exif=b"", optimize=False)


def folder_files(root: str | os.PathLike, exclude=()) -> list[tuple[str, Path]]:
    """(path relative to `root` with '/', path) of every non-hidden file under `root`, recursively, sorted.

    The one folder-listing rule: `predict` and `explain` label every such file (a stray PDF becomes an error
    row); `label` offers those with a photo extension. Paths in `exclude` (e.g. the output file) are
    skipped."""
    root = Path(root)
    skip = {Path(p).resolve() for p in exclude}
    items = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (path.is_file() and not any(part.startswith(".") for part in rel.parts)
                and path.resolve() not in skip):
            items.append((rel.as_posix(), path))
    return items


def printable_name(name: str) -> str:
    """A file name (or a message naming one) as text that UTF-8 files and screens can hold: the bytes of a
    name that are not UTF-8 (os.fsdecode's surrogates, as `folder_files` lists them) as `\\xNN`."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
