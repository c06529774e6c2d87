"""Where the YuNet face-detector file comes from: the copy inside the package, a models folder, or
its official source.

Lookup order for :func:`find_yunet`: an explicit path, ``$MASKWATCH_MODELS``, the user cache
(``$XDG_CACHE_HOME/maskwatch`` or ``~/.cache/maskwatch``), then the copy bundled in the package
(``maskwatch/faces/weights/``, with its licence text beside it), so a plain ``pip install`` runs
OpenCV's YuNet offline. :func:`fetch_yunet` downloads the file from OpenCV's model zoo into the
cache and checks its pinned sha256; nothing downloads by itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from pathlib import Path

from maskwatch.errors import ModelError

log = logging.getLogger(__name__)

YUNET_FILENAME = "face_detection_yunet_2023mar.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
    "face_detection_yunet_2023mar.onnx"
)


#: Face-detector files shipped inside the package (each with its licence text beside it).
BUNDLED_DIR = Path(__file__).resolve().parent / "weights"


def cache_dir() -> Path:
    """The per-user folder where downloaded models are kept."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "maskwatch"


def models_dirs() -> list[Path]:
    """Folders searched for model files, in order."""
    dirs = []
    env = os.environ.get("MASKWATCH_MODELS")
    if env:
        dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    dirs.append(cache_dir())
    return dirs


def find_yunet(path: str | Path | None = None) -> Path | None:
    """Return the YuNet ONNX file: ``path`` if given (it must exist), else the first one found."""
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / YUNET_FILENAME
        if not p.is_file():
            raise ModelError(
                f"face detector model {p} not found; expected the YuNet file {YUNET_FILENAME} "
                "(run 'maskwatch models fetch' or pass an existing path)."
            )
        return p
    for d in (*models_dirs(), BUNDLED_DIR):
        candidate = d / YUNET_FILENAME
        if candidate.is_file():
            return candidate
    return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_yunet(dest_dir: Path | None = None, url: str = YUNET_URL, timeout: float = 30.0) -> Path:
    """Download YuNet into ``dest_dir`` (default: the user cache), verify its sha256 and return its path."""
    dest_dir = Path(dest_dir) if dest_dir else cache_dir()
    dest = dest_dir / YUNET_FILENAME
    if dest.is_file() and sha256_file(dest) == YUNET_SHA256:
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - fixed https URL
            data = resp.read()
    except OSError as exc:
        bundled = BUNDLED_DIR / YUNET_FILENAME
        hint = (f"The detector is already bundled with maskwatch ({bundled}) and used by default; copy that "
                f"file if you need it in {dest_dir}." if bundled.is_file() else
                f"Without internet, copy {YUNET_FILENAME} into a folder and set MASKWATCH_MODELS to it.")
        raise ModelError(f"could not download the YuNet face detector from {url} ({exc}). {hint}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != YUNET_SHA256:
        raise ModelError(f"downloaded YuNet file has sha256 {digest}, expected {YUNET_SHA256}; not saved.")
    with tempfile.NamedTemporaryFile(dir=dest_dir, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, dest)
    return dest
