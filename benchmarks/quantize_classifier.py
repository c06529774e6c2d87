"""Static int8 quantization of a maskwatch classifier (ONNX Runtime, QDQ, per-channel), calibrated on
training face crops, then compared with the float model on validation crops (agreement, accuracy,
ms per face on one thread). Writes the int8 file with the float file's maskwatch metadata.

    python benchmarks/quantize_classifier.py MODEL.onnx OUT.onnx [--calib 300] [--percentile 99.99]

Needs the ``train`` extra (onnx). Calibration crops: mask-crops training split (docs/model/splits) and
scenes-kaggle train faces; validation: the mask-crops validation split and scenes-kaggle val faces.
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--calib", type=int, default=300, help="crops per source for calibration")
    ap.add_argument("--val", type=int, default=400, help="crops per source for the comparison")
    ap.add_argument("--percentile", type=float, default=None,
                    help="activation ranges from this percentile (e.g. 99.99; benchmarks/classifier_speed.py: "
                         "top-1 agreement 0.982 against 0.949 with min/max on the bundled model)")
    args = ap.parse_args()
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from maskwatch.classify.model import METADATA_KEY, MaskClassifier

    clf = MaskClassifier(args.model)
    margin = float(clf.info.preprocessing.get("margin", 0.05))
    xc, _, _ = crops("train", args.calib, clf.input_size, margin)
    xc = xc[: len(xc) // 16 * 16]  # equal batches: histogram (percentile) calibration needs them
    name = clf._session.get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(range(0, len(xc), 16))

        def get_next(self):
            i = next(self.it, None)
            return None if i is None else {name: xc[i:i + 16].astype(np.float32)}

    if args.out.exists():
        raise SystemExit(f"{args.out} exists; not overwritten")
    calib_kw: dict = {"calibrate_method": CalibrationMethod.MinMax}
    if args.percentile is not None:
        calib_kw = {"calibrate_method": CalibrationMethod.Percentile,
                    "extra_options": {"CalibPercentile": args.percentile}}
    quantize_static(str(args.model), str(args.out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, **calib_kw)
    src = onnx.load(str(args.model))
    q = onnx.load(str(args.out))
    meta = json.loads({p.key: p.value for p in src.metadata_props}[METADATA_KEY])
    meta["quantization"] = {"kind": "static int8 (ONNX Runtime QDQ, per-channel weights)",
                            "calibration_crops": int(len(xc)),
                            "activation_ranges": f"percentile {args.percentile}" if args.percentile else "min/max"}
    del q.metadata_props[:]
    e = q.metadata_props.add()
    e.key, e.value = METADATA_KEY, json.dumps(meta)
    onnx.save(q, str(args.out))

    xv, yv, _ = crops("val", args.val, clf.input_size, margin, seed=1)
    qclf = MaskClassifier(args.out)
    out = {}
    for label, c in (("float", clf), ("int8", qclf)):
        c.predict_batch(xv[:8].astype(np.float32))
        t = time.perf_counter()
        p = np.concatenate([c.predict_batch(xv[i:i + 8].astype(np.float32)) for i in range(0, len(xv), 8)])
        ms = (time.perf_counter() - t) / len(xv) * 1e3
        out[label] = (p, ms)
        acc = float((p.argmax(1) == yv[: len(p)]).mean())
        print(f"{label:<6} {Path(c.path).stat().st_size / 1e6:5.1f} MB  "
              f"validation accuracy {acc:.4f}  {ms:.2f} ms/face")
    agree = float((out["float"][0].argmax(1) == out["int8"][0].argmax(1)).mean())
    print(f"top-1 agreement int8 vs float: {agree:.4f} over {len(xv)} validation crops")


if __name__ == "__main__":
    main()
