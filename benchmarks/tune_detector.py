"""Tune the face detector's settings for the whole pipeline's mAP@0.5 on a scene dataset.

The scene images are split 50/50 by a seeded shuffle into FIT and REPORT halves. Every choice is made
on FIT only:

1. YuNet runs once per ``detect_size`` at a low score threshold; raw boxes (before calibration) are
   cached, so thresholds, ``min_face`` and box calibration are applied in numpy afterwards (this
   re-implements the arithmetic of ``_BaseDetector.detect``: NMS keeps a box regardless of the boxes
   scored below it, so a higher threshold is a plain filter of the low-threshold output).
2. Box calibration per ``detect_size``: median ratios of annotator/YuNet width and height and median
   centre offsets (in YuNet box sizes) over FIT pairs matched at IoU >= 0.3, then refined by
   coordinate search on class-agnostic face AP@0.5.
3. The classifier scores every cached detection's crop for each (``detect_size``, calibration)
   candidate; ``score_threshold`` x ``min_face`` are then grid-searched on FIT mAP@0.5. mAP is nearly
   flat in the threshold, so settings within ``--tie-tol`` (0.005) of the best FIT mAP count as tied
   and the tie goes to the best operating-point F1 (what a user sees at that threshold); the plain
   mAP argmax is run and reported too.
4. The chosen settings and the defaults are run for real through ``MaskDetector`` on both halves
   (this verifies the numpy re-implementation) and printed as a table.

Run (from the repository root)::

    python benchmarks/tune_detector.py [--model runs/train/exp/model.onnx] [--out tune.json]

About 3-6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKWATCH_SHARED", REPO.parent / "shared"))
os.environ.setdefault("MASKWATCH_MODELS", str(SHARED / "weights" / "face"))

from maskwatch.classify.model import DEFAULT_MODEL_PATH  # noqa: E402
from maskwatch.engine import MaskDetector  # noqa: E402
from maskwatch.evaluate.detection import (  # noqa: E402
    CLASS_SCORES,
    ScenePrediction,
    box_iou,
    detection_ap,
    format_scene_metrics,
    predict_scenes,
    scene_metrics,
)
from maskwatch.evaluate.scenes import SCENE_CLASSES, SceneImage, load_scenes  # noqa: E402
from maskwatch.faces.detector import DetectorSettings, calibrate_boxes, create_face_detector  # noqa: E402
from maskwatch.io.images import decode_image  # noqa: E402
from maskwatch.preprocess import crop_face  # noqa: E402

log = logging.getLogger("tune_detector")



@dataclass
class RawDetections:
    """YuNet's output for one image before calibration: ``xywh`` in original pixels (float32), scores."""

    xywh: np.ndarray
    scores: np.ndarray


def split_fit_report(images: list[SceneImage], seed: int) -> tuple[list[SceneImage], list[SceneImage]]:
    """Seeded 50/50 shuffle split (FIT gets the smaller half when the count is odd)."""
    order = np.random.default_rng(seed).permutation(len(images))
    half = len(images) // 2
    return [images[i] for i in order[:half]], [images[i] for i in order[half:]]


def raw_detect(detector, image: np.ndarray) -> RawDetections:
    """The detector's boxes before calibration and thresholds (``detect_raw``)."""
    return RawDetections(*detector.detect_raw(image))


def calibrate(raw: RawDetections, shape: tuple[int, ...], thr: float, min_face: float,
              box_scale: tuple[float, float], box_shift: tuple[float, float], return_widths: bool = False):
    """Float xyxy boxes and scores exactly as the detector returns them (+ raw widths)."""
    settings = DetectorSettings(score_threshold=thr, min_face=int(min_face), box_scale=tuple(box_scale),
                                box_shift=tuple(box_shift))
    xyxy, keep = calibrate_boxes(raw.xywh, raw.scores, shape, settings)
    if return_widths:
        return xyxy[keep], raw.scores[keep], raw.xywh[keep, 2]
    return xyxy[keep], raw.scores[keep]


def face_ap(raws: list[RawDetections], images: list[SceneImage], shapes: list[tuple[int, ...]], thr: float,
            min_face: float, box_scale, box_shift, iou: float = 0.5) -> float:
    preds = []
    for raw, shape in zip(raws, shapes):
        xyxy, sc = calibrate(raw, shape, thr, min_face, box_scale, box_shift)
        preds.append((np.round(xyxy), sc))
    return detection_ap(preds, [im.boxes for im in images], iou)["ap"]


def fit_calibration(raws: list[RawDetections], images: list[SceneImage], thr: float) -> tuple[tuple, tuple, int]:
    """Median annotator/YuNet size ratios and centre offsets over pairs matched at IoU >= 0.3."""
    rw, rh, dx, dy = [], [], [], []
    for raw, im in zip(raws, images):
        keep = raw.scores >= thr
        xywh, sc = raw.xywh[keep].astype(np.float64), raw.scores[keep]
        if not len(sc) or not len(im.boxes):
            continue
        pred = np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]
        ious = box_iou(pred, im.boxes)
        taken = np.zeros(len(im.boxes), bool)
        for i in np.argsort(-sc, kind="stable"):
            cand = np.where(taken, -1.0, ious[i])
            j = int(cand.argmax())
            if cand[j] < 0.3:
                continue
            taken[j] = True
            g = im.boxes[j]
            gw, gh = g[2] - g[0], g[3] - g[1]
            pw, ph = xywh[i, 2], xywh[i, 3]
            rw.append(gw / pw)
            rh.append(gh / ph)
            dx.append(((g[0] + g[2]) / 2 - (pred[i, 0] + pred[i, 2]) / 2) / pw)
            dy.append(((g[1] + g[3]) / 2 - (pred[i, 1] + pred[i, 3]) / 2) / ph)
    if not rw:
        return (1.0, 1.0), (0.0, 0.0), 0
    return (float(np.median(rw)), float(np.median(rh))), (float(np.median(dx)), float(np.median(dy))), len(rw)


def refine_calibration(raws, images, shapes, thr, scale, shift, passes: int = 2) -> tuple[tuple, tuple, float]:
    """Coordinate search around a calibration on face AP@0.5 (FIT only)."""
    params = [scale[0], scale[1], shift[0], shift[1]]
    steps = [(0.96, 0.98, 1.02, 1.04), (0.96, 0.98, 1.02, 1.04), (-0.02, -0.01, 0.01, 0.02), (-0.02, -0.01, 0.01, 0.02)]

    def score(p):
        return face_ap(raws, images, shapes, thr, 0, (p[0], p[1]), (p[2], p[3]))

    best = score(params)
    for _ in range(passes):
        improved = False
        for k in range(4):
            for s in steps[k]:
                trial = list(params)
                trial[k] = params[k] * s if k < 2 else params[k] + s
                v = score(trial)
                if v > best + 1e-6:
                    best, params, improved = v, trial, True
        if not improved:
            break
    return (round(params[0], 3), round(params[1], 3)), (round(params[2], 3), round(params[3], 3)), best


def classify_cached(detector: MaskDetector, raws, bgr, shapes, thr, box_scale, box_shift):
    """Class probabilities (SCENE_CLASSES order) of every detection kept at ``thr`` (min_face 0)."""
    out = []
    # a class the model lacks (mask_incorrect for a 2-class model) gets probability 0
    idx = [detector.classes.index(c) if c in detector.classes else -1 for c in SCENE_CLASSES]
    for raw, img, shape in zip(raws, bgr, shapes):
        xyxy, sc = calibrate(raw, shape, thr, 0, box_scale, box_shift)
        crops = [crop_face(img, b, detector.margin) for b in xyxy]
        if not crops:
            out.append(np.zeros((0, len(idx))))
            continue
        probs = np.asarray(detector.classifier.predict(crops))
        padded = np.concatenate([probs, np.zeros((len(probs), 1), probs.dtype)], axis=1)
        out.append(padded[:, idx])
    return out


def numpy_predictions(raws, shapes, probs_all, cache_thr, thr, min_face, box_scale, box_shift):
    """ScenePredictions for given settings from cached raw detections and cached probabilities.

    ``probs_all`` holds, per image, the probabilities of the detections ``calibrate`` keeps at
    ``(cache_thr, min_face=0)``; the set kept at ``(thr, min_face)`` is a subset of it.
    """
    preds = []
    for raw, shape, probs in zip(raws, shapes, probs_all):
        xyxy, sc, raw_w = calibrate(raw, shape, cache_thr, 0, box_scale, box_shift, return_widths=True)
        sel = (sc >= thr) & (raw_w >= min_face)
        preds.append(ScenePrediction(np.round(xyxy[sel]), sc[sel], probs[sel]))
    return preds


def run_engine(model: Path, settings: DetectorSettings, images: list[SceneImage], label: str) -> dict:
    """Run the real engine and score it (``class_score`` alternatives under ``alt_class_scores``)."""
    detector = MaskDetector(model, detector="yunet", settings=settings)
    t0 = time.perf_counter()
    preds = predict_scenes(detector, images)
    seconds = round(time.perf_counter() - t0, 1)
    m = scene_metrics(preds, images)
    m["alt_class_scores"] = {cs: scene_metrics(preds, images, class_score=cs)["map"] for cs in CLASS_SCORES}
    m["seconds"] = seconds
    log.info("%s: mAP %.4f face AP %.4f (%.0f s)", label, m["map"], m["face_ap"], seconds)
    return m


def _row(name: str, m: dict) -> str:
    op = m["operating_point"]
    return (f"{name:<18}{m['ap']['with_mask']:>8.3f}{m['ap']['without_mask']:>8.3f}{m['map']:>8.3f}"
            f"{m['face_ap']:>8.3f}{m['face_recall@0.5']:>8.3f}{m['face_recall@0.3']:>8.3f}"
            f"{op['overall']['precision']:>8.3f}{op['overall']['recall']:>8.3f}{op['faces']['precision']:>8.3f}")


def _desc(c: dict) -> str:
    return (f"detect_size={c['detect_size']} calib={c['calibration']} scale={c['box_scale']} shift={c['box_shift']} "
            f"thr={c['score_threshold']} min_face={c['min_face']} (FIT mAP {c['map']:.4f}, F1 {c['f1_overall']:.3f})")


def _settings(c: dict) -> DetectorSettings:
    return DetectorSettings(score_threshold=c["score_threshold"], detect_size=c["detect_size"],
                            min_face=c["min_face"], box_scale=tuple(c["box_scale"]), box_shift=tuple(c["box_shift"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "scenes-dev")
    ap.add_argument("--model", type=Path, default=None, help="classifier .onnx (default: the bundled model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="none,640,960,1280,1600", help="detect_size candidates ('none' = native)")
    ap.add_argument("--thresholds", default="0.3,0.35,0.4,0.45,0.5,0.55,0.6")
    ap.add_argument("--min-faces", default="0,4,8,12,16")
    ap.add_argument("--tie-tol", type=float, default=0.005,
                    help="settings within this FIT mAP of the best count as tied; the tie goes to the best "
                         "operating-point F1 (0: plain argmax of mAP)")
    ap.add_argument("--out", type=Path, default=None, help="write every result as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("maskwatch").setLevel(logging.WARNING)

    model = args.model or DEFAULT_MODEL_PATH
    if not Path(model).is_file():
        ap.error(f"classifier model not found ({model}); pass --model")
    if not os.environ.get("MASKWATCH_MODELS") and (SHARED / "weights" / "face").is_dir():
        os.environ["MASKWATCH_MODELS"] = str(SHARED / "weights" / "face")
    sizes = [None if s.strip().lower() in ("none", "native", "0") else int(s) for s in args.sizes.split(",")]
    thresholds = sorted(float(t) for t in args.thresholds.split(","))
    min_faces = sorted(int(v) for v in args.min_faces.split(","))
    cache_thr = thresholds[0]
    t_start = time.perf_counter()

    scenes = load_scenes(args.data)
    fit, report = split_fit_report(scenes, args.seed)
    log.info("model %s; %d images: FIT %d (%d faces), REPORT %d (%d faces)", model, len(scenes), len(fit),
             sum(len(s) for s in fit), len(report), sum(len(s) for s in report))
    fit_bgr = [decode_image(s.path) for s in tqdm(fit, desc="decode FIT", unit="img")]
    fit_shapes = [im.shape for im in fit_bgr]
    engine = MaskDetector(model, detector="yunet")

    # 1. Raw YuNet detections per detect_size, once, at the lowest candidate threshold.
    raw_cache: dict[int | None, list[RawDetections]] = {}
    for size in sizes:
        fd = create_face_detector("yunet", settings=DetectorSettings(score_threshold=cache_thr, detect_size=size))
        raw_cache[size] = [raw_detect(fd, im) for im in tqdm(fit_bgr, desc=f"YuNet size={size}", unit="img")]

    # 2./3. Calibration per size, then classifier + threshold x min_face grid on FIT mAP.
    candidates = []
    for size in sizes:
        raws = raw_cache[size]
        scale, shift, n_pairs = fit_calibration(raws, fit, thr=0.5)
        ap0 = face_ap(raws, fit, fit_shapes, cache_thr, 0, (1.0, 1.0), (0.0, 0.0))
        ap_med = face_ap(raws, fit, fit_shapes, cache_thr, 0, scale, shift)
        r_scale, r_shift, ap_ref = refine_calibration(raws, fit, fit_shapes, cache_thr, scale, shift)
        log.info("size=%s: %d pairs; median calib scale=(%.3f, %.3f) shift=(%.3f, %.3f); face AP %.4f -> %.4f "
                 "-> refined scale=%s shift=%s %.4f", size, n_pairs, *scale, *shift, ap0, ap_med, r_scale, r_shift,
                 ap_ref)
        for calib_name, (bs, bsh) in {"none": ((1.0, 1.0), (0.0, 0.0)), "fitted": (r_scale, r_shift)}.items():
            probs = classify_cached(engine, raws, fit_bgr, fit_shapes, cache_thr, bs, bsh)
            for thr in thresholds:
                for mf in min_faces:
                    preds = numpy_predictions(raws, fit_shapes, probs, cache_thr, thr, mf, bs, bsh)
                    m = scene_metrics(preds, fit)
                    candidates.append({
                        "detect_size": size, "calibration": calib_name, "box_scale": list(bs), "box_shift": list(bsh),
                        "score_threshold": thr, "min_face": mf, "map": m["map"], "face_ap": m["face_ap"],
                        "ap": m["ap"], "f1_overall": m["operating_point"]["overall"]["f1"],
                    })
            best_here = max((c for c in candidates if c["detect_size"] == size and c["calibration"] == calib_name),
                            key=lambda c: c["map"])
            log.info("  size=%s calib=%s: best FIT mAP %.4f at thr=%.2f min_face=%d (face AP %.4f)", size,
                     calib_name, best_here["map"], best_here["score_threshold"], best_here["min_face"],
                     best_here["face_ap"])

    argmax = max(candidates, key=lambda c: c["map"])
    tied = [c for c in candidates if c["map"] >= argmax["map"] - args.tie_tol]
    best = max(tied, key=lambda c: (c["f1_overall"], c["map"]))
    log.info("FIT mAP argmax: %.4f at %s; %d settings within %.3f, best operating-point F1 among them: %s",
             argmax["map"], _desc(argmax), len(tied), args.tie_tol, _desc(best))
    tuned = _settings(best)
    log.info("chosen on FIT: %s", tuned)

    # Operating-point view of the chosen config across thresholds (for the user-facing default).
    print("\nFIT: chosen detect_size/calibration/min_face, by score_threshold:")
    print(f"{'thr':>6}{'mAP':>8}{'faceAP':>8}{'F1(op)':>8}")
    for c in candidates:
        if (c["detect_size"], c["calibration"], c["min_face"]) == (best["detect_size"], best["calibration"],
                                                                    best["min_face"]):
            print(f"{c['score_threshold']:>6.2f}{c['map']:>8.3f}{c['face_ap']:>8.3f}{c['f1_overall']:>8.3f}")

    # 4. Real runs through MaskDetector (verifies the numpy path on REPORT for the chosen settings).
    baseline = DetectorSettings()
    results = {
        "baseline FIT": run_engine(model, baseline, fit, "baseline FIT"),
        "baseline REPORT": run_engine(model, baseline, report, "baseline REPORT"),
        "tuned FIT": run_engine(model, tuned, fit, "tuned FIT"),
        "tuned REPORT": run_engine(model, tuned, report, "tuned REPORT"),
    }
    if argmax is not best:
        results["mAP-argmax FIT"] = run_engine(model, _settings(argmax), fit, "mAP-argmax FIT")
        results["mAP-argmax REPORT"] = run_engine(model, _settings(argmax), report, "mAP-argmax REPORT")
    predicted_fit = next(c for c in candidates if c is best)
    agree = abs(predicted_fit["map"] - results["tuned FIT"]["map"]) < 1e-3
    print(f"\nnumpy-path FIT mAP {predicted_fit['map']:.4f} vs MaskDetector FIT mAP "
          f"{results['tuned FIT']['map']:.4f}: {'agree' if agree else 'DIFFER'}")

    print(f"\nclassifier: {model}\nsplit: seed {args.seed}, FIT {len(fit)} images, REPORT {len(report)} images")
    print(f"baseline: {baseline}\ntuned:    {tuned}")
    if argmax is not best:
        print(f"mAP-argmax: {_settings(argmax)}")
    print()
    print(f"{'':<18}{'AP mask':>8}{'AP nomsk':>8}{'mAP':>8}{'faceAP':>8}{'R@0.5':>8}{'R@0.3':>8}"
          f"{'P(op)':>8}{'R(op)':>8}{'faceP':>8}")
    for name, m in results.items():
        print(_row(name, m))
    print("\n(AP@0.5 VOC all-point; class score = face_score * p(class); R@0.5/0.3 = face recall of all detections;"
          " P/R(op) = top-1 label correct at IoU 0.5; faceP = face precision at IoU 0.5)")
    print("\nmAP by class score (face_score*p / top-1 only / p alone):")
    for name, m in results.items():
        print(f"{name:<18}" + "".join(f"{cs}={v:.3f}  " for cs, v in m["alt_class_scores"].items()))
    for name, m in results.items():
        print(f"\n== {name}\n{format_scene_metrics(m)}")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "model": str(model), "seed": args.seed, "data": str(args.data),
            "fit": [str(s.path.name) for s in fit], "report": [str(s.path.name) for s in report],
            "baseline": asdict(baseline), "tuned": asdict(tuned), "map_argmax": argmax, "tie_tol": args.tie_tol,
            "results": results, "candidates": candidates,
        }, indent=1, default=str))
        log.info("wrote %s", args.out)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
