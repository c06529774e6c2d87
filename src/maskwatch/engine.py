"""The engine: faces found, cropped, classified in one batch, returned as :class:`FrameResult`.

The CLI, the Python API and the HTTP server all call :class:`MaskDetector`; nothing else runs the
models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from maskwatch.classify.model import MaskClassifier
from maskwatch.defaults import MIRROR_PHOTOS, RECLASSIFY_EVERY, RECLASSIFY_STABLE_EVERY
from maskwatch.errors import InputError
from maskwatch.faces.detector import DetectorSettings, FaceBoxes, create_face_detector
from maskwatch.io.images import DEFAULT_MAX_PIXELS, decode_image
from maskwatch.io.sources import Source
from maskwatch.preprocess import DEFAULT_MARGIN, crop_face
from maskwatch.results import CropResult, Face, FrameResult
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
    """Find every face in an image and label it ``with_mask`` / ``without_mask``.

    Args:
        model: a maskwatch ``.onnx`` classifier, or ``None`` for the bundled default.
        detector: face-detector backend: ``"auto"``, ``"yunet"`` or ``"yuface"``.
        detector_model: YuNet ONNX file or folder (default: ``$MASKWATCH_MODELS``, the user cache).
        settings: face-detector thresholds, detection size and box calibration.
        threads: ONNX Runtime threads for the classifier.
        max_pixels: pixel limit for decoded images.
        reclassify_every: in videos, a tracked face is classified again after this many frames.
        reclassify_stable_every: the same for a stable track (confident, agreeing verdicts, same face
            size); raised to ``reclassify_every`` if lower, so ``1, 1`` classifies every face every frame.
        mirror_photos: classify each face of a photo (not of a video frame) together with its mirror
            image and average the two (more accurate on real faces, twice the classifier's time).

    Example:
        >>> det = MaskDetector()
        >>> result = det.detect_file("people.jpg")
        >>> [(f.label, f.score) for f in result.faces]
    """

    def __init__(
        self,
        model: str | Path | None = None,
        detector: str = "auto",
        detector_model: str | Path | None = None,
        settings: DetectorSettings | None = None,
        threads: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        reclassify_every: int = RECLASSIFY_EVERY,
        reclassify_stable_every: int = RECLASSIFY_STABLE_EVERY,
        mirror_photos: bool = MIRROR_PHOTOS,
    ) -> None:
        self.classifier = MaskClassifier(model, threads=threads)
        self.face_detector = create_face_detector(detector, detector_model, settings)
        video_settings = self.face_detector.settings.for_video()
        self.video_face_detector = (
            self.face_detector if video_settings == self.face_detector.settings
            else self.face_detector.with_settings(video_settings)
        )
        self.margin = float(self.classifier.info.preprocessing.get("margin", DEFAULT_MARGIN))
        self.max_pixels = max_pixels
        for name, value in (("reclassify_every", reclassify_every),
                            ("reclassify_stable_every", reclassify_stable_every)):
            if value < 1:
                raise InputError(f"{name} must be >= 1 frame, got {value}")
        self.reclassify_every = reclassify_every
        self.reclassify_stable_every = max(reclassify_every, reclassify_stable_every)
        self.mirror_photos = bool(mirror_photos)

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
        t0 = time.perf_counter()
        boxes = self.find_faces(image_bgr, video=tracker is not None)
        detect_ms = (time.perf_counter() - t0) * 1e3
        return self.label_faces(image_bgr, boxes, source=source, frame=frame, time_s=time_s, keep_image=keep_image,
                                tracker=tracker, timings_ms={"detect": detect_ms})

    def find_faces(self, image_bgr: np.ndarray, video: bool = False) -> FaceBoxes:
        """Stage 1: face boxes in one BGR ``uint8`` image (``video``: at the video detection size)."""
        if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            shape = getattr(image_bgr, "shape", type(image_bgr).__name__)
            raise InputError(f"expected a BGR uint8 image of shape (H, W, 3), got {shape}")
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
        options.setdefault("reclassify_every", self.reclassify_every)
        options.setdefault("reclassify_stable_every", self.reclassify_stable_every)
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

        yield from label_stream(self, resolve_sources(sources), vid_stride=vid_stride, keep_image=keep_image,
                                on_error=on_error, track=track)

    def classify(self, crops_bgr: Sequence[np.ndarray], sources: Iterable[str] | None = None) -> list[CropResult]:
        """Label whole images as face crops (no face detection); see :meth:`MaskClassifier.classify`."""
        return self.classifier.classify(list(crops_bgr), None if sources is None else list(sources),
                                        mirror=self.mirror_photos)


_DONE = object()


def label_stream(engine: MaskDetector, sources: list[Source], vid_stride: int = 1, keep_image: bool = False,
                 on_error=None, track: bool = True, tracker_options: dict | None = None,
                 stop=None) -> Iterator[FrameResult]:
    """Results of already resolved sources, one frame behind the detector so that the last frame of
    each video carries the ``track_ended`` events of its open tracks.

    ``stop`` (a :class:`threading.Event`): once set, the frame in hand is finished, open tracks are
    closed, and the stream ends.
    """
    held: FrameResult | None = None
    tracker: FaceTracker | None = None
    current = None
    for k, fr, boxes, detect_ms in _prefetch(engine, sources, vid_stride, on_error):
        if k != current:
            if held is not None:
                if tracker is not None:
                    held.events.extend(tracker.close())
                yield held
                held = None
            current = k
            tracker = (engine.new_tracker(fr.source, **(tracker_options or {}))
                       if track and sources[k].kind != "image" else None)
        result = engine.label_faces(fr.image, boxes, source=fr.source, frame=fr.index, time_s=fr.time_s,
                                    keep_image=keep_image, tracker=tracker, video=sources[k].kind != "image",
                                    timings_ms={"decode": fr.decode_ms, "detect": detect_ms})
        result.source_info = getattr(fr, "info", None)
        if held is not None:
            yield held
        held = result
        if stop is not None and stop.is_set():
            break
    if held is not None:
        if tracker is not None:
            held.events.extend(tracker.close())
        yield held


def _prefetch(engine: MaskDetector, sources: list[Source], vid_stride: int, on_error, depth: int = 4):
    """Yield ``(source index, frame, boxes, detect ms)`` decoded and detected by a background thread."""
    import queue
    import threading

    from maskwatch.io.sources import iter_frames

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for k, src in enumerate(sources):
                for fr in iter_frames(src, vid_stride=vid_stride, max_pixels=engine.max_pixels, on_error=on_error):
                    t0 = time.perf_counter()
                    boxes = engine.find_faces(fr.image, video=src.kind != "image")
                    if not put((k, fr, boxes, (time.perf_counter() - t0) * 1e3)):
                        return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            put(exc)
            return
        put(_DONE)

    thread = threading.Thread(target=work, name="maskwatch-decode-detect", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
