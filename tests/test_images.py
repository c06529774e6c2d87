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
