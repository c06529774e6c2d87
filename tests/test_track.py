"""Video tracking: the same face keeps its id; the classifier runs on new and stale tracks only."""

import numpy as np

from maskwatch.boxes import box_iou
from maskwatch.track import FaceTracker


def test_iou():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    assert np.allclose(box_iou(a, b), [[1.0, 1 / 3, 0.0]], atol=1e-6)


def test_moving_face_keeps_its_track_and_is_reclassified_periodically():
    tr = FaceTracker(2, reclassify_every=3, min_votes=1)
    classified = []
    for frame in range(7):
        box = np.array([[10 + 2 * frame, 10, 60 + 2 * frame, 60]], np.float32)
        ids, need = tr.assign(box, frame)
        assert ids == [1]
        if need:
            tr.vote(ids[0], np.array([0.9, 0.1]), frame)
            classified.append(frame)
    assert classified == [0, 3, 6]
    assert np.allclose(tr.tracks[1].probs, [0.9, 0.1])


def test_two_faces_get_two_tracks_and_old_tracks_expire():
    tr = FaceTracker(2, max_age=2)
    ids, need = tr.assign(np.array([[0, 0, 10, 10], [100, 100, 120, 120]], np.float32), 0)
    assert len(set(ids)) == 2 and need == [0, 1]
    tr.assign(np.zeros((0, 4), np.float32), 5)
    assert not tr.tracks and len(tr.finished) == 2
