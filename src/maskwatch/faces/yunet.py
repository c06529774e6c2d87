"""YuNet (libfacedetection) face detection, two ways: OpenCV's ``cv2.FaceDetectorYN`` with the YuNet
ONNX file (bundled), or the ``yuface`` package, which compiles the same network in and needs no file.

YuNet finds masked and small faces that Haar cascades, dlib and MTCNN miss.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path

import cv2
import numpy as np

from maskwatch.cvutil import opencv_silent, quiet_opencv
from maskwatch.errors import DependencyError, ModelError
from maskwatch.faces.base import BaseDetector, DetectorSettings
from maskwatch.faces.models import YUNET_FILENAME

log = logging.getLogger(__name__)


class YuNetDetector(BaseDetector):
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
        with opencv_silent():
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


class YuFaceDetector(BaseDetector):
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

