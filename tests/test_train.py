"""Training end to end through the CLI on a tiny real subset (1 epoch), then evaluating the result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_one_line_error, needs_shared, run_cli

pytest.importorskip("keras", reason="training needs the [train] extra")


@needs_shared
@pytest.mark.slow
def test_train_smoke_then_evaluate(shared, tmp_path):
    weights = shared / "weights" / "mobilenet_v2" / "mobilenet_v2_1.0_224_from_torchvision_no_top.weights.h5"
    runs = tmp_path / "my runs"
    proc = run_cli("train", str(shared / "data" / "mask-crops"), "--epochs", "1", "--limit-per-class", "24",
                   "--weights", str(weights), "--project", str(runs), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    run = runs / "train" / "exp"
    for name in ("audit.json", "audit.txt", "recipe.json", "history.csv", "curves.png", "model.onnx",
                 "splits/train.txt", "splits/val.txt", "splits/test.txt", "test/confusion_matrix.png",
                 "test/metrics.json"):
        assert (run / name).exists(), name
    audit = json.loads((run / "audit.json").read_text())
    assert audit["n_exact_duplicate_files"] > 0 and audit["identity_groups"] > 0
    assert "accuracy=" in proc.stdout and str(run / "model.onnx") in proc.stdout

    info = run_cli("models", "info", str(run / "model.onnx"))
    card = json.loads(info.stdout)
    assert card["classes"] == ["with_mask", "without_mask"]
    assert card["input"]["size"] == 224 and card["recipe"]["epochs"] == 1
    assert card["metrics"]["test"]["n"] > 0

    # the training run's test report classifies one crop per image: compare like with like
    ev = run_cli("evaluate", str(run / "model.onnx"), str(shared / "data" / "mask-crops"),
                 "--split-file", str(run / "splits" / "test.txt"), "--project", str(runs), "--no-mirror")
    assert ev.returncode == 0, ev.stderr
    metrics = json.loads((runs / "evaluate" / "exp" / "metrics.json").read_text())
    assert metrics["n"] == card["metrics"]["test"]["n"]
    assert metrics["accuracy"] == pytest.approx(card["metrics"]["test"]["accuracy"], abs=0.02)
    assert (runs / "evaluate" / "exp" / "confusion_matrix.png").is_file()


def test_train_on_bad_data_dirs(tmp_path):
    assert_one_line_error(run_cli("train", str(tmp_path / "nothing")), "no such folder")
    (tmp_path / "with_mask").mkdir()
    assert_one_line_error(run_cli("train", str(tmp_path)), "has no images")
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "with_mask" / "a.png")
    assert_one_line_error(run_cli("train", str(tmp_path)), "without_mask/' is missing")
    assert_one_line_error(run_cli("train", str(tmp_path), "--recipe", "fast"), "'default', 'article'")


def _mini_scene_set(shared, tmp_path, n_train=8, n_val=4):
    """A few scenes-kaggle photos (with mask_incorrect faces first) and their train / val lists."""
    from maskwatch.evaluate.scenes import load_scenes

    root = shared / "data" / "scenes-kaggle"
    images = load_scenes(root)
    rare = [im for im in images if "mask_incorrect" in im.labels]
    rest = [im for im in images if "mask_incorrect" not in im.labels and "without_mask" in im.labels]
    train = rare[:n_train // 2] + rest[:n_train // 2]
    val = rare[n_train // 2:n_train // 2 + n_val // 2] + rest[n_train // 2:n_train // 2 + n_val // 2]
    splits = tmp_path / "scene splits"
    splits.mkdir()
    for name, part in (("train", train), ("val", val)):
        (splits / f"{name}.txt").write_text("".join(im.path.relative_to(root).as_posix() + "\n" for im in part))
    return root, splits, val


@needs_shared
@pytest.mark.slow
def test_train_with_scene_faces_adds_mask_incorrect_and_calibration(shared, tmp_path):
    from maskwatch.evaluate.scenes import load_scenes, read_scene_list, select_scenes

    weights = shared / "weights" / "mobilenet_v2" / "mobilenet_v2_1.0_224_from_torchvision_no_top.weights.h5"
    root, splits, val = _mini_scene_set(shared, tmp_path)
    # a second scene dataset in another format and annotation style (YOLO), with its own lists
    dev_root, dev_splits = shared / "data" / "scenes-dev", tmp_path / "dev splits"
    dev_train = load_scenes(dev_root)[:3]
    dev_splits.mkdir()
    (dev_splits / "train.txt").write_text("".join(im.path.relative_to(dev_root).as_posix() + "\n" for im in dev_train))
    (dev_splits / "val.txt").write_text("")
    kaggle_train = select_scenes(load_scenes(root), root, read_scene_list(splits / "train.txt"))
    sizes = np.concatenate([im.boxes[:, 2:] - im.boxes[:, :2] for im in [*kaggle_train, *dev_train]])
    n_train_faces = int((sizes.min(axis=1) >= 8).sum())  # every face of 8 px or more becomes a crop
    runs = tmp_path / "runs"
    proc = run_cli("train", str(shared / "data" / "mask-crops"), "--epochs", "2", "--limit-per-class", "16",
                   "--weights", str(weights), "--project", str(runs), "--scenes", str(root),
                   "--scene-splits", str(splits), "--scenes", str(dev_root), "--scene-splits", str(dev_splits),
                   "--feature-views", "2", "--finetune-epochs", "1", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = runs / "train" / "exp"
    card = json.loads(run_cli("models", "info", str(run / "model.onnx")).stdout)
    assert card["classes"] == ["with_mask", "without_mask", "mask_incorrect"]
    cal = card["calibration"]
    assert cal["temperature"] > 0 and "ece_before" in cal and "ece_after" in cal
    crops = card["data"]["scene_crops"]
    assert crops["train"]["mask_incorrect"] > 0 and crops["val"]["without_mask"] > 0
    assert crops["source"] == f"{root};{dev_root}"  # both datasets, each face of both train lists
    assert sum(crops["train"].values()) == n_train_faces
    assert card["data"]["class_weights"]["mask_incorrect"] > card["data"]["class_weights"]["with_mask"]
    assert len((run / "history.csv").read_text().splitlines()) == 4  # header + 2 head epochs + 1 fine-tuning
    assert "fine-tuning MobileNetV2's last block" in proc.stderr

    # the 3-class model runs the whole pipeline on the scene photos it validated on
    (tmp_path / "val.txt").write_text((splits / "val.txt").read_text())
    ev = run_cli("evaluate", str(run / "model.onnx"), str(root), "--split-file", str(tmp_path / "val.txt"),
                 "--project", str(runs))
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert "mask_incorrect" in ev.stdout and "uncertain" in ev.stdout
    metrics = json.loads((runs / "evaluate" / "exp" / "metrics.json").read_text())
    assert metrics["n_images"] == len(val) and metrics["model_classes"] == card["classes"]


def test_finetune_without_cached_features_is_one_line_error(tmp_path):
    assert_one_line_error(run_cli("train", str(tmp_path), "--finetune-epochs", "3"), "--feature-views")


def test_scenes_without_split_lists_is_one_line_error(tmp_path):
    assert_one_line_error(run_cli("train", str(tmp_path), "--scenes", str(tmp_path)), "--scene-splits")
    assert_one_line_error(run_cli("train", str(tmp_path), "--scenes", str(tmp_path), "--scene-splits", str(tmp_path),
                                  "--scenes", str(tmp_path)), "2 --scenes but 1 --scene-splits")


def _templates(shared):
    from maskwatch.train.synth import load_templates

    return load_templates(shared / "data" / "mask-templates")


@needs_shared
@pytest.mark.parametrize("style", ["under_nose", "on_chin"])
def test_synthetic_incorrect_mask_leaves_the_eyes_and_nose_bare(shared, style):
    """The synthetic face wears its mask below the nose tip (under_nose) or below the mouth (on_chin):
    nothing above that line changes, and a good part of the lower face does."""
    from maskwatch.io.images import decode_image
    from maskwatch.train.synth import LandmarkFinder, wear_mask_incorrectly

    templates = _templates(shared)
    assert len(templates) == 18  # every masks.cfg section with a PNG (19 templates, one without a section)
    image = decode_image(sorted((shared / "data" / "mask-crops" / "without_mask").glob("*.jpg"))[5])
    lm = LandmarkFinder().find(image)
    assert lm is not None
    rng = np.random.default_rng(0)
    out, info = wear_mask_incorrectly(image, lm, templates, rng, style=style)
    assert info["style"] == style and info["template"] in {t.name for t in templates}
    changed = np.abs(out.astype(int) - image.astype(int)).sum(axis=2) > 30
    rows = np.nonzero(changed.any(axis=1))[0]
    nose_y, mouth_y = lm[2, 1], lm[3:, 1].mean()
    line = nose_y if style == "under_nose" else mouth_y
    assert rows.min() > line, (rows.min(), line)
    eye_dist = float(np.linalg.norm(lm[1] - lm[0]))
    assert changed.sum() > 0.3 * eye_dist ** 2  # a mask-sized area (the image may cut off the chin)


def test_missing_mask_templates_is_one_line_error(tmp_path, monkeypatch):
    (tmp_path / "with_mask").mkdir()
    (tmp_path / "without_mask").mkdir()
    from PIL import Image

    for c in ("with_mask", "without_mask"):
        Image.new("RGB", (32, 32)).save(tmp_path / c / "a.png")
    monkeypatch.setenv("MASKWATCH_MASK_TEMPLATES", str(tmp_path / "no templates"))
    assert_one_line_error(run_cli("train", str(tmp_path), "--synthetic-incorrect", "5"), "mask templates not found")


@needs_shared
@pytest.mark.slow
def test_train_small_input_with_synthetic_incorrect(shared, tmp_path):
    """--input-size and --synthetic-incorrect: the model takes 96 px faces, learns a third class from
    synthetic faces only, says so in its card, and runs in evaluate."""
    weights = shared / "weights" / "mobilenet_v2" / "mobilenet_v2_1.0_224_from_torchvision_no_top.weights.h5"
    runs = tmp_path / "runs"
    proc = run_cli("train", str(shared / "data" / "mask-crops"), "--epochs", "1", "--limit-per-class", "16",
                   "--weights", str(weights), "--project", str(runs), "--input-size", "96",
                   "--synthetic-incorrect", "6", "--feature-views", "1", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = runs / "train" / "exp"
    card = json.loads(run_cli("models", "info", str(run / "model.onnx")).stdout)
    assert card["input"]["size"] == 96 and card["recipe"]["input_size"] == 96
    assert card["classes"] == ["with_mask", "without_mask", "mask_incorrect"]
    synth = card["data"]["synthetic"]
    assert synth["mask_incorrect"] == 6 and "training only" in synth["used_for"]
    ev = run_cli("evaluate", str(run / "model.onnx"), str(shared / "data" / "mask-crops"),
                 "--split-file", str(run / "splits" / "test.txt"), "--project", str(runs))
    assert ev.returncode == 0, ev.stderr[-2000:]
