"""Static int8 quantization of a maskwatch classifier with ONNX Runtime, calibrated on REAL training face
crops, then compared with the float model on validation crops (top-1 agreement, accuracy, ms per face
on one thread, both models timed in the same run). Writes the int8 file with the float file's maskwatch
metadata plus a ``quantization`` entry, so it describes itself like any maskwatch model.

    python benchmarks/quantize_classifier.py MODEL.onnx OUT.onnx [--format qdq|qoperator]
        [--no-per-channel] [--float-ends] [--calib 300] [--val 400]
    python benchmarks/quantize_classifier.py MODEL.onnx OUT.onnx --all     # every variant, one table

``--float-ends`` leaves the first convolution and the head's dense layers in float. Needs the ``train``
extra (onnx). Calibration crops: the mask-crops training split (docs/model/splits) and scenes-kaggle
train faces; validation: the mask-crops validation split and scenes-kaggle val faces (never a test part).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKWATCH_SHARED", REPO.parent / "shared"))


def crops(split: str, n: int, size: int, margin: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    from maskwatch.data import face_cropper, load_crops
    from maskwatch.train.scene_crops import load_scene_crops, scene_parts
    from maskwatch.train.split import load_split_file

    classes = ["with_mask", "without_mask", "mask_incorrect"]
    rng = np.random.default_rng(seed)
    items = load_split_file(REPO / "docs" / "model" / "splits" / f"{split}.txt", SHARED / "data" / "mask-crops")
    items = [items[i] for i in sorted(rng.permutation(len(items))[:n])]
    x1, y1, _, _ = load_crops(items, classes, size, face_cropper(True, margin), progress=False)
    scenes = scene_parts(SHARED / "data" / "scenes-kaggle", REPO / "docs" / "scenes-kaggle", (split,))[split]
    x2, y2, _, _ = load_scene_crops(scenes, classes, size, margin, progress=False)
    keep = np.sort(rng.permutation(len(x2))[:n])
    return np.concatenate([x1, x2[keep]]), np.concatenate([y1, y2[keep]]), classes


def quantize(model: Path, out: Path, calib: np.ndarray, fmt: str = "qdq", per_channel: bool = True,
             float_ends: bool = False, method: str = "minmax") -> dict:
    """Write the int8 model to ``out``; returns the model card's ``quantization`` entry."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from maskwatch.classify.model import METADATA_KEY

    src = onnx.load(str(model))
    name = src.graph.input[0].name
    exclude: list[str] = []
    if float_ends:
        convs = [n.name for n in src.graph.node if n.op_type == "Conv"]
        exclude = convs[:1] + [n.name for n in src.graph.node if n.op_type in ("MatMul", "Gemm")]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(range(0, len(calib) - 15, 16))  # whole batches (histogram calibrators need them)

        def get_next(self):
            i = next(self.it, None)
            return None if i is None else {name: calib[i:i + 16].astype(np.float32)}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Reader(),
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=exclude,
                        calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                          "percentile": CalibrationMethod.Percentile}[method])
    q = onnx.load(str(out))
    meta = json.loads({p.key: p.value for p in src.metadata_props}[METADATA_KEY])
    entry = {"kind": f"static int8 (ONNX Runtime {fmt.upper()}, U8S8, "
                     f"{'per-channel' if per_channel else 'per-tensor'} weights"
                     f"{', first convolution and dense head in float' if float_ends else ''}, "
                     f"{method} calibration)",
             "calibration_crops": int(len(calib)),
             "calibrated_on": "real training face crops (mask-crops train split, scenes-kaggle train faces)",
             "float_model": meta.get("name")}
    meta["quantization"] = entry
    del q.metadata_props[:]
    e = q.metadata_props.add()
    e.key, e.value = METADATA_KEY, json.dumps(meta)
    onnx.save(q, str(out))
    return entry


def time_models(models: dict, x: np.ndarray, rounds: int = 5, batch: int = 2) -> dict[str, float]:
    """Median ms per face over ``rounds`` interleaved passes over ``x`` in batches of ``batch`` faces."""
    times: dict[str, list[float]] = {k: [] for k in models}
    for c in models.values():
        c.predict_batch(x[:batch].astype(np.float32))
    for _ in range(rounds):
        for k, c in models.items():
            t = time.perf_counter()
            for i in range(0, len(x), batch):
                c.predict_batch(x[i:i + batch].astype(np.float32))
            times[k].append((time.perf_counter() - t) / len(x) * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


VARIANTS = {  # name: (format, per-channel, float ends)
    "qdq": ("qdq", True, False),
    "qdq-tensor": ("qdq", False, False),
    "qdq-float-ends": ("qdq", True, True),
    "qoperator": ("qoperator", True, False),
    "qoperator-float-ends": ("qoperator", True, True),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path, help="the int8 file; with --all, OUT-<variant>.onnx for each variant")
    ap.add_argument("--format", choices=["qdq", "qoperator"], default="qdq")
    ap.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--float-ends", action="store_true", help="first convolution and dense head stay float")
    ap.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="minmax",
                    help="how activation ranges are set from the calibration crops")
    ap.add_argument("--all", action="store_true", help=f"every variant: {', '.join(VARIANTS)}")
    ap.add_argument("--calib", type=int, default=300, help="crops per source for calibration")
    ap.add_argument("--val", type=int, default=400, help="crops per source for the comparison")
    args = ap.parse_args()
    from maskwatch.classify.model import MaskClassifier

    if args.all:
        outs = {v: args.out.with_name(f"{args.out.stem}-{v}.onnx") for v in VARIANTS}
        settings = dict(VARIANTS)
    else:
        outs = {"int8": args.out}
        settings = {"int8": (args.format, args.per_channel, args.float_ends)}
    for o in outs.values():
        if o.exists():
            raise SystemExit(f"{o} exists; not overwritten")
    clf = MaskClassifier(args.model)
    margin = float(clf.info.preprocessing.get("margin", 0.05))
    xc, _, _ = crops("train", args.calib, clf.input_size, margin)
    kinds = {v: quantize(args.model, outs[v], xc, *settings[v], method=args.method)["kind"] for v in outs}
    xv, yv, _ = crops("val", args.val, clf.input_size, margin, seed=1)
    models = {"float": clf, **{v: MaskClassifier(o) for v, o in outs.items()}}
    probs = {k: np.concatenate([c.predict_batch(xv[i:i + 32].astype(np.float32)) for i in range(0, len(xv), 32)])
             for k, c in models.items()}
    ms = time_models(models, xv[:200])
    print(f"{len(xc)} calibration crops (real, training parts); {len(xv)} validation crops; ms per face: median "
          f"of 5 interleaved rounds, batches of 2, one thread; load average {os.getloadavg()[0]:.1f}")
    print(f"{'variant':<22}{'MB':>6}{'val accuracy':>14}{'agreement':>11}{'ms/face':>9}  kind")
    for k, c in models.items():
        acc = float((probs[k].argmax(1) == yv).mean())
        agree = float((probs["float"].argmax(1) == probs[k].argmax(1)).mean())
        print(f"{k:<22}{Path(c.path).stat().st_size / 1e6:>6.1f}{acc:>14.4f}{agree:>11.4f}{ms[k]:>9.2f}  "
              f"{kinds.get(k, 'float32')}")


if __name__ == "__main__":
    main()
