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
* **Ranking threshold**: AP is a ranking measure, so :func:`evaluate_scenes` runs the face detector at
  a low score threshold (``score_floor``, default 0.05, as YOLO-style validation does) and ranks every
  face it returns; the user's threshold only sets the operating point.
* **Two class-score conventions**, both always reported:

  - **top-1** (``class_score="argmax"``): each face is one detection, for the label a user sees (its
    top class), scored ``face_score * probs[label]``. ``map_top1``.
  - **multi-label** (``class_score="product"``): each face is a detection *for every class*, scored
    ``face_score * probs[class]``, as YOLO validation scores its detections; a wrong top-1 label still
    leaves a low-ranked detection in the right class, so it is never lower than top-1.
    ``map_multilabel``.

  ``map`` averages ``with_mask`` and ``without_mask`` (:data:`~maskwatch.evaluate.scenes.MAIN_CLASSES`)
  under the ``class_score`` asked for; ``map_all`` adds every other class the data labels
  (``mask_incorrect``: a model without that class scores AP 0 on it).
* **IoU thresholds** (issue 15): top-1 mAP, multi-label mAP and face AP are always given at IoU 0.3,
  0.5 and averaged over 0.5:0.95 (COCO's ten thresholds 0.50, 0.55, ..., 0.95), in ``by_iou`` and as
  flat keys ``map_top1@0.3`` / ``map_top1@0.5`` / ``map_top1@0.5:0.95`` (same for ``map_multilabel``
  and ``face_ap``), plus ``map_top1@0.3|0.5``, the mean of the two, the score to choose settings on.
  @0.3 asks whether each face was found and labelled whatever the annotator's box style; @0.5 is the
  field's convention and depends on how the annotators drew their boxes; 0.5:0.95 rewards exact boxes
  (docs/evaluation.md).
* The **face** metrics ignore the labels: face AP ranks faces by ``face_score``; face recall is the
  share of ground-truth faces matched by some detected face at IoU 0.5 and 0.3 (the detector's boxes
  may be drawn tighter or shifted relative to annotators' boxes, which IoU 0.3 forgives).
* The **operating point** is what a user sees: the faces at or above the user's face threshold, each
  with its top-1 label. Precision and recall there count a detection as correct when it matches a
  ground-truth face of the same label; a face marked ``uncertain`` counts for no class (an abstention:
  never a hit, never a false alarm). The **confusion matrix** pairs ground-truth faces with those
  faces (class-agnostic matching at ``iou``): rows are the true classes plus ``no_face`` (detections
  that match no labelled face), columns the predicted labels plus ``uncertain`` and ``missed``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from maskwatch.boxes import box_iou
from maskwatch.errors import InputError
from maskwatch.evaluate.scenes import MAIN_CLASSES, SCENE_CLASSES, SceneImage
from maskwatch.io.images import decode_image

if TYPE_CHECKING:  # pragma: no cover
    from maskwatch.engine import MaskDetector
    from maskwatch.results import FrameResult

log = logging.getLogger(__name__)

CLASS_SCORES = ("product", "argmax", "prob")
#: IoU thresholds every scene evaluation reports (besides the ``iou`` it was asked for).
REPORT_IOUS: tuple[float, ...] = (0.3, 0.5)
#: COCO's thresholds, averaged into the ``0.5:0.95`` figures.
COCO_IOUS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


# ------------------------------------------------------------------------------------ pure functions


def match_pairs(
    pred_boxes: np.ndarray, pred_scores: np.ndarray, gt_boxes: np.ndarray, iou: float = 0.5
) -> np.ndarray:
    """Greedy matching in one image: for each prediction, the index of its ground-truth box or ``-1``.

    Predictions are visited in descending score (ties: input order); each is matched to the
    unmatched ground-truth box of highest IoU if that IoU is ``>= iou``. Returns an int array in
    the predictions' input order.
    """
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    match = np.full(len(pred_boxes), -1, dtype=np.int64)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return match
    ious = box_iou(pred_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for i in np.argsort(-pred_scores, kind="stable"):
        cand = np.where(taken, -1.0, ious[i])
        j = int(cand.argmax())
        if cand[j] >= iou:
            match[i] = j
            taken[j] = True
    return match


def match_detections(
    pred_boxes: np.ndarray, pred_scores: np.ndarray, gt_boxes: np.ndarray, iou: float = 0.5
) -> np.ndarray:
    """Greedy matching in one image (see :func:`match_pairs`): ``True`` for each true positive."""
    return match_pairs(pred_boxes, pred_scores, gt_boxes, iou) >= 0


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
    """What the engine found in one image: boxes ``(n, 4)`` xyxy, ``face_scores`` ``(n,)``, ``probs``
    ``(n, len(classes))`` in :data:`~maskwatch.evaluate.scenes.SCENE_CLASSES` order (``0`` for a class
    the model lacks) and ``uncertain`` ``(n,)`` (the classifier abstained)."""

    boxes: np.ndarray
    face_scores: np.ndarray
    probs: np.ndarray
    uncertain: np.ndarray | None = None

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
        if self.uncertain is None:
            self.uncertain = np.zeros(len(self.boxes), dtype=bool)
        self.uncertain = np.asarray(self.uncertain, dtype=bool).reshape(-1)
        if len(self.uncertain) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.uncertain)} uncertain flags")

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
            np.asarray([bool(getattr(f, "uncertain", False)) for f in faces], dtype=bool),
        )

    def above(self, threshold: float) -> ScenePrediction:
        """The faces with ``face_score >= threshold``."""
        keep = self.face_scores >= threshold
        return ScenePrediction(self.boxes[keep], self.face_scores[keep], self.probs[keep], self.uncertain[keep])

    def class_scores(self, k: int, class_score: str = "product") -> tuple[np.ndarray, np.ndarray]:
        """Boxes and scores of the detections for class index ``k`` under a class-score rule."""
        if class_score == "product":  # a face with p(class) = 0 is no detection of that class
            keep = self.probs[:, k] > 0
            return self.boxes[keep], self.face_scores[keep] * self.probs[keep, k]
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


def iou_table(
    preds: Sequence[ScenePrediction], images: Sequence[SceneImage], classes: Sequence[str] = SCENE_CLASSES,
) -> dict[str, dict[str, Any]]:
    """Top-1 and multi-label mAP (with/without mask), per-class top-1 AP and face AP at IoU 0.3, 0.5 and
    averaged over 0.5:0.95, keyed ``"0.3"``, ``"0.5"``, ``"0.5:0.95"``.

    ``preds`` must already cover every class (see :func:`scene_metrics`).
    """
    main = [c for c in classes if c in MAIN_CLASSES]
    faces = [(p.boxes, p.face_scores) for p in preds]
    all_gt = [im.boxes for im in images]

    def at(iou: float) -> dict[str, Any]:
        top1 = class_aps(preds, images, iou, "argmax", classes)
        multi = class_aps(preds, images, iou, "product", classes)
        return {"map_top1": _mean([top1[c] for c in main]), "map_multilabel": _mean([multi[c] for c in main]),
                "map_all_top1": _mean(list(top1.values())), "ap_top1": top1,
                "face_ap": detection_ap(faces, all_gt, iou)["ap"]}

    table = {format(iou, "g"): at(iou) for iou in REPORT_IOUS}
    coco = [table[format(i, "g")] if format(i, "g") in table else at(i) for i in COCO_IOUS]
    table["0.5:0.95"] = {
        "map_top1": _mean([r["map_top1"] for r in coco]),
        "map_multilabel": _mean([r["map_multilabel"] for r in coco]),
        "map_all_top1": _mean([r["map_all_top1"] for r in coco]),
        "ap_top1": {c: _mean([r["ap_top1"][c] for r in coco]) for c in classes},
        "face_ap": _mean([r["face_ap"] for r in coco]),
    }
    return table


def _padded(p: ScenePrediction, n_classes: int) -> ScenePrediction:
    """``p`` with zero probability for classes past its own (a 2-class model on 3-class data)."""
    extra = n_classes - p.probs.shape[1]
    if extra <= 0:
        return p
    probs = np.concatenate([p.probs, np.zeros((len(p), extra))], axis=1)
    return ScenePrediction(p.boxes, p.face_scores, probs, p.uncertain)


def _mean(values: Sequence[float]) -> float:
    valid = [v for v in values if not np.isnan(v)]
    return float(np.mean(valid)) if valid else float("nan")


def class_aps(
    preds: Sequence[ScenePrediction], images: Sequence[SceneImage], iou: float = 0.5,
    class_score: str = "product", classes: Sequence[str] = SCENE_CLASSES,
) -> dict[str, float]:
    """AP per class (``nan`` for a class without ground truth) under one class-score convention."""
    if class_score not in CLASS_SCORES:
        raise InputError(f"unknown class score {class_score!r}; choose one of {', '.join(CLASS_SCORES)}")
    gt_labels = [np.asarray(im.labels, dtype=object) for im in images]
    out = {}
    for k, name in enumerate(classes):
        gts = [im.boxes[lab == name] for im, lab in zip(images, gt_labels)]
        out[name] = detection_ap([p.class_scores(k, class_score) for p in preds], gts, iou)["ap"]
    return out


def confusion_matrix(
    preds: Sequence[ScenePrediction], images: Sequence[SceneImage], iou: float = 0.5,
    classes: Sequence[str] = SCENE_CLASSES,
) -> dict[str, dict[str, int]]:
    """Ground-truth faces against what the user sees (see the module docstring).

    Returns ``{true: {predicted: count}}`` with rows ``classes + ["no_face"]`` and columns
    ``classes + ["uncertain", "missed"]``; faces are matched class-agnostically by face score.
    """
    rows = [*classes, "no_face"]
    cols = [*classes, "uncertain", "missed"]
    cm = {r: {c: 0 for c in cols} for r in rows}
    for p, im in zip(preds, images):
        match = match_pairs(p.boxes, p.face_scores, im.boxes, iou)
        top = p.probs.argmax(1) if len(p) else np.zeros(0, int)
        for i, j in enumerate(match):
            col = "uncertain" if p.uncertain[i] else classes[int(top[i])]
            cm["no_face" if j < 0 else im.labels[j]][col] += 1
        matched = set(int(j) for j in match if j >= 0)
        for j, lab in enumerate(im.labels):
            if j not in matched:
                cm[lab]["missed"] += 1
    return cm


def scene_metrics(
    preds: Sequence[ScenePrediction],
    images: Sequence[SceneImage],
    iou: float = 0.5,
    class_score: str = "product",
    classes: Sequence[str] = SCENE_CLASSES,
    operating_threshold: float | None = None,
) -> dict[str, Any]:
    """Every scene metric from predictions and ground truth (no model needed).

    Args:
        preds / images: one prediction per ground-truth image.
        iou: IoU needed for a match.
        class_score: the convention of ``ap`` / ``map`` / ``map_all`` (``map_top1`` and
            ``map_multilabel`` are always given).
        classes: class order of ``preds[i].probs``.
        operating_threshold: the user's face threshold: the operating point and the confusion matrix
            use only faces at or above it (``None``: every face given).

    Returns a dict with ``n_images``, ``n_boxes``, ``n_boxes_per_class``, ``n_detections``, ``iou``,
    ``class_score``, ``ap`` (per class), ``map`` (mean over with_mask / without_mask), ``map_all``
    (mean over every class with ground truth), ``ap_top1`` / ``map_top1`` / ``map_all_top1``,
    ``ap_multilabel`` / ``map_multilabel`` / ``map_all_multilabel``, ``face_ap`` (class-agnostic, at
    ``iou``), ``face_ap@0.3``, ``face_recall@0.5``, ``face_recall@0.3`` (over every face given),
    ``by_iou`` (:func:`iou_table`: IoU 0.3, 0.5 and 0.5:0.95) with its flat copies ``map_top1@X``,
    ``map_multilabel@X``, ``face_ap@X`` and ``map_top1@0.3|0.5`` (the mean of 0.3 and 0.5),
    ``operating_threshold``, ``operating_point`` (precision / recall / F1 / tp / fp / fn for ``faces``,
    each class and ``overall`` = a detection counts only with the right label; ``n_uncertain``) and
    ``confusion`` (:func:`confusion_matrix` at the operating point).
    """
    if class_score not in CLASS_SCORES:
        raise InputError(f"unknown class score {class_score!r}; choose one of {', '.join(CLASS_SCORES)}")
    if len(preds) != len(images):
        raise InputError(f"{len(preds)} predictions for {len(images)} images")
    preds = [_padded(p, len(classes)) for p in preds]
    gt_labels = [np.asarray(im.labels, dtype=object) for im in images]
    all_gt = [im.boxes for im in images]
    n_per_class = {name: int(sum((lab == name).sum() for lab in gt_labels)) for name in classes}
    main = [c for c in classes if c in MAIN_CLASSES]
    out: dict[str, Any] = {
        "n_images": len(images), "n_boxes": sum(len(g) for g in all_gt), "n_boxes_per_class": n_per_class,
        "n_detections": sum(len(p) for p in preds), "iou": iou, "class_score": class_score,
    }
    for tag, cs in (("", class_score), ("_top1", "argmax"), ("_multilabel", "product")):
        ap = class_aps(preds, images, iou, cs, classes)
        out["ap" + tag] = ap
        out["map" + tag] = _mean([ap[c] for c in main])
        out["map_all" + tag] = _mean(list(ap.values()))
    faces = [(p.boxes, p.face_scores) for p in preds]
    face = detection_ap(faces, all_gt, iou)
    face30 = detection_ap(faces, all_gt, 0.3)
    face50 = face if iou == 0.5 else detection_ap(faces, all_gt, 0.5)
    out.update({"face_ap": face["ap"], "face_ap@0.3": face30["ap"], "face_recall@0.5": face50["recall"],
                "face_recall@0.3": face30["recall"]})
    by_iou = iou_table(preds, images, classes)
    out["by_iou"] = by_iou
    for key in ("map_top1", "map_multilabel", "face_ap"):
        for at in by_iou:
            out[f"{key}@{at}"] = by_iou[at][key]
    out["map_top1@0.3|0.5"] = _mean([by_iou["0.3"]["map_top1"], by_iou["0.5"]["map_top1"]])

    # Operating point: the faces a user gets, each with its top-1 label (uncertain ones abstain).
    op_preds = [p.above(operating_threshold) for p in preds] if operating_threshold is not None else list(preds)
    op: dict[str, Any] = {}
    overall_tp = 0
    for k, name in enumerate(classes):
        gts = [im.boxes[lab == name] for im, lab in zip(images, gt_labels)]
        top = []
        for p in op_preds:
            keep = (p.probs.argmax(1) == k) & ~p.uncertain if len(p) else np.zeros(0, bool)
            top.append((p.boxes[keep], p.face_scores[keep]))
        res = detection_ap(top, gts, iou)
        op[name] = _prf(res["tp"], res["n_det"], res["n_gt"])
        overall_tp += res["tp"]
    n_op = sum(len(p) for p in op_preds)
    op_face = detection_ap([(p.boxes, p.face_scores) for p in op_preds], all_gt, iou)
    op["faces"] = _prf(op_face["tp"], n_op, out["n_boxes"])
    op["overall"] = _prf(overall_tp, n_op, out["n_boxes"])
    op["n_uncertain"] = int(sum(p.uncertain.sum() for p in op_preds))
    out["operating_threshold"] = operating_threshold
    out["operating_point"] = op
    out["confusion"] = confusion_matrix(op_preds, images, iou, classes)
    return out


# ------------------------------------------------------------------------------------ running models

#: Face-detector score threshold at which scene evaluation ranks faces (AP needs the whole curve).
DEFAULT_SCORE_FLOOR = 0.05


def predict_scenes(
    detector: MaskDetector, images: Sequence[SceneImage], progress: bool = True, score_floor: float | None = None,
) -> list[ScenePrediction]:
    """Run the engine on every scene image (decoded with EXIF orientation applied).

    With ``score_floor`` below the engine's face threshold, faces are found at ``score_floor`` instead
    (a copy of the engine's face detector with that threshold) so that AP sees the whole ranking.
    """
    from tqdm.auto import tqdm

    fd = detector.face_detector
    if score_floor is not None and score_floor < fd.settings.score_threshold:
        fd = fd.with_settings(replace(fd.settings, score_threshold=score_floor))
    preds = []
    for im in tqdm(images, desc="scenes", unit="img", disable=not progress):
        image = decode_image(im.path)
        result = detector.label_faces(image, fd.detect(image), source=str(im.path))
        pred = ScenePrediction.from_result(result)
        # The classifier's abstention (its calibrated threshold), whether or not the engine set the flag.
        clf = detector.classifier
        own = np.asarray([[f.probs.get(c, 0.0) for c in clf.classes] for f in result.faces], np.float64)
        pred.uncertain = pred.uncertain | clf.uncertain(own.reshape(len(result.faces), len(clf.classes)))
        preds.append(pred)
    return preds


def detector_summary(fd) -> dict[str, Any]:
    """The face-detector settings an evaluation ran with (for reports)."""
    s = fd.settings
    return {
        "backend": fd.name, "score_threshold": s.score_threshold, "nms_threshold": s.nms_threshold,
        "detect_size": s.detect_size, "min_face": s.min_face, "box_scale": list(s.box_scale),
        "box_shift": list(s.box_shift),
    }


def evaluate_scenes(
    detector: MaskDetector,
    images: list[SceneImage],
    iou: float = 0.5,
    progress: bool = True,
    class_score: str = "product",
    score_floor: float | None = DEFAULT_SCORE_FLOOR,
) -> dict[str, Any]:
    """Run ``detector`` on every image and return :func:`scene_metrics` (plus the detector settings).

    Args:
        detector: the engine, with its face-detector settings (its ``score_threshold`` is the operating
            point).
        images: ground truth from :func:`~maskwatch.evaluate.scenes.load_scenes`.
        iou: IoU needed for a match (AP, operating point).
        progress: show a tqdm progress bar.
        class_score: the convention of ``ap`` / ``map`` (both are always reported, see the module docstring).
        score_floor: face threshold for ranking (AP); ``None``: the engine's own threshold.
    """
    if not images:
        raise InputError("no scene images to evaluate")
    fd = detector.face_detector
    preds = predict_scenes(detector, images, progress=progress, score_floor=score_floor)
    metrics = scene_metrics(preds, images, iou=iou, class_score=class_score,
                            operating_threshold=fd.settings.score_threshold)
    metrics["detector"] = detector_summary(fd)
    metrics["score_floor"] = score_floor
    metrics["model_classes"] = list(detector.classes)
    log.info("scenes: mAP@%.2g top-1 %.4f multi-label %.4f, face AP %.4f; top-1 mAP@0.3 %.4f over %d images", iou,
             metrics["map_top1"], metrics["map_multilabel"], metrics["face_ap"], metrics["map_top1@0.3"], len(images))
    return metrics


def _fmt(v: float | None) -> str:
    return "   -  " if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:6.3f}"


def format_scene_metrics(d: dict[str, Any]) -> str:
    """A plain-text report of :func:`scene_metrics` / :func:`evaluate_scenes` output."""
    iou = d.get("iou", 0.5)
    at = format(iou, "g")
    classes = list(d["ap"])
    present = [c for c in classes if d["n_boxes_per_class"].get(c, 0) > 0 or c in MAIN_CLASSES]
    floor = d.get("score_floor")
    lines = [
        f"{d['n_images']} images, {d['n_boxes']} faces "
        f"({', '.join(f'{k} {v}' for k, v in d['n_boxes_per_class'].items() if v)}), "
        f"{d['n_detections']} detections" + (f" (faces ranked from face score {floor:g})" if floor else ""),
        f"AP@{at}: top-1 = each face once, for the label a user sees; multi-label = each face for every "
        "class (YOLO validation)",
        f"{'class':<20}{'top-1':>8}{'multi':>8}",
    ]
    for c in present:
        lines.append(f"{c:<20}{_fmt(d['ap_top1'][c]):>8}{_fmt(d['ap_multilabel'][c]):>8}")
    lines.append(f"{'mAP with/without':<20}{_fmt(d['map_top1']):>8}{_fmt(d['map_multilabel']):>8}")
    if len(present) > 2:
        lines.append(f"{'mAP all classes':<20}{_fmt(d['map_all_top1']):>8}{_fmt(d['map_all_multilabel']):>8}")
    by_iou = d.get("by_iou")
    if by_iou:
        lines.append("by IoU (@0.3: found and labelled, whatever the annotator's box style; @0.5: the field's "
                     "convention, box-style-bound; 0.5:0.95: COCO's mean over 0.50..0.95):")
        lines.append(f"{'IoU':<20}{'top-1':>8}{'multi':>8}{'face AP':>9}")
        for key, row in by_iou.items():
            lines.append(f"{key:<20}{_fmt(row['map_top1']):>8}{_fmt(row['map_multilabel']):>8}"
                         f"{_fmt(row['face_ap']):>9}")
        lines.append(f"top-1 mAP, mean of @0.3 and @0.5: {_fmt(d['map_top1@0.3|0.5']).strip()}")
    lines.append(f"face AP@{at} {_fmt(d['face_ap']).strip()}, AP@0.3 {_fmt(d['face_ap@0.3']).strip()}; "
                 f"face recall (every face ranked) @0.5 {_fmt(d['face_recall@0.5']).strip()}, "
                 f"@0.3 {_fmt(d['face_recall@0.3']).strip()}")
    op = d["operating_point"]
    thr = d.get("operating_threshold")
    lines.append(f"operating point (face score >= {thr if thr is not None else 'any'}, top-1 label, "
                 f"{op.get('n_uncertain', 0)} uncertain):")
    lines.append(f"{'':<16}{'prec':>8}{'recall':>8}{'F1':>8}{'tp':>6}{'fp':>6}{'fn':>6}")
    for name in [*present, "overall", "faces"]:
        o = op[name]
        lines.append(f"{name:<16}{_fmt(o['precision']):>8}{_fmt(o['recall']):>8}{_fmt(o['f1']):>8}"
                     f"{o['tp']:>6}{o['fp']:>6}{o['fn']:>6}")
    cm = d.get("confusion")
    if cm:
        cols = [c for c in next(iter(cm.values())) if c in present or c in ("uncertain", "missed")]
        lines.append("confusion at the operating point (rows true, columns predicted):")
        lines.append(f"{'':<16}" + "".join(f"{c:>15}" for c in cols))
        for r, row in cm.items():
            if r in present or r == "no_face":
                lines.append(f"{r:<16}" + "".join(f"{row[c]:>15}" for c in cols))
    if "detector" in d:
        s = d["detector"]
        lines.append("detector: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    return "\n".join(lines)
