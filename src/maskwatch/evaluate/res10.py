"""The classic pipeline's face detector, OpenCV's res10 300x300 SSD, run from ONNX.

OpenCV 5 dropped ``cv2.dnn.readNetFromTensorflow``, so the TensorFlow files
(``opencv_face_detector_uint8.pb`` + ``opencv_face_detector.pbtxt``) no longer load. This module:

- converts the ``.pb`` once to ONNX (:func:`convert_res10`): the uint8 weights are dequantised
  with TensorFlow's own MIN_FIRST formula, the graph (input NHWC, BGR minus (104, 177, 123)) is
  exported with tf2onnx to take the NCHW blob that ``cv2.dnn.blobFromImage`` makes, and its two
  outputs are the raw SSD heads (``mbox_loc``, ``mbox_conf_flatten``); needs the ``train`` extra;
- rebuilds what the ``.pbtxt`` added in OpenCV layers (``PriorBox`` and ``DetectionOutput``) in
  NumPy (:func:`prior_boxes`, :func:`detection_output`), with the ``.pbtxt``'s parameters;
- runs the ONNX with ``cv2.dnn.readNetFromONNX`` (:class:`Res10Detector`), so the baseline keeps
  OpenCV's DNN runtime, as the classic pipeline had it.

The converted file is derived from third-party weights, so it is not shipped: it is written into
the user cache (``~/.cache/maskwatch``) on first use, like a fetched model, and looked up in
``$MASKWATCH_MODELS`` first. ``benchmarks/convert_res10.py`` converts and checks it against
TensorFlow and against an older OpenCV's output.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from maskwatch.errors import DependencyError, InputError

log = logging.getLogger(__name__)

PB_NAME = "opencv_face_detector_uint8.pb"
PBTXT_NAME = "opencv_face_detector.pbtxt"
ONNX_NAME = "res10_ssd_300x300.onnx"
#: Bumped when the conversion changes, so a stale cached ONNX is converted again.
CONVERTER_VERSION = "1"
INPUT_SIZE = 300
MEAN_BGR = (104.0, 177.0, 123.0)

# PriorBox parameters of opencv_face_detector.pbtxt, one row per source layer:
# (feature map side at 300x300, step, min_size, max_size, aspect ratios); flip on, clip off, offset 0.5.
_PRIOR_LAYERS = (
    (38, 8.0, 30.0, 60.0, (2.0,)),
    (19, 16.0, 60.0, 111.0, (2.0, 3.0)),
    (10, 32.0, 111.0, 162.0, (2.0, 3.0)),
    (5, 64.0, 162.0, 213.0, (2.0, 3.0)),
    (5, 100.0, 213.0, 264.0, (2.0,)),  # conv8_2 and conv9_2 keep 5x5 in this graph (steps as the .pbtxt says)
    (5, 300.0, 264.0, 315.0, (2.0,)),
)
_VARIANCE = np.array([0.1, 0.1, 0.2, 0.2], np.float32)
# DetectionOutput parameters of the .pbtxt.
CONFIDENCE_FLOOR, NMS_IOU, TOP_K, KEEP_TOP_K = 0.01, 0.45, 400, 200


def shared_face_dir() -> Path:
    """``weights/face`` in the shared data folder (``$MASKWATCH_SHARED``, default ``../shared``)."""
    shared = Path(os.environ.get("MASKWATCH_SHARED", Path.cwd().parent / "shared"))
    return shared / "weights" / "face"


def _search_dirs() -> list[Path]:
    from maskwatch.faces.models import models_dirs

    return models_dirs()


def find_res10_sources() -> tuple[Path, Path] | None:
    """The original TensorFlow files (``.pb``, ``.pbtxt``) from ``$MASKWATCH_MODELS`` or the shared folder."""
    for d in [*_search_dirs(), shared_face_dir()]:
        pb, pbtxt = d / PB_NAME, d / PBTXT_NAME
        if pb.is_file() and pbtxt.is_file():
            return pb, pbtxt
    return None


def _onnx_is_current(path: Path) -> bool:
    """Whether ``path`` was written by this converter version (without ``onnx`` to read it: trusted)."""
    try:
        import onnx
    except ImportError:
        return True
    try:
        props = onnx.load(str(path), load_external_data=False).metadata_props
    except Exception:  # noqa: BLE001 - unreadable: convert again
        return False
    return {p.key: p.value for p in props}.get("maskwatch_res10_converter") == CONVERTER_VERSION


def find_res10_onnx(convert: bool = True) -> Path:
    """The res10 ONNX file: in ``$MASKWATCH_MODELS``, the user cache or the shared face folder, else
    converted from the TensorFlow files into the user cache.

    Raises :class:`InputError` (one line, with what to do) when neither the ONNX nor the original
    TensorFlow files are found, and :class:`DependencyError` when converting needs the train extra.
    """
    from maskwatch.faces.models import cache_dir

    for d in [*_search_dirs(), shared_face_dir()]:
        p = d / ONNX_NAME
        if p.is_file() and _onnx_is_current(p):
            return p
    sources = find_res10_sources()
    if sources is None or not convert:
        raise InputError(
            f"the classic baseline needs OpenCV's res10 face detector: expected {ONNX_NAME}, or {PB_NAME} + "
            f"{PBTXT_NAME} to convert, in $MASKWATCH_MODELS or {shared_face_dir()}; none found. Set "
            "MASKWATCH_MODELS to the folder holding them (or MASKWATCH_SHARED to the shared data folder).")
    dest = cache_dir() / ONNX_NAME
    log.warning("converting %s to ONNX for OpenCV 5, once, into %s", sources[0], dest)
    convert_in_subprocess(sources[0], dest)
    return dest


def convert_in_subprocess(pb: Path, dest: Path) -> None:
    """Run :func:`convert_res10` in a child process, so TensorFlow is not imported into this one
    (the classic pipeline's timed start-up includes importing TensorFlow)."""
    import importlib.util
    import subprocess
    import sys

    missing = [m for m in ("tensorflow", "tf2onnx", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise DependencyError(f"converting res10 to ONNX needs {', '.join(missing)}: pip install 'maskwatch[train]'")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "maskwatch.evaluate.res10", str(pb), str(dest)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not Path(dest).is_file():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"converting {pb} to ONNX failed ({tail}); run 'python benchmarks/convert_res10.py' "
                         "to see the whole error.")


def dequantize_min_first(q: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """TensorFlow's ``Dequantize`` (quint8, MIN_FIRST), in float64; a zero-width range gives ``lo``.

    TensorFlow itself returns NaN for the degenerate ranges this file has (batch-norm betas stored
    as 0..1e-38), so its op cannot be used to dequantise.
    """
    scale = (float(hi) - float(lo)) / 255.0
    if scale < 1e-30:
        return np.full(q.shape, lo, np.float32)
    scale32 = float(np.float32(scale))
    lo_rounded = round(float(lo) / scale32) * scale32
    return (lo_rounded + q.astype(np.float64) * scale).astype(np.float32)


def float_graph_def(pb: Path):
    """The ``.pb`` graph with every ``Dequantize`` node replaced by its float constant, input 1x300x300x3."""
    try:
        import tensorflow as tf
        from tensorflow.core.framework import graph_pb2
    except ImportError as exc:
        raise DependencyError("converting res10 to ONNX needs TensorFlow and tf2onnx: "
                              "pip install 'maskwatch[train]'") from exc
    g = graph_pb2.GraphDef()
    g.ParseFromString(Path(pb).read_bytes())
    consts = {n.name: n for n in g.node if n.op == "Const"}
    out = graph_pb2.GraphDef()
    for n in g.node:
        if n.op == "Dequantize":
            q, lo, hi = (tf.make_ndarray(consts[i.split(":")[0]].attr["value"].tensor) for i in n.input)
            c = out.node.add()
            c.name, c.op = n.name, "Const"
            c.attr["dtype"].type = tf.float32.as_datatype_enum
            c.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(
                dequantize_min_first(q.view(np.uint8) if q.dtype != np.uint8 else q, float(lo), float(hi))))
        else:
            out.node.add().CopyFrom(n)
    used = {i.split(":")[0].lstrip("^") for n in out.node for i in n.input}
    keep = [n for n in out.node if n.name in used or n.op == "Placeholder"
            or n.name in ("mbox_loc", "mbox_conf_flatten")]
    del out.node[:]
    out.node.extend(keep)
    for n in out.node:
        if n.op == "Placeholder":
            n.attr["shape"].shape.CopyFrom(tf.TensorShape([1, INPUT_SIZE, INPUT_SIZE, 3]).as_proto())
            n.attr["dtype"].type = tf.float32.as_datatype_enum
    return out


def convert_res10(pb: Path, dest: Path) -> Path:
    """Convert ``opencv_face_detector_uint8.pb`` to an ONNX file at ``dest`` (written atomically)."""
    gdef = float_graph_def(pb)
    try:
        import onnx
        import tf2onnx
    except ImportError as exc:
        raise DependencyError("converting res10 to ONNX needs tf2onnx and onnx: pip install 'maskwatch[train]'") \
            from exc
    model, _ = tf2onnx.convert.from_graph_def(gdef, input_names=["data:0"],
                                              output_names=["mbox_loc:0", "mbox_conf_flatten:0"],
                                              opset=13, inputs_as_nchw=["data:0"])
    meta = {"maskwatch_res10_converter": CONVERTER_VERSION,
            "source": PB_NAME, "source_sha256": hashlib.sha256(Path(pb).read_bytes()).hexdigest(),
            "input": "NCHW 1x3x300x300 BGR minus (104, 177, 123) (cv2.dnn.blobFromImage)",
            "outputs": "raw SSD heads; priors and decoding in maskwatch.evaluate.res10"}
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".onnx.part")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def prior_boxes() -> np.ndarray:
    """The 8892 priors of the ``.pbtxt``'s six ``PriorBox`` layers, ``(N, 4)`` normalised x1, y1, x2, y2.

    Same order as OpenCV: per layer, per cell (row-major), the min-size square, the
    sqrt(min*max) square, then each aspect ratio ``r`` and ``1/r``.
    """
    out = []
    for side, step, min_s, max_s, ratios in _PRIOR_LAYERS:
        sizes = [(min_s, min_s), (np.sqrt(min_s * max_s),) * 2]
        for r in ratios:
            sizes += [(min_s * np.sqrt(r), min_s / np.sqrt(r)), (min_s * np.sqrt(1 / r), min_s / np.sqrt(1 / r))]
        wh = np.array(sizes, np.float32)
        ys, xs = np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32), indexing="ij")
        cx = ((xs.ravel() + 0.5) * step)[:, None]
        cy = ((ys.ravel() + 0.5) * step)[:, None]
        boxes = np.stack([cx - wh[:, 0] / 2, cy - wh[:, 1] / 2, cx + wh[:, 0] / 2, cy + wh[:, 1] / 2], -1)
        out.append(boxes.reshape(-1, 4) / INPUT_SIZE)
    return np.concatenate(out).astype(np.float32)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy NMS in score order (OpenCV's ``ApplyNMSFast`` with eta 1), normalised boxes."""
    order = np.argsort(-scores, kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep: list[int] = []
    for i in order:
        if keep:
            k = np.array(keep)
            w = np.clip(np.minimum(boxes[k, 2], boxes[i, 2]) - np.maximum(boxes[k, 0], boxes[i, 0]), 0, None)
            h = np.clip(np.minimum(boxes[k, 3], boxes[i, 3]) - np.maximum(boxes[k, 1], boxes[i, 1]), 0, None)
            inter = w * h
            overlap = inter / np.maximum(areas[k] + areas[i] - inter, 1e-12)
            if (overlap > iou).any():
                continue
        keep.append(int(i))
    return keep


def detection_output(loc: np.ndarray, conf: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """OpenCV's ``DetectionOutput`` for this net: ``(K, 7)`` rows [0, 1, score, x1, y1, x2, y2] (normalised).

    CENTER_SIZE decoding with variances (0.1, 0.1, 0.2, 0.2); face scores above 0.01, the best 400,
    NMS at IoU 0.45, at most 200 kept, best first.
    """
    loc = loc.reshape(-1, 4)
    scores = conf.reshape(-1, 2)[:, 1]
    cand = np.flatnonzero(scores > CONFIDENCE_FLOOR)
    cand = cand[np.argsort(-scores[cand], kind="stable")][:TOP_K]
    if cand.size == 0:
        return np.zeros((0, 7), np.float32)
    p = priors[cand]
    pw, ph = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    pcx, pcy = (p[:, 0] + p[:, 2]) / 2, (p[:, 1] + p[:, 3]) / 2
    d = loc[cand] * _VARIANCE
    cx, cy = d[:, 0] * pw + pcx, d[:, 1] * ph + pcy
    w, h = np.exp(d[:, 2]) * pw, np.exp(d[:, 3]) * ph
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    keep = _nms(boxes, scores[cand], NMS_IOU)[:KEEP_TOP_K]
    out = np.zeros((len(keep), 7), np.float32)
    out[:, 1] = 1
    out[:, 2] = scores[cand][keep]
    out[:, 3:] = boxes[keep]
    return out


class Res10Detector:
    """res10 SSD on ``cv2.dnn`` (ONNX): ``detect(image)`` gives rows [0, 1, score, x1, y1, x2, y2]."""

    def __init__(self, onnx_path: str | Path | None = None):
        self.path = Path(onnx_path) if onnx_path else find_res10_onnx()
        self.net = cv2.dnn.readNetFromONNX(str(self.path))
        self.outputs = ["mbox_loc:0", "mbox_conf_flatten:0"]
        self.priors = prior_boxes()

    def forward(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The raw heads for a ``blobFromImage`` blob (1x3x300x300)."""
        self.net.setInput(blob)
        loc, conf = self.net.forward(self.outputs)
        return loc, conf

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Detections for a BGR image, as the classic pipeline made its blob."""
        blob = cv2.dnn.blobFromImage(image, 1.0, (INPUT_SIZE, INPUT_SIZE), MEAN_BGR)
        return detection_output(*self.forward(blob), self.priors)


if __name__ == "__main__":  # python -m maskwatch.evaluate.res10 PB DEST (used by convert_in_subprocess)
    import sys

    convert_res10(Path(sys.argv[1]), Path(sys.argv[2]))
