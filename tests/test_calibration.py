"""Temperature scaling, calibration error and abstention of the classifier's probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from maskwatch.classify.calibration import (
    Calibration,
    apply_class_bias,
    apply_temperature,
    calibration_from_metadata,
    choose_abstention,
    choose_class_bias,
    expected_calibration_error,
    fit_temperature,
    nll,
)


def _overconfident(rng, n=4000):
    """Labels drawn from soft true probabilities, reported with logits 3x too large."""
    logits = rng.normal(0, 1.5, (n, 3))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in true])
    sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(1, keepdims=True)
    return sharp.astype(np.float32), y


def test_temperature_recovers_overconfidence_and_lowers_ece():
    rng = np.random.default_rng(0)
    probs, y = _overconfident(rng)
    t = fit_temperature(probs, y)
    assert t == pytest.approx(3.0, rel=0.15)
    cal = apply_temperature(probs, t)
    np.testing.assert_allclose(cal.sum(1), 1.0, atol=1e-5)
    assert (cal.argmax(1) == probs.argmax(1)).all()  # never changes the top label
    assert expected_calibration_error(cal, y) < expected_calibration_error(probs, y) / 2
    assert nll(cal, y) < nll(probs, y)
    assert apply_temperature(probs, 1.0) is probs or np.array_equal(apply_temperature(probs, 1.0), probs)


def test_ece_of_perfectly_calibrated_and_of_always_wrong():
    probs = np.array([[0.9, 0.1]] * 10)
    y = np.array([0] * 9 + [1])
    assert expected_calibration_error(probs, y) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([[1.0, 0.0]] * 4), np.ones(4, int)) == pytest.approx(1.0)


def test_abstention_threshold_meets_target_on_kept_faces():
    probs = np.array([[0.99, 0.01], [0.95, 0.05], [0.6, 0.4], [0.55, 0.45], [0.9, 0.1], [0.52, 0.48]])
    y = np.array([0, 0, 1, 1, 0, 0])  # the two at 0.6 / 0.55 are wrong
    res = choose_abstention(probs, y, target=1.0)
    assert res["threshold"] is not None and 0.6 < res["threshold"] <= 0.9
    assert res["kept_accuracy"] == 1.0 and res["coverage"] == pytest.approx(3 / 6)
    cal = Calibration(abstain_below=res["threshold"])
    assert cal.uncertain(probs).tolist() == [False, False, True, True, False, True]
    # an accurate enough model never abstains
    assert choose_abstention(probs[:2], y[:2], target=0.9)["threshold"] is None


def test_old_models_without_calibration_never_abstain():
    cal = calibration_from_metadata({"classes": ["with_mask", "without_mask"]})
    assert cal == Calibration() and not cal.uncertain(np.array([[0.5, 0.5]])).any()
    cal = calibration_from_metadata({"calibration": {"temperature": 2.0, "abstain_below": 0.7}})
    assert cal.temperature == 2.0 and cal.uncertain(np.array([[0.6, 0.4]])).all()


def test_bundled_two_class_model_still_loads_and_classifies(model_path):
    from maskwatch.classify.model import MaskClassifier

    clf = MaskClassifier(model_path)
    crops = [np.full((64, 64, 3), 128, np.uint8)]
    p = clf.predict(crops)
    assert p.shape == (1, len(clf.classes)) and np.allclose(p.sum(1), 1, atol=1e-4)
    res = clf.classify(crops)[0]
    assert res.label in clf.classes and isinstance(res.uncertain, bool)


def test_class_bias_finds_more_of_a_rare_class_within_the_false_alarm_budget():
    # with_mask, without_mask, mask_incorrect: the incorrect faces score 0.3-0.45 for their class
    incorrect = np.array([[0.6, 0.05, 0.35], [0.55, 0.0, 0.45], [0.7, 0.0, 0.3], [0.2, 0.1, 0.7]])
    masked = np.array([[0.9, 0.05, 0.05]] * 97 + [[0.6, 0.0, 0.4]] * 3)
    probs, y = np.concatenate([incorrect, masked]), np.array([2] * 4 + [0] * 100)
    res = choose_class_bias(probs, y, k=2, protect=0, max_false=0.02)
    assert res["recall_before"] == 0.25 and res["false_before"] == 0.0
    assert res["recall"] == 0.5 and res["false_rate"] <= 0.02 and res["bias"] > 0
    # a looser budget buys more recall
    assert choose_class_bias(probs, y, 2, 0, max_false=0.05)["recall"] > res["recall"]
    assert choose_class_bias(probs[4:], y[4:], 2, 0)["bias"] == 0.0  # nothing to find: no shift
    shifted = apply_class_bias(probs, [0, 0, res["bias"]])
    np.testing.assert_allclose(shifted.sum(1), 1.0, atol=1e-5)


def test_class_bias_is_read_from_the_model_file_by_class_name():
    meta = {"classes": ["with_mask", "without_mask", "mask_incorrect"],
            "calibration": {"temperature": 1.0, "class_bias": {"mask_incorrect": 1.0}}}
    cal = calibration_from_metadata(meta)
    assert cal.class_bias == (0.0, 0.0, 1.0)
    p = cal.apply(np.array([[0.5, 0.1, 0.4]], np.float32))
    assert p.argmax() == 2  # 0.4 * e > 0.5
    assert calibration_from_metadata({**meta, "calibration": {"temperature": 1.0}}).class_bias is None
