"""images.open_image / save_clean_jpeg: every photo becomes a clean upright RGB image, every bad file
a kind."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from loscat_hf.errors import LoscatError
from loscat_hf.io.images import ImageProblemError, open_image, save_clean_jpeg


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _upright() -> Image.Image:
    """60x40, red block top-left, blue block bottom-right: any wrong rotation or flip moves them."""
    img = Image.new("RGB", (60, 40), (128, 128, 128))
    img.paste((255, 0, 0), (0, 0, 20, 15))
    img.paste((0, 0, 255), (40, 25, 60, 40))
    return img


def _near(pixel, colour, tol=40) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, colour, strict=True))


def _exif(**tags) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[int(tag[1:], 16)] = value
    return exif.tobytes()


def test_downscales_shorter_side_and_keeps_aspect():
    img = open_image(_bytes(Image.new("RGB", (800, 600), (10, 20, 30)), "JPEG"), max_side=300)
    assert img.size == (400, 300) and img.mode == "RGB"
    portrait = open_image(_bytes(Image.new("RGB", (300, 900)), "PNG"), max_side=150)
    assert portrait.size == (150, 450)
    small = open_image(_bytes(Image.new("RGB", (100, 80)), "PNG"), max_side=512)
    assert small.size == (100, 80)  # never upscaled


def test_draft_decode_with_slack_stays_in_range():
    data = _bytes(Image.effect_noise((2000, 1500), 40).convert("RGB"), "JPEG")
    exact = open_image(data, max_side=256)
    assert min(exact.size) == 256
    fast = open_image(data, max_side=200, size_slack=0.15)  # 1500/8 = 188 lies in [170, 200]
    assert 170 <= min(fast.size) <= 200 and fast.size == (250, 188)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(orientation):
    upright = _upright()
    inverse = {  # what a camera stores so that applying `orientation` gives the upright image
        1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270,
    }[orientation]
    stored = upright if inverse is None else upright.transpose(inverse)
    img = open_image(_bytes(stored, "JPEG", quality=95, exif=_exif(x0112=orientation)))
    assert img.size == (60, 40)
    assert _near(img.getpixel((5, 5)), (255, 0, 0)) and _near(img.getpixel((55, 35)), (0, 0, 255))
    assert not img.getexif()


def test_metadata_stripped_and_clean_jpeg(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010E] = "SECRET-DESCRIPTION"
    exif[0x0112] = 1
    exif.get_ifd(0x8825)[2] = (52.0, 31.0, 12.0)  # GPS latitude
    data = _bytes(_upright(), "JPEG", exif=exif.tobytes(), icc_profile=icc, comment=b"SECRET-COMMENT")
    img = open_image(data)
    assert img.info == {} and not img.getexif()
    img.info["comment"] = b"SECRET-COMMENT"  # even a caller's leftovers do not reach the file
    path = tmp_path / "clean.jpg"
    save_clean_jpeg(img, path)
    raw = path.read_bytes()
    assert b"SECRET" not in raw and b"Exif" not in raw and b"ICC_PROFILE" not in raw
    reread = Image.open(path)
    assert not reread.getexif() and "icc_profile" not in reread.info and "comment" not in reread.info


def test_sixteen_bit_is_scaled_not_clipped():
    ramp = np.array([[0, 257 * 64, 32768, 65535]], dtype=np.uint16)
    img = open_image(_bytes(Image.fromarray(ramp), "PNG"))
    values = np.asarray(img)[0, :, 0].tolist()
    assert values == [0, 64, 128, 255]
    as_int = Image.fromarray(np.array([[0, 1000, 4000]], dtype=np.int32), mode="I")
    assert np.asarray(open_image(_bytes(as_int, "TIFF")))[0, :, 0].tolist() == [0, 4, 16]


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: Image.new("CMYK", (16, 16), (0, 255, 255, 0)), (255, 0, 0)),
        (lambda: Image.new("L", (16, 16), 77), (77, 77, 77)),
        (lambda: Image.new("1", (16, 16), 1), (255, 255, 255)),
        (lambda: Image.new("RGBA", (16, 16), (0, 0, 0, 0)), (255, 255, 255)),  # transparent -> white
        (lambda: Image.new("LA", (16, 16), (0, 128)), (127, 127, 127)),  # half black on white
    ],
    ids=["cmyk", "gray", "1bit", "rgba", "la"],
)
def test_modes_become_rgb(make, expected):
    src = make()
    fmt = "JPEG" if src.mode == "CMYK" else "PNG"
    img = open_image(_bytes(src, fmt))
    assert img.mode == "RGB" and _near(img.getpixel((8, 8)), expected, tol=3)


def test_palette_with_transparency_on_white():
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putpixel((1, 1), 1)
    img = open_image(_bytes(pal, "PNG", transparency=0))
    assert img.getpixel((0, 0)) == (255, 255, 255) and img.getpixel((1, 1)) == (255, 0, 0)


def test_bytes_path_and_file_like(tmp_path):
    data = _bytes(_upright(), "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    for source in (data, path, str(path), io.BytesIO(data)):
        assert open_image(source).size == (60, 40)


def _png_with_header_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR (with a correct CRC) claims width x height."""
    data = bytearray(_bytes(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = 8  # chunk length at 8, type at 12, data at 16
    data[16:24] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4: ihdr + 8 + 13])) & 0xFFFFFFFF
    data[ihdr + 8 + 13: ihdr + 8 + 17] = struct.pack(">I", crc)
    return bytes(data)


def test_decompression_bomb_header_refused_without_global_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # our own limit must still hold
    with pytest.raises(ImageProblemError) as info:
        open_image(_png_with_header_size(100_000, 100_000))
    assert info.value.kind == "decompression_bomb"
    with pytest.raises(ImageProblemError) as info:
        open_image(_bytes(Image.new("RGB", (100, 100)), "PNG"), max_pixels=5_000)
    assert info.value.kind == "decompression_bomb"


def test_pil_global_bomb_error_is_mapped(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # PIL itself raises DecompressionBombError
    with pytest.raises(ImageProblemError) as info:
        open_image(_bytes(Image.new("RGB", (100, 100)), "PNG"))
    assert info.value.kind == "decompression_bomb"


@pytest.mark.parametrize(
    "content, kind",
    [
        (b"", "zero_byte"),
        (b"patient,region\nP1,head\n", "not_an_image"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated"),
    ],
    ids=["zero_byte", "text_named_jpg", "png_header_cut"],
)
def test_bad_files(tmp_path, content, kind):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageProblemError) as info:
        open_image(path)
    assert info.value.kind == kind and str(path) in str(info.value)
    assert isinstance(info.value, LoscatError)


def test_truncated_jpeg(tmp_path):
    data = _bytes(Image.effect_noise((200, 150), 50).convert("RGB"), "JPEG")
    for cut in (len(data) // 2, 30):
        with pytest.raises(ImageProblemError) as info:
            open_image(data[:cut])
        assert info.value.kind == "truncated"


def test_missing_and_folder(tmp_path):
    with pytest.raises(ImageProblemError) as info:
        open_image(tmp_path / "nope.jpg")
    assert info.value.kind == "missing_image"
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(ImageProblemError) as info:
        open_image(tmp_path / "dir.jpg")
    assert info.value.kind == "unreadable"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read anything")
def test_permission_denied(tmp_path):
    path = tmp_path / "locked.jpg"
    path.write_bytes(_bytes(_upright(), "JPEG"))
    path.chmod(0)
    with pytest.raises(ImageProblemError) as info:
        open_image(path)
    assert info.value.kind == "unreadable"
