"""Shared fixtures: where ../shared is, which model to use, small generated images."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKWATCH_SHARED", ROOT.parent / "shared")).resolve()
HAS_SHARED = (SHARED / "data").is_dir()
FACE_DIR = SHARED / "weights" / "face"

needs_shared = pytest.mark.skipif(
    not HAS_SHARED, reason=f"needs the shared data folder at {SHARED} (set MASKWATCH_SHARED); absent here"
)

if HAS_SHARED and FACE_DIR.is_dir() and "MASKWATCH_MODELS" not in os.environ:
    os.environ["MASKWATCH_MODELS"] = str(FACE_DIR)


def default_model_path() -> Path | None:
    env = os.environ.get("MASKWATCH_TEST_MODEL")
    if env:
        return Path(env)
    from maskwatch.classify.model import DEFAULT_MODEL_PATH

    return DEFAULT_MODEL_PATH if DEFAULT_MODEL_PATH.is_file() else None


@pytest.fixture(scope="session")
def model_path() -> Path:
    p = default_model_path()
    if p is None or not p.is_file():
        pytest.skip("no classifier model: the bundled model is missing and MASKWATCH_TEST_MODEL is unset")
    return p


@pytest.fixture(scope="session")
def engine(model_path):
    from maskwatch.engine import MaskDetector

    return MaskDetector(model_path)


@pytest.fixture(scope="session")
def shared() -> Path:
    if not HAS_SHARED:
        pytest.skip(f"needs the shared data folder at {SHARED}")
    return SHARED


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300):
    """Run ``python -m maskwatch ARGS`` as a user would; returns the CompletedProcess."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "maskwatch", *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)


def assert_one_line_error(proc, *fragments: str) -> None:
    """A failed command: non-zero exit, no traceback, one ``maskwatch: error`` line naming the problem."""
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("maskwatch: error:")]
    assert len(errors) == 1, proc.stderr
    for frag in fragments:
        assert frag.lower() in errors[0].lower(), (frag, errors[0])


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


def write_clip(path: Path, frames, fps: float = 10.0) -> Path:
    """Write BGR frames (all one size) as an mp4 clip, as a phone or camera would hand it over."""
    import cv2

    frames = list(frames)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def set_mp4_rotation(path: Path, degrees: int) -> Path:
    """Mark an mp4 as a phone does: pixels stored sideways, a display matrix saying how to turn them.

    Writes the rotation into the video track's ``tkhd`` matrix (ISO/IEC 14496-12), in place.
    """
    import struct

    one, minus = 1 << 16, -(1 << 16)
    matrix = {90: (0, one, 0, minus, 0, 0), 180: (minus, 0, 0, 0, minus, 0), 270: (0, minus, 0, one, 0, 0)}[degrees]
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd") + 4 + 40  # version 0 header: flags, times, ids, duration, layer... then the matrix
    data[at:at + 36] = struct.pack(">9i", *matrix, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    return path


def scene_frame(size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """A real crowd photo with several masked and unmasked faces, resized to ``size`` (w, h)."""
    import cv2

    img = cv2.imread(str(SHARED / "data" / "scenes-dev" / "images" / "01242020_masks-qa_151720-780x520.jpg"))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


@pytest.fixture()
def gap_clip(tmp_path) -> Path:
    """A clip that starts and ends on frames with no face (an empty corridor, a title card) and shows
    faces in the middle: 6 empty, 6 with faces, 6 empty frames at 10 fps."""
    if not HAS_SHARED:
        pytest.skip(f"needs the shared data folder at {SHARED}")
    empty = np.full((360, 640, 3), 90, np.uint8)
    scene = scene_frame()
    return write_clip(tmp_path / "gap clip.mp4", [empty] * 6 + [scene] * 6 + [empty] * 6)
