"""``maskwatch benchmark --baseline``: the classic pipeline (res10 SSD + Keras MobileNetV2) runs on OpenCV 5.

OpenCV 5 has no TensorFlow importer; the res10 detector is converted to ONNX on first use (into the user
cache, here a temporary one) and run by ``cv2.dnn``. Timings are printed, never asserted.
"""

from __future__ import annotations

import importlib.util
import json

import cv2
import numpy as np
import pytest

from conftest import assert_one_line_error, needs_shared, run_cli, write_clip
from maskwatch.evaluate import res10

HAS_TRAIN = all(importlib.util.find_spec(m) for m in ("tensorflow", "keras", "tf2onnx", "onnx"))
needs_train = pytest.mark.skipif(not HAS_TRAIN, reason="needs the train extra: pip install 'maskwatch[train]'")


@needs_shared
@needs_train
def test_baseline_runs_on_a_few_frames_and_converts_res10_once(shared, model_path, tmp_path):
    clip = shared / "data" / "video" / "single-unmasked.mp4"
    cache = tmp_path / "cache"
    proc = run_cli("benchmark", str(clip), "-m", str(model_path), "--baseline", "--frames", "5",
                   "--json", str(tmp_path / "bench.json"), env={"XDG_CACHE_HOME": str(cache)}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "classic (res10 SSD + Keras predict)" in proc.stdout
    assert "speed-up over classic, 5 frames, start-up counted" in proc.stdout
    rows = json.loads((tmp_path / "bench.json").read_text())
    classic = rows[-1]
    assert [r["frames"] for r in rows] == [5, 5, 5]
    assert classic["detector"] == "res10-ssd" and classic["load_s"] > 0
    # One person faces the camera: res10 finds a face in (nearly) every frame and the classifier runs on it.
    assert classic["faces_per_frame"] >= 0.8 and classic["ms_per_classified_face"] > 0
    # The converted detector was written into the user cache, not next to the shared files or in the repo.
    assert (cache / "maskwatch" / res10.ONNX_NAME).is_file()


@needs_shared
def test_baseline_without_the_res10_files_fails_in_one_line(shared, model_path, tmp_path):
    clip = shared / "data" / "video" / "putting-mask-on.mp4"
    empty = tmp_path / "no-models"
    empty.mkdir()
    proc = run_cli("benchmark", str(clip), "-m", str(model_path), "--baseline", "--frames", "3",
                   env={"MASKWATCH_MODELS": str(empty), "MASKWATCH_SHARED": str(tmp_path / "no-shared"),
                        "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert_one_line_error(proc, "res10", "MASKWATCH_MODELS")
    assert proc.returncode == 2
    assert "classic" not in proc.stdout  # nothing was timed before the error


@needs_shared
def test_frames_zero_times_the_whole_clip(shared, model_path, tmp_path):
    cap = cv2.VideoCapture(str(shared / "data" / "video" / "putting-mask-on.mp4"))
    frames = [cap.read()[1] for _ in range(12)]
    clip = write_clip(tmp_path / "twelve.mp4", frames)
    proc = run_cli("benchmark", str(clip), "-m", str(model_path), "--frames", "0", "--json",
                   str(tmp_path / "bench.json"))
    assert proc.returncode == 0, proc.stderr
    assert [r["frames"] for r in json.loads((tmp_path / "bench.json").read_text())] == [12, 12]


def test_priors_and_decoding_follow_the_pbtxt():
    priors = res10.prior_boxes()
    assert priors.shape == (8892, 4)  # 38²·4 + 19²·6 + 10²·6 + 5²·6 + 5²·4 + 5²·4, the net's head size
    # First prior: the 30-px square centred on (4, 4) of the 300x300 input.
    np.testing.assert_allclose(priors[0], np.array([-11, -11, 19, 19]) / 300, atol=1e-6)
    # Zero offsets decode to the prior itself; only scores above 0.01 are kept, best first; overlaps suppressed.
    loc = np.zeros((1, 8892 * 4), np.float32)
    conf = np.zeros((8892, 2), np.float32)
    conf[:, 0] = 1
    conf[[100, 101, 5000], 1] = [0.9, 0.6, 0.7]  # 100 and 101 are two priors of one cell (IoU > 0.45)
    out = res10.detection_output(loc, conf.reshape(1, -1), priors)
    assert out[:, 2].tolist() == pytest.approx([0.9, 0.7])
    np.testing.assert_allclose(out[0, 3:], priors[100], atol=1e-6)


def test_degenerate_quantisation_ranges_dequantise_to_finite_values():
    # The .pb stores batch-norm betas as quint8 over [0, 1e-38]; TensorFlow's own Dequantize gives NaN there.
    q = np.array([0, 0, 0], np.uint8)
    assert np.isfinite(res10.dequantize_min_first(q, 0.0, 1.1754944e-38)).all()
    v = res10.dequantize_min_first(np.array([0, 255], np.uint8), -1.0, 1.0)
    np.testing.assert_allclose(v, [-1.0, 1.0], atol=1e-2)
