"""Decode any image a user may hand us into one layout: ``uint8`` BGR, ``(H, W, 3)``.

Handles EXIF orientation, grayscale, palette, RGBA (composited on white), 16-bit PNG and CMYK JPEG,
and refuses huge images (pixel limit) and files that are not, or no longer, images with a
:class:`~maskwatch.errors.ImageDecodeError` that says what arrived.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from maskwatch.errors import ImageDecodeError, ImageTooLargeError, InputError

#: Default pixel limit (width * height) for any decoded image: 100 megapixels.
DEFAULT_MAX_PIXELS = 100_000_000

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".jfif", ".pgm", ".ppm"}
)


def _to_bgr(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
        gray = ((arr - lo) / max(hi - lo, 1e-9) * 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    rgb = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def decode_image(
    data: bytes | Path | str, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode an image file or bytes into a ``uint8`` BGR array of shape ``(H, W, 3)``.

    EXIF orientation is applied, so boxes refer to the image as a person sees it.

    Raises:
        InputError: the path does not exist or is a folder.
        ImageDecodeError: the bytes are not a readable image (corrupt, truncated, other format).
        ImageTooLargeError: the image has more than ``max_pixels`` pixels.
    """
    if isinstance(data, (str, Path)):
        path = Path(data)
        name = name or str(path)
        if not path.exists():
            raise InputError(f"{name}: no such file. Check the path.")
        if path.is_dir():
            raise InputError(f"{name}: is a folder, expected an image file.")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{name}: cannot be read ({exc.strerror or exc}).") from exc
    name = name or "<image>"
    if not data:
        raise ImageDecodeError(f"{name}: the file is empty, expected an image (JPEG, PNG, ...).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageTooLargeError(
                    f"{name}: {w}x{h} pixels is over the limit of {max_pixels:,} pixels; "
                    "shrink the image first."
                )
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return _to_bgr(img)
    except ImageTooLargeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{name}: image is too large to decode safely ({exc}).") from exc
    except UnidentifiedImageError as exc:
        head = bytes(data[:16])
        raise ImageDecodeError(
            f"{name}: not an image (starts with {head[:8]!r}); expected JPEG, PNG, BMP, WebP, TIFF or GIF."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        if "truncated" in msg:
            raise ImageDecodeError(f"{name}: the image file is truncated (incomplete download?).") from exc
        raise ImageDecodeError(f"{name}: corrupt image ({msg}).") from exc


def sniff_image_format(data: bytes) -> str | None:
    """Return the image format of ``data`` judged from its bytes (``"JPEG"``, ``"PNG"``, ...) or ``None``."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format
    except Exception:  # noqa: BLE001 - any failure means "not an image"
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
