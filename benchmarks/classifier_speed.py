"""Where the classifier's time goes per face: input size x float32 / int8 (QDQ, QOperator), ONNX Runtime CPU.

    python benchmarks/classifier_speed.py [--sizes 224,160,128,112,96] [--work /tmp/clfspeed]

For each input size the project's own network (``maskwatch.train.keras_backend.build_model``:
MobileNetV2 alpha 1.0 + the 3-class head, ImageNet base weights from ../shared) is exported the way
``maskwatch train`` exports it (``maskwatch.train.export.export_onnx``), then quantized with
``onnxruntime.quantization.quantize_static`` (U8S8: activations uint8, weights int8 per channel,
calibrated on real face crops of scenes-kaggle val):

- ``int8 QDQ``: QuantizeLinear/DequantizeLinear pairs that ORT fuses into int8 kernels;
- ``int8 QOp``: QOperator format (QLinearConv and friends);
- ``int8 QDQ, ends float``: QDQ with the first convolution and the classifier head left in float.

Activation ranges come from min/max over the calibration crops, or with ``--percentile 99.99`` from
that percentile of each activation's histogram (on the bundled model: top-1 agreement with float
0.949 with min/max, 0.982 with the 99.99th percentile).

Timed as maskwatch runs its classifier (``MaskClassifier``: CPU provider, 1 intra-op thread):
ms per face for one face per call (``b1``) and per face in batches of 8 (``b8``), median and fastest
of the repeats, after a warm-up (on a busy machine the fastest is the better estimate of the cost).
The head of the per-size models is untrained (weights do not change speed), so the agreement column
(int8 top-1 = float top-1 on real face crops) is only given for the bundled, trained 224 model.
No model is trained here. Sizes need not be bundled: this informs which size to train (the model branch).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKWATCH_SHARED", REPO.parent / "shared"))
BASE_WEIGHTS = SHARED / "weights" / "mobilenet_v2" / "mobilenet_v2_1.0_224_from_torchvision_no_top.weights.h5"
CLASSES = ["with_mask", "without_mask", "mask_incorrect"]


def real_crops(n_calib_images: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Face crops (224, RGB uint8) of scenes-kaggle val: (calibration crops, agreement crops), by image."""
    from maskwatch.train.scene_crops import load_scene_crops, scene_parts

    val = scene_parts(SHARED / "data" / "scenes-kaggle", REPO / "docs" / "scenes-kaggle", ("val",))["val"]
    xc, _, _, _ = load_scene_crops(val[:n_calib_images], CLASSES, 224, 0.05, progress=False)
    xa, _, _, _ = load_scene_crops(val[n_calib_images:], CLASSES, 224, 0.05, progress=False)
    return xc, xa


def resized(x: np.ndarray, size: int) -> np.ndarray:
    if size == x.shape[1]:
        return x.astype(np.float32)
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in x]).astype(np.float32)


def build_probe(size: int):
    """``build_model``'s network at ``size`` (its head pools a fixed 7x7, the 224 feature map; here the
    pool covers the whole feature map, ceil(size / 32) squared, as a smaller model has to)."""
    from maskwatch.train.keras_backend import import_keras
    from maskwatch.train.recipe import Recipe

    _, keras = import_keras()
    from keras import layers

    recipe = Recipe(input_size=size)
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="mobilenetv2_preprocess")(inputs)
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=1.0, include_top=False,
                                          weights=str(BASE_WEIGHTS) if BASE_WEIGHTS.is_file() else None)
    x = base(x, training=False)
    side = -(-size // 32)
    x = layers.AveragePooling2D(pool_size=(side, side), name="head_pool")(x)
    x = layers.Flatten(name="head_flatten")(x)
    x = layers.Dense(recipe.dense_units, activation="relu", name="head_dense")(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="maskwatch_mobilenetv2")


def export_size(size: int, dest: Path) -> Path:
    from maskwatch.train.export import export_onnx

    if dest.is_file():
        return dest
    return export_onnx(build_probe(size), dest, {"note": f"speed probe, untrained head, input {size}"})


def quantize(src: Path, dest: Path, calib: np.ndarray, fmt: str, ends_float: bool = False,
             percentile: float | None = None) -> Path:
    """Static U8S8 per-channel quantization; activation ranges from min/max, or from ``percentile`` of
    their histogram (clips rare outliers; calibration batches must then all have the same size)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if dest.is_file():
        return dest
    pre = dest.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    except Exception as exc:  # noqa: BLE001 - fall back to the raw graph
        print(f"  (pre-processing skipped: {type(exc).__name__}: {exc})")
        pre = src
    model = onnx.load(str(pre))
    name = model.graph.input[0].name
    exclude = []
    if ends_float:
        convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
        heads = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm")]
        exclude = convs[:1] + heads

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(range(0, len(calib), 16))

        def get_next(self):
            i = next(self.it, None)
            return None if i is None else {name: calib[i:i + 16]}

    calib_kw: dict = {"calibrate_method": CalibrationMethod.MinMax}
    if percentile is not None:
        calib_kw = {"calibrate_method": CalibrationMethod.Percentile,
                    "extra_options": {"CalibPercentile": float(percentile)}}
    quantize_static(str(pre), str(dest), Reader(),
                    quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude, **calib_kw)
    return dest


def session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()  # as MaskClassifier: one intra-op thread
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ms_per_face(sess, x: np.ndarray, batch: int, repeats: int) -> tuple[float, float]:
    """(median, fastest) ms per face over ``repeats`` calls of ``batch`` faces; the fastest call is the
    least disturbed by other processes on a shared machine."""
    name = sess.get_inputs()[0].name
    xb = x[:batch]
    for _ in range(5):
        sess.run(None, {name: xb})
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, {name: xb})
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3 / batch, min(times) * 1e3 / batch


def predict(sess, x: np.ndarray) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 32]})[0] for i in range(0, len(x), 32)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="224,160,128,112,96")
    ap.add_argument("--work", type=Path, default=Path("/tmp/maskwatch-classifier-speed"),
                    help="folder for the exported and quantized probe models (derived from shared weights: "
                         "keep it out of the repo)")
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--no-bundled", action="store_true", help="skip the bundled model's rows")
    ap.add_argument("--percentile", type=float, default=None,
                    help="calibrate activation ranges on this percentile (e.g. 99.99) instead of min/max")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    xc, xa = real_crops()
    xc = xc[: len(xc) // 16 * 16]  # equal calibration batches (histogram calibration needs them)
    print(f"real face crops (scenes-kaggle val): {len(xc)} for calibration, {len(xa)} for agreement; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    jobs: list[tuple[str, int, Path]] = []
    if not args.no_bundled:
        from maskwatch.classify.model import DEFAULT_MODEL_PATH

        jobs.append(("bundled (trained)", 224, DEFAULT_MODEL_PATH))
    for s in (int(v) for v in args.sizes.split(",") if v.strip()):
        jobs.append((f"probe {s}", s, export_size(s, args.work / f"probe{s}.onnx")))
    head = (f"{'model':<20}{'input':>6}  {'variant':<22}{'MB':>6}{'b1 median':>10}{'b1 min':>8}{'b8 median':>10}"
            f"{'b8 min':>8}{'agree':>8}   (ms per face)")
    print(head)
    rows = []
    for label, size, path in jobs:
        calib, agree_x = resized(xc, size), resized(xa, size)
        variants = [("float32", path)]
        stem = args.work / (f"{label.split()[0]}{size}" + (f"-p{args.percentile:g}" if args.percentile else ""))
        for vname, fmt, ends in (("int8 QDQ", "qdq", False), ("int8 QOp", "qop", False),
                                 ("int8 QDQ, ends float", "qdq", True)):
            try:
                variants.append((vname, quantize(path, Path(f"{stem}-{fmt}{'-ends' if ends else ''}.onnx"), calib,
                                                 fmt, ends, args.percentile)))
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"  {label} {vname}: quantization failed: {type(exc).__name__}: {exc}")
        ref = None
        for vname, vpath in variants:
            sess = session(vpath)
            b1 = ms_per_face(sess, agree_x, 1, args.repeats)
            b8 = ms_per_face(sess, agree_x, 8, max(10, args.repeats // 4))
            agree = ""
            if label.startswith("bundled"):
                top = predict(sess, agree_x).argmax(1)
                if ref is None:
                    ref = top
                agree = f"{float((top == ref).mean()):.4f}"
            row = (f"{label:<20}{size:>6}  {vname:<22}{vpath.stat().st_size / 1e6:6.1f}{b1[0]:10.2f}{b1[1]:8.2f}"
                   f"{b8[0]:10.2f}{b8[1]:8.2f}{agree:>8}")
            print(row, flush=True)
            rows.append(row)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
