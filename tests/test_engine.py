"""The engine on real photos and clips: faces found, labels that match what a person sees."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import needs_shared


def test_blank_image_has_no_faces(engine):
    r = engine.detect(np.full((240, 320, 3), 127, np.uint8), source="blank")
    assert r.faces == [] and (r.width, r.height) == (320, 240)


def test_wrong_array_shape_is_refused(engine):
    from maskwatch.errors import InputError

    with pytest.raises(InputError, match="expected a BGR uint8 image"):
        engine.detect(np.zeros((10, 10), np.uint8))


def test_yuface_fallback_needs_no_model_file(model_path):
    from maskwatch.engine import MaskDetector

    det = MaskDetector(model_path, detector="yuface")
    assert det.face_detector.name == "yuface"


@needs_shared
def test_many_faces_in_one_photo(engine, shared):
    r = engine.detect_file(shared / "data" / "scenes-dev" / "images" / "01242020_masks-qa_151720-780x520.jpg")
    assert len(r.faces) >= 6
    assert r.timings_ms["detect"] > 0


@needs_shared
@pytest.mark.parametrize("clip,label", [("single-masked.mp4", "with_mask"), ("single-unmasked.mp4", "without_mask")])
def test_one_person_clips_are_labelled_right(engine, shared, clip, label):
    results = list(engine.process([str(shared / "data" / "video" / clip)], vid_stride=4))
    faces = [f for r in results for f in r.faces]
    assert len(faces) >= len(results) * 0.8
    share = np.mean([f.label == label for f in faces])
    assert share >= 0.9, f"{clip}: only {share:.0%} of faces labelled {label}"
    ids = {f.track_id for f in faces}
    assert None not in ids and len(ids) <= 3  # one person: one track, a few at most


@needs_shared
def test_yuface_and_yunet_find_the_same_faces(model_path, shared):
    from maskwatch.engine import MaskDetector

    path = shared / "data" / "scenes-dev" / "images" / "01242020_masks-qa_151720-780x520.jpg"
    a = MaskDetector(model_path, detector="yunet").detect_file(path)
    b = MaskDetector(model_path, detector="yuface").detect_file(path)
    assert abs(len(a.faces) - len(b.faces)) <= 2
