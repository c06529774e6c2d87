"""``maskwatch benchmark``: frames/s end to end and milliseconds per stage, ours against the classic.

The classic pipeline is the best-known open-source mask detector's: OpenCV's res10 SSD face detector
on a 300x300 blob, then Keras ``model.predict`` on all faces of the frame with a MobileNetV2
classifier. It is rebuilt here (weights do not change its speed) so both run on the same machine,
the same frames, one after the other. OpenCV 5 cannot read res10's TensorFlow files, so the detector
runs from an ONNX conversion (:mod:`maskwatch.evaluate.res10`, made on first use). The fair measure
(issue 15) is the whole clip with start-up counted: ``--frames 0``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskwatch.defaults import RECLASSIFY_STABLE_EVERY
from maskwatch.errors import DependencyError, InputError
from maskwatch.io.sources import iter_frames, resolve_sources

log = logging.getLogger(__name__)


def default_video() -> Path | None:
    """The crowd clip from the shared data folder, when present."""
    shared = Path(os.environ.get("MASKWATCH_SHARED", Path.cwd().parent / "shared"))
    p = shared / "data" / "video" / "airport-crowd.mp4"
    return p if p.is_file() else None


def bench_engine(engine, source: str, frames: int, track: bool) -> dict[str, Any]:
    """Time ``engine.process`` end to end (decode, detection, classification) over ``frames`` frames
    (0: the whole source)."""
    dec = det = cls = 0.0
    faces = classified = n = 0
    t0 = time.perf_counter()
    for r in engine.process([source], track=track):
        dec += r.timings_ms.get("decode", 0.0)
        det += r.timings_ms["detect"]
        cls += r.timings_ms["classify"]
        faces += len(r.faces)
        classified += r.classified
        n += 1
        if frames and n >= frames:
            break
    total = time.perf_counter() - t0
    if n == 0:
        raise InputError(f"{source}: no frames to benchmark")
    return {"frames": n, "fps": n / total, "decode_ms": dec / n, "detect_ms": det / n, "classify_ms": cls / n,
            "faces_per_frame": faces / n, "classified_per_frame": classified / n,
            "ms_per_classified_face": cls / max(classified, 1)}


def classic_keras_model(weights: Path | None):
    """The tutorial's classifier, fixed at its own settings whatever maskwatch's recipe becomes:
    Keras MobileNetV2 (alpha 1.0, 224x224, base weights from ``weights`` or random when absent: the
    speed is the same) + AveragePooling 7x7, Flatten, Dense 128 ReLU, Dropout 0.5, Dense 2 softmax."""
    from maskwatch.train.keras_backend import import_keras

    _, keras = import_keras()
    from keras import layers

    inputs = keras.Input((224, 224, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)  # preprocess_input, inside the model
    base = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, include_top=False,
                                          weights=str(weights) if weights is not None and weights.is_file() else None)
    x = base(x, training=False)
    x = layers.AveragePooling2D(pool_size=(7, 7))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(x))


def bench_classic(source: str, frames: int, res10_onnx: Path, weights: Path | None) -> dict[str, Any]:
    """The tutorial pipeline: res10 SSD (``cv2.dnn``, 300x300, faces above 0.5) + Keras MobileNetV2
    ``model.predict`` once per frame on all its faces (224x224). ``frames`` 0 times the whole source.

    ``load_s`` is its start-up: TensorFlow imported, the Keras model built and its weights loaded,
    the detector read. The detector comes from ONNX (:mod:`maskwatch.evaluate.res10`), since OpenCV 5
    no longer reads the original TensorFlow files; its detections agree with OpenCV 4's on those.
    """
    from maskwatch.evaluate.res10 import Res10Detector
    from maskwatch.train.keras_backend import import_keras

    t_load = time.perf_counter()
    import_keras()
    model = classic_keras_model(weights)
    detector = Res10Detector(res10_onnx)
    dec = det = cls = 0.0
    faces_total = n = 0
    model.predict(np.zeros((1, 224, 224, 3), np.float32), verbose=0)
    t0 = time.perf_counter()
    load_s = t0 - t_load
    for fr in (fr for src in resolve_sources([source]) for fr in iter_frames(src)):
        img = fr.image
        dec += fr.decode_ms
        h, w = img.shape[:2]
        a = time.perf_counter()
        faces = []
        for row in detector.detect(img):
            if row[2] > 0.5:
                x1, y1, x2, y2 = (row[3:7] * np.array([w, h, w, h])).astype(int)
                x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w - 1, x2), min(h - 1, y2)
                if x2 > x1 and y2 > y1:
                    face = cv2.resize(cv2.cvtColor(img[y1:y2, x1:x2], cv2.COLOR_BGR2RGB), (224, 224))
                    faces.append(face.astype(np.float32))
        b = time.perf_counter()
        if faces:
            model.predict(np.array(faces), batch_size=32, verbose=0)
        c = time.perf_counter()
        det += (b - a) * 1e3
        cls += (c - b) * 1e3
        faces_total += len(faces)
        n += 1
        if frames and n >= frames:
            break
    total = time.perf_counter() - t0
    if n == 0:
        raise InputError(f"{source}: no frames to benchmark")
    return {"frames": n, "fps": n / total, "load_s": load_s,
            "decode_ms": dec / n, "detect_ms": det / n, "classify_ms": cls / n,
            "faces_per_frame": faces_total / n, "classified_per_frame": faces_total / n,
            "ms_per_classified_face": cls / max(faces_total, 1)}


def run_benchmark(source: str | None, frames: int, baseline: bool, reclassify_every: int,
                  engine_factory: Callable[..., Any],
                  reclassify_stable_every: int = RECLASSIFY_STABLE_EVERY) -> list[dict[str, Any]]:
    """Time maskwatch (tracked and untracked) and optionally the classic pipeline on ``source``.

    Each row has ``fps`` (frames over the loop's time) and ``fps_with_startup`` (the same frames over
    the loop plus the pipeline's start-up: models loaded and, for the classic one, TensorFlow imported).
    """
    if source is None:
        video = default_video()
        if video is None:
            raise InputError("no SOURCE given and the default clip (../shared/data/video/airport-crowd.mp4) "
                             "is absent; pass a video or folder.")
        source = str(video)
    res10_onnx = None
    if baseline:  # find (or convert, in a child process) the classic detector before anything is timed
        from maskwatch.evaluate.res10 import find_res10_onnx

        res10_onnx = find_res10_onnx()
    # No warm-up: the first timed pass starts cold, exactly as ``maskwatch detect`` does (a warm-up
    # call on the main thread once hid a 6x slow-down that only a cold background thread showed).
    t_load = time.perf_counter()
    engine = engine_factory(reclassify_every=reclassify_every, reclassify_stable_every=reclassify_stable_every)
    load_s = time.perf_counter() - t_load
    rows = []
    tracked = f"maskwatch (tracked, every {reclassify_every}/{engine.reclassify_stable_every})"
    for label, track in ((tracked, True), ("maskwatch (every face, every frame)", False)):
        r = bench_engine(engine, source, frames, track)
        rows.append({"pipeline": label, "detector": engine.face_detector.name, "load_s": load_s, **r})
    if res10_onnx is not None:
        from maskwatch.evaluate.res10 import shared_face_dir

        weights = shared_face_dir().parent / "mobilenet_v2" / "mobilenet_v2_1.0_224_from_torchvision_no_top.weights.h5"
        try:
            r = bench_classic(source, frames, res10_onnx, weights)
        except DependencyError as exc:
            raise DependencyError(f"--baseline rebuilds the Keras pipeline: {exc}") from exc
        rows.append({"pipeline": "classic (res10 SSD + Keras predict)", "detector": "res10-ssd", **r})
    for r in rows:
        r["source"] = source
        r["fps_with_startup"] = r["frames"] / (r["frames"] / r["fps"] + r["load_s"])
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of benchmark rows."""
    head = f"{'pipeline':<44} {'fps':>6} {'+start':>6} {'decode':>7} {'detect':>7} {'classify':>9} {'faces/f':>8} " \
           f"{'cls/f':>6} {'ms/face':>8}"
    title = (f"source: {rows[0]['source']}  ({rows[0]['frames']} frames; fps end to end, '+start' with the "
             "pipeline's start-up counted, stage times in ms per frame; maskwatch decodes and detects in a second "
             "thread)")
    starts = dict.fromkeys(f"{r['pipeline'].split(' (')[0]} {r['load_s']:.2f} s" for r in rows)
    lines = [title, "start-up (models loaded, TensorFlow imported for classic): " + ", ".join(starts)
             + "; maskwatch rows start cold, as 'maskwatch detect' does", head]
    for r in rows:
        lines.append(f"{r['pipeline']:<44} {r['fps']:6.1f} {r['fps_with_startup']:6.1f} {r['decode_ms']:7.1f} "
                     f"{r['detect_ms']:7.1f} {r['classify_ms']:9.1f} {r['faces_per_frame']:8.1f} "
                     f"{r['classified_per_frame']:6.1f} "
                     f"{r['ms_per_classified_face']:8.2f}")
    if len(rows) > 1 and rows[-1]["pipeline"].startswith("classic"):
        c = rows[-1]
        lines.append(f"speed-up over classic, {c['frames']} frames, start-up counted: "
                     f"{rows[0]['fps_with_startup'] / c['fps_with_startup']:.2f}x (tracked), "
                     f"{rows[1]['fps_with_startup'] / c['fps_with_startup']:.2f}x (every face); loop only: "
                     f"{rows[0]['fps'] / c['fps']:.2f}x (tracked), {rows[1]['fps'] / c['fps']:.2f}x (every face)")
    return "\n".join(lines)
