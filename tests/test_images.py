"""Decoding the images users actually have: odd modes, EXIF rotation, broken files, huge images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from maskwatch.errors import ImageDecodeError, ImageTooLargeError, InputError
from maskwatch.io.images import decode_image, sniff_image_format


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_rgb_jpeg_becomes_bgr():
    img = Image.new("RGB", (20, 10), (255, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=100)
    out = decode_image(buf.getvalue())
    assert out.shape == (10, 20, 3) and out.dtype == np.uint8
    assert out[5, 10, 2] > 240 and out[5, 10, 0] < 15  # red lands in the last (R of BGR) channel


@pytest.mark.parametrize("mode", ["L", "P", "1", "LA", "RGBA", "CMYK", "I;16"])
def test_every_mode_gives_three_channel_uint8(mode):
    img = Image.new("RGB", (16, 12), (10, 200, 30))
    if mode == "I;16":
        img = Image.fromarray((np.arange(16 * 12).reshape(12, 16) * 300).astype(np.uint16))
    elif mode == "CMYK":
        buf = io.BytesIO()
        img.convert("CMYK").save(buf, format="JPEG")
        out = decode_image(buf.getvalue())
        assert out.shape == (12, 16, 3)
        assert abs(int(out[6, 8, 1]) - 200) < 20
        return
    else:
        img = img.convert(mode)
    out = decode_image(_png(img))
    assert out.shape == (12, 16, 3) and out.dtype == np.uint8


def test_sixteen_bit_png_keeps_its_range():
    arr = np.zeros((8, 8), np.uint16)
    arr[:, 4:] = 65535
    out = decode_image(_png(Image.fromarray(arr)))
    assert out[0, 0, 0] == 0 and out[0, 7, 0] == 255


def test_transparent_pixels_are_composited_on_white():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = decode_image(_png(img))
    assert (out == 255).all()


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise when shown
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    assert decode_image(buf.getvalue()).shape[:2] == (40, 20)


def test_truncated_jpeg_is_reported_as_truncated(tmp_path):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(path)


def test_text_file_with_image_extension(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello, I am not a picture")
    with pytest.raises(ImageDecodeError, match="not an image"):
        decode_image(path)


def test_empty_file_and_missing_file_and_folder(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(empty)
    with pytest.raises(InputError, match="no such file"):
        decode_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="folder"):
        decode_image(tmp_path)


def test_pixel_limit_refuses_huge_images():
    data = _png(Image.new("L", (3000, 3000)))
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        decode_image(data, max_pixels=1_000_000)
    assert decode_image(data, max_pixels=10_000_000).shape == (3000, 3000, 3)


def test_paths_with_spaces_and_non_ascii(tmp_path):
    folder = tmp_path / "dossier avec espaces" / "Gesichter_ü_日本"
    folder.mkdir(parents=True)
    path = folder / "visage été.png"
    Image.new("RGB", (5, 7)).save(path)
    assert decode_image(path).shape == (7, 5, 3)


def test_sniff_format():
    assert sniff_image_format(_png(Image.new("RGB", (2, 2)))) == "PNG"
    assert sniff_image_format(b"%PDF-1.4 not an image") is None


# ------------------------------------------------------------------------------------ allow-list, limits

import struct  # noqa: E402
import tracemalloc  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

from PIL import EpsImagePlugin  # noqa: E402

from maskwatch.io.images import DEFAULT_MAX_PIXELS, decode_image_with_size, probe_image  # noqa: E402

EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n%%EndComments\n"
    b"{ } loop\n"  # an endless loop: Ghostscript would never return
    b"%%EOF\n"
)


def png_header_only(width: int, height: int, color_type: int = 0) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels but holds almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def lying_jpeg(claimed: tuple[int, int] = (4000, 3000)) -> bytes:
    """A real 100x100 JPEG whose frame header claims ``claimed`` (width, height)."""
    noise = np.random.default_rng(1).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", claimed[1], claimed[0])
    return bytes(data)


@pytest.fixture()
def eps_calls(monkeypatch):
    """Records every attempt to render an EPS (Pillow's EPS plugin runs Ghostscript when it loads)."""
    calls: list[str] = []

    def no_ghostscript(*args, **kwargs):
        calls.append("Ghostscript")
        raise AssertionError("the EPS plugin must never run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", no_ghostscript)
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "load", lambda self, *a, **k: no_ghostscript())
    return calls


def test_eps_is_never_handed_to_ghostscript(eps_calls, tmp_path):
    """Whether or not Ghostscript is installed, an EPS is 'not an image' and its plugin never loads it."""
    path = tmp_path / "drawing.eps"
    path.write_bytes(EPS)
    for data in (EPS, path):
        with pytest.raises(ImageDecodeError, match="not an image.*JPEG, PNG"):
            decode_image(data)
    with pytest.raises(ImageDecodeError, match="not an image"):
        probe_image(EPS)
    assert sniff_image_format(EPS) is None
    assert eps_calls == []


def test_pixel_limit_is_the_one_the_docs_state():
    errors_page = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text(encoding="utf-8")
    assert f"images over {DEFAULT_MAX_PIXELS // 1_000_000} megapixels are refused" in errors_page
    # 95 megapixels: over Pillow's own bomb warning (89.5 MP), under ours; the file is then found
    # truncated (it holds almost no pixel data), not "too large".
    with pytest.raises(ImageDecodeError) as info:
        decode_image(png_header_only(10_000, 9_500))
    assert not isinstance(info.value, ImageTooLargeError), info.value
    assert "truncated" in str(info.value)
    with pytest.raises(ImageTooLargeError, match="10100x10000 pixels is over the limit of 100,000,000"):
        decode_image(png_header_only(10_100, 10_000))
    # Over twice Pillow's limit, where Pillow refuses to open at all: still our message.
    with pytest.raises(ImageTooLargeError, match="30000x30000 pixels is over the limit of 100,000,000"):
        decode_image(png_header_only(30_000, 30_000))


def test_jpeg_whose_header_lies_about_its_size_is_corrupt(tmp_path):
    for claimed in ((4000, 3000), (1000, 1000)):
        with pytest.raises(ImageDecodeError, match=f"corrupt JPEG.*{claimed[0]}x{claimed[1]}"):
            decode_image(lying_jpeg(claimed))
    # A genuine flat grey JPEG (the same pixels a lying one decodes to) is fine, baseline or progressive.
    for progressive in (False, True):
        buf = io.BytesIO()
        Image.new("RGB", (2000, 1500), (128, 128, 128)).save(buf, format="JPEG", progressive=progressive)
        assert decode_image(buf.getvalue()).shape == (1500, 2000, 3)


def test_sixteen_bit_png_is_converted_without_float_copies():
    """Python-side memory of a 16-bit decode stays near its output (the float64 path needed 4x more)."""
    arr = (np.arange(3000 * 3000, dtype=np.uint32) % 65536).astype(np.uint16).reshape(3000, 3000)
    data = _png(Image.fromarray(arr))
    tracemalloc.start()
    try:
        out = decode_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (3000, 3000, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[0, 255, 0] == 1  # 255/65535 scaled to 0..255 rounds to 1
    assert peak < 12 * arr.size, f"{peak / arr.size:.1f} bytes per pixel"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_images_decode_reduced_on_request(fmt):
    img = Image.new("RGB", (4000, 3000), (30, 90, 200))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    out, full = decode_image_with_size(buf.getvalue(), reduce_to=1000)
    assert full == (4000, 3000)
    assert out.shape == (750, 1000, 3)  # reduced by 4: the long side stays >= 1000
    assert abs(int(out[10, 10, 0]) - 200) < 6  # still the same colour (BGR)
    small, full_small = decode_image_with_size(buf.getvalue(), reduce_to=2500)
    assert small.shape == (3000, 4000, 3) and full_small == (4000, 3000)  # under 2x: full size
    assert probe_image(buf.getvalue()).pixels == 12_000_000


def test_reduced_decode_reports_the_size_after_exif_rotation():
    img = Image.new("RGB", (4000, 2000), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise when shown
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    out, full = decode_image_with_size(buf.getvalue(), reduce_to=1000)
    assert full == (2000, 4000)
    assert out.shape == (1000, 500, 3)


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "RGBA", "CMYK", "I;16"])
def test_every_mode_decodes_reduced(mode):
    img = Image.new("RGB", (800, 600), (10, 200, 30))
    if mode == "I;16":
        img = Image.fromarray(np.full((600, 800), 40000, np.uint16))
    else:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode == "CMYK" else "PNG")
    full = decode_image(buf.getvalue())
    out, size = decode_image_with_size(buf.getvalue(), reduce_to=200)
    assert size == (800, 600) and out.shape == (150, 200, 3) and out.dtype == np.uint8
    if mode not in ("1", "P"):  # dithered modes average to other colours
        assert np.abs(out[75, 100].astype(int) - full[300, 400].astype(int)).max() <= 3


def test_cli_exits_2_on_a_jpeg_whose_header_lies(tmp_path):
    """`maskwatch detect` used to print a grey image's 0 faces and exit 0."""
    from conftest import assert_one_line_error, run_cli

    path = tmp_path / "liar.jpg"
    path.write_bytes(lying_jpeg((4000, 3000)))
    proc = run_cli("detect", str(path))
    assert proc.returncode == 2, proc
    assert_one_line_error(proc, "liar.jpg", "corrupt JPEG", "4000x3000")
    assert proc.stdout == ""
