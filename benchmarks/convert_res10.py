"""Convert OpenCV's res10 SSD face detector (TensorFlow uint8 .pb) to ONNX for OpenCV 5, and check it.

    python benchmarks/convert_res10.py                       # into the user cache (~/.cache/maskwatch)
    python benchmarks/convert_res10.py --out DIR             # elsewhere
    python benchmarks/convert_res10.py --reference REF.npz   # also compare with an old OpenCV's output
                                                             # (benchmarks/res10_reference.py makes REF.npz)

``maskwatch benchmark --baseline`` does the same conversion on first use; this script is the way to do it
ahead of time and to see that the ONNX file computes what the original did:

1. against TensorFlow running the dequantised graph (the tf2onnx step), on frames of airport-crowd.mp4;
2. with ``--reference``: against OpenCV < 4.13 running the original .pb + .pbtxt (the whole detector:
   dequantisation, network, priors and DetectionOutput), faces above score 0.5 matched box by box.

Needs the train extra (TensorFlow, tf2onnx). The ONNX file is derived from third-party weights: never
commit it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from maskwatch.evaluate import res10
from maskwatch.faces.models import cache_dir


def check_tensorflow(onnx_path: Path, pb: Path, video: Path, frames: int = 10) -> None:
    import tensorflow as tf

    gdef = res10.float_graph_def(pb)
    det = res10.Res10Detector(onnx_path)
    cap = cv2.VideoCapture(str(video))
    dl = dc = 0.0
    with tf.Graph().as_default() as g:
        tf.import_graph_def(gdef, name="")
        with tf.compat.v1.Session(graph=g) as s:
            for _ in range(frames):
                ok, img = cap.read()
                if not ok:
                    break
                blob = cv2.dnn.blobFromImage(img, 1.0, (300, 300), res10.MEAN_BGR)
                ref = s.run(["mbox_loc:0", "mbox_conf_flatten:0"], {"data:0": blob.transpose(0, 2, 3, 1)})
                loc, conf = det.forward(blob)
                dl, dc = max(dl, float(np.abs(loc - ref[0]).max())), max(dc, float(np.abs(conf - ref[1]).max()))
    print(f"vs TensorFlow (dequantised graph), {frames} frames: max |d loc| {dl:.2e}, max |d face score| {dc:.2e}")


def check_reference(onnx_path: Path, ref_path: Path, threshold: float = 0.5) -> bool:
    ref = np.load(ref_path)
    det = res10.Res10Detector(onnx_path)
    dl = dc = dp = ds = db = 0.0
    n_ref = n_ours = matched = 0
    for k in range(int(ref["n"])):
        loc, conf = det.forward(ref[f"blob{k}"])
        dl = max(dl, float(np.abs(loc - ref[f"loc{k}"]).max()))
        dc = max(dc, float(np.abs(conf - ref[f"conf{k}"]).max()))
        dp = max(dp, float(np.abs(det.priors - ref[f"prior{k}"][0, 0].reshape(-1, 4)).max()))
        ours = res10.detection_output(loc, conf, det.priors)
        ours = ours[ours[:, 2] > threshold]
        theirs = ref[f"det{k}"][0, 0]
        theirs = theirs[theirs[:, 2] > threshold]
        n_ref, n_ours = n_ref + len(theirs), n_ours + len(ours)
        for row in theirs:
            if len(ours):
                d = np.abs(ours[:, 3:] - row[3:]).max(1)
                j = int(np.argmin(d))
                if d[j] < 0.01:
                    matched += 1
                    db, ds = max(db, float(d[j])), max(ds, abs(float(ours[j, 2] - row[2])))
    print(f"vs OpenCV {ref['opencv']} (.pb + .pbtxt), {int(ref['n'])} images: max |d loc| {dl:.2e}, "
          f"max |d face score| {dc:.2e}, max |d prior| {dp:.2e}")
    print(f"  faces above {threshold}: OpenCV {n_ref}, ONNX {n_ours}, matched {matched} "
          f"(max box difference {db:.2e} of the image side, max score difference {ds:.2e})")
    return n_ref == n_ours == matched


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for res10_ssd_300x300.onnx")
    ap.add_argument("--reference", type=Path, default=None, help=".npz from benchmarks/res10_reference.py")
    ap.add_argument("--no-tf-check", action="store_true")
    args = ap.parse_args(argv)
    sources = res10.find_res10_sources()
    if sources is None:
        print(f"res10 files not found in $MASKWATCH_MODELS or {res10.shared_face_dir()}", file=sys.stderr)
        return 2
    dest = (args.out if args.out is not None else cache_dir()) / res10.ONNX_NAME
    res10.convert_res10(sources[0], dest)
    print(f"{sources[0]} -> {dest} ({dest.stat().st_size / 1e6:.1f} MB)")
    if not args.no_tf_check:
        video = Path(os.environ.get("MASKWATCH_SHARED", Path.cwd().parent / "shared")) / "data/video/airport-crowd.mp4"
        check_tensorflow(dest, sources[0], video)
    if args.reference is not None and not check_reference(dest, args.reference):
        print("the ONNX detector's faces differ from the reference", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
