"""Classification metrics against hand-computed values."""

import numpy as np
import pytest

from maskwatch.evaluate.classification import classification_metrics, draw_confusion_matrix, roc_auc


def test_metrics_on_a_known_case():
    y = [0, 0, 0, 1, 1]
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    m = classification_metrics(y, probs, ["with_mask", "without_mask"])
    assert m["accuracy"] == 0.6 and m["errors"] == 2
    assert m["confusion_matrix"] == [[2, 1], [1, 1]]
    assert m["per_class"]["with_mask"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["per_class"]["without_mask"]["recall"] == 0.5
    # BCE averaged over both outputs, as Keras computes it
    expected = -np.mean(np.log([0.9, 0.8, 0.4, 0.7, 0.4]))
    assert m["loss"] == pytest.approx(expected, abs=1e-3)


def test_roc_auc():
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
    assert roc_auc(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert roc_auc(np.array([1, 1]), np.array([0.1, 0.2])) is None


def test_confusion_matrix_image():
    img = draw_confusion_matrix([[5, 1], [0, 7]], ["with_mask", "without_mask"])
    assert img.ndim == 3 and img.shape[2] == 3 and img.min() < 50
