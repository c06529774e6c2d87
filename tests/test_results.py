"""The JSON Lines contract other tools parse."""

import json

import pytest

from maskwatch.results import CropResult, Face, FrameResult


def test_frame_json_has_the_documented_fields_and_types():
    face = Face((1, 2, 30, 40), 0.91, "with_mask", 0.97, {"with_mask": 0.97, "without_mask": 0.03})
    r = FrameResult("a.jpg", 640, 480, [face])
    d = json.loads(r.to_json())
    assert set(d) >= {"source", "frame", "time_s", "width", "height", "faces"}
    assert d["frame"] is None and d["time_s"] is None
    f = d["faces"][0]
    assert f["box"] == [1, 2, 30, 40] and all(isinstance(v, int) for v in f["box"])
    assert f["label"] == "with_mask" and f["probs"] == {"with_mask": 0.97, "without_mask": 0.03}
    assert isinstance(f["face_score"], float) and isinstance(f["score"], float)
    assert r.counts() == {"with_mask": 1, "total": 1}


def test_crop_json():
    d = json.loads(CropResult("x.png", "without_mask", 0.8, {"with_mask": 0.2, "without_mask": 0.8}).to_json())
    assert d == {"source": "x.png", "label": "without_mask", "score": 0.8,
                 "probs": {"with_mask": 0.2, "without_mask": 0.8}}


def test_invalid_boxes_are_refused():
    with pytest.raises(ValueError):
        Face((10, 10, 5, 20), 0.9, "with_mask", 0.9, {})
