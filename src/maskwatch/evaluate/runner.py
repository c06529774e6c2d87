"""``maskwatch evaluate MODEL DATA``: pick the right evaluation for DATA and write a report folder."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskwatch.defaults import MIRROR_PHOTOS
from maskwatch.errors import DataError
from maskwatch.evaluate.classification import classification_metrics, format_metrics, save_gallery, write_report
from maskwatch.runs import new_run_dir
from maskwatch.wording import count

log = logging.getLogger(__name__)


@dataclass
class EvaluationOutput:
    kind: str  # "crops" | "scenes"
    metrics: dict
    run_dir: Path
    text: str


def _plain(value):
    """``value`` with NaN as ``None`` and NumPy scalars as Python numbers, so that it is strict JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def metrics_json(metrics: dict) -> str:
    """An evaluation's metrics as strict JSON (``NaN``, e.g. AP of a class without faces, as ``null``)."""
    return json.dumps(_plain(metrics), indent=2, default=str)


def is_crop_dataset(data: Path, classes) -> bool:
    return any((data / c).is_dir() for c in classes)


def evaluate_crops(model_path, data: Path, split_file: Path | None, run_dir: Path, detector: str = "auto",
                   detector_model=None, progress: bool = True, mirror: bool = MIRROR_PHOTOS) -> EvaluationOutput:
    """Classify every image of a crop dataset (or those in ``split_file``) and score the model.

    Images go through the same face cropping the model was trained with (its metadata says), and are
    classified as photos are (``mirror``: with their mirror image, see
    :meth:`~maskwatch.classify.model.MaskClassifier.predict_batch`).
    """
    from maskwatch.classify.model import MaskClassifier
    from maskwatch.data import face_cropper, list_class_files, load_crops, load_split_file
    from maskwatch.io.images import decode_image

    clf = MaskClassifier(model_path)
    classes = clf.classes
    if split_file is not None:
        if not Path(split_file).is_file():
            raise DataError(f"{split_file}: split file not found; expected a run's splits/test.txt.")
        items = load_split_file(split_file, data)
        unknown = {lab for lab, _ in items} - set(classes)
        if unknown:
            raise DataError(f"{split_file}: labels {sorted(unknown)} are not classes of the model {list(classes)}")
    else:
        files = list_class_files(data, classes)
        items = [(c, p) for c in classes for p in files[c]]
    recipe = clf.info.metadata.get("recipe", {})
    cropper = face_cropper(bool(recipe.get("crop_faces", False)), float(recipe.get("margin", 0.15)),
                           detector, detector_model)
    skipped: list[str] = []
    x, y, n_cropped, kept = load_crops(items, classes, clf.input_size, cropper, "evaluate", progress,
                                       on_error=lambda path, exc: skipped.append(str(exc)))
    if not kept:
        raise DataError(f"{data}: none of the {len(items)} images could be read.")
    good = [items[i] for i in kept]
    probs = np.concatenate([clf.predict_batch(x[i:i + 64].astype(np.float32), mirror=mirror)
                            for i in range(0, len(x), 64)])
    metrics = classification_metrics(y, probs, classes)
    metrics["faces_cropped"] = n_cropped
    metrics["skipped"] = skipped
    write_report(metrics, run_dir, f"{Path(model_path).name if model_path else 'default model'} on {Path(data).name}")
    wrong = np.nonzero(probs.argmax(1) != y)[0]
    save_gallery([(decode_image(good[i][1]), f"{classes[y[i]]}->{classes[int(probs[i].argmax())]}")
                  for i in wrong[:60]], run_dir / "misclassified.jpg")
    (run_dir / "misclassified.txt").write_text(
        "".join(f"{good[i][1]}\ttrue={classes[y[i]]}\tpred={classes[int(probs[i].argmax())]}\t"
                f"p={probs[i].max():.3f}\n" for i in wrong))
    text = format_metrics(metrics)
    if skipped:
        text += f"\nskipped {count(len(skipped), 'unreadable image')} (listed in metrics.json)"
    return EvaluationOutput("crops", metrics, run_dir, text)


def is_crop_split(split_file: Path) -> bool:
    """A crop split file has ``label<TAB>path`` lines; a scene split file one image path a line."""
    for line in Path(split_file).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return "\t" in line
    return False


def evaluate_path(model_path, data, split_file=None, project="runs", name="exp", detector: str = "auto",
                  detector_model=None, settings=None, progress: bool = True,
                  score_floor: float | None = None, mirror: bool = MIRROR_PHOTOS) -> EvaluationOutput:
    """Evaluate ``model_path`` on ``data``: crop dataset (class folders) or scene dataset (YOLO / VOC).

    ``split_file`` limits either to a list (crops: ``label<TAB>path`` lines; scenes: one image path a
    line, relative to ``data``). Scenes are ranked from face score ``score_floor`` (default
    :data:`~maskwatch.evaluate.detection.DEFAULT_SCORE_FLOOR`); the face threshold of ``settings`` is the
    operating point. ``mirror``: photo faces are classified with their mirror image (the engine's default).
    """
    from maskwatch.classify.model import MaskClassifier

    data = Path(data)
    if not data.exists():
        raise DataError(f"{data}: no such folder; expected class folders (crops) or a YOLO / Pascal VOC dataset.")
    classes = MaskClassifier(model_path).classes  # fail on a bad model before any work
    if split_file is not None and not Path(split_file).is_file():
        raise DataError(
            f"{split_file}: split file not found; expected a list of files (e.g. docs/scenes-kaggle/val.txt).")
    if is_crop_dataset(data, classes) or (split_file is not None and is_crop_split(split_file)):
        run_dir = new_run_dir(project, "evaluate", name)
        return evaluate_crops(model_path, data, split_file, run_dir, detector, detector_model, progress, mirror)
    from maskwatch.engine import MaskDetector
    from maskwatch.evaluate.detection import DEFAULT_SCORE_FLOOR, evaluate_scenes, format_scene_metrics
    from maskwatch.evaluate.scenes import load_scene_dataset, read_scene_list, select_scenes

    images = load_scene_dataset(data)
    if split_file is not None:
        images = select_scenes(images, data, read_scene_list(split_file), str(split_file))
    engine = MaskDetector(model_path, detector=detector, detector_model=detector_model, settings=settings,
                          mirror_photos=mirror)
    run_dir = new_run_dir(project, "evaluate", name)
    metrics = evaluate_scenes(engine, images, progress=progress,
                              score_floor=DEFAULT_SCORE_FLOOR if score_floor is None else score_floor)
    metrics["split_file"] = None if split_file is None else str(split_file)
    (run_dir / "metrics.json").write_text(metrics_json(metrics))
    return EvaluationOutput("scenes", metrics, run_dir, format_scene_metrics(metrics))
