"""Detection metrics for the whole pipeline (find faces, then classify) on scene datasets.

The pure functions (:func:`box_iou`, :func:`match_detections`, :func:`average_precision`,
:func:`detection_ap`, :func:`scene_metrics`) take numpy arrays and need no model;
:func:`evaluate_scenes` runs a :class:`~maskwatch.engine.MaskDetector` over
:class:`~maskwatch.evaluate.scenes.SceneImage` records and scores it.

Conventions (Pascal VOC style):

* A detection matches a ground-truth box when their IoU is ``>= iou``. Detections are taken in
  descending score order; each one is matched to the still-unmatched ground-truth box it overlaps
  most, so every ground-truth box is matched at most once and a second detection of the same face is
  a false positive.
* AP is the area under the precision-recall curve with all-point interpolation (VOC 2010+):
  precision is made monotone from the right and summed over every recall step.
* **Class score**: each face the engine returns is a detection *for every class*, scored
  ``face_score * probs[class]`` (``class_score="product"``, the default). A confident face whose mask
  verdict is uncertain thus ranks below a confident face with a confident verdict, and a wrong top-1
  label still leaves a low-ranked detection in the right class (as multi-label detectors are
  scored). Alternatives: ``"argmax"`` (one detection per face, for its top label, scored
  ``face_score * probs[label]``) and ``"prob"`` (``probs[class]`` alone, ignoring the detector).
* The **face** metrics ignore the labels: face AP ranks faces by ``face_score``; face recall is the
  share of ground-truth faces matched by some detected face at IoU 0.5 and 0.3 (the detector's boxes
  may be drawn tighter or shifted relative to annotators' boxes, which IoU 0.3 forgives).
* The **operating point** is what a user sees: every face returned, with its top-1 label. Precision
  and recall there count a detection as correct when it matches a ground-truth face of the same label.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from maskwatch.boxes import box_iou
from maskwatch.evaluate.scenes import SCENE_CLASSES, SceneImage
from maskwatch.errors import InputError
from maskwatch.io.images import decode_image

if TYPE_CHECKING:  # pragma: no cover
    from maskwatch.engine import MaskDetector
    from maskwatch.results import FrameResult

log = logging.getLogger(__name__)

CLASS_SCORES = ("product", "argmax", "prob")


# ------------------------------------------------------------------------------------ pure functions


def match_detections(
    pred_boxes: np.ndarray, pred_scores: np.ndarray, gt_boxes: np.ndarray, iou: float = 0.5
) -> np.ndarray:
    """Greedy matching in one image: ``True`` for each prediction that is a true positive.

    Predictions are visited in descending score (ties: input order); each is matched to the
    unmatched ground-truth box of highest IoU if that IoU is ``>= iou``. Returns a bool array in
    the predictions' input order.
    """
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    tp = np.zeros(len(pred_boxes), dtype=bool)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return tp
    ious = box_iou(pred_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for i in np.argsort(-pred_scores, kind="stable"):
        cand = np.where(taken, -1.0, ious[i])
        j = int(cand.argmax())
        if cand[j] >= iou:
            tp[i] = True
            taken[j] = True
    return tp


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under a precision-recall curve, all-point interpolation (Pascal VOC 2010+)."""
    mrec = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def detection_ap(
    preds: Sequence[tuple[np.ndarray, np.ndarray]], gts: Sequence[np.ndarray], iou: float = 0.5
) -> dict[str, Any]:
    """AP of one class over a set of images.

    Args:
        preds: per image, ``(boxes (n, 4), scores (n,))``.
        gts: per image, ground-truth boxes ``(m, 4)``.
        iou: IoU needed for a match.

    Returns:
        ``ap`` (``nan`` when there is no ground truth), ``n_gt``, ``n_det``, ``tp`` (true positives over
        all detections) and ``recall`` (``tp / n_gt``: the highest recall reachable).
    """
    if len(preds) != len(gts):
        raise InputError(f"{len(preds)} prediction lists for {len(gts)} images")
    scores, flags = [], []
    n_gt = 0
    for (boxes, sc), gt in zip(preds, gts):
        sc = np.asarray(sc, dtype=np.float64).reshape(-1)
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
        n_gt += len(gt)
        scores.append(sc)
        flags.append(match_detections(boxes, sc, gt, iou))
    score = np.concatenate(scores) if scores else np.zeros(0)
    tp = np.concatenate(flags) if flags else np.zeros(0, bool)
    order = np.argsort(-score, kind="stable")
    tp = tp[order]
    ctp = np.cumsum(tp)
    n_det = len(tp)
    if n_gt == 0:
        return {"ap": float("nan"), "n_gt": 0, "n_det": n_det, "tp": 0, "recall": float("nan")}
    recall = ctp / n_gt
    precision = ctp / np.arange(1, n_det + 1)
    ap = average_precision(recall, precision) if n_det else 0.0
    n_tp = int(ctp[-1]) if n_det else 0
    return {"ap": ap, "n_gt": n_gt, "n_det": n_det, "tp": n_tp, "recall": n_tp / n_gt}


@dataclass
class ScenePrediction:
    """What the engine found in one image: boxes ``(n, 4)`` xyxy, ``face_scores`` ``(n,)`` and
    ``probs`` ``(n, len(classes))`` in :data:`~maskwatch.evaluate.scenes.SCENE_CLASSES` order."""

    boxes: np.ndarray
    face_scores: np.ndarray
    probs: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.face_scores = np.asarray(self.face_scores, dtype=np.float64).reshape(-1)
        probs = np.asarray(self.probs, dtype=np.float64)
        if probs.size == 0:  # no faces: numpy cannot infer the class axis from an empty array
            self.probs = np.zeros((len(self.boxes), probs.shape[-1] if probs.ndim == 2 else len(SCENE_CLASSES)))
        else:
            self.probs = probs.reshape(len(self.boxes), -1)
        if len(self.face_scores) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.face_scores)} face scores")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def from_result(cls, result: FrameResult, classes: Sequence[str] = SCENE_CLASSES) -> ScenePrediction:
        """Convert an engine :class:`~maskwatch.results.FrameResult`."""
        faces = result.faces
        return cls(
            np.asarray([f.box for f in faces], dtype=np.float64).reshape(-1, 4),
            np.asarray([f.face_score for f in faces], dtype=np.float64),
            np.asarray([[f.probs.get(c, 0.0) for c in classes] for f in faces], dtype=np.float64).reshape(
                len(faces), len(classes)),
        )

    def class_scores(self, k: int, class_score: str = "product") -> tuple[np.ndarray, np.ndarray]:
        """Boxes and scores of the detections for class index ``k`` under a class-score rule."""
        if class_score == "product":
            return self.boxes, self.face_scores * self.probs[:, k]
        if class_score == "prob":
            return self.boxes, self.probs[:, k]
        if class_score == "argmax":
            keep = self.probs.argmax(1) == k
            return self.boxes[keep], self.face_scores[keep] * self.probs[keep, k]
        raise InputError(f"unknown class score {class_score!r}; choose one of {', '.join(CLASS_SCORES)}")


def _prf(tp: int, n_det: int, n_gt: int) -> dict[str, Any]:
    p = tp / n_det if n_det else 0.0
    r = tp / n_gt if n_gt else float("nan")
    f1 = 2 * p * r / (p + r) if n_gt and p + r > 0 else 0.0
    return {"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": n_det - tp, "fn": n_gt - tp}


def scene_metrics(
    preds: Sequence[ScenePrediction],
    images: Sequence[SceneImage],
    iou: float = 0.5,
    class_score: str = "product",
    classes: Sequence[str] = SCENE_CLASSES,
) -> dict[str, Any]:
    """Every scene metric from predictions and ground truth (no model needed).

    Returns a dict with ``n_images``, ``n_boxes``, ``n_boxes_per_class``, ``n_detections``, ``iou``,
    ``class_score``, ``ap`` (per class), ``map`` (mean over classes with ground truth), ``face_ap``
    (class-agnostic, at ``iou``), ``face_ap@0.3``, ``face_recall@0.5``, ``face_recall@0.3`` and
    ``operating_point`` (precision / recall / F1 / tp / fp / fn for ``faces`` and each class, and
    ``overall`` = a detection counts only with the right label).
    """
    if class_score not in CLASS_SCORES:
        raise InputError(f"unknown class score {class_score!r}; choose one of {', '.join(CLASS_SCORES)}")
    if len(preds) != len(images):
        raise InputError(f"{len(preds)} predictions for {len(images)} images")
    gt_labels = [np.asarray(im.labels, dtype=object) for im in images]
    all_gt = [im.boxes for im in images]
    ap: dict[str, float] = {}
    n_per_class: dict[str, int] = {}
    op: dict[str, Any] = {}
    overall_tp = 0
    for k, name in enumerate(classes):
        gts = [im.boxes[lab == name] for im, lab in zip(images, gt_labels)]
        res = detection_ap([p.class_scores(k, class_score) for p in preds], gts, iou)
        ap[name] = res["ap"]
        n_per_class[name] = res["n_gt"]
        # Operating point: the top-1 label of every returned face.
        top = [(p.boxes[p.probs.argmax(1) == k], p.face_scores[p.probs.argmax(1) == k]) for p in preds]
        top_res = detection_ap(top, gts, iou)
        op[name] = _prf(top_res["tp"], top_res["n_det"], top_res["n_gt"])
        overall_tp += top_res["tp"]
    valid = [v for v in ap.values() if not np.isnan(v)]
    faces = [(p.boxes, p.face_scores) for p in preds]
    face = detection_ap(faces, all_gt, iou)
    face30 = detection_ap(faces, all_gt, 0.3)
    face50 = face if iou == 0.5 else detection_ap(faces, all_gt, 0.5)
    n_det = sum(len(p) for p in preds)
    n_gt = sum(len(g) for g in all_gt)
    op["faces"] = _prf(face["tp"], n_det, n_gt)
    op["overall"] = _prf(overall_tp, n_det, n_gt)
    return {
        "n_images": len(images),
        "n_boxes": n_gt,
        "n_boxes_per_class": n_per_class,
        "n_detections": n_det,
        "iou": iou,
        "class_score": class_score,
        "ap": ap,
        "map": float(np.mean(valid)) if valid else float("nan"),
        "face_ap": face["ap"],
        "face_ap@0.3": face30["ap"],
        "face_recall@0.5": face50["recall"],
        "face_recall@0.3": face30["recall"],
        "operating_point": op,
    }


# ------------------------------------------------------------------------------------ running models


def predict_scenes(
    detector: MaskDetector, images: Sequence[SceneImage], progress: bool = True
) -> list[ScenePrediction]:
    """Run the engine on every scene image (decoded with EXIF orientation applied)."""
    from tqdm.auto import tqdm

    preds = []
    for im in tqdm(images, desc="scenes", unit="img", disable=not progress):
        result = detector.detect(decode_image(im.path), source=str(im.path))
        preds.append(ScenePrediction.from_result(result))
    return preds


def evaluate_scenes(
    detector: MaskDetector,
    images: list[SceneImage],
    iou: float = 0.5,
    progress: bool = True,
    class_score: str = "product",
) -> dict[str, Any]:
    """Run ``detector`` on every image and return :func:`scene_metrics` (plus the detector settings).

    Args:
        detector: the engine, with its face-detector settings.
        images: ground truth from :func:`~maskwatch.evaluate.scenes.load_scenes`.
        iou: IoU needed for a match (AP, operating point).
        progress: show a tqdm progress bar.
        class_score: how a face scores for a class (see the module docstring).
    """
    if not images:
        raise InputError("no scene images to evaluate")
    preds = predict_scenes(detector, images, progress=progress)
    metrics = scene_metrics(preds, images, iou=iou, class_score=class_score)
    fd = detector.face_detector
    s = fd.settings
    metrics["detector"] = {
        "backend": fd.name, "score_threshold": s.score_threshold, "nms_threshold": s.nms_threshold,
        "detect_size": s.detect_size, "min_face": s.min_face, "box_scale": list(s.box_scale),
        "box_shift": list(s.box_shift),
    }
    log.info("scenes: mAP@%.2g %.4f, face AP %.4f over %d images", iou, metrics["map"], metrics["face_ap"],
             len(images))
    return metrics


def _fmt(v: float | None) -> str:
    return "   -  " if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:6.3f}"


def format_scene_metrics(d: dict[str, Any]) -> str:
    """A plain-text table of :func:`scene_metrics` / :func:`evaluate_scenes` output."""
    iou = d.get("iou", 0.5)
    lines = [
        f"{d['n_images']} images, {d['n_boxes']} faces "
        f"({', '.join(f'{k} {v}' for k, v in d['n_boxes_per_class'].items())}), "
        f"{d['n_detections']} detections; class score: {d['class_score']}",
        f"{'class':<14}{'AP@' + format(iou, 'g'):>8}{'prec':>8}{'recall':>8}{'F1':>8}{'tp':>6}{'fp':>6}{'fn':>6}",
    ]
    op = d["operating_point"]
    for name, ap in d["ap"].items():
        o = op[name]
        lines.append(f"{name:<14}{_fmt(ap):>8}{_fmt(o['precision']):>8}{_fmt(o['recall']):>8}{_fmt(o['f1']):>8}"
                     f"{o['tp']:>6}{o['fp']:>6}{o['fn']:>6}")
    for name, ap in (("mAP / overall", d["map"]), ("face", d["face_ap"])):
        o = op["overall" if name.startswith("mAP") else "faces"]
        lines.append(f"{name:<14}{_fmt(ap):>8}{_fmt(o['precision']):>8}{_fmt(o['recall']):>8}{_fmt(o['f1']):>8}"
                     f"{o['tp']:>6}{o['fp']:>6}{o['fn']:>6}")
    lines.append(f"face AP@0.3 {_fmt(d['face_ap@0.3']).strip()}; face recall (all detections) "
                 f"@0.5 {_fmt(d['face_recall@0.5']).strip()}, @0.3 {_fmt(d['face_recall@0.3']).strip()}")
    if "detector" in d:
        s = d["detector"]
        lines.append("detector: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    return "\n".join(lines)
