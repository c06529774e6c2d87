"""Video tracking: the same face keeps its id; the classifier runs on new and stale tracks only."""

import numpy as np
import pytest

from maskwatch.boxes import box_iou
from maskwatch.track import FaceTracker


def test_iou():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    assert np.allclose(box_iou(a, b), [[1.0, 1 / 3, 0.0]], atol=1e-6)


def test_moving_face_keeps_its_track_and_is_reclassified_periodically():
    tr = FaceTracker(2, reclassify_every=3, reclassify_stable_every=3, min_votes=1)
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


BOX = np.array([[10, 10, 60, 60]], np.float32)
MASKED, UNMASKED = np.array([0.95, 0.05]), np.array([0.05, 0.95])


def feed(tr, verdicts, fps=10.0, start=0):
    """One face standing still; ``verdicts[k]`` is the classifier's answer on frame start+k (if asked)."""
    events = []
    for k, p in enumerate(verdicts):
        frame = start + k
        ids, need = tr.assign(BOX, frame, frame / fps)
        for i in need:
            tr.vote(ids[i], p, frame)
        tr.check_alerts(ids)
        events += tr.drain_events()
    return events


def test_one_odd_verdict_does_not_flip_the_label_but_a_real_change_does():
    tr = FaceTracker(2, classes=("with_mask", "without_mask"), reclassify_every=1,
                     reclassify_stable_every=1, alert_after_s=None)
    events = feed(tr, [MASKED] * 5 + [UNMASKED] + [MASKED] * 5)
    assert [e.kind for e in events] == ["track_started"]
    assert tr.label_of(1) == 0
    events = feed(tr, [UNMASKED] * 5, start=11)
    changes = [e for e in events if e.kind == "label_changed"]
    assert len(changes) == 1 and (changes[0].previous, changes[0].label) == ("with_mask", "without_mask")
    assert changes[0].frame == 12  # the second verdict against the label confirms it


def test_a_disagreeing_verdict_is_checked_on_the_next_frame():
    tr = FaceTracker(2, classes=("with_mask", "without_mask"), reclassify_every=5, min_votes=1)
    asked = []
    for frame, p in enumerate([MASKED] * 5 + [UNMASKED] * 7):
        ids, need = tr.assign(BOX, frame, frame / 10)
        if need:
            asked.append(frame)
            tr.vote(ids[0], p, frame)
    assert asked == [0, 5, 6, 11]  # 6: confirming the odd verdict at 5; then every 5 frames again
    assert tr.label_of(1) == 1


def test_time_per_label_first_last_and_end_events():
    tr = FaceTracker(2, classes=("with_mask", "without_mask"), reclassify_every=1,
                     reclassify_stable_every=1, alert_after_s=None)
    feed(tr, [UNMASKED] * 10 + [MASKED] * 10)  # 2 s at 10 fps, switches at frame 11
    (ended,) = tr.close()
    s = ended.track
    assert ended.kind == "track_ended" and (s["first_s"], s["last_s"]) == (0.0, 1.9)
    assert s["labels_seen"] == ["without_mask", "with_mask"]
    assert s["unmasked_s"] == pytest.approx(1.1) and s["label_seconds"]["with_mask"] == pytest.approx(0.8)
    assert s["changes"] == [{"time_s": 1.1, "frame": 11, "from": "without_mask", "to": "with_mask"}]


def test_unmasked_alert_once_per_track_after_the_delay_and_a_cooldown_per_source():
    tr = FaceTracker(2, classes=("with_mask", "without_mask"), reclassify_every=1,
                     reclassify_stable_every=1, alert_after_s=1.0,
                     alert_cooldown_s=5.0)
    far = np.array([[200, 200, 250, 250]], np.float32)
    events = []
    for frame in range(40):  # two unmasked people; the second appears at 0.5 s
        boxes = BOX if frame < 5 else np.vstack([BOX, far])
        ids, need = tr.assign(boxes, frame, frame / 10)
        for i in need:
            tr.vote(ids[i], UNMASKED, frame)
        tr.check_alerts(ids)
        events += [e for e in tr.drain_events() if e.kind == "unmasked_alert"]
    assert [(e.track_id, e.time_s) for e in events] == [(1, 1.0)]  # the second is within the cooldown
    tr.alert_cooldown_s = 0.0
    ids, _ = tr.assign(np.vstack([BOX, far]), 40, 4.0)
    tr.check_alerts(ids)
    assert [(e.kind, e.track_id) for e in tr.drain_events()] == [("unmasked_alert", 2)]


def test_class_names_come_from_the_model_not_a_fixed_pair():
    tr = FaceTracker(3, classes=("with_mask", "without_mask", "mask_incorrect"), reclassify_every=1,
                     reclassify_stable_every=1,
                     alert_after_s=0.5)
    events = []
    for frame in range(10):
        ids, need = tr.assign(BOX, frame, frame / 10)
        for i in need:
            tr.vote(ids[i], np.array([0.1, 0.1, 0.8]), frame)
        tr.check_alerts(ids)
        events += tr.drain_events()
    assert events[0].label == "mask_incorrect"
    assert any(e.kind == "unmasked_alert" for e in events)  # not wearing it properly counts as unmasked


def test_a_stable_confident_face_is_classified_less_often_and_again_when_it_changes_size():
    tr = FaceTracker(2, classes=("with_mask", "without_mask"), reclassify_every=5, reclassify_stable_every=15,
                     min_votes=1)
    asked = []
    for frame in range(60):
        grow = 1.0 if frame < 40 else 1.8  # the person walks up to the camera at frame 40
        box = np.array([[10, 10, 10 + 50 * grow, 10 + 50 * grow]], np.float32)
        ids, need = tr.assign(box, frame, frame / 30)
        if need:
            asked.append(frame)
            tr.vote(ids[0], MASKED, frame)
    # 0 and 5: two sure verdicts make the track stable; then every 15 frames; at 40 the face is
    # much bigger than when last classified, so it is looked at again at once.
    assert asked == [0, 5, 20, 35, 40, 55]
    assert tr.is_stable(1)


def test_a_doubtful_face_never_becomes_stable():
    tr = FaceTracker(2, classes=("with_mask", "without_mask"), reclassify_every=5, reclassify_stable_every=15,
                     min_votes=1)
    asked = []
    for frame in range(30):
        ids, need = tr.assign(BOX, frame, frame / 30)
        if need:
            asked.append(frame)
            tr.vote(ids[0], np.array([0.75, 0.25]), frame)  # right label, but not sure of it
    assert asked == [0, 5, 10, 15, 20, 25]
    assert not tr.is_stable(1)


def test_a_stable_track_that_changes_is_followed_at_once():
    tr = FaceTracker(2, classes=("with_mask", "without_mask"), reclassify_every=5, reclassify_stable_every=15,
                     min_votes=1, alert_after_s=None)
    asked, events = [], []
    for frame in range(50):
        ids, need = tr.assign(BOX, frame, frame / 30)
        if need:
            asked.append(frame)
            tr.vote(ids[0], MASKED if frame < 20 else UNMASKED, frame)
        events += tr.drain_events()
    # stable after 0 and 5; the verdict at 20 disagrees: 21 confirms the change, then the base period
    assert asked[:5] == [0, 5, 20, 21, 26]
    assert [e.kind for e in events] == ["track_started", "label_changed"]
    assert events[1].frame == 21
