"""Dump what OpenCV < 4.13 (which still reads TensorFlow graphs) makes of res10, to check the ONNX conversion.

Runs in a throwaway environment with an old OpenCV, not in the project's (OpenCV 5 cannot read the .pb):

    python3 -m venv /tmp/oldcv && /tmp/oldcv/bin/pip install 'opencv-python-headless<4.13' 'numpy<2.3'
    /tmp/oldcv/bin/python benchmarks/res10_reference.py /tmp/res10_ref.npz
    python benchmarks/convert_res10.py --reference /tmp/res10_ref.npz

The .npz holds, per image: the input blob, the raw heads (mbox_loc, mbox_conf_flatten), the priors and
OpenCV's DetectionOutput. Images: every 20th frame of airport-crowd.mp4, 40 scenes-kaggle and 20
scenes-dev photos from the shared folder. The file is derived from shared data: keep it out of the repo.
"""

import glob
import os
import sys
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(os.environ.get("MASKWATCH_SHARED", Path.cwd().parent / "shared"))


def main(out: str) -> None:
    face = SHARED / "weights" / "face"
    net = cv2.dnn.readNetFromTensorflow(str(face / "opencv_face_detector_uint8.pb"),
                                        str(face / "opencv_face_detector.pbtxt"))
    cap = cv2.VideoCapture(str(SHARED / "data" / "video" / "airport-crowd.mp4"))
    imgs, i = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % 20 == 0:
            imgs.append(frame)
        i += 1
    for pattern, n in (("scenes-kaggle/images/*.jpg", 40), ("scenes-dev/images/*.jpg", 20)):
        imgs += [cv2.imread(p) for p in sorted(glob.glob(str(SHARED / "data" / pattern)))[:n]]
    res = {}
    for k, img in enumerate(imgs):
        blob = cv2.dnn.blobFromImage(img, 1.0, (300, 300), (104.0, 177.0, 123.0))
        net.setInput(blob)
        outs = net.forward(["mbox_loc", "mbox_conf_flatten", "mbox_priorbox", "detection_out"])
        res[f"blob{k}"] = blob
        for name, o in zip(("loc", "conf", "prior", "det"), outs):
            res[f"{name}{k}"] = o
    np.savez_compressed(out, n=len(imgs), opencv=cv2.__version__, **res)
    print(f"{len(imgs)} images, OpenCV {cv2.__version__} -> {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "res10_ref.npz")
