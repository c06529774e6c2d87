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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskwatch import __version__
from maskwatch.errors import DataError, MaskwatchError
from maskwatch.evaluate.classification import classification_metrics, save_gallery, write_report
from maskwatch.io.images import decode_image
from maskwatch.data import face_cropper, load_crops
from maskwatch.runs import new_run_dir
from maskwatch.train.audit import DEFAULT_CLASSES, audit_dataset, list_class_files
from maskwatch.train.recipe import Recipe
from maskwatch.train.split import SPLITS, load_split_file, save_split, split_samples

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
) -> TrainResult:
    """Train a mask classifier on ``data_dir/<class>/`` and export it; see the module docstring."""
    t0 = time.perf_counter()
    classes = DEFAULT_CLASSES
    from maskwatch.train.keras_backend import check_base_weights

    if not resume:
        list_class_files(Path(data_dir), classes)  # the data's layout first: the cheapest check
    check_base_weights(base_weights)  # then the weights, before the audit and before any run folder exists
    if resume:
        run_dir = Path(resume)
        if not (run_dir / "recipe.json").is_file():
            raise DataError(f"{run_dir}: not a maskwatch training run (no recipe.json); cannot resume it.")
        saved = json.loads((run_dir / "recipe.json").read_text())
        saved["split"] = tuple(saved["split"])
        recipe = Recipe(**saved)
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
        (run_dir / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2))
        audit_summary = report.summary()
    items = {sp: load_split_file(run_dir / "splits" / f"{sp}.txt", Path(data_dir)) for sp in SPLITS}
    for sp in ("train", "val"):
        counts = Counter(label for label, _ in items[sp])
        missing = [c for c in classes if counts[c] == 0]
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

    def dataset(sp: str, training: bool):
        x, y = arrays[sp]
        onehot = np.eye(len(classes), dtype=np.float32)[y]
        ds = tf.data.Dataset.from_tensor_slices((x, onehot))
        if training:
            ds = ds.shuffle(len(x), seed=recipe.seed, reshuffle_each_iteration=True)
        ds = ds.batch(recipe.batch_size).map(lambda a, b: (tf.cast(a, tf.float32), b))
        if training:
            ds = ds.map(make_augmenter(recipe), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(2)

    model = build_model(recipe, base_weights)
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
    model.fit(dataset("train", True), validation_data=dataset("val", False), epochs=recipe.epochs,
              callbacks=callbacks, verbose=verbose)
    fit_s = time.perf_counter() - t_fit
    if best.exists():
        model.load_weights(str(best))
    _plot_curves(run_dir / "history.csv", run_dir / "curves.png")

    test_metrics: dict[str, Any] = {}
    if "test" in arrays:
        x, y = arrays["test"]
        probs = model.predict(x.astype(np.float32), batch_size=64, verbose=0)
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
        "architecture": "MobileNetV2 alpha 1.0 (ImageNet, frozen) + AveragePool7 + Dense128 + Dropout + Dense2 softmax",
        "recipe": recipe.to_dict(),
        "data": {
            "source": str(audit_summary.get("data_dir")),
            "split": {sp: dict(Counter(label for label, _ in items[sp])) for sp in SPLITS},
            "faces_cropped": {sp: cropped.get(sp, 0) for sp in SPLITS},
            "exact_duplicates_dropped": audit_summary.get("n_exact_duplicate_files"),
            "near_duplicate_groups": audit_summary.get("n_near_duplicate_groups"),
            "identity_groups": audit_summary.get("identity_groups"),
            "unreadable": len(audit_summary.get("unreadable", [])),
        },
        "metrics": {"test": test_metrics},
        "training_seconds": round(fit_s, 1),
    }
    model_path = export_onnx(model, run_dir / "model.onnx", metadata)
    _check_export(model, model_path, arrays.get("test", arrays["val"])[0][:8])
    seconds = time.perf_counter() - t0
    log.info("model: %s (%.1f MB), %.0f s in all", model_path, model_path.stat().st_size / 1e6, seconds)
    return TrainResult(run_dir, model_path, test_metrics, seconds)


def _check_export(model, model_path: Path, x: np.ndarray) -> None:
    """The ONNX file must give the Keras model's probabilities."""
    from maskwatch.classify.model import MaskClassifier

    onnx_probs = MaskClassifier(model_path).predict_batch(x.astype(np.float32))
    keras_probs = model.predict(x.astype(np.float32), verbose=0)
    diff = float(np.abs(onnx_probs - keras_probs).max())
    if diff > 1e-3:
        raise MaskwatchError(f"exported ONNX model differs from Keras by {diff:.2e}; export is broken")
    log.info("ONNX export matches Keras (max difference %.1e)", diff)
