"""The engine on real photos and clips: faces found, labels that match what a person sees."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import needs_shared


def test_blank_image_has_no_faces(engine):
    r = engine.detect(np.full((240, 320, 3), 127, np.uint8), source="blank")
    assert r.faces == [] and (r.width, r.height) == (320, 240)


def test_wrong_array_shape_is_refused_and_grey_is_converted(engine):
    from maskwatch.errors import InputError

    with pytest.raises(InputError, match=r"expected shape \(H, W, 3\) BGR"):
        engine.detect(np.zeros((10, 10, 2), np.uint8))
    assert engine.detect(np.zeros((10, 10), np.uint8)).width == 10  # grey, as decode_image accepts it


def test_auto_uses_the_bundled_yunet_with_no_models_folder(model_path, tmp_path, monkeypatch):
    from maskwatch.engine import MaskDetector
    from maskwatch.faces.models import BUNDLED_DIR

    monkeypatch.delenv("MASKWATCH_MODELS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    det = MaskDetector(model_path)
    assert det.face_detector.name == "yunet"
    assert det.face_detector.model_path.parent == BUNDLED_DIR
    assert (BUNDLED_DIR / "face_detection_yunet_2023mar.LICENSE.txt").is_file()


def test_auto_falls_back_to_yuface_when_no_yunet_file_exists(model_path, tmp_path, monkeypatch, caplog):
    from maskwatch.engine import MaskDetector
    from maskwatch.faces import models

    monkeypatch.setenv("MASKWATCH_MODELS", str(tmp_path / "no-models-here"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(models, "BUNDLED_DIR", tmp_path / "not-installed")
    with caplog.at_level("WARNING", logger="maskwatch"):
        det = MaskDetector(model_path)
    assert det.face_detector.name == "yuface"
    assert sum("yuface" in r.getMessage() for r in caplog.records) == 1
    assert det.detect(np.full((240, 320, 3), 127, np.uint8)).faces == []


def test_yuface_openmp_is_limited_in_every_calling_thread(model_path, monkeypatch):
    """yuface's spinning OpenMP teams oversubscribed the engine's two threads (6-10x slower in `detect`)."""
    import os
    import threading

    from maskwatch.faces import yunet as detector

    det = detector.YuFaceDetector()
    libs = detector._yuface_libgomp()
    if not libs:
        pytest.skip("this yuface build links no OpenMP runtime that can be found")
    assert os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"  # idle OpenMP threads sleep
    monkeypatch.setattr(detector, "YUFACE_OMP_THREADS", 1)  # below OpenMP's default (all cores)
    seen = []

    def work():
        det.detect(np.full((240, 320, 3), 127, np.uint8))
        seen.append(libs[0].omp_get_max_threads())

    for _ in range(2):  # two fresh threads, as the engine's background thread is
        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert seen == [1, 1]


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


@needs_shared
def test_faces_below_the_models_abstention_threshold_are_marked_uncertain(model_path, shared):
    import dataclasses

    from maskwatch.engine import MaskDetector

    det = MaskDetector(model_path)
    photo = shared / "data" / "scenes-dev" / "images" / "01242020_masks-qa_151720-780x520.jpg"
    cal = det.classifier.calibration
    det.classifier.calibration = dataclasses.replace(cal, abstain_below=1.01)  # nothing is that sure
    r = det.detect_file(photo)
    assert r.faces and all(f.uncertain for f in r.faces)
    assert r.counts().get("uncertain") == len(r.faces)
    det.classifier.calibration = dataclasses.replace(cal, abstain_below=None)  # an older model: never abstains
    assert not any(f.uncertain for f in det.detect_file(photo).faces)


def test_mirror_averages_a_crop_and_its_mirror_image(engine, rng):
    clf = engine.classifier
    x = rng.uniform(-1, 1, (3, clf.input_size, clf.input_size, 3)).astype(np.float32)
    both = clf.predict_batch(x, mirror=True)
    expected = (clf.predict_batch(x) + clf.predict_batch(x[:, :, ::-1])) / 2
    assert np.allclose(both, expected, atol=1e-5)
    assert np.allclose(both.sum(1), 1.0, atol=1e-5)


def test_photos_are_classified_with_their_mirror_image_and_video_frames_are_not(model_path, gap_clip, monkeypatch):
    from conftest import scene_frame
    from maskwatch.engine import MaskDetector

    det = MaskDetector(model_path)
    calls = []
    real = det.classifier.predict

    def spy(crops, batch_size=8, mirror=False):
        calls.append((len(crops), mirror))
        return real(crops, batch_size=batch_size, mirror=mirror)

    monkeypatch.setattr(det.classifier, "predict", spy)
    photo = det.detect(scene_frame())
    assert photo.faces and calls == [(len(photo.faces), True)]
    calls.clear()
    frames = list(det.process([gap_clip]))
    assert sum(len(r.faces) for r in frames) > 0
    assert calls and not any(m for _, m in calls)  # video: never mirrored, tracked or not
    calls.clear()
    list(det.process([gap_clip], track=False))
    assert calls and not any(m for _, m in calls)
    calls.clear()
    off = MaskDetector(model_path, mirror_photos=False)
    monkeypatch.setattr(off.classifier, "predict", spy)
    off.detect(scene_frame())
    assert calls and not any(m for _, m in calls)
