"""Face detectors behind one small interface: ``detect(image_bgr) -> FaceBoxes``.

Two backends run the same network, YuNet (libfacedetection), which finds masked and small faces that
Haar cascades, dlib and MTCNN miss:

* :class:`YuNetDetector` - OpenCV's ``cv2.FaceDetectorYN`` with the YuNet ONNX file (fast, ~15 ms
  per 640x480 frame here); the file ships inside the package, and a models folder may hold another
  copy (see :mod:`maskwatch.faces.models`).
* :class:`YuFaceDetector` - the ``yuface`` package, which compiles YuNet in and needs no file.

:func:`create_face_detector` picks one (``"auto"``: YuNet when its file is found, which is always
the case for an intact install, else yuface with one log line saying so). Boxes are mapped back to
original-image pixels and optionally adjusted by a box calibration (annotators draw face boxes larger
and lower than YuNet does).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from maskwatch.errors import DependencyError, InputError, ModelError
from maskwatch.faces.models import YUNET_FILENAME, find_yunet

log = logging.getLogger(__name__)

DETECTOR_BACKENDS = ("auto", "yunet", "yuface", "centerface", "fused")


def quiet_opencv() -> None:
    """Show OpenCV's own errors only: its DNN warnings are not actionable for users."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - builds without the logging module
        pass


@contextlib.contextmanager
def _opencv_silent():
    """OpenCV's native log off for the duration (errors still raise ``cv2.error``)."""
    try:
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # pragma: no cover - builds without the logging module
        yield
        return
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


@dataclass
class FaceBoxes:
    """Face boxes ``xyxy`` (float, original-image pixels, shape ``(n, 4)``) and detector scores ``(n,)``."""

    xyxy: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(self.xyxy) != len(self.scores):
            raise ValueError(f"{len(self.xyxy)} boxes but {len(self.scores)} scores")

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: np.ndarray | slice) -> FaceBoxes:
        return FaceBoxes(self.xyxy[index], self.scores[index])

    @classmethod
    def empty(cls) -> FaceBoxes:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))


@dataclass
class DetectorSettings:
    """Knobs shared by every backend.

    Attributes:
        score_threshold: minimum detector confidence for a face.
        nms_threshold: IoU above which overlapping boxes are merged.
        detect_size: the image's long side is scaled to this many pixels before detection (small
            photos are enlarged so small faces become findable); ``None`` keeps the native size.
        video_detect_size: the same for video frames, where speed matters more.
        min_face: faces narrower than this many original-image pixels are dropped.
        box_scale / box_shift: box calibration: width and height are multiplied by ``box_scale`` and
            the centre moved by ``box_shift`` times the box size.
    """

    # Defaults fitted on one half of ../shared/data/scenes-dev and checked on the other half
    # (benchmarks/tune_detector.py): annotators draw faces ~17% wider and ~21% taller than YuNet.
    score_threshold: float = 0.55
    nms_threshold: float = 0.3
    detect_size: int | None = 1280
    # Video frames (files, cameras, streams) are detected at this size instead: real time first.
    # Measured on airport-crowd.mp4 (640x360): 76 frames/s at 640 against 32 at 1280.
    video_detect_size: int | None = 640
    min_face: int = 8
    # Box calibration fitted on both annotation styles (scenes-kaggle train + scenes-dev FIT, equal
    # weight; benchmarks/fit_faces.py): faces 12.5% wider, 7.5% taller, centre 7.5% of a box lower.
    box_scale: tuple[float, float] = (1.125, 1.075)
    box_shift: tuple[float, float] = (0.0, 0.075)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise InputError(f"face score threshold must be between 0 and 1, got {self.score_threshold}")
        if not 0.0 < self.nms_threshold <= 1.0:
            raise InputError(f"NMS threshold must be in (0, 1], got {self.nms_threshold}")
        for size in (self.detect_size, self.video_detect_size):
            if size is not None and not 64 <= size <= 4096:
                raise InputError(f"detect size must be between 64 and 4096 pixels, got {size}")
        if self.min_face < 0:
            raise InputError(f"minimum face size must be >= 0 pixels, got {self.min_face}")

    def for_video(self) -> DetectorSettings:
        """These settings with ``detect_size`` set to the video size."""
        return replace(self, detect_size=self.video_detect_size)


def calibrate_boxes(xywh: np.ndarray, scores: np.ndarray, shape: tuple[int, ...],
                    settings: DetectorSettings) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated, clipped ``xyxy`` boxes for raw ``xywh`` boxes, and the mask of boxes that pass
    the score threshold and minimum size of ``settings``."""
    xywh = np.asarray(xywh, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    h, w = shape[:2]
    s = settings
    cx = xywh[:, 0] + xywh[:, 2] / 2 + np.float32(s.box_shift[0]) * xywh[:, 2]
    cy = xywh[:, 1] + xywh[:, 3] / 2 + np.float32(s.box_shift[1]) * xywh[:, 3]
    bw, bh = xywh[:, 2] * np.float32(s.box_scale[0]), xywh[:, 3] * np.float32(s.box_scale[1])
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, w)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, h)
    keep = (scores >= s.score_threshold) & (xywh[:, 2] >= s.min_face)
    keep &= (xyxy[:, 2] - xyxy[:, 0] >= 1) & (xyxy[:, 3] - xyxy[:, 1] >= 1)
    return xyxy, keep


class FaceDetector(Protocol):
    """Anything that finds faces: ``detect(image_bgr) -> FaceBoxes``."""

    name: str
    settings: DetectorSettings

    def detect(self, image_bgr: np.ndarray) -> FaceBoxes: ...


class _BaseDetector:
    name = "base"
    max_input: int | None = None

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()

    def _scale_for(self, h: int, w: int) -> float:
        long_side = max(h, w)
        target = self.settings.detect_size or long_side
        if self.max_input:
            target = min(target, self.max_input)
        return target / long_side

    def detect(self, image_bgr: np.ndarray) -> FaceBoxes:
        """Find faces in a BGR ``uint8`` image; boxes are in the image's own pixels."""
        xywh, scores = self.detect_raw(image_bgr)
        return self.postprocess(xywh, scores, image_bgr.shape[:2])

    def detect_raw(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's boxes ``(x, y, w, h)`` in original-image pixels and scores, before calibration
        and thresholds (the network's own threshold still applies)."""
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise InputError(f"expected a BGR image of shape (H, W, 3), got shape {image_bgr.shape}")
        h, w = image_bgr.shape[:2]
        scale = self._scale_for(h, w)
        if abs(scale - 1.0) > 1e-3:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            work = cv2.resize(image_bgr, size, interpolation=interp)
        else:
            scale, work = 1.0, image_bgr
        xywh, scores = self._raw_detect(np.ascontiguousarray(work))
        return np.asarray(xywh, np.float32).reshape(-1, 4) / scale, np.asarray(scores, np.float32).reshape(-1)

    def postprocess(self, xywh: np.ndarray, scores: np.ndarray, shape: tuple[int, int]) -> FaceBoxes:
        """Apply box calibration, clipping to the image ``shape`` (h, w), score threshold and minimum size."""
        xyxy, keep = calibrate_boxes(xywh, scores, shape, self.settings)
        return FaceBoxes(xyxy[keep], scores[keep])

    def _raw_detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def with_settings(self, settings: DetectorSettings) -> _BaseDetector:
        """A new detector of the same backend (and model file) with other settings.

        Detectors keep per-call state (OpenCV's input size), so each thread needs its own.
        """
        raise NotImplementedError


class YuNetDetector(_BaseDetector):
    """YuNet through OpenCV's ``cv2.FaceDetectorYN`` (needs the YuNet ONNX file)."""

    name = "yunet"

    def __init__(self, model_path: str | Path, settings: DetectorSettings | None = None) -> None:
        super().__init__(settings)
        self.model_path = Path(model_path)
        quiet_opencv()
        if not hasattr(cv2, "FaceDetectorYN"):
            raise DependencyError("this OpenCV build has no FaceDetectorYN; install opencv-python-headless>=4.8")
        expected = (f"expected OpenCV's YuNet face detector ({YUNET_FILENAME}); pass that file with "
                    "--detector-model or leave the option out to use the bundled copy")
        if self.model_path.suffix.lower() != ".onnx":
            raise ModelError(f"{self.model_path}: not an ONNX file; {expected}.")
        # Load and run it once on a blank frame: any ONNX file loads, and a network that is not YuNet
        # only fails at the first detect(), deep inside OpenCV. OpenCV's own log stays silent here;
        # the error says what went wrong in one line.
        with _opencv_silent():
            try:
                self._net = cv2.FaceDetectorYN.create(
                    str(self.model_path), "", (320, 320), max(0.01, min(self.settings.score_threshold, 0.99)),
                    self.settings.nms_threshold, 5000,
                )
                self._net.detect(np.zeros((320, 320, 3), np.uint8))
            except cv2.error as exc:
                reason = " ".join(str(getattr(exc, "err", "") or exc.msg).split())
                reason = reason.split(" (expected:")[0].lstrip("> ")[:120]
                raise ModelError(f"{self.model_path}: not a usable YuNet model ({reason}); {expected}.") from exc
        self._size: tuple[int, int] | None = (320, 320)

    def with_settings(self, settings: DetectorSettings) -> YuNetDetector:
        return YuNetDetector(self.model_path, settings)

    def _raw_detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = image_bgr.shape[:2]
        if self._size != (w, h):
            self._net.setInputSize((w, h))
            self._size = (w, h)
        _, faces = self._net.detect(image_bgr)
        if faces is None or len(faces) == 0:
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        return faces[:, :4], faces[:, 14]


_omp_local = threading.local()

#: OpenMP threads yuface may use per calling thread. Measured on this 2-core machine,
#: single-masked.mp4 through `maskwatch detect --detector yuface` (benchmarks/detector_paths.py):
#: 1 thread 9.6 s quiet / 19.0 s beside two CPU hogs; 2 threads with passive waiting 6.6 s / 17.2 s;
#: 2 threads with OpenMP's default spin-waiting 7.3 s / 30.6 s, and 2-3 frames/s in the field.
YUFACE_OMP_THREADS = 2


def _limit_openmp_threads() -> None:
    """Limit yuface's OpenMP team in the calling thread (once per thread) to :data:`YUFACE_OMP_THREADS`.

    yuface parallelises each frame with OpenMP (its own bundled libgomp), which by default starts a
    team of as many threads as there are cores for every thread that calls it, and makes idle team
    threads spin. Beside the engine's own two stages (decode+detect in one thread, classify in
    another) or any other load, spinning teams oversubscribe the cores and every barrier waits for a
    descheduled thread: 6-10x slower. The thread count is per calling thread in OpenMP, hence once
    per thread; the wait policy is set to passive before yuface loads (:class:`YuFaceDetector`).
    """
    if getattr(_omp_local, "done", False):
        return
    _omp_local.done = True
    n = max(1, min(YUFACE_OMP_THREADS, os.cpu_count() or 1))
    for lib in _yuface_libgomp():
        try:
            lib.omp_set_num_threads(n)
        except AttributeError:  # pragma: no cover - not an OpenMP runtime after all
            pass


@functools.lru_cache(maxsize=1)
def _yuface_libgomp() -> tuple:
    """The OpenMP runtime(s) that the installed yuface links against, loaded with ctypes."""
    import ctypes
    import glob
    import os

    try:
        import yuface
    except ImportError:  # pragma: no cover - checked by YuFaceDetector
        return ()
    site = os.path.dirname(os.path.dirname(os.path.abspath(yuface.__file__)))
    found = []
    for path in sorted(glob.glob(os.path.join(site, "yuface.libs", "libgomp*.so*"))):
        try:
            found.append(ctypes.CDLL(path))
        except OSError:  # pragma: no cover
            continue
    if not found:  # a yuface built against the system's libgomp
        try:
            found.append(ctypes.CDLL("libgomp.so.1"))
        except OSError:
            log.debug("yuface: no OpenMP runtime found to limit; it runs with its own thread count")
    return tuple(found)


class YuFaceDetector(_BaseDetector):
    """YuNet compiled into the ``yuface`` package: needs no model file (input capped at 960 px)."""

    name = "yuface"
    max_input = 960

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        super().__init__(settings)
        # Idle OpenMP threads must sleep, not spin, or they steal the cores the rest of the pipeline
        # needs (see _limit_openmp_threads). Read once, when yuface's own libgomp loads; a user's
        # own OMP_WAIT_POLICY wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            from yuface import c_detect
        except ImportError as exc:
            raise DependencyError("the 'yuface' package is not installed; pip install yuface") from exc
        self._detect = c_detect

    def with_settings(self, settings: DetectorSettings) -> YuFaceDetector:
        return YuFaceDetector(settings)

    def _raw_detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _limit_openmp_threads()
        result = np.asarray(self._detect(image_bgr))
        if result.size == 0:
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        scores = result[:, 0].astype(np.float32) / 100.0
        return result[:, 1:5].astype(np.float32), scores


def create_face_detector(
    backend: str = "auto",
    model_path: str | Path | None = None,
    settings: DetectorSettings | None = None,
) -> _BaseDetector:
    """Build a face detector.

    Args:
        backend: ``"auto"`` (YuNet via OpenCV when its file is found, else yuface), ``"yunet"``,
            ``"yuface"``, ``"centerface"`` (bundled CenterFace, see :mod:`maskwatch.faces.centerface`) or
            ``"fused"`` (YuNet - or yuface without its file - and CenterFace, boxes fused by
            :mod:`maskwatch.faces.fusion`).
        model_path: the backend's ONNX file or a folder holding it (default: the models folders;
            ``"fused"``: a folder holding both files).
        settings: thresholds, detection size and box calibration.
    """
    if backend not in DETECTOR_BACKENDS:
        raise InputError(f"unknown face detector {backend!r}; choose one of {', '.join(DETECTOR_BACKENDS)}")
    if backend == "yuface":
        return YuFaceDetector(settings)
    if backend == "centerface":
        from maskwatch.faces.centerface import CenterFaceDetector

        return CenterFaceDetector(model_path, settings)
    if backend == "fused":
        from maskwatch.faces.centerface import CenterFaceDetector
        from maskwatch.faces.fusion import FusedDetector

        folder = model_path if model_path is None or Path(model_path).is_dir() else Path(model_path).parent
        return FusedDetector([create_face_detector("auto", folder, settings), CenterFaceDetector(folder, settings)],
                             settings)
    path = find_yunet(model_path)
    if path is not None:
        return YuNetDetector(path, settings)
    if backend == "yunet":
        from maskwatch.faces.models import fetch_yunet

        return YuNetDetector(fetch_yunet(), settings)
    log.warning(
        "YuNet model file not found (the package's own copy is missing: reinstall maskwatch, set "
        "MASKWATCH_MODELS or run 'maskwatch models fetch'); using the built-in yuface detector"
    )
    return YuFaceDetector(settings)
