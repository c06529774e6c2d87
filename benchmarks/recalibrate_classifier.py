"""Refit a trained maskwatch classifier's calibration on its own validation crops, without retraining:
the same temperature, then the mask_incorrect class bias and the abstention threshold exactly as
``maskwatch train`` now fits them (:func:`maskwatch.train.trainer.fit_calibration`). The validation crops
are rebuilt as the training run built them: the mask-crops validation split (docs/model/splits/val.txt,
cut by the detector) and every annotated face >= 8 px of the val lists of the model's scene datasets.

    python benchmarks/recalibrate_classifier.py MODEL.onnx OUT.onnx [--max-false 0.02]

Writes OUT.onnx (never over an existing file) with the new ``calibration`` entry; prints the fit.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKWATCH_SHARED", REPO.parent / "shared"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-false", type=float, default=0.02,
                    help="largest share of real correctly masked validation faces that may be called incorrect")
    args = ap.parse_args()
    import onnx

    from maskwatch.classify.model import METADATA_KEY, MaskClassifier
    from maskwatch.data import face_cropper, load_crops
    from maskwatch.train.scene_crops import load_scene_crops, scene_parts
    from maskwatch.train.split import load_split_file
    from maskwatch.train.trainer import fit_calibration

    if args.out.exists():
        raise SystemExit(f"{args.out} exists; not overwritten")
    clf = MaskClassifier(args.model)
    meta = clf.describe()
    classes, size = list(clf.classes), clf.input_size
    margin = float(meta["preprocessing"]["margin"])
    extra = dict(meta["recipe"].get("extra", {}))
    items = load_split_file(REPO / "docs" / "model" / "splits" / "val.txt", SHARED / "data" / "mask-crops")
    x, y, _, _ = load_crops(items, classes, size, face_cropper(True, margin), progress=False)
    n_crop_rows = len(x)
    xs, ys, judged = [x], [y], []
    for root, lists in zip(extra["scenes"].split(";"), extra["scene_splits"].split(";"), strict=True):
        ims = scene_parts(REPO / root if not Path(root).is_absolute() else root,
                          REPO / lists if not Path(lists).is_absolute() else lists, ("val",))["val"]
        a, b, _, _ = load_scene_crops(ims, classes, size, margin, int(extra.get("min_scene_face", 8)), progress=False)
        xs.append(a)
        ys.append(b)
        # only datasets that label mask_incorrect say that their with_mask faces wear it correctly
        judged.append(np.full(len(b), "mask_incorrect" in {lab for im in ims for lab in im.labels}))
    x, y, judged = np.concatenate(xs), np.concatenate(ys), np.concatenate(judged)
    name = clf._session.get_inputs()[0].name
    raw = np.concatenate([clf._session.run(None, {name: x[i:i + 64].astype(np.float32)})[0]
                          for i in range(0, len(x), 64)])
    from maskwatch.classify.calibration import apply_class_bias, apply_temperature

    t0 = apply_temperature(raw, meta.get("calibration", {}).get("temperature", 1.0))[n_crop_rows:]
    t0, yr = t0[judged], y[n_crop_rows:][judged]
    k, kw = classes.index("mask_incorrect"), classes.index("with_mask")
    print("mask_incorrect log shift: real validation incorrect recall / correctly masked called incorrect")
    for b in np.arange(0.0, 3.01, 0.25):
        pred = apply_class_bias(t0, np.eye(len(classes))[k] * b).argmax(1)
        print(f"  {b:4.2f}: {int((pred[yr == k] == k).sum())}/{int((yr == k).sum())}  "
              f"{int((pred[yr == kw] == k).sum())}/{int((yr == kw).sum())}")
    extra["incorrect_max_false"] = args.max_false
    old = meta.get("calibration", {})
    calibration, _ = fit_calibration(raw, y, n_crop_rows, classes, extra, temperature=old.get("temperature"),
                                     judged=judged)
    calibration["refitted_by"] = "benchmarks/recalibrate_classifier.py (same validation crops, same temperature)"
    meta["calibration"] = calibration
    print(f"validation crops: {len(y)} ({len(y) - n_crop_rows} real scene faces)")
    print(json.dumps({k: calibration[k] for k in ("temperature", "abstain_below", "class_bias_fit")
                      if k in calibration}, indent=1))
    proto = onnx.load(str(args.model))
    del proto.metadata_props[:]
    e = proto.metadata_props.add()
    e.key, e.value = METADATA_KEY, json.dumps(meta)
    onnx.save(proto, str(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
