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
                 "probs": {"with_mask": 0.2, "without_mask": 0.8}, "uncertain": False}


def test_uncertain_and_third_class_in_json_counts_and_csv():
    from maskwatch.results import CSV_COLUMNS

    probs = {"with_mask": 0.4, "without_mask": 0.25, "mask_incorrect": 0.35}
    unsure = Face((1, 2, 30, 40), 0.9, "with_mask", 0.4, probs, uncertain=True)
    wrong = Face((50, 2, 80, 40), 0.8, "mask_incorrect", 0.7, {**probs, "mask_incorrect": 0.7, "with_mask": 0.05})
    r = FrameResult("a.jpg", 640, 480, [unsure, wrong])
    d = json.loads(r.to_json())
    assert [f["uncertain"] for f in d["faces"]] == [True, False]
    assert d["faces"][1]["label"] == "mask_incorrect" and "mask_incorrect" in d["faces"][1]["probs"]
    # an uncertain face is counted apart, not under its best guess
    assert r.counts() == {"uncertain": 1, "mask_incorrect": 1, "total": 2}
    rows = r.csv_rows()
    assert all(len(row) == len(CSV_COLUMNS) for row in rows)
    col = {c: i for i, c in enumerate(CSV_COLUMNS)}
    assert rows[0][col["uncertain"]] == 1 and rows[1][col["p_mask_incorrect"]] == 0.7
    # a 2-class face leaves the third probability empty
    two = FrameResult("b.jpg", 10, 10,
                      [Face((0, 0, 5, 5), 0.9, "with_mask", 0.9, {"with_mask": 0.9, "without_mask": 0.1})])
    assert two.csv_rows()[0][col["p_mask_incorrect"]] == "" and two.csv_rows()[0][col["uncertain"]] == 0


def test_invalid_boxes_are_refused():
    with pytest.raises(ValueError):
        Face((10, 10, 5, 20), 0.9, "with_mask", 0.9, {})
