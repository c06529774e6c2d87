"""Face stage: compare backends (YuNet, CenterFace, fused) and fit one box calibration on both
annotation styles (scenes-kaggle and scenes-dev), checked on each held-out part separately.

Parts (no image is used twice):

* FIT: scenes-kaggle ``docs/scenes-kaggle/train.txt`` (a seeded subset of ``--kaggle-fit`` images)
  + scenes-dev's FIT half (the seeded half of benchmarks/tune_detector.py);
* CHECK: scenes-kaggle ``val.txt`` and scenes-dev's REPORT half, reported separately.
  scenes-kaggle ``test.txt`` is never read here.

Steps: every backend runs once per detection size at a low threshold and its raw boxes are cached
(``--cache``); (1) CenterFace's box style is mapped onto YuNet's (medians over CenterFace/YuNet box
pairs at IoU >= 0.5 on FIT); (2) a box calibration (median annotator/detector width, height and
centre-offset ratios over pairs at IoU >= 0.3) is fitted on each style's FIT part and on both; (3)
class-agnostic face AP@0.5 of every backend x size x calibration on each CHECK part, with the time
per image. Run from the repository root::

    python benchmarks/fit_faces.py            # ~10 min on 2 cores the first time (cached after)
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
os.environ.setdefault("MASKWATCH_MODELS", str(SHARED / "weights" / "face"))

from maskwatch.evaluate.detection import detection_ap, match_pairs  # noqa: E402
from maskwatch.evaluate.scenes import load_scenes, read_scene_list, select_scenes  # noqa: E402
from maskwatch.faces.centerface import TO_YUNET_STYLE, to_reference_style  # noqa: E402
from maskwatch.faces.detector import DetectorSettings, calibrate_boxes, create_face_detector  # noqa: E402
from maskwatch.faces.fusion import weighted_box_fusion  # noqa: E402
from maskwatch.io.images import decode_image  # noqa: E402

RAW_FLOOR = 0.03


def parts(kaggle_fit: int, seed: int) -> dict[str, list]:
    kroot = SHARED / "data" / "scenes-kaggle"
    kag = load_scenes(kroot)
    train = select_scenes(kag, kroot, read_scene_list(REPO / "docs" / "scenes-kaggle" / "train.txt"))
    val = select_scenes(kag, kroot, read_scene_list(REPO / "docs" / "scenes-kaggle" / "val.txt"))
    rng = np.random.default_rng(seed)
    train = [train[i] for i in sorted(rng.permutation(len(train))[:kaggle_fit])]
    dev = load_scenes(SHARED / "data" / "scenes-dev")
    order = np.random.default_rng(0).permutation(len(dev))  # tune_detector.py's FIT / REPORT halves
    half = len(dev) // 2
    return {"kaggle-fit": train, "dev-fit": [dev[i] for i in order[:half]],
            "kaggle-val": val, "dev-report": [dev[i] for i in order[half:]]}


def raw_boxes(backend: str, size: int, images: list, cache: Path) -> dict:
    """Per image: raw ``xywh``, scores (CenterFace in its own style: mapping undone), shape; seconds."""
    f = cache / f"{backend}-{size}-{len(images)}.npz"
    if f.is_file():
        d = np.load(f, allow_pickle=True)
        return d["out"].item()
    det = create_face_detector(backend, settings=DetectorSettings(score_threshold=RAW_FLOOR, detect_size=size))
    out, secs = {}, 0.0
    for im in images:
        img = decode_image(im.path)
        t = time.perf_counter()
        xywh, sc = det.detect_raw(img)
        secs += time.perf_counter() - t
        if backend == "centerface":  # back to CenterFace's own style (the mapping is fitted here)
            sx, sy, dx, dy = TO_YUNET_STYLE
            w, h = xywh[:, 2] / sx, xywh[:, 3] / sy
            cx, cy = xywh[:, 0] + xywh[:, 2] / 2 - dx * w, xywh[:, 1] + xywh[:, 3] / 2 - dy * h
            xywh = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1).astype(np.float32)
        out[str(im.path)] = (xywh, sc, img.shape[:2])
    out["_seconds"] = secs / len(images)
    np.savez(f, out=np.array(out, dtype=object))
    return out


def xyxy(xywh):
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def pair_ratios(a_list, b_list, iou: float):
    """Median (w ratio, h ratio, centre dx, dy in a's sizes) mapping boxes a onto boxes b."""
    rs = []
    for (a, sa), b in zip(a_list, b_list):
        if len(a) == 0 or len(b) == 0:
            continue
        m = match_pairs(xyxy(a), sa, xyxy(b), iou)
        for i, j in enumerate(m):
            if j >= 0:
                aw, ah = a[i, 2], a[i, 3]
                rs.append((b[j, 2] / aw, b[j, 3] / ah, (b[j, 0] + b[j, 2] / 2 - a[i, 0] - aw / 2) / aw,
                           (b[j, 1] + b[j, 3] / 2 - a[i, 1] - ah / 2) / ah))
    r = np.median(np.asarray(rs), axis=0)
    return tuple(float(round(v, 3)) for v in r), len(rs)


def detections(raw: dict, backend_raw: dict, images: list, mapping, thr: float):
    """Per image ``(xywh, scores)`` in YuNet style for one backend ('yunet'/'centerface'/'fused')."""
    out = []
    for im in images:
        k = str(im.path)
        if "fused" in backend_raw:
            y, ys, _ = backend_raw["yunet"][k]
            c, cs, _ = backend_raw["centerface"][k]
            c = to_reference_style(c, mapping)
            ky, kc = ys >= thr / 2, cs >= thr / 2
            b, s = weighted_box_fusion([xyxy(y[ky]), xyxy(c[kc])], [ys[ky], cs[kc]])
            out.append((np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1), s))
        else:
            xywh, s, _ = raw[k]
            if backend_raw.get("name") == "centerface":
                xywh = to_reference_style(xywh, mapping)
            keep = s >= thr
            out.append((xywh[keep], s[keep]))
    return out


def face_ap(dets, images, calib, thr: float = RAW_FLOOR, iou: float = 0.5) -> float:
    settings = DetectorSettings(score_threshold=thr, min_face=8, box_scale=calib[:2], box_shift=calib[2:])
    preds = []
    for (xywh, s), im in zip(dets, images):
        shape = (im.height or 10 ** 5, im.width or 10 ** 5)
        b, keep = calibrate_boxes(xywh, s, shape, settings)
        preds.append((b[keep], s[keep]))
    return detection_ap(preds, [im.boxes for im in images], iou)["ap"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kaggle-fit", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="yunet:640,yunet:1280,centerface:640,centerface:960")
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "fit_faces_cache")
    ap.add_argument("--only-cache", default=None, help="backend:size: fill the cache for it and stop")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--search", default="yunet,fused",
                    help="backends whose calibration is also searched for the best mean face AP of both FIT parts")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    P = parts(args.kaggle_fit, args.seed)
    everything = [im for v in P.values() for im in v]
    if args.only_cache:
        b, s = args.only_cache.split(":")
        raw_boxes(b, int(s), everything, args.cache)
        return
    combos = [(b, int(s)) for b, s in (c.split(":") for c in args.sizes.split(","))]
    raws = {c: raw_boxes(*c, everything, args.cache) for c in combos}
    sizes = sorted({s for _, s in combos})
    report: dict = {"parts": {k: len(v) for k, v in P.items()}, "mapping": {}, "calibration": {}, "face_ap": {}}
    fit_images = P["kaggle-fit"] + P["dev-fit"]
    for size in sizes:
        if ("yunet", size) in raws and ("centerface", size) in raws:
            c = [(raws["centerface", size][str(im.path)][0], raws["centerface", size][str(im.path)][1])
                 for im in fit_images]
            y = [raws["yunet", size][str(im.path)][0] for im in fit_images]
            c_hi = [(a[s >= 0.5], s[s >= 0.5]) for a, s in c]
            report["mapping"][size] = pair_ratios(c_hi, y, 0.5)
    print("CenterFace -> YuNet box style (sx, sy, dx, dy), pairs:", report["mapping"])
    rows = []
    for size in sizes:
        mapping = report["mapping"].get(size, (1, 1, 0, 0))[0] if size in report["mapping"] else (1.0, 1.0, 0.0, 0.0)
        backends = [b for b, s in combos if s == size]
        if "yunet" in backends and "centerface" in backends:
            backends.append("fused")
        for backend in backends:
            if backend == "fused":
                braw = {"fused": True, "yunet": raws["yunet", size], "centerface": raws["centerface", size]}
                raw = None
            else:
                braw, raw = {"name": backend}, raws[backend, size]
            dets = {k: detections(raw, braw, v, mapping, RAW_FLOOR) for k, v in P.items()}
            calibs = {"none": (1.0, 1.0, 0.0, 0.0), "current (dev FIT, YuNet 1280)": (1.17, 1.206, -0.02, 0.014)}
            for name, keys in (("kaggle", ["kaggle-fit"]), ("dev", ["dev-fit"]), ("both", ["kaggle-fit", "dev-fit"])):
                d = [x for k in keys for x in dets[k]]
                ims = [im for k in keys for im in P[k]]
                hi = [(a[s >= 0.5], s[s >= 0.5]) for a, s in d]
                xywh = [np.concatenate([im.boxes[:, :2], im.boxes[:, 2:] - im.boxes[:, :2]], 1) for im in ims]
                calibs[f"fit on {name}"], n = pair_ratios(hi, xywh, 0.3)
            if backend in args.search:
                grid = [(sx, sy, 0.0, dy) for sx in (1.0, 1.05, 1.1, 1.15) for sy in (0.95, 1.0, 1.05, 1.1, 1.15, 1.2)
                        for dy in (0.0, 0.03, 0.06, 0.09, 0.12)]
                scored = [(0.5 * (face_ap(dets["kaggle-fit"], P["kaggle-fit"], c)
                                  + face_ap(dets["dev-fit"], P["dev-fit"], c)), c) for c in grid]
                calibs["both, equal weight (AP search)"] = max(scored)[1]
            secs = (raws["yunet", size]["_seconds"] + raws["centerface", size]["_seconds"]) if backend == "fused" \
                else raws[backend, size]["_seconds"]
            for cname, calib in calibs.items():
                r = {"backend": backend, "size": size, "calibration": cname, "calib": calib, "ms": secs * 1e3}
                for part in ("kaggle-val", "dev-report", "kaggle-fit", "dev-fit"):
                    r[part] = face_ap(dets[part], P[part], calib)
                rows.append(r)
                print(f"{backend:<11}{size:>5} {cname:<30} {str(calib):<32} kaggle-val {r['kaggle-val']:.3f} "
                      f"dev-report {r['dev-report']:.3f} | fit parts {r['kaggle-fit']:.3f} {r['dev-fit']:.3f} "
                      f"| {secs * 1e3:.0f} ms/img", flush=True)
    report["rows"] = rows
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
