"""The one preprocessing path: square crops with margin, RGB model input."""

import numpy as np

from maskwatch.preprocess import crop_face, to_model_input


def test_crop_is_square_with_margin_around_the_box():
    img = np.zeros((400, 400, 3), np.uint8)
    crop = crop_face(img, (100, 100, 200, 160), margin=0.1)
    assert crop.shape[0] == crop.shape[1] == 120  # long side 100 plus 10% each side


def test_crop_at_the_border_is_clipped_not_failing():
    img = np.zeros((50, 80, 3), np.uint8)
    assert crop_face(img, (70, 40, 100, 70)).size > 0
    assert crop_face(img, (500, 500, 600, 600)).size > 0


def test_model_input_is_rgb_float_in_0_255():
    bgr = np.zeros((30, 30, 3), np.uint8)
    bgr[..., 0] = 255  # pure blue in BGR
    batch = to_model_input([bgr, bgr], 224)
    assert batch.shape == (2, 224, 224, 3) and batch.dtype == np.float32
    assert batch[0, 100, 100, 2] == 255 and batch[0, 100, 100, 0] == 0  # blue is the last RGB channel
