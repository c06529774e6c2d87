"""The engine: faces found, cropped, classified in one batch, returned as :class:`FrameResult`.

The CLI, the Python API and the HTTP server all call :class:`MaskDetector`; nothing else runs the
models.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from maskwatch.classify.model import MaskClassifier
from maskwatch.faces.base import DetectorSettings, FaceBoxes
from maskwatch.faces.registry import create_face_detector
from maskwatch.io.images import as_bgr_uint8, decode_image
from maskwatch.io.sources import Source
from maskwatch.preprocess import DEFAULT_MARGIN, crop_face
from maskwatch.results import CropResult, Face, FrameResult
from maskwatch.spec import EngineSpec
from maskwatch.track import FaceTracker

log = logging.getLogger(__name__)


def crop_largest_face(image_bgr: np.ndarray, face_detector, margin: float = DEFAULT_MARGIN) -> tuple[np.ndarray, bool]:
    """Cut the largest detected face out of an image (as at inference), or return the image when none is found.

    Used to turn photos labelled as a whole (a crop dataset) into face crops, for training and evaluation.
    """
    boxes = face_detector.detect(image_bgr)
    if len(boxes) == 0:
        return image_bgr, False
    areas = (boxes.xyxy[:, 2] - boxes.xyxy[:, 0]) * (boxes.xyxy[:, 3] - boxes.xyxy[:, 1])
    return crop_face(image_bgr, boxes.xyxy[int(areas.argmax())], margin), True


class MaskDetector:
    """Find every face in an image and label it ``with_mask`` / ``without_mask`` (and ``mask_incorrect``
    with a 3-class model).

    Built from an :class:`~maskwatch.spec.EngineSpec` (``spec``), which holds every setting and its
    default; the keyword arguments are a shortcut that change single fields of it.

    Thread safety: one detector may be shared by threads. The classifier (ONNX Runtime) is shared;
    each thread gets its own face detectors (OpenCV's keep per-call state), built on first use from
    the spec. :meth:`fork` makes a detector with other settings that shares the loaded classifier.

    Args:
        model: a maskwatch ``.onnx`` classifier, or ``None`` for the bundled default.
        detector: face-detector backend (``"auto"``, ``"yunet"``, ``"yuface"``, ``"centerface"``,
            ``"fused"`` or any registered in :mod:`maskwatch.faces.registry`).
        detector_model: the backend's ONNX file or folder (default: ``$MASKWATCH_MODELS``, the user cache).
        settings: face-detector thresholds, detection sizes and box calibration (overrides the spec's).
        threads: ONNX Runtime threads for the classifier.
        max_pixels: pixel limit for decoded images and frames.
        reclassify_every / reclassify_stable_every / mirror_photos: see :class:`~maskwatch.spec.EngineSpec`.
        spec: the whole description; the other arguments, when given, change it.

    Example:
        >>> det = MaskDetector()
        >>> result = det.detect_file("people.jpg")
        >>> [(f.label, f.score) for f in result.faces]
    """

    def __init__(
        self,
        model: str | Path | None = None,
        detector: str | None = None,
        detector_model: str | Path | None = None,
        settings: DetectorSettings | None = None,
        threads: int | None = None,
        max_pixels: int | None = None,
        reclassify_every: int | None = None,
        reclassify_stable_every: int | None = None,
        mirror_photos: bool | None = None,
        *,
        spec: EngineSpec | None = None,
        _classifier: MaskClassifier | None = None,
    ) -> None:
        base = spec if spec is not None else EngineSpec()
        self.spec: EngineSpec = base.changed(
            settings, model=model, detector=detector, detector_model=detector_model, threads=threads,
            max_pixels=max_pixels, reclassify_every=reclassify_every, reclassify_stable_every=reclassify_stable_every,
            mirror_photos=mirror_photos)
        self.classifier = _classifier if _classifier is not None else MaskClassifier(self.spec.model,
                                                                                      threads=self.spec.threads)
        self.detector_settings = DetectorSettings.from_spec(self.spec)
        self._local = threading.local()
        self.margin = float(self.classifier.info.preprocessing.get("margin", DEFAULT_MARGIN))
        self._detectors()  # build (and check) this thread's face detectors now: a bad file fails here

    def fork(self, *, classifier: MaskClassifier | None = None, **changes) -> MaskDetector:
        """A detector with some spec fields changed (e.g. ``detect_size=480``, ``mirror_photos=False``)
        that shares this one's loaded classifier (unless ``model`` or ``threads`` change), or uses
        ``classifier`` (anything with the classifier's interface, e.g. a batching wrapper shared by cameras)."""
        spec = self.spec.replace(**changes)
        same_classifier = spec.model == self.spec.model and spec.threads == self.spec.threads
        if classifier is None and same_classifier:
            classifier = self.classifier
        return MaskDetector(spec=spec, _classifier=classifier)

    def _detectors(self):
        """This thread's (photo, video) face detectors, built on first use."""
        pair = getattr(self._local, "pair", None)
        if pair is None:
            photo = create_face_detector(self.spec.detector, self.spec.detector_model, self.detector_settings)
            video_settings = self.detector_settings.for_video()
            video = photo if video_settings == self.detector_settings else photo.with_settings(video_settings)
            pair = self._local.pair = (photo, video)
        return pair

    @property
    def face_detector(self):
        """This thread's face detector for photos."""
        return self._detectors()[0]

    @property
    def video_face_detector(self):
        """This thread's face detector for video frames (the video detection size)."""
        return self._detectors()[1]

    @property
    def max_pixels(self) -> int:
        return self.spec.max_pixels

    @property
    def mirror_photos(self) -> bool:
        return self.spec.mirror_photos

    @property
    def reclassify_every(self) -> int:
        return self.spec.reclassify_every

    @property
    def reclassify_stable_every(self) -> int:
        return self.spec.reclassify_stable_every

    @property
    def classes(self) -> tuple[str, ...]:
        return self.classifier.classes

    def _faces(self, probs: np.ndarray, boxes: FaceBoxes, track_ids: Sequence[int] | None = None,
               labels: Sequence[int] | None = None) -> list[Face]:
        faces = []
        ids = track_ids if track_ids is not None else [None] * len(boxes)
        # The model's abstention threshold (calibrated probabilities): a face whose shown label is less
        # probable than this is marked uncertain. Older model files have none and never abstain.
        abstain_below = self.classifier.calibration.abstain_below
        for i, (box, fscore, p, tid) in enumerate(zip(boxes.xyxy, boxes.scores, probs, ids)):
            k = int(p.argmax()) if labels is None else int(labels[i])
            x1, y1, x2, y2 = (int(round(float(v))) for v in box)
            faces.append(Face(
                box=(x1, y1, x2, y2), face_score=float(fscore), label=self.classes[k], score=float(p[k]),
                probs={c: float(v) for c, v in zip(self.classes, p)}, track_id=tid,
                uncertain=abstain_below is not None and float(p[k]) < abstain_below,
            ))
        return faces

    def detect(
        self,
        image_bgr: np.ndarray,
        source: str = "<array>",
        frame: int | None = None,
        time_s: float | None = None,
        keep_image: bool = False,
        tracker: FaceTracker | None = None,
    ) -> FrameResult:
        """Find and classify every face in one BGR ``uint8`` image.

        With a ``tracker`` (video), faces continue tracks from earlier frames and only new or stale
        tracks go through the classifier; each face then carries its track's label and recent
        (exponentially averaged) probabilities, and the result's ``events`` what happened to tracks.
        """
        image_bgr = as_bgr_uint8(image_bgr)
        t0 = time.perf_counter()
        boxes = self.find_faces(image_bgr, video=tracker is not None)
        detect_ms = (time.perf_counter() - t0) * 1e3
        return self.label_faces(image_bgr, boxes, source=source, frame=frame, time_s=time_s, keep_image=keep_image,
                                tracker=tracker, timings_ms={"detect": detect_ms})

    def find_faces(self, image_bgr: np.ndarray, video: bool = False) -> FaceBoxes:
        """Stage 1: face boxes in one BGR ``uint8`` image (``video``: at the video detection size)."""
        image_bgr = as_bgr_uint8(image_bgr)
        return (self.video_face_detector if video else self.face_detector).detect(image_bgr)

    def label_faces(
        self,
        image_bgr: np.ndarray,
        boxes: FaceBoxes,
        source: str = "<array>",
        frame: int | None = None,
        time_s: float | None = None,
        keep_image: bool = False,
        tracker: FaceTracker | None = None,
        timings_ms: dict[str, float] | None = None,
        video: bool | None = None,
    ) -> FrameResult:
        """Stage 2: crop every face and classify them in one batch (only new or stale tracks with a tracker).

        ``video``: the image is a video frame (default: when there is a ``tracker``); photo faces are
        classified with their mirror image when ``mirror_photos`` is on, video faces never.
        """
        t1 = time.perf_counter()
        track_ids = labels = None
        events: list = []
        is_video = tracker is not None if video is None else video
        if tracker is None:
            probs = self.classifier.predict([crop_face(image_bgr, b, self.margin) for b in boxes.xyxy],
                                            mirror=self.mirror_photos and not is_video)
            n_classified = len(boxes)
        else:
            index = frame if frame is not None else 0
            track_ids, need = tracker.assign(boxes.xyxy, index, time_s)
            fresh = self.classifier.predict([crop_face(image_bgr, boxes.xyxy[i], self.margin) for i in need])
            for i, p in zip(need, fresh):
                tracker.vote(track_ids[i], p, index)
            n_classified = len(need)
            # A frame with no face must still give an (0, n_classes) array: reshape(0, -1) cannot infer it.
            probs = np.array([tracker.tracks[t].probs for t in track_ids], np.float32).reshape(
                len(boxes), len(self.classes))
            labels = [tracker.label_of(t) for t in track_ids]
            tracker.check_alerts(track_ids)
            events = tracker.drain_events()
        t2 = time.perf_counter()
        h, w = image_bgr.shape[:2]
        return FrameResult(
            source=source, width=w, height=h, faces=self._faces(probs, boxes, track_ids, labels), frame=frame,
            time_s=time_s, timings_ms={**(timings_ms or {}), "classify": (t2 - t1) * 1e3},
            image=image_bgr if keep_image else None, classified=n_classified, events=events,
        )

    def _decode_and_detect(self, data: bytes | str | Path, source: str, keep_image: bool) -> FrameResult:
        t0 = time.perf_counter()
        image = decode_image(data, name=source, max_pixels=self.max_pixels)
        decode_ms = (time.perf_counter() - t0) * 1e3
        result = self.detect(image, source=source, keep_image=keep_image)
        result.timings_ms = {"decode": decode_ms, **result.timings_ms}
        return result

    def detect_bytes(self, data: bytes, source: str = "<upload>", keep_image: bool = False) -> FrameResult:
        """Decode image bytes (any common format, EXIF-rotated) and detect."""
        return self._decode_and_detect(data, source, keep_image)

    def detect_file(self, path: str | Path, keep_image: bool = False) -> FrameResult:
        """Read an image file and detect; ``source`` in the result is the path as given."""
        return self._decode_and_detect(Path(path), str(path), keep_image)

    def new_tracker(self, source: str = "", **options) -> FaceTracker:
        """A face tracker for one video, set up with this detector's tracking settings.

        ``options`` go to :class:`~maskwatch.track.FaceTracker` (``alert_after_s``, ``alpha``, ...)."""
        options = {**self.spec.tracker_options(), **options}
        return FaceTracker(len(self.classes), classes=self.classes, source=source, **options)

    def process(self, sources: Sequence[str | Path | Source], vid_stride: int = 1, keep_image: bool = False,
                on_error=None, track: bool = True) -> Iterator[FrameResult]:
        """Run on images, folders, globs, video files, camera indices or stream URLs, frame by frame.

        Decoding and face detection of the next frames run in a background thread while the
        classifier works on the current one (both release the GIL), so the two cores are both used.
        Video frames are tracked (see :mod:`maskwatch.track`) unless ``track`` is false; each result
        carries its :class:`~maskwatch.results.SourceInfo` and its track events, and the last frame
        of a video also the ``track_ended`` events of the tracks still open. For outputs (files,
        event log, alerts, reports) and clean stops on signals, use :func:`maskwatch.run`.
        """
        from maskwatch.io.sources import resolve_sources

        if isinstance(sources, (str, Path, Source)):  # one source, not a sequence of characters
            sources = [sources]
        from maskwatch.runloop import label_stream as _label_stream

        yield from _label_stream(self, resolve_sources(sources), vid_stride=vid_stride, keep_image=keep_image,
                                on_error=on_error, track=track)

    def classify(self, crops_bgr: Sequence[np.ndarray], sources: Iterable[str] | None = None) -> list[CropResult]:
        """Label whole images as face crops (no face detection); see :meth:`MaskClassifier.classify`."""
        crops = [as_bgr_uint8(c, what=f"crop {i}") for i, c in enumerate(crops_bgr)]
        return self.classifier.classify(crops, None if sources is None else list(sources),
                                        mirror=self.mirror_photos)


def label_stream(*args, **kwargs):
    """Moved to :func:`maskwatch.runloop.label_stream` (kept here for old imports)."""
    from maskwatch.runloop import label_stream as _label_stream

    return _label_stream(*args, **kwargs)
