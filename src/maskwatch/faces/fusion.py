"""Fused face detection: YuNet and CenterFace boxes merged by weighted box fusion (WBF).

Each detector runs on the image; their boxes (already in one box style, see
:data:`maskwatch.faces.centerface.TO_YUNET_STYLE`) are clustered by IoU, and each cluster becomes one
box whose corners are the score-weighted mean of its members' corners and whose score is the sum of
its members' scores divided by the number of detectors (so a face that only one detector sees keeps
half its score, one that both see keeps their mean). Unlike NMS, which keeps one box and drops the
rest, WBF averages the boxes: two detectors that both roughly find a face give a better box than
either (Solovyev et al., "Weighted boxes fusion", 2021).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from maskwatch.boxes import box_iou
from maskwatch.faces.base import BaseDetector as _BaseDetector, DetectorSettings

#: IoU at which two boxes are taken as the same face (the WBF paper's default for detection ensembles).
FUSION_IOU = 0.55


def weighted_box_fusion(
    boxes: Sequence[np.ndarray], scores: Sequence[np.ndarray], iou: float = FUSION_IOU,
    weights: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse the ``xyxy`` boxes and scores of several detectors (one array pair per detector).

    Boxes are visited in descending score; each joins the first cluster whose fused box it overlaps
    with IoU ``> iou``, else starts one. A cluster's box is the score-weighted mean of its members;
    its score is ``sum(weight * score) / sum(weights)`` over its members (capped by one box per
    detector's worth of weight). Returns fused ``xyxy`` ``(n, 4)`` and scores ``(n,)``, by score.
    """
    n_models = len(boxes)
    weights = np.ones(n_models) if weights is None else np.asarray(weights, np.float64)
    all_boxes, all_scores, all_w = [], [], []
    for b, s, w in zip(boxes, scores, weights):
        b = np.asarray(b, np.float64).reshape(-1, 4)
        s = np.asarray(s, np.float64).reshape(-1)
        all_boxes.append(b)
        all_scores.append(s * w)
        all_w.append(np.full(len(s), w))
    if not all_boxes or sum(len(s) for s in all_scores) == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    b = np.concatenate(all_boxes)
    s = np.concatenate(all_scores)
    w = np.concatenate(all_w)
    order = np.argsort(-s, kind="stable")
    fused: list[np.ndarray] = []  # fused box per cluster
    sums: list[np.ndarray] = []  # sum of score * box per cluster
    tot: list[float] = []  # sum of weighted scores
    wsum: list[float] = []  # sum of member weights
    for i in order:
        j = -1
        if fused:
            ious = box_iou(b[i:i + 1], np.asarray(fused))[0]
            k = int(ious.argmax())
            if ious[k] > iou:
                j = k
        if j < 0:
            fused.append(b[i].copy())
            sums.append(b[i] * s[i])
            tot.append(float(s[i]))
            wsum.append(float(w[i]))
        else:
            sums[j] = sums[j] + b[i] * s[i]
            tot[j] += float(s[i])
            wsum[j] += float(w[i])
            fused[j] = sums[j] / max(tot[j], 1e-12)
    total_w = float(weights.sum())
    out_scores = np.asarray([min(t, t * total_w / ws) / total_w if ws > total_w else t / total_w
                             for t, ws in zip(tot, wsum)])
    out_boxes = np.asarray(fused).reshape(-1, 4)
    order = np.argsort(-out_scores, kind="stable")
    return out_boxes[order].astype(np.float32), out_scores[order].astype(np.float32)


class FusedDetector(_BaseDetector):
    """Several detectors (YuNet + CenterFace) run on the same image, their boxes fused by WBF.

    The members run at a lower threshold (``score_threshold / len(members)``: a box below it cannot
    lift a fused score over the threshold on its own); the fused score is then held to the
    settings' threshold, and the settings' box calibration is applied to the fused boxes.
    """

    name = "fused"

    def __init__(self, members: Sequence[_BaseDetector], settings: DetectorSettings | None = None,
                 iou: float = FUSION_IOU) -> None:
        super().__init__(settings)
        if len(members) < 2:
            raise ValueError("fusion needs at least two detectors")
        self.iou = iou
        member_settings = replace(self.settings,
                                  score_threshold=max(0.01, self.settings.score_threshold / len(members)))
        self.members = [m.with_settings(member_settings) for m in members]

    def with_settings(self, settings: DetectorSettings) -> FusedDetector:
        return FusedDetector(self.members, settings, self.iou)

    def detect_raw(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = [], []
        for m in self.members:
            xywh, sc = m.detect_raw(image_bgr)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            boxes.append(xyxy)
            scores.append(sc)
        xyxy, fused = weighted_box_fusion(boxes, scores, self.iou)
        return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1), fused
