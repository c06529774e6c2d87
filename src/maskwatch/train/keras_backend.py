"""Keras 3 / TensorFlow pieces of training (needs the ``train`` extra). Imported only when training."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

from maskwatch.errors import DependencyError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence what TensorFlow's C++ side writes to fd 2 while it loads (CUDA probes, oneDNN notes)."""
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no usable fd 2
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras():
    """Import TensorFlow and Keras quietly, or explain how to get them."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    warnings.filterwarnings("ignore", module="keras")
    warnings.filterwarnings("ignore", module="tensorflow")
    try:
        with _quiet_native_stderr():
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
            import keras
            import tensorflow as tf
    except ImportError as exc:
        raise DependencyError(
            "training needs TensorFlow and Keras: pip install \"maskwatch[train]\""
        ) from exc
    tf.get_logger().setLevel(logging.ERROR)
    return tf, keras


def build_model(recipe, base_weights: str | Path | None, n_classes: int = 2):
    """MobileNetV2 (alpha 1.0, ImageNet weights, frozen) with the article's head (``n_classes`` softmax
    outputs; binary cross-entropy for two, as the article, categorical cross-entropy for more).

    Input: RGB float in [0, 255]; MobileNetV2's scaling to [-1, 1] is a layer inside the model.
    """
    tf, keras = import_keras()
    from keras import layers

    size = recipe.input_size
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="mobilenetv2_preprocess")(inputs)
    weights = str(base_weights) if base_weights else "imagenet"
    base = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=1.0, include_top=False, weights=weights
    )
    base.trainable = False
    x = base(x, training=False)
    # The whole final feature map is averaged: 7x7 at 224 px input (the article's AveragePooling2D(7)),
    # 4x4 at 128 or 112, 3x3 at 96.
    grid = int(base.output.shape[1])
    x = layers.AveragePooling2D(pool_size=(grid, grid), name="head_pool")(x)
    x = layers.Flatten(name="head_flatten")(x)
    x = layers.Dense(recipe.dense_units, activation="relu", name="head_dense")(x)
    x = layers.Dropout(recipe.dropout, name="head_dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="maskwatch_mobilenetv2")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=recipe.lr),
        loss=keras.losses.BinaryCrossentropy() if n_classes == 2 else keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return model


def make_augmenter(recipe):
    """A function ``batch -> batch`` applying the recipe's augmentation (training only)."""
    tf, keras = import_keras()
    from keras import layers

    flip = {(True, True): "horizontal_and_vertical", (True, False): "horizontal", (False, True): "vertical"}
    steps = []
    if recipe.hflip or recipe.vflip:
        steps.append(layers.RandomFlip(flip[(recipe.hflip, recipe.vflip)], seed=recipe.seed))
    if recipe.rotation_deg:
        steps.append(layers.RandomRotation(recipe.rotation_deg / 360.0, fill_mode="nearest", seed=recipe.seed))
    if recipe.zoom:
        steps.append(layers.RandomZoom(recipe.zoom, fill_mode="nearest", seed=recipe.seed))
    if recipe.brightness:
        steps.append(layers.RandomBrightness(recipe.brightness, value_range=(0, 255), seed=recipe.seed))
    if recipe.contrast:
        steps.append(layers.RandomContrast(recipe.contrast, seed=recipe.seed))
    geometric = keras.Sequential(steps, name="augment") if steps else None
    size = recipe.input_size

    def augment(x, y):
        if geometric is not None:
            x = geometric(x, training=True)
        if recipe.lowres_prob > 0:
            # Faces in crowds are 15-40 px wide: shrink some crops and scale them back up (also blurs).
            side = tf.random.uniform([], recipe.lowres_min, recipe.lowres_max + 1, dtype=tf.int32)
            small = tf.image.resize(x, tf.stack([side, side]), method="area")
            blurry = tf.image.resize(small, [size, size], method="bilinear")
            pick = tf.random.uniform([tf.shape(x)[0], 1, 1, 1]) < recipe.lowres_prob
            x = tf.where(pick, blurry, x)
        return tf.clip_by_value(x, 0.0, 255.0), y

    return augment


def check_base_weights(base_weights: str | Path | None) -> None:
    """Load the MobileNetV2 ImageNet weights once, before any other work, or raise a clear error.

    ``maskwatch train`` calls this first: a wrong file (another network's ``.h5``, a PyTorch
    ``.pth``) or a download that cannot happen offline must stop the run before the dataset audit,
    and before a run folder is created.
    """
    import sys

    from maskwatch.errors import ModelError

    if base_weights is not None:
        path = Path(base_weights)
        if not path.is_file():
            raise ModelError(f"{path}: weights file not found; expected MobileNetV2 *_no_top.weights.h5.")
        if not path.name.endswith(".h5"):
            raise ModelError(
                f"{path}: not a Keras weights file (.h5); expected the MobileNetV2 ImageNet weights for Keras "
                "(e.g. mobilenet_v2_1.0_224_from_torchvision_no_top.weights.h5). PyTorch .pth files cannot be used."
            )
    _, keras = import_keras()
    weights = str(base_weights) if base_weights else "imagenet"
    try:
        # Keras prints its download note on stdout, which is for results: send it to stderr.
        with _quiet_native_stderr(), contextlib.redirect_stdout(sys.stderr):
            keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, include_top=False, weights=weights)
    except Exception as exc:  # noqa: BLE001 - Keras raises ValueError, OSError, URL errors...
        reason = " ".join(str(exc).split())[:200]
        if base_weights is None:
            raise ModelError(
                "could not get the MobileNetV2 ImageNet weights from the internet "
                f"({type(exc).__name__}: {reason}). Offline, pass a local copy with --weights "
                "(mobilenet_v2_1.0_224_..._no_top.weights.h5)."
            ) from exc
        raise ModelError(
            f"{base_weights}: not MobileNetV2 (alpha 1.0, 224, no top) weights for Keras ({reason}); "
            "pass the MobileNetV2 ImageNet *_no_top.weights.h5 file."
        ) from exc
    finally:
        keras.backend.clear_session()
