"""The engine spec, fork(), the face-backend registry, thread safety and in-memory image checks."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import SHARED, assert_one_line_error, needs_shared, run_cli
from maskwatch.errors import InputError, MaskwatchError
from maskwatch.spec import EngineSpec


def test_spec_defaults_env_and_round_trip():
    spec = EngineSpec.from_env({"MASKWATCH_FACE_THRESHOLD": "0.7", "MASKWATCH_MIRROR": "0",
                                "MASKWATCH_DETECT_SIZE": "native"})
    assert spec.face_threshold == 0.7 and spec.mirror_photos is False and spec.detect_size is None
    assert spec.differences() == {"face_threshold": 0.7, "mirror_photos": False, "detect_size": None}
    assert EngineSpec.from_dict(spec.to_dict()) == spec
    # an option given explicitly beats the environment
    assert EngineSpec.from_env({"MASKWATCH_MIRROR": "1"}, mirror_photos=False).mirror_photos is False


@pytest.mark.parametrize("env, fragment", [
    ({"MASKWATCH_FACE_THRESHOLD": "high"}, "MASKWATCH_FACE_THRESHOLD"),
    ({"MASKWATCH_FACE_THRESHOLD": "1.5"}, "--face-threshold"),
    ({"MASKWATCH_MAX_PIXELS": "nan"}, "MASKWATCH_MAX_PIXELS"),
    ({"MASKWATCH_MIRROR": "maybe"}, "MASKWATCH_MIRROR"),
])
def test_spec_bad_values_name_the_setting(env, fragment):
    with pytest.raises(InputError, match=fragment):
        EngineSpec.from_env(env)


def test_spec_rejects_unknown_keys_and_keeps_stable_every_at_least_every():
    with pytest.raises(InputError, match="unknown engine setting"):
        EngineSpec.from_dict({"face_treshold": 0.5})
    assert EngineSpec(reclassify_every=20).reclassify_stable_every == 20


def test_fork_shares_the_classifier_and_changes_only_what_was_asked(engine):
    forked = engine.fork(detect_size=480, mirror_photos=False)
    assert forked.classifier is engine.classifier
    assert forked.spec.differences(engine.spec) == {"detect_size": 480, "mirror_photos": False}
    assert forked.face_detector is not engine.face_detector
    assert forked.face_detector.settings.detect_size == 480


def _photos(n: int):
    import cv2

    folder = SHARED / "data" / "scenes-kaggle" / "images"
    paths = sorted(folder.glob("*.jpg"))[:n]
    return [(p.name, cv2.imread(str(p))) for p in paths]


@needs_shared
def test_one_detector_shared_by_threads_gives_the_serial_results(engine):
    photos = _photos(40)
    serial = [engine.detect(img, source=name).to_dict() for name, img in photos]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda item: engine.detect(item[1], source=item[0]).to_dict(), photos * 4))
    assert parallel == serial * 4


@needs_shared
def test_two_threads_processing_two_clips_on_one_detector(engine):
    clips = [str(SHARED / "data" / "video" / c) for c in ("single-masked.mp4", "putting-mask-on.mp4")]
    serial = {c: [r.to_dict() for r in engine.process([c])] for c in clips}
    out: dict[str, list] = {}

    def work(c):
        out[c] = [r.to_dict() for r in engine.process([c])]

    threads = [threading.Thread(target=work, args=(c,)) for c in clips]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == serial


def test_process_takes_one_path_as_one_source(engine, tmp_path):
    import cv2

    path = tmp_path / "one.png"
    cv2.imwrite(str(path), np.full((64, 64, 3), 128, np.uint8))
    results = list(engine.process(str(path)))
    assert [r.source for r in results] == [str(path)]


@pytest.mark.parametrize("image, fragment", [
    (np.zeros((40, 40, 3), np.int64), "dtype int64"),
    (np.zeros((40, 40, 3), bool), "dtype bool"),
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((40, 40, 5), np.uint8), "shape"),
    (np.full((40, 40, 3), np.nan, np.float32), "NaN"),
    ("not an image", "NumPy array"),
])
def test_bad_in_memory_images_get_one_clear_error(engine, image, fragment):
    with pytest.raises(MaskwatchError, match=fragment):
        engine.detect(image)


@needs_shared
def test_float_and_uint16_images_find_the_same_faces_as_uint8(engine):
    _, img = _photos(3)[2]
    want = len(engine.detect(img).faces)
    assert want > 0
    assert len(engine.detect(img.astype(np.float32) / 255.0).faces) == want
    assert len(engine.detect(img.astype(np.uint16) * 257).faces) == want


def test_grey_bgra_and_empty_crops(engine):
    crop = np.full((96, 96, 3), 120, np.uint8)
    grey, bgra = crop[:, :, 0], np.dstack([crop, np.full((96, 96), 255, np.uint8)])
    labels = [r.label for r in engine.classify([crop, grey, bgra])]
    assert labels[0] == labels[1] == labels[2]
    with pytest.raises(MaskwatchError, match="empty"):
        engine.classify([np.zeros((0, 0, 3), np.uint8)])


class _CentreFace:
    """A dummy backend: one face in the middle of every image."""

    name = "centre"

    def __init__(self, settings):
        self.settings = settings

    def detect(self, image_bgr):
        from maskwatch.faces.base import FaceBoxes

        h, w = image_bgr.shape[:2]
        return FaceBoxes(np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]]), np.array([0.99]))

    def with_settings(self, settings):
        return _CentreFace(settings)


def test_a_backend_registered_in_one_place_reaches_every_front(model_path, tmp_path):
    """Adding a face backend touches only the registry: the engine, the CLI's --detector and batch see it."""
    from maskwatch.engine import MaskDetector
    from maskwatch.faces.registry import backend_names, register_backend, unregister_backend

    register_backend("centre", "a dummy", lambda model_path, settings: _CentreFace(settings))
    try:
        assert "centre" in backend_names()
        det = MaskDetector(model_path, detector="centre")
        img = np.full((100, 200, 3), 90, np.uint8)
        r = det.detect(img)
        assert [f.box for f in r.faces] == [(50, 25, 150, 75)]
        assert det.fork(detect_size=480).face_detector.name == "centre"
        import cv2
        from click.testing import CliRunner

        from maskwatch.cli import cli

        path = tmp_path / "grey.png"
        cv2.imwrite(str(path), img)
        res = CliRunner().invoke(cli, ["detect", str(path), "-m", str(model_path), "--detector", "centre",
                                       "--json", "-"])
        assert res.exit_code == 0, res.output
        assert '"box": [50, 25, 150, 75]' in res.output
    finally:
        unregister_backend("centre")


def test_unknown_backend_is_one_clear_error(model_path):
    proc = run_cli("detect", "x.jpg", "-m", str(model_path), "--detector", "nosuch")
    assert_one_line_error(proc, "nosuch")
