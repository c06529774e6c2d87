"""Decode any image a user may hand us into one layout: ``uint8`` BGR, ``(H, W, 3)``.

Handles EXIF orientation, grayscale, palette, RGBA (composited on white), 16-bit PNG and CMYK JPEG,
and refuses huge images (pixel limit) and files that are not, or no longer, images with a
:class:`~maskwatch.errors.ImageDecodeError` that says what arrived.

Only the formats in :data:`DECODED_FORMATS` are ever decoded (JPEG, PNG, WebP, BMP, TIFF, GIF and
PPM/PGM): Pillow is never allowed to pick another plugin, so a PostScript/EPS file can never reach
Ghostscript, whatever is installed. The CLI, the server and training all decode through
:func:`decode_image`.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Default pixel limit (width * height) for any decoded image: 100 megapixels.
from maskwatch.defaults import MAX_PIXELS as DEFAULT_MAX_PIXELS  # noqa: E402
from maskwatch.errors import ImageDecodeError, ImageTooLargeError, InputError

#: The only Pillow plugins ever used to open an image. None of them runs an external program
#: (Pillow's EPS plugin runs Ghostscript; PDF, SVG and PostScript are never decoded). GIF, WebP and
#: TIFF give their first frame.
DECODED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM")

#: How the accepted formats are named in messages.
ACCEPTED_FORMATS_TEXT = "JPEG, PNG, WebP, BMP, TIFF or GIF"

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".jfif", ".pgm", ".ppm"}
)

_EXIF_ORIENTATION = 0x0112
#: Modes whose pixels :meth:`PIL.Image.Image.reduce` averages correctly.
_REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F"})


@dataclass(frozen=True)
class ImageInfo:
    """What an image's header says, read without decoding its pixels."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _open(data: bytes) -> Image.Image:
    """Open (header only) with the allowed plugins; Pillow's bomb warning is left to our own limit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=list(DECODED_FORMATS))


def _not_an_image(name: str, data: bytes) -> ImageDecodeError:
    return ImageDecodeError(
        f"{name}: not an image in a supported format (starts with {bytes(data[:8])!r}); "
        f"expected {ACCEPTED_FORMATS_TEXT}. Convert it to JPEG or PNG first."
    )


def _too_large(name: str, width: int, height: int, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"{name}: {width}x{height} pixels is over the limit of {max_pixels:,} pixels; shrink the image first."
    )


# ----------------------------------------------------------------------------------- JPEG checks

_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_HUFFMAN_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7})
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6})


@dataclass
class _JpegLayout:
    marker: int
    size: tuple[int, int]
    sampling: list[tuple[int, int]]
    scan_bytes: int
    min_dc_bits: int = 1  # shortest DC Huffman code
    min_ac_block_bits: int = 1  # cheapest way to end a block's AC part: EOB, or one coefficient


def _huffman_minimums(seg: bytes) -> tuple[list[int], list[int]]:
    """Per table of a DHT segment: shortest DC code; cheapest AC end of block (EOB, or a code and a bit)."""
    i = 0
    dc: list[int] = []
    ac: list[int] = []
    while i + 17 <= len(seg):
        kind = seg[i] >> 4
        counts = seg[i + 1:i + 17]
        symbols = seg[i + 17:i + 17 + sum(counts)]
        lengths = [n + 1 for n, c in enumerate(counts) for _ in range(c)]
        if lengths:
            if kind == 0:
                dc.append(lengths[0])
            else:
                eob = next((ln for sym, ln in zip(symbols, lengths) if sym == 0x00), 99)
                ac.append(min(eob, lengths[0] + 1))
        i += 17 + sum(counts)
    return dc, ac


def _jpeg_scan_bytes(data: bytes) -> _JpegLayout | None:
    """The frame size, sampling, shortest Huffman codes and entropy-coded byte count of a JPEG.

    Walks the marker segments (none of the pixels are decoded). ``None`` when the layout is not
    understood (then the decoder alone judges the file).
    """
    n = len(data)
    if not data.startswith(b"\xff\xd8"):
        return None
    i = 2
    sof: tuple[int, int, int, list[tuple[int, int]]] | None = None
    scan = 0
    dc_min: list[int] = []
    ac_min: list[int] = []
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:  # EOI
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        seg = data[i + 4:i + 2 + length]
        if marker in _SOF_MARKERS and len(seg) >= 6:
            height = int.from_bytes(seg[1:3], "big")
            width = int.from_bytes(seg[3:5], "big")
            ncomp = seg[5]
            comps = [(seg[6 + 3 * k + 1] >> 4, seg[6 + 3 * k + 1] & 0x0F) for k in range(ncomp)
                     if 6 + 3 * k + 1 < len(seg)]
            sof = (marker, width, height, comps)
        elif marker == 0xC4:
            dc, ac = _huffman_minimums(seg)
            dc_min.extend(dc)
            ac_min.extend(ac)
        i += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the next marker other than RSTn
            start = i
            while True:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= n:
                    i = n
                    break
                nxt = data[j + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                    i = j + 2 if nxt != 0xFF else j + 1
                    continue
                i = j
                break
            scan += i - start
    if sof is None:
        return None
    marker, width, height, comps = sof
    return _JpegLayout(
        marker, (width, height), comps, scan,
        min_dc_bits=min(dc_min) if dc_min else 1, min_ac_block_bits=min(ac_min) if ac_min else 1,
    )


def _check_jpeg_data(data: bytes, name: str) -> None:
    """Refuse a JPEG whose entropy-coded data cannot fill the size its header declares.

    A JPEG whose header lies about its size (or whose data was cut before a final EOI marker)
    otherwise decodes "successfully" to a grey image. Every 8x8 block of a Huffman-coded JPEG costs
    at least its shortest DC code, and in a sequential file also its shortest end-of-block (or one
    AC code and a bit); the file's own Huffman tables say how short those are. Fewer bytes than
    that cannot hold the whole image.
    """
    info = _jpeg_scan_bytes(data)
    if info is None:
        return
    marker, (width, height), comps, scan = info.marker, info.size, info.sampling, info.scan_bytes
    if marker not in _HUFFMAN_SOF:
        return  # arithmetic coding can spend less than a bit on a block
    if not comps or width <= 0 or height <= 0:
        return
    hmax = max(h for h, _ in comps) or 1
    vmax = max(v for _, v in comps) or 1
    blocks = 0
    for h, v in comps:
        blocks += math.ceil(math.ceil(width * h / hmax) / 8) * math.ceil(math.ceil(height * v / vmax) / 8)
    # Progressive: AC scans can end many blocks with one EOB run, so count the DC codes only.
    bits_per_block = info.min_dc_bits + (0 if marker in _PROGRESSIVE_SOF else info.min_ac_block_bits)
    needed = blocks * bits_per_block // 8
    if scan < needed:
        raise ImageDecodeError(
            f"{name}: corrupt JPEG: its header says {width}x{height} pixels, which needs at least "
            f"{needed:,} bytes of image data, but the file holds {scan:,}; the file is damaged or truncated."
        )


def _check_grey_tail(img: Image.Image, name: str, full: tuple[int, int]) -> None:
    """Refuse a JPEG whose header claims more rows than its data holds.

    libjpeg fills the blocks that the data never reached with mid-grey (every pixel exactly 128) and
    reports success, so a header that claims 2-10x the real height decodes to the picture above a
    grey band. A band of exact 128s across whole rows, a third of the image or more, under a top part
    that is not itself that grey, is that fill, not a photo.
    """
    if img.mode not in ("L", "RGB"):
        return
    w, h = img.size
    step = 8
    if h < 3 * step or not _is_fill(img, h - step, h):
        return
    top = h - step
    while top - step >= 0 and _is_fill(img, top - step, top):
        top -= step
    if h - top >= h / 3 and top > 0 and not _is_fill(img, 0, top):
        shown = round(top * full[1] / h)
        raise ImageDecodeError(
            f"{name}: corrupt JPEG: its header says {full[0]}x{full[1]} pixels, but the image data covers only "
            f"the top {shown} rows (the rest decodes as a grey fill); the file is damaged or its header is wrong.")


def _is_fill(img: Image.Image, y0: int, y1: int) -> bool:
    band = np.asarray(img.crop((0, y0, img.size[0], y1)))
    return bool(band.size) and bool((band == 128).all())


# ----------------------------------------------------------------------------------- conversion


def _gray_to_bgr(gray: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2BGR)


def _to_bgr(img: Image.Image) -> np.ndarray:
    """BGR ``uint8`` pixels of ``img``; closes ``img`` as soon as its pixels are copied out."""
    import cv2

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img)
        img.close()
        hi = 65535 if int(arr.max(initial=0)) > 255 else 255
        lut = np.minimum((np.arange(65536, dtype=np.uint32) * 255 + hi // 2) // hi, 255).astype(np.uint8)
        return _gray_to_bgr(lut[arr])
    if mode == "I":
        arr = np.array(img, dtype=np.int32)
        img.close()
        hi = 65535 if int(arr.max(initial=0)) > 255 else 255
        np.clip(arr, 0, hi, out=arr)
        arr *= 255
        arr += hi // 2
        arr //= hi
        return _gray_to_bgr(arr.astype(np.uint8))
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        img.close()
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
        return _gray_to_bgr(((arr - lo) * (255.0 / max(hi - lo, 1e-9))).astype(np.uint8))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img.close()
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
        rgba.close()
        background.close()
    if img.mode == "L":
        arr = np.asarray(img)
        img.close()
        return _gray_to_bgr(arr)
    if img.mode != "RGB":
        rgb_img = img.convert("RGB")
        img.close()
        img = rgb_img
    rgb = np.asarray(img)
    img.close()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


# ----------------------------------------------------------------------------------- public API


def _read(data: bytes | Path | str, name: str | None) -> tuple[bytes, str]:
    if isinstance(data, (str, Path)):
        path = Path(data)
        name = name or str(path)
        try:
            exists = path.exists()
        except PermissionError:
            raise InputError(f"{name}: permission denied; a folder on the way cannot be read.") from None
        if not exists:
            raise InputError(f"{name}: no such file. Check the path.")
        if path.is_dir():
            raise InputError(f"{name}: is a folder, expected an image file.")
        if not path.is_file():  # a FIFO, socket or device: reading it could wait forever
            raise InputError(f"{name}: not a regular file (a pipe or device); expected an image file.")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{name}: cannot be read ({exc.strerror or exc}).") from exc
    name = name or "<image>"
    if not data:
        raise ImageDecodeError(f"{name}: the file is empty, expected an image (JPEG, PNG, ...).")
    return bytes(data) if not isinstance(data, bytes) else data, name


def probe_image(data: bytes | Path | str, *, name: str | None = None) -> ImageInfo:
    """Format and size of an image from its header, without decoding its pixels.

    Raises:
        InputError: the path does not exist or is a folder.
        ImageDecodeError: not an image in one of :data:`DECODED_FORMATS`.
    """
    raw, name = _read(data, name)
    try:
        with _open(raw) as img:
            return ImageInfo(str(img.format), *img.size)
    except Image.DecompressionBombError as exc:
        # Pillow refuses to even open images over twice its own limit; read the size ourselves.
        size = _header_size(raw)
        if size is None:
            raise ImageTooLargeError(f"{name}: image is too large to decode safely ({exc}).") from exc
        return ImageInfo("PNG" if raw.startswith(b"\x89PNG") else "JPEG", *size)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _not_an_image(name, raw) from exc


def _header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG or JPEG header, ``None`` for other formats."""
    import struct

    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    info = _jpeg_scan_bytes(data)
    return info.size if info is not None else None


def decode_image_with_size(
    data: bytes | Path | str,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reduce_to: int | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`decode_image`, also returning the image's full ``(width, height)`` as shown (EXIF applied).

    With ``reduce_to``, an image whose long side is at least twice ``reduce_to`` pixels is decoded
    reduced by an integer factor that keeps its long side >= ``reduce_to``: a JPEG in the decoder
    itself (DCT scaling, 1/2, 1/4 or 1/8: less memory and time), other formats by
    :meth:`PIL.Image.Image.reduce` after decoding. The full size returned then differs from the
    array's; ``full_width / array_width`` maps coordinates back.
    """
    raw, name = _read(data, name)
    try:
        img = _open(raw)
    except Image.DecompressionBombError as exc:
        size = _header_size(raw)
        if size is not None and size[0] * size[1] > max_pixels:
            raise _too_large(name, *size, max_pixels) from exc
        raise ImageTooLargeError(f"{name}: image is too large to decode safely ({exc}).") from exc
    except UnidentifiedImageError as exc:
        raise _not_an_image(name, raw) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{name}: corrupt image ({exc}).") from exc
    try:
        w, h = img.size
        if w * h > max_pixels:
            raise _too_large(name, w, h, max_pixels)
        if img.format in ("JPEG", "MPO"):
            _check_jpeg_data(raw, name)
        full = (w, h)
        long_side = max(w, h)
        factor = 1
        if reduce_to and long_side >= 2 * reduce_to:
            factor = long_side // reduce_to
            if img.format in ("JPEG", "MPO"):
                img.draft(img.mode, (max(1, w // factor), max(1, h // factor)))
                factor = 1  # the decoder did it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
        if img.format in ("JPEG", "MPO"):
            _check_grey_tail(img, name, full)
        if factor > 1 and img.mode in _REDUCIBLE_MODES:  # others (1-bit, palette, 16-bit): after conversion
            reduced = img.reduce(factor)
            img.close()
            img = reduced
            factor = 1
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
        transposed = ImageOps.exif_transpose(img)
        if transposed is not None and transposed is not img:
            img.close()
            img = transposed
        if orientation in (5, 6, 7, 8):
            full = (full[1], full[0])
        bgr = _to_bgr(img)
        if factor > 1:
            import cv2

            rows, cols = bgr.shape[:2]
            size = (max(1, -(-cols // factor)), max(1, -(-rows // factor)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        return bgr, full
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        if "truncated" in msg:
            raise ImageDecodeError(f"{name}: the image file is truncated (incomplete download?).") from exc
        raise ImageDecodeError(f"{name}: corrupt image ({msg}).") from exc
    finally:
        img.close()


def decode_image(
    data: bytes | Path | str,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reduce_to: int | None = None,
) -> np.ndarray:
    """Decode an image file or bytes into a ``uint8`` BGR array of shape ``(H, W, 3)``.

    EXIF orientation is applied, so boxes refer to the image as a person sees it. Only the formats
    in :data:`DECODED_FORMATS` are decoded. ``reduce_to``: see :func:`decode_image_with_size`.

    Raises:
        InputError: the path does not exist or is a folder.
        ImageDecodeError: the bytes are not a readable image (corrupt, truncated, other format).
        ImageTooLargeError: the image has more than ``max_pixels`` pixels.
    """
    return decode_image_with_size(data, name=name, max_pixels=max_pixels, reduce_to=reduce_to)[0]


def sniff_image_format(data: bytes) -> str | None:
    """The format of ``data`` judged from its bytes (``"JPEG"``, ``"PNG"``, ...), if it is one we decode.

    ``None`` for anything else, including image formats that are never decoded (EPS, PDF, SVG, ...).
    """
    try:
        with _open(data) as img:
            return img.format
    except Image.DecompressionBombError:
        # One of our plugins took it and then found it huge: an image, refused later for its size.
        head = bytes(data[:12])
        for magic, fmt in ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
                           (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")):
            if head.startswith(magic):
                return fmt
        return "WEBP" if head[8:12] == b"WEBP" else "IMAGE"
    except Exception:  # noqa: BLE001 - any failure means "not an image we decode"
        return None


def encode_image(image_bgr: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Encode a BGR image as JPEG or PNG bytes."""
    import cv2

    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt.lower())
    if ext is None:
        raise InputError(f"image format {fmt!r} is not supported; use 'jpeg' or 'png'.")
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, image_bgr, params)
    if not ok:  # pragma: no cover - cv2 fails only on invalid arrays
        raise InputError("could not encode the image")
    return buf.tobytes()


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def as_bgr_uint8(image: object, what: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """An in-memory image as ``uint8`` BGR ``(H, W, 3)``, or one clear :class:`InputError`.

    Accepted: ``uint8`` (grey ``(H, W)``, ``(H, W, 1)``, BGR, BGRA — alpha dropped), ``uint16`` (scaled
    by 1/257), and floats in ``0..1`` (scaled by 255) or ``0..255``. Refused, with what arrived and
    what to do: other dtypes (bool, int64, ...), other shapes, empty (0-pixel) images, NaN/inf pixels,
    and images over ``max_pixels``.
    """
    if not isinstance(image, np.ndarray):
        raise InputError(f"{what}: expected a NumPy array (H, W, 3) of uint8 BGR pixels, got {type(image).__name__}")
    a = image
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InputError(f"{what}: expected shape (H, W, 3) BGR (or (H, W) grey, (H, W, 4) BGRA), got {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"{what}: the image is empty ({a.shape[1]}x{a.shape[0]} pixels); give an image with pixels")
    if max_pixels is not None and a.shape[0] * a.shape[1] > max_pixels:
        raise _too_large(what, a.shape[1], a.shape[0], max_pixels)
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = (a.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    elif a.dtype in (np.float16, np.float32, np.float64):
        if not np.isfinite(a).all():
            raise InputError(f"{what}: the float image has NaN or infinite pixels; give finite values in 0..1 "
                             "or 0..255")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 255:
            raise InputError(f"{what}: float pixels must lie in 0..1 or 0..255, got {lo:g}..{hi:g}; rescale first")
        scale = 255.0 if hi <= 1.0 else 1.0
        a = np.clip(np.rint(a.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    else:
        raise InputError(f"{what}: expected uint8 pixels (or uint16, or floats in 0..1), got dtype {a.dtype}; "
                         "convert with image.astype(numpy.uint8) after scaling to 0..255")
    if a.ndim == 2:
        a = _gray_to_bgr(a)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a)
