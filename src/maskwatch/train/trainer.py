"""``maskwatch train``: audit, split, train, evaluate on the held-out test split, export.

A run writes everything into its own folder (``runs/train/exp``, ``exp2``...): ``audit.json`` /
``audit.txt``, ``splits/{train,val,test}.txt``, ``recipe.json``, ``history.csv``, ``curves.png``,
``best.weights.h5``, ``test/`` (metrics, confusion matrix, misclassified gallery) and ``model.onnx``.
An interrupted run continues with ``resume=run_dir``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskwatch._version import __version__
from maskwatch.data import face_cropper, list_class_files, load_crops, load_split_file
from maskwatch.errors import DataError, MaskwatchError
from maskwatch.evaluate.classification import classification_metrics, save_gallery, write_report
from maskwatch.io.images import decode_image
from maskwatch.runs import new_run_dir
from maskwatch.train.audit import DEFAULT_CLASSES, audit_dataset
from maskwatch.train.recipe import Recipe
from maskwatch.train.split import SPLITS, save_split, split_samples

#: Classes a scene dataset may add to a crop dataset's two (in this output order).
EXTRA_CLASSES = ("mask_incorrect",)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    test_metrics: dict[str, Any]
    seconds: float


def _plot_curves(history_csv: Path, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is part of the train extra
        return
    rows = [line.split(",") for line in history_csv.read_text().splitlines()]
    head, data = rows[0], np.array(rows[1:], dtype=float)
    if len(data) == 0:
        return
    col = {k: i for i, k in enumerate(head)}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for prefix in ("", "val_"):
            if prefix + key in col:
                ax.plot(data[:, col["epoch"]] + 1, data[:, col[prefix + key]], marker="o",
                        label=("validation " if prefix else "train ") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _as_list(value) -> list[str]:
    """Scene datasets / split folders as a list: one path, a list, or a recipe's ``;``-joined string."""
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [v for v in str(value).split(";") if v]
    return [str(v) for v in value]


def _joined(value) -> str:
    """The recipe's form of :func:`_as_list`: paths joined by ``;`` (one path stays as it was)."""
    return ";".join(_as_list(value))


def train(
    data_dir: str | Path,
    recipe: Recipe,
    runs_root: str | Path = "runs",
    name: str = "exp",
    base_weights: str | Path | None = None,
    detector_backend: str = "auto",
    detector_model: str | Path | None = None,
    resume: str | Path | None = None,
    limit_per_class: int | None = None,
    progress: bool = True,
    scenes: str | Path | Sequence[str | Path] | None = None,
    scene_splits: str | Path | Sequence[str | Path] | None = None,
) -> TrainResult:
    """Train a mask classifier on ``data_dir/<class>/`` and export it; see the module docstring.

    With ``scenes`` (a scene dataset, YOLO or Pascal VOC) and ``scene_splits`` (a folder with its
    ``train.txt`` / ``val.txt`` image lists), every annotated face of the listed train / val photos is
    added as a crop to the training / validation data; a class those faces have beyond
    ``with_mask`` / ``without_mask`` (``mask_incorrect``) becomes a third output. Scene test photos
    are never read. ``scenes`` and ``scene_splits`` may also be equally long lists (several scene
    datasets, each with its own lists). Classes are then weighted by ``sqrt(largest class / class)`` in the loss, and a
    temperature and an abstention threshold are fitted on the validation crops (stored in the model).
    """
    t0 = time.perf_counter()
    classes = DEFAULT_CLASSES
    from maskwatch.train.keras_backend import check_base_weights

    if len(_as_list(scenes)) != len(_as_list(scene_splits)):  # before any work, as every argument check
        raise DataError(f"{len(_as_list(scenes))} scene datasets but {len(_as_list(scene_splits))} split folders; "
                        "give one --scene-splits per --scenes, in the same order.")
    if not resume:
        list_class_files(Path(data_dir), classes)  # the data's layout first: the cheapest check
    if int(recipe.extra.get("synthetic_incorrect", 0) or 0) > 0:
        from maskwatch.train.synth import load_templates

        load_templates()  # the mask templates, as cheap to check
    check_base_weights(base_weights)  # then the weights, before the audit and before any run folder exists
    if resume:
        run_dir = Path(resume)
        if not (run_dir / "recipe.json").is_file():
            raise DataError(f"{run_dir}: not a maskwatch training run (no recipe.json); cannot resume it.")
        saved = json.loads((run_dir / "recipe.json").read_text())
        saved["split"] = tuple(saved["split"])
        recipe = Recipe(**saved)
        scenes = recipe.extra.get("scenes", scenes)
        scene_splits = recipe.extra.get("scene_splits", scene_splits)
        data_dir = json.loads((run_dir / "audit.json").read_text())["data_dir"]
        audit_summary = json.loads((run_dir / "audit.json").read_text())
        log.info("resuming %s", run_dir)
    else:
        report = audit_dataset(data_dir, classes, progress=progress)
        run_dir = new_run_dir(runs_root, "train", name)
        report.save(run_dir)
        log.info("%s", report.text())
        samples = report.samples
        if limit_per_class:
            rng = np.random.default_rng(recipe.seed)
            picked = []
            for c in classes:
                members = [s for s in samples if s.label == c]
                idx = rng.permutation(len(members))[:limit_per_class]
                picked += [members[i] for i in sorted(idx)]
            samples = picked
        split = split_samples(samples, recipe.split, recipe.seed)
        save_split(split, run_dir / "splits", Path(data_dir))
        if scenes is not None:
            if scene_splits is None:
                raise DataError("scene crops need the scene dataset's split lists (--scene-splits DIR with "
                                "train.txt and val.txt); the test photos must stay unseen.")
            recipe = recipe.with_overrides(extra={**recipe.extra, "scenes": _joined(scenes),
                                                  "scene_splits": _joined(scene_splits)})
        (run_dir / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2))
        audit_summary = report.summary()
    scene_sets: dict[str, list] = {}
    judges_incorrect: set[str] = set()  # photos of scene datasets that label mask_incorrect at all
    val_judged: np.ndarray | None = None
    if scenes is not None:
        from maskwatch.train.scene_crops import scene_parts

        for root, lists in zip(_as_list(scenes), _as_list(scene_splits), strict=True):
            parts = scene_parts(root, lists, ("train", "val"))
            labels_incorrect = any("mask_incorrect" in im.labels for ims in parts.values() for im in ims)
            for part, ims in parts.items():
                scene_sets.setdefault(part, []).extend(ims)
                if labels_incorrect:
                    judges_incorrect.update(str(im.path) for im in ims)
        present = {lab for ims in scene_sets.values() for im in ims for lab in im.labels}
        classes = DEFAULT_CLASSES + tuple(c for c in EXTRA_CLASSES if c in present)
    if int(recipe.extra.get("synthetic_incorrect", 0) or 0) > 0 and "mask_incorrect" not in classes:
        classes = classes + ("mask_incorrect",)
    items = {sp: load_split_file(run_dir / "splits" / f"{sp}.txt", Path(data_dir)) for sp in SPLITS}
    for sp in ("train", "val"):
        counts = Counter(label for label, _ in items[sp])
        missing = [c for c in DEFAULT_CLASSES if counts[c] == 0]
        if missing:
            raise DataError(f"the {sp} split has no images of {missing}; add images to those classes.")
    log.info("split: %s", {sp: len(v) for sp, v in items.items()})
    log.info("run folder: %s", run_dir)

    from maskwatch.train.keras_backend import build_model, import_keras, make_augmenter

    tf, keras = import_keras()
    keras.utils.set_random_seed(recipe.seed)
    cropper = face_cropper(recipe.crop_faces, recipe.margin, detector_backend, detector_model)
    arrays = {}
    cropped = {}
    for sp in SPLITS:
        if items[sp]:
            x, y, n, _ = load_crops(items[sp], classes, recipe.input_size, cropper, f"load {sp}", progress)
            arrays[sp], cropped[sp] = (x, y), n
    if recipe.crop_faces:
        log.info("faces cropped by the detector: %s", {sp: f"{cropped[sp]}/{len(items[sp])}" for sp in cropped})
    n_crop_rows = {sp: len(arrays[sp][0]) for sp in arrays}
    scene_counts: dict[str, dict[str, int]] = {}
    if scene_sets:
        from maskwatch.train.scene_crops import load_scene_crops

        for sp, ims in scene_sets.items():
            xs, ys, _, where = load_scene_crops(ims, classes, recipe.input_size, recipe.margin,
                                                int(recipe.extra.get("min_scene_face", 8)), f"scene crops {sp}",
                                                progress)
            if sp == "val":
                val_judged = np.array([w[0] in judges_incorrect for w in where], bool)
            scene_counts[sp] = {c: int((ys == k).sum()) for k, c in enumerate(classes)}
            x, y = arrays[sp]
            arrays[sp] = (np.concatenate([x, xs]), np.concatenate([y, ys]))
        log.info("scene face crops added: %s", scene_counts)
    synthetic: dict[str, Any] = {}
    n_synth = int(recipe.extra.get("synthetic_incorrect", 0) or 0)
    if n_synth > 0:
        synthetic = _add_synthetic_incorrect(arrays, items["train"], scene_sets.get("train", []), classes, recipe,
                                             cropper, n_synth)
    train_counts = np.bincount(arrays["train"][1], minlength=len(classes)).astype(np.float64)
    if scene_sets:
        class_weight = np.sqrt(train_counts.max() / np.maximum(train_counts, 1.0))
    else:
        class_weight = np.ones(len(classes))
    log.info("class weights: %s", dict(zip(classes, np.round(class_weight, 3).tolist())))

    def dataset(sp: str, training: bool):
        x, y = arrays[sp]
        onehot = np.eye(len(classes), dtype=np.float32)[y]
        if training and scene_sets:
            ds = tf.data.Dataset.from_tensor_slices((x, onehot, class_weight[y].astype(np.float32)))
            ds = ds.shuffle(len(x), seed=recipe.seed, reshuffle_each_iteration=True)
            ds = ds.batch(recipe.batch_size).map(lambda a, b, w: (tf.cast(a, tf.float32), b, w))
            aug = make_augmenter(recipe)
            ds = ds.map(lambda a, b, w: (*aug(a, b), w), num_parallel_calls=tf.data.AUTOTUNE)
            return ds.prefetch(2)
        ds = tf.data.Dataset.from_tensor_slices((x, onehot))
        if training:
            ds = ds.shuffle(len(x), seed=recipe.seed, reshuffle_each_iteration=True)
        ds = ds.batch(recipe.batch_size).map(lambda a, b: (tf.cast(a, tf.float32), b))
        if training:
            ds = ds.map(make_augmenter(recipe), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(2)

    model = build_model(recipe, base_weights, n_classes=len(classes))
    best = run_dir / "best.weights.h5"
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.ModelCheckpoint(str(best), monitor="val_loss", save_best_only=True,
                                        save_weights_only=True),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=bool(resume)),
    ]
    import sys

    verbose = (1 if sys.stderr.isatty() else 2) if progress else 0
    t_fit = time.perf_counter()
    views = int(recipe.extra.get("feature_views", 0) or 0)
    if views > 0:
        _fit_on_cached_features(model, arrays, classes, class_weight, recipe, views, run_dir, tf, keras, verbose)
    else:
        model.fit(dataset("train", True), validation_data=dataset("val", False), epochs=recipe.epochs,
                  callbacks=callbacks, verbose=verbose)
    fit_s = time.perf_counter() - t_fit
    if best.exists():
        model.load_weights(str(best))
    _plot_curves(run_dir / "history.csv", run_dir / "curves.png")

    calibration: dict[str, Any] = {}
    real_val: dict[str, Any] = {}
    if scene_sets:
        calibration, real_val = _calibrate(model, arrays["val"], n_crop_rows["val"], classes, recipe, run_dir,
                                           val_judged)

    test_metrics: dict[str, Any] = {}
    if "test" in arrays:
        x, y = arrays["test"]
        probs = model.predict(x.astype(np.float32), batch_size=64, verbose=0)
        if calibration:
            from maskwatch.classify.calibration import calibration_from_metadata

            probs = calibration_from_metadata({"classes": list(classes), "calibration": calibration}).apply(probs)
        test_metrics = classification_metrics(y, probs, classes)
        write_report(test_metrics, run_dir / "test", "test split")
        wrong = np.nonzero(probs.argmax(1) != y)[0]
        gallery = [(decode_image(items["test"][i][1]),
                    f"{classes[y[i]]}->{classes[int(probs[i].argmax())]} {probs[i].max():.2f}") for i in wrong[:60]]
        save_gallery(gallery, run_dir / "test" / "misclassified.jpg")
        (run_dir / "test" / "misclassified.txt").write_text(
            "".join(f"{items['test'][i][1]}\ttrue={classes[y[i]]}\tpred={classes[int(probs[i].argmax())]}\n"
                    for i in wrong))
        log.info("test: accuracy %.4f, loss %.4f, %d/%d wrong", test_metrics["accuracy"],
                 test_metrics["loss"], test_metrics["errors"], test_metrics["n"])

    from maskwatch.train.export import export_onnx

    metadata = {
        "format": "maskwatch-classifier/1",
        "name": f"maskwatch-mobilenetv2-{recipe.name}",
        "maskwatch_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "classes": list(classes),
        "input": {"size": recipe.input_size, "layout": "NHWC", "color": "RGB", "dtype": "float32",
                  "range": [0, 255]},
        "preprocessing": {
            "crop": f"square around the face box, margin {recipe.margin} of the box size per side",
            "resize": "INTER_AREA when shrinking, INTER_LINEAR when enlarging",
            "scaling": "inside the model: x / 127.5 - 1 (MobileNetV2)",
            "margin": recipe.margin,
        },
        "architecture": f"MobileNetV2 alpha 1.0 (ImageNet, frozen) at {recipe.input_size} px + global average pool "
                        f"({model.get_layer('head_pool').pool_size[0]}x{model.get_layer('head_pool').pool_size[0]}) + "
                        f"Dense{recipe.dense_units} + "
                        f"Dropout + Dense{len(classes)} softmax",
        "recipe": recipe.to_dict(),
        "data": {
            "source": str(audit_summary.get("data_dir")),
            "split": {sp: dict(Counter(label for label, _ in items[sp])) for sp in SPLITS},
            "faces_cropped": {sp: cropped.get(sp, 0) for sp in SPLITS},
            "exact_duplicates_dropped": audit_summary.get("n_exact_duplicate_files"),
            "near_duplicate_groups": audit_summary.get("n_near_duplicate_groups"),
            "identity_groups": audit_summary.get("identity_groups"),
            "unreadable": len(audit_summary.get("unreadable", [])),
            **({"synthetic": synthetic} if synthetic else {}),
            **({"scene_crops": {"source": _joined(scenes), "split_lists": _joined(scene_splits), **scene_counts},
                "class_weights": dict(zip(classes, np.round(class_weight, 4).tolist()))} if scene_sets else {}),
        },
        "metrics": {"test": test_metrics, **({"val_real_faces": real_val} if real_val else {})},
        **({"calibration": calibration} if calibration else {}),
        "training_seconds": round(fit_s, 1),
    }
    model_path = export_onnx(model, run_dir / "model.onnx", metadata)
    _check_export(model, model_path, arrays.get("test", arrays["val"])[0][:8])
    seconds = time.perf_counter() - t0
    log.info("model: %s (%.1f MB), %.0f s in all", model_path, model_path.stat().st_size / 1e6, seconds)
    return TrainResult(run_dir, model_path, test_metrics, seconds)


def _add_synthetic_incorrect(arrays: dict, train_items: list, scene_train: list, classes: Sequence[str], recipe,
                             cropper, n: int) -> dict[str, Any]:
    """Add up to ``n`` synthetic ``mask_incorrect`` crops to the training arrays (never to validation
    or test): a mask template worn under the nose or on the chin of the *training* split's unmasked
    faces (see :mod:`maskwatch.train.synth`), half from the scene datasets' real faces, the rest from
    the crop dataset; each cut as its real source is cut. Returns the model card's ``synthetic`` entry."""
    from maskwatch.preprocess import crop_face, to_model_input
    from maskwatch.train.synth import LandmarkFinder, load_templates, synthesize_incorrect, templates_dir

    t0 = time.perf_counter()
    templates = load_templates()
    finder = LandmarkFinder()
    rng = np.random.default_rng(recipe.seed + 17)
    min_face = int(recipe.extra.get("min_scene_face", 8))
    scene_src = [(im.path, box) for im in scene_train for box, lab in zip(im.boxes, im.labels)
                 if lab == "without_mask" and min(box[2] - box[0], box[3] - box[1]) >= min_face]
    crop_src = [(path, None) for label, path in train_items if label == "without_mask"]
    made_scene, sum_scene = synthesize_incorrect(scene_src, n // 2 if crop_src else n, templates, finder, rng,
                                                 lambda img, box: crop_face(img, box, recipe.margin))
    made_crop, sum_crop = synthesize_incorrect(crop_src, n - len(made_scene), templates, finder, rng,
                                               lambda img, box: cropper(img)[0])
    crops = made_scene + made_crop
    if not crops:
        log.warning("no synthetic mask_incorrect face could be made (no landmarks found)")
        return {}
    xs = np.concatenate([to_model_input(crops[i:i + 64], recipe.input_size).astype(np.uint8)
                         for i in range(0, len(crops), 64)])
    ys = np.full(len(xs), list(classes).index("mask_incorrect"), np.int64)
    x, y = arrays["train"]
    arrays["train"] = (np.concatenate([x, xs]), np.concatenate([y, ys]))
    log.info("synthetic mask_incorrect crops: %d from scene faces, %d from the crop dataset (%.0f s)",
             len(made_scene), len(made_crop), time.perf_counter() - t0)
    return {
        "mask_incorrect": len(crops),
        "used_for": "training only (never validation, calibration or test)",
        "method": "MaskTheFace templates (masks.cfg anchors) warped onto YuNet landmarks of real unmasked training "
                  "faces: top edge between nose tip and mouth (under the nose) or below the mouth (on the chin)",
        "templates": str(templates_dir()),
        "from_scene_faces": sum_scene,
        "from_crop_dataset": sum_crop,
    }


#: MobileNetV2's last block and its final 1x1 convolution: what ``finetune_epochs`` trains. The layers
#: after this one form a plain chain (no skip connection), so they can run on cached features.
FINETUNE_FROM = "block_15_add"


def _fit_on_cached_features(model, arrays, classes, class_weight, recipe, views: int, run_dir: Path, tf, keras,
                            verbose: int) -> None:
    """Train only the head on frozen-base features computed once (``views`` per training image: the
    crop itself, then ``views - 1`` augmented draws; one epoch reads one view), instead of running
    the frozen MobileNetV2 on every image in every epoch. The head's layers are the model's own, so
    the model is trained in place; the best epoch by validation loss is kept. Same architecture and
    loss; the augmentation is limited to the cached draws.

    With ``recipe.extra["finetune_epochs"]`` = N > 0, the features are cached one block earlier (the
    output of ``block_15``), and after the head a second stage trains MobileNetV2's last block
    (``block_16``) and its final 1x1 convolution together with the head for N epochs at a tenth of
    the learning rate (batch-norm statistics stay frozen). Its weights are kept only if it lowers the
    best validation loss of the head stage.
    """
    from maskwatch.train.keras_backend import make_augmenter

    ft_epochs = int(recipe.extra.get("finetune_epochs", 0) or 0)
    head_in = keras.Input(model.get_layer("head_flatten").output.shape[1:], name="features")
    h = model.get_layer("head_dense")(head_in)
    h = model.get_layer("head_dropout")(h)
    head = keras.Model(head_in, model.get_layer("probs")(h))
    head.compile(optimizer=keras.optimizers.Adam(learning_rate=recipe.lr), loss=model.loss, metrics=["accuracy"])
    if ft_epochs > 0:
        base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        names = [layer.name for layer in base.layers]
        chain = base.layers[names.index(FINETUNE_FROM) + 1:]
        cut = keras.Model(base.inputs, base.get_layer(FINETUNE_FROM).output)
        image = keras.Input(model.inputs[0].shape[1:])
        features = keras.Model(image, cut(model.get_layer("mobilenetv2_preprocess")(image)))
        top_in = keras.Input(features.output.shape[1:], name="block_15")
        t = top_in
        for layer in chain:
            t = layer(t, training=False) if isinstance(layer, keras.layers.BatchNormalization) else layer(t)
        flat = model.get_layer("head_flatten")(model.get_layer("head_pool")(t))
        to_flat = keras.Model(top_in, flat)
        top = keras.Model(top_in, model.get_layer("probs")(model.get_layer("head_dropout")(
            model.get_layer("head_dense")(flat))))
    else:
        features = keras.Model(model.inputs, model.get_layer("head_flatten").output)
    aug = make_augmenter(recipe)

    def extract(x: np.ndarray, augment: bool) -> np.ndarray:
        ds = tf.data.Dataset.from_tensor_slices(x).batch(64).map(lambda a: tf.cast(a, tf.float32))
        if augment:
            ds = ds.map(lambda a: aug(a, a)[0])
        return features.predict(ds, verbose=0)

    t0 = time.perf_counter()
    xtr, ytr = arrays["train"]
    cached = [extract(xtr, v > 0) for v in range(views)]
    xv, yv = arrays["val"]
    fval = extract(xv, False)
    log.info("frozen-base features: %d view(s) of %d training crops + %d validation crops in %.0f s", views,
             len(xtr), len(xv), time.perf_counter() - t0)
    early, early_val = cached, fval
    if ft_epochs > 0:  # the head stage sees the frozen top's output, as without fine-tuning
        early = [to_flat.predict(c, batch_size=256, verbose=0) for c in cached]
        early_val = to_flat.predict(fval, batch_size=256, verbose=0)
    eye = np.eye(len(classes), dtype=np.float32)
    weights = class_weight[ytr].astype(np.float32)
    rows = ["epoch,accuracy,loss,val_accuracy,val_loss"]

    def fit_epochs(net, views_x: list, val_x: np.ndarray, first: int, count: int, best: float):
        """Fit ``net`` one epoch at a time (view ``epoch % views``) from history epoch ``first``; return
        the best validation loss and the weights that reached it (``None`` if none beat ``best``)."""
        best_weights = None
        for k in range(count):
            epoch = first + k
            hist = net.fit(views_x[epoch % views], eye[ytr], sample_weight=weights, batch_size=recipe.batch_size,
                           epochs=k + 1, initial_epoch=k, shuffle=True, validation_data=(val_x, eye[yv]),
                           verbose=verbose).history
            rows.append(f"{epoch},{hist['accuracy'][-1]},{hist['loss'][-1]},{hist['val_accuracy'][-1]},"
                        f"{hist['val_loss'][-1]}")
            if hist["val_loss"][-1] < best:
                best, best_weights = hist["val_loss"][-1], net.get_weights()
        return best, best_weights

    best, best_weights = fit_epochs(head, early, early_val, 0, recipe.epochs, float("inf"))
    if best_weights is not None:
        head.set_weights(best_weights)
    if ft_epochs > 0:
        top_start = top.get_weights()
        for layer in chain:
            layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
        top.compile(optimizer=keras.optimizers.Adam(learning_rate=recipe.lr / 10), loss=model.loss,
                    metrics=["accuracy"])
        ft_best, ft_weights = fit_epochs(top, cached, fval, recipe.epochs, ft_epochs, best)
        if ft_weights is not None:
            top.set_weights(ft_weights)
            log.info("fine-tuning MobileNetV2's last block: best validation loss %.4f (head only: %.4f); kept",
                     ft_best, best)
        else:
            top.set_weights(top_start)
            log.info("fine-tuning MobileNetV2's last block did not lower the validation loss (head only: %.4f); "
                     "the head-only weights are kept", best)
    (run_dir / "history.csv").write_text("\n".join(rows) + "\n")
    model.save_weights(str(run_dir / "best.weights.h5"))


def fit_calibration(raw: np.ndarray, y: np.ndarray, n_crop_rows: int, classes: Sequence[str], extra: dict,
                    temperature: float | None = None, judged: np.ndarray | None = None,
                    ) -> tuple[dict[str, Any], np.ndarray]:
    """The model card's ``calibration`` entry from validation softmax output ``raw`` (rows from
    ``n_crop_rows`` on are real scene faces), and the calibrated probabilities.

    Temperature on every validation crop (unless given); then, when there is a ``mask_incorrect``
    output, its log-prior shift (the best recall of real incorrect faces at which at most
    ``extra["incorrect_max_false"]`` (e.g. 0.02; default 0: no shift) of real correctly masked faces are
    called incorrect;
    ``judged``: one flag per real face, True where its dataset labels mask_incorrect at all, so that its
    with_mask faces are known to be worn correctly: only those count as false alarms);
    then the abstention threshold on the real faces (``extra["abstain_target"]``, default 97%).
    """
    from maskwatch.classify.calibration import (
        apply_class_bias,
        apply_temperature,
        choose_abstention,
        choose_class_bias,
        expected_calibration_error,
        fit_temperature,
        nll,
    )

    t = fit_temperature(raw, y) if temperature is None else float(temperature)
    cal = apply_temperature(raw, t)
    real = slice(n_crop_rows, None)
    bias_entry: dict[str, Any] = {}
    max_false = float(extra.get("incorrect_max_false", 0.0))  # off unless asked: it did not carry to test data
    if "mask_incorrect" in classes and max_false > 0:
        k, protect = list(classes).index("mask_incorrect"), list(classes).index("with_mask")
        judged_rows = np.ones(len(y) - n_crop_rows, bool) if judged is None else np.asarray(judged, bool)
        choice = choose_class_bias(cal[real][judged_rows], y[real][judged_rows], k, protect, max_false)
        if choice["bias"] > 0:
            vec = np.zeros(len(classes))
            vec[k] = choice["bias"]
            cal = apply_class_bias(cal, vec)
            bias_entry = {"class_bias": {"mask_incorrect": choice["bias"]}}
        bias_entry["class_bias_fit"] = {**choice, "fitted_on": "real validation faces of the scene datasets that "
                                                             "label mask_incorrect"}
    target = float(extra.get("abstain_target", 0.97))
    abst = choose_abstention(cal[real], y[real], target)
    calibration = {
        "temperature": t, "abstain_below": abst["threshold"], **bias_entry,
        "fitted_on": f"validation crops ({len(y)}; class bias and abstention on the {len(y) - n_crop_rows} "
                     "real scene faces)",
        "ece_before": expected_calibration_error(raw, y), "ece_after": expected_calibration_error(cal, y),
        "nll_before": nll(raw, y), "nll_after": nll(cal, y), "abstention": abst,
    }
    return calibration, cal


def _calibrate(model, val: tuple[np.ndarray, np.ndarray], n_crop_rows: int, classes, recipe, run_dir: Path,
               judged: np.ndarray | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit the temperature on every validation crop, and the abstention threshold on the real (scene)
    validation faces; returns the model's ``calibration`` entry and real-face validation metrics."""
    x, y = val
    raw = model.predict(x.astype(np.float32), batch_size=64, verbose=0)
    calibration, cal = fit_calibration(raw, y, n_crop_rows, classes, recipe.extra, judged=judged)
    real = slice(n_crop_rows, None)
    yr, pr = y[real], cal[real]
    k_with, k_without = classes.index("with_mask"), classes.index("without_mask")
    unmasked = yr == k_without
    real_val = {
        "n": int(len(yr)), "accuracy": float((pr.argmax(1) == yr).mean()) if len(yr) else None,
        "recall": {c: float((pr[yr == k].argmax(1) == k).mean()) if (yr == k).any() else None
                   for k, c in enumerate(classes)},
        "unmasked_called_with_mask_at_0.9": (
            float(((pr[unmasked].argmax(1) == k_with) & (pr[unmasked, k_with] >= 0.9)).mean())
            if unmasked.any() else None),
        "confusion": [[int(((yr == i) & (pr.argmax(1) == j)).sum()) for j in range(len(classes))]
                      for i in range(len(classes))],
    }
    (run_dir / "calibration.json").write_text(json.dumps({"calibration": calibration, "val_real_faces": real_val},
                                                         indent=2))
    t, abst = calibration["temperature"], calibration["abstention"]
    log.info("temperature %.3f: validation ECE %.4f -> %.4f; abstain below %s (real-face coverage %.3f)", t,
             calibration["ece_before"], calibration["ece_after"], abst["threshold"], abst["coverage"])
    return calibration, real_val


def _check_export(model, model_path: Path, x: np.ndarray) -> None:
    """The ONNX file must give the Keras model's probabilities (calibrated as the file says)."""
    from maskwatch.classify.model import MaskClassifier

    clf = MaskClassifier(model_path)
    onnx_probs = clf.predict_batch(x.astype(np.float32))
    keras_probs = clf.calibration.apply(model.predict(x.astype(np.float32), verbose=0))
    diff = float(np.abs(onnx_probs - keras_probs).max())
    if diff > 1e-3:
        raise MaskwatchError(f"exported ONNX model differs from Keras by {diff:.2e}; export is broken")
    log.info("ONNX export matches Keras (max difference %.1e)", diff)
