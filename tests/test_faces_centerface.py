"""CenterFace backend, weighted box fusion and the fused YuNet + CenterFace detector."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import needs_shared
from maskwatch.errors import ModelError
from maskwatch.faces import create_face_detector
from maskwatch.faces.centerface import BUNDLED_CENTERFACE, decode_centerface, find_centerface
from maskwatch.faces.detector import DetectorSettings
from maskwatch.faces.fusion import weighted_box_fusion


def test_wbf_averages_overlapping_boxes_and_halves_lonely_ones():
    a = np.array([[10, 10, 50, 50], [200, 200, 240, 240]], float)
    b = np.array([[14, 12, 54, 52]], float)
    boxes, scores = weighted_box_fusion([a, b], [np.array([0.9, 0.8]), np.array([0.3])])
    assert len(boxes) == 2
    # the pair: score-weighted mean corners, score (0.9 + 0.3) / 2
    np.testing.assert_allclose(boxes[0], (a[0] * 0.9 + b[0] * 0.3) / 1.2, rtol=1e-5)
    assert scores[0] == pytest.approx(0.6)
    # seen by one detector of two: half its score
    np.testing.assert_allclose(boxes[1], a[1])
    assert scores[1] == pytest.approx(0.4)
    empty = weighted_box_fusion([np.zeros((0, 4)), np.zeros((0, 4))], [np.zeros(0), np.zeros(0)])
    assert empty[0].shape == (0, 4) and empty[1].shape == (0,)


def test_decode_centerface_heatmap_peak_to_box():
    heat = np.zeros((1, 1, 8, 8), np.float32)
    heat[0, 0, 3, 5] = 0.9
    scale = np.zeros((1, 2, 8, 8), np.float32)
    scale[0, :, 3, 5] = np.log(16 / 4)  # a 16 x 16 px box
    offset = np.zeros((1, 2, 8, 8), np.float32)
    xywh, scores = decode_centerface(heat, scale, offset, 0.5, 0.3, (32, 32))
    np.testing.assert_allclose(xywh, [[(5 + 0.5) * 4 - 8, (3 + 0.5) * 4 - 8, 16, 16]])
    assert scores.tolist() == pytest.approx([0.9])
    assert len(decode_centerface(heat, scale, offset, 0.95, 0.3, (32, 32))[0]) == 0


def test_centerface_file_is_bundled_with_its_licence():
    assert BUNDLED_CENTERFACE.is_file() and BUNDLED_CENTERFACE.stat().st_size > 1_000_000
    assert (BUNDLED_CENTERFACE.parent / "centerface.LICENSE.txt").read_text().count("MIT License") >= 1
    with pytest.raises(ModelError, match="CenterFace"):
        find_centerface("/nonexistent/centerface.onnx")


@needs_shared
def test_centerface_and_fused_find_real_faces(shared):
    from maskwatch.evaluate.detection import match_detections
    from maskwatch.evaluate.scenes import load_scenes
    from maskwatch.io.images import decode_image

    scenes = load_scenes(shared / "data" / "scenes-kaggle")[:6]
    settings = DetectorSettings(score_threshold=0.4, detect_size=640)
    for backend in ("centerface", "fused"):
        det = create_face_detector(backend, settings=settings)
        assert det.name == backend
        found = total = 0
        for im in scenes:
            boxes = det.detect(decode_image(im.path))
            assert (boxes.xyxy[:, 2] > boxes.xyxy[:, 0]).all() and (boxes.scores >= 0.4).all()
            found += match_detections(boxes.xyxy, boxes.scores, im.boxes, 0.3).sum()
            total += len(im)
        assert found >= 0.6 * total, (backend, found, total)
    # a copy with other settings keeps its backend
    fused = create_face_detector("fused", settings=settings)
    assert fused.with_settings(DetectorSettings(score_threshold=0.2)).name == "fused"
