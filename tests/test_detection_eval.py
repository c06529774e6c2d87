"""Detection AP on scene datasets: pure metric functions, YOLO / VOC loading, and one real run."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import default_model_path
from maskwatch.errors import DataError
from maskwatch.evaluate.detection import (
    ScenePrediction,
    average_precision,
    box_iou,
    detection_ap,
    evaluate_scenes,
    format_scene_metrics,
    match_detections,
    scene_metrics,
)
from maskwatch.evaluate.scenes import SceneImage, detect_format, load_scene_dataset, load_scenes, map_class_name

REPO = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("MASKWATCH_SHARED", REPO / ".." / "shared")).resolve()

GT = np.array([[10, 10, 50, 50], [100, 100, 160, 180]], dtype=float)


# ----------------------------------------------------------------------------------- pure functions


def test_box_iou():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0, 0.0])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)


def test_perfect_detections_give_ap_one():
    res = detection_ap([(GT, np.array([0.9, 0.8]))], [GT])
    assert res["ap"] == pytest.approx(1.0)
    assert res["recall"] == pytest.approx(1.0)


def test_missed_box_lowers_recall_and_ap():
    res = detection_ap([(GT[:1], np.array([0.9]))], [GT])
    assert res["recall"] == pytest.approx(0.5)
    assert res["ap"] == pytest.approx(0.5)


def test_duplicate_detection_is_false_positive():
    boxes = np.array([GT[0], GT[0] + 1, GT[1]])
    tp = match_detections(boxes, np.array([0.9, 0.8, 0.7]), GT)
    assert tp.tolist() == [True, False, True]
    res = detection_ap([(boxes, np.array([0.9, 0.8, 0.7]))], [GT])
    # ranks: TP, FP, TP -> precision at recall 1 is 2/3
    assert res["ap"] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


def test_matching_is_by_descending_score_not_input_order():
    # The better-placed box has the lower score: the higher score claims the face first.
    boxes = np.array([GT[0], GT[0] + [3, 3, 3, 3]])
    tp = match_detections(boxes, np.array([0.2, 0.9]), GT[:1])
    assert tp.tolist() == [False, True]


def test_iou_threshold():
    shifted = GT[:1] + [20, 0, 20, 0]  # IoU = 20*40 / (60*40) = 1/3
    assert not match_detections(shifted, [1.0], GT[:1], iou=0.5)[0]
    assert match_detections(shifted, [1.0], GT[:1], iou=0.3)[0]


def test_average_precision_all_point_interpolation():
    # precision is made monotone from the right before integrating
    assert average_precision(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 0.667])) == pytest.approx(
        0.5 + 0.5 * 0.667)
    assert detection_ap([(np.zeros((0, 4)), np.zeros(0))], [GT])["ap"] == 0.0
    assert np.isnan(detection_ap([(GT, np.ones(2))], [np.zeros((0, 4))])["ap"])


def _scene(boxes, labels):
    return SceneImage(Path("x.jpg"), np.asarray(boxes, float), labels, 200, 200)


def test_scene_metrics_class_confusion():
    images = [_scene(GT, ["with_mask", "without_mask"])]
    # both faces found; the second (higher face score) is called with_mask although it is without_mask
    probs = np.array([[0.9, 0.1], [0.8, 0.2]])
    m = scene_metrics([ScenePrediction(GT, [0.8, 0.95], probs)], images)
    assert m["face_ap"] == pytest.approx(1.0)
    assert m["face_recall@0.5"] == pytest.approx(1.0)
    assert m["ap"]["with_mask"] == pytest.approx(0.5)  # the confused face (FP) ranks above the TP
    assert m["ap"]["without_mask"] == pytest.approx(1.0)  # the low-ranked class score still finds it
    assert m["map"] == pytest.approx(0.75)
    op = m["operating_point"]
    assert op["with_mask"]["fp"] == 1 and op["without_mask"]["fn"] == 1
    assert op["overall"]["precision"] == pytest.approx(0.5)
    assert op["faces"]["precision"] == pytest.approx(1.0)
    # one detection per face for its top label: the confused face is lost for without_mask
    arg = scene_metrics([ScenePrediction(GT, [0.8, 0.95], probs)], images, class_score="argmax")
    assert arg["ap"]["without_mask"] == 0.0
    assert "with_mask" in format_scene_metrics(m)


def test_scene_metrics_perfect_and_empty_image():
    images = [_scene(GT, ["with_mask", "without_mask"]), _scene(np.zeros((0, 4)), [])]
    preds = [ScenePrediction(GT, [0.9, 0.8], [[1.0, 0.0], [0.0, 1.0]]), ScenePrediction(np.zeros((0, 4)), [], [])]
    m = scene_metrics(preds, images)
    assert m["map"] == pytest.approx(1.0) and m["face_ap"] == pytest.approx(1.0)
    assert m["n_images"] == 2 and m["n_boxes"] == 2 and m["n_detections"] == 2


def test_recall_at_iou_03_forgives_shifted_boxes():
    shifted = GT + [[0, 16, 0, 16], [0, 20, 0, 20]]  # drawn lower than the annotator's boxes
    m = scene_metrics([ScenePrediction(shifted, [0.9, 0.8], [[1, 0], [0, 1]])],
                      [_scene(GT, ["with_mask", "without_mask"])])
    assert m["face_recall@0.5"] == pytest.approx(0.5)
    assert m["face_recall@0.3"] == pytest.approx(1.0)


def test_top1_and_multilabel_map_and_confusion_with_uncertain_and_third_class():
    gt = np.array([[10, 10, 50, 50], [100, 100, 160, 180], [200, 10, 240, 50]], float)
    images = [_scene(gt, ["with_mask", "without_mask", "mask_incorrect"])]
    extra = np.array([[300, 300, 340, 340]], float)  # a detection on no labelled face
    boxes = np.concatenate([gt, extra])
    probs = np.array([[0.6, 0.05, 0.35], [0.7, 0.3, 0.0], [0.1, 0.2, 0.7], [0.5, 0.5, 0.0]])
    pred = ScenePrediction(boxes, [0.9, 0.95, 0.8, 0.3], probs, uncertain=[False, False, True, False])
    m = scene_metrics([pred], images, operating_threshold=0.5)
    # top-1: the unmasked face is called with_mask (ranked first): a FP for with_mask, lost for without_mask
    assert m["ap_top1"]["with_mask"] == pytest.approx(0.5)
    assert m["ap_top1"]["without_mask"] == 0.0
    # multi-label: the unmasked face still has a (low) without_mask detection
    assert m["ap_multilabel"]["without_mask"] == pytest.approx(1.0)
    assert m["map_multilabel"] > m["map_top1"]
    assert m["map_top1"] == pytest.approx(0.25)  # with_mask / without_mask only
    assert m["ap_top1"]["mask_incorrect"] == pytest.approx(1.0)
    assert m["map_all_top1"] == pytest.approx(0.5)
    # operating point: face score 0.3 is below 0.5; the uncertain face counts for no class
    op = m["operating_point"]
    assert op["n_uncertain"] == 1 and op["mask_incorrect"]["tp"] == 0 and op["mask_incorrect"]["fn"] == 1
    assert op["faces"]["tp"] == 3 and op["faces"]["fp"] == 0
    cm = m["confusion"]
    assert cm["with_mask"]["with_mask"] == 1 and cm["without_mask"]["with_mask"] == 1
    assert cm["mask_incorrect"]["uncertain"] == 1 and cm["no_face"]["with_mask"] == 0
    # without a threshold the extra detection is a false face
    assert scene_metrics([pred], images)["confusion"]["no_face"]["with_mask"] == 1
    text = format_scene_metrics(m)
    assert "mask_incorrect" in text and "uncertain" in text and "multi" in text


def test_two_class_model_on_three_class_data():
    images = [_scene(GT, ["with_mask", "mask_incorrect"])]
    m = scene_metrics([ScenePrediction(GT, [0.9, 0.8], [[0.9, 0.1], [0.8, 0.2]])], images)
    assert m["ap"]["mask_incorrect"] == 0.0 and m["ap"]["with_mask"] == pytest.approx(1.0)
    assert np.isnan(m["ap"]["without_mask"]) and m["map"] == pytest.approx(1.0)
    assert m["map_all"] == pytest.approx(0.5)
    assert m["confusion"]["mask_incorrect"]["with_mask"] == 1


def test_scene_split_keeps_near_duplicates_together_and_lists_round_trip(tmp_path):
    from maskwatch.evaluate.scenes import read_scene_list, select_scenes, write_scene_list
    from maskwatch.train.split import split_scene_images

    rng = np.random.default_rng(0)
    images = []
    for i in range(30):
        base = rng.integers(0, 255, (8, 9, 3), dtype=np.uint8)
        img = cv2.resize(base, (180, 160), interpolation=cv2.INTER_NEAREST)
        for copy in range(2 if i < 5 else 1):  # the first 5 photos also exist re-encoded and resized
            path = tmp_path / "images" / f"p{i:02d}_{copy}.jpg"
            path.parent.mkdir(exist_ok=True)
            cv2.imwrite(str(path), img if copy == 0 else cv2.resize(img, (90, 80)))
            label = ["with_mask", "without_mask", "mask_incorrect"][i % 3]
            images.append(SceneImage(path, [[1, 1, 20, 20]], [label], 180, 160))
    split, n_near = split_scene_images(images, (0.6, 0.2, 0.2), seed=3)
    assert n_near >= 5
    side = {im.path.name: name for name, members in split.items() for im in members}
    assert len(side) == len(images)
    for i in range(5):
        assert side[f"p{i:02d}_0.jpg"] == side[f"p{i:02d}_1.jpg"]
    assert all(any("mask_incorrect" in im.labels for im in members) for members in split.values())
    again, _ = split_scene_images(images, (0.6, 0.2, 0.2), seed=3)
    assert {k: [im.path for im in v] for k, v in again.items()} == {k: [im.path for im in v] for k, v in split.items()}
    write_scene_list(split["val"], tmp_path, tmp_path / "val.txt", header="val part")
    names = read_scene_list(tmp_path / "val.txt")
    assert sorted(im.path for im in select_scenes(images, tmp_path, names)) == sorted(im.path for im in split["val"])
    with pytest.raises(DataError, match="not in"):
        select_scenes(images, tmp_path, ["images/nope.jpg"])


# -------------------------------------------------------------------------------------- dataset I/O


def _write_image(path: Path, w: int = 200, h: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 127, np.uint8))


def test_load_yolo(tmp_path):
    _write_image(tmp_path / "images" / "a.jpg", 200, 100)
    _write_image(tmp_path / "images" / "b.png", 50, 50)  # no label file: a photo without faces
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("1 0.25 0.5 0.1 0.2\n0 0.75 0.5 0.2 0.4\n\n")
    (tmp_path / "classes.txt").write_text("no_mask\nmask")  # no trailing newline, like scenes-dev
    assert detect_format(tmp_path) == "yolo"
    scenes = load_scenes(tmp_path)
    assert [s.path.name for s in scenes] == ["a.jpg", "b.png"]
    a = scenes[0]
    assert a.labels == ["with_mask", "without_mask"]
    np.testing.assert_allclose(a.boxes, [[40, 40, 60, 60], [130, 30, 170, 70]])
    assert (a.width, a.height) == (200, 100)
    assert len(scenes[1]) == 0 and scenes[1].boxes.shape == (0, 4)


def test_load_yolo_uses_exif_corrected_size(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    img = Image.new("RGB", (200, 100), (100, 100, 100))
    exif = img.getexif()
    exif[274] = 6  # rotate 90 degrees when displayed: the decoded image is 100 x 200
    img.save(tmp_path / "images" / "r.jpg", exif=exif)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "r.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "classes.txt").write_text("mask\n")
    s = load_scenes(tmp_path)[0]
    assert (s.width, s.height) == (100, 200)
    np.testing.assert_allclose(s.boxes, [[25, 50, 75, 150]])


VOC_XML = """<annotation><folder>x</folder><filename>{name}</filename>
<size><width>200</width><height>100</height><depth>3</depth></size>
<object><name>{cls1}</name><difficult>0</difficult>
  <bndbox><xmin>10</xmin><ymin>20</ymin><xmax>40</xmax><ymax>60</ymax></bndbox></object>
<object><name>without_mask</name>
  <bndbox><xmin>100</xmin><ymin>10</ymin><xmax>150</xmax><ymax>70</ymax></bndbox></object>
</annotation>"""


def test_load_voc_annotations_folder(tmp_path):
    _write_image(tmp_path / "JPEGImages" / "p.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "p.xml").write_text(VOC_XML.format(name="p.jpg", cls1="Masked"))
    assert detect_format(tmp_path) == "voc"
    (s,) = load_scene_dataset(tmp_path)
    assert s.path == tmp_path / "JPEGImages" / "p.jpg"
    assert s.labels == ["with_mask", "without_mask"]
    np.testing.assert_allclose(s.boxes, [[10, 20, 40, 60], [100, 10, 150, 70]])
    assert (s.width, s.height) == (200, 100)


def test_load_voc_xml_beside_images(tmp_path):
    _write_image(tmp_path / "q.jpg")
    (tmp_path / "q.xml").write_text(VOC_XML.format(name="elsewhere/q.jpg", cls1="mask"))
    (s,) = load_scenes(tmp_path)
    assert s.path.name == "q.jpg" and len(s) == 2


def test_bad_class_name_is_data_error(tmp_path):
    _write_image(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "classes.txt").write_text("helmet\n")
    with pytest.raises(DataError, match="helmet") as exc:
        load_scenes(tmp_path)
    assert "no_mask" in str(exc.value) and "with_mask" in str(exc.value)

    voc = tmp_path / "voc"
    _write_image(voc / "JPEGImages" / "p.jpg")
    (voc / "Annotations").mkdir()
    (voc / "Annotations" / "p.xml").write_text(VOC_XML.format(name="p.jpg", cls1="mask_on_forehead"))
    with pytest.raises(DataError, match="mask_on_forehead"):
        load_scenes(voc)


def test_voc_third_class_loads(tmp_path):
    _write_image(tmp_path / "images" / "p.jpg")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "p.xml").write_text(VOC_XML.format(name="p.jpg", cls1="mask_weared_incorrect"))
    (s,) = load_scenes(tmp_path)
    assert s.labels == ["mask_incorrect", "without_mask"]
    with pytest.raises(DataError, match="unknown class"):
        map_class_name("person")


def test_not_a_scene_dataset_is_data_error(tmp_path):
    _write_image(tmp_path / "only" / "a.jpg")
    with pytest.raises(DataError, match="neither a YOLO"):
        load_scenes(tmp_path / "only")
    with pytest.raises(DataError, match="no such folder"):
        load_scenes(tmp_path / "missing")


def test_yolo_bad_class_index_and_line(tmp_path):
    _write_image(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "classes.txt").write_text("no_mask\nmask\n")
    (tmp_path / "labels" / "a.txt").write_text("2 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match="class 2"):
        load_scenes(tmp_path)
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.5\n")
    with pytest.raises(DataError, match="a.txt:1"):
        load_scenes(tmp_path)


# ------------------------------------------------------------------------------------ shared data


@pytest.mark.shared
def test_face_recall_on_scenes_dev_subset():
    data = SHARED_DIR / "data" / "scenes-dev"
    face_model = SHARED_DIR / "weights" / "face"
    if not data.is_dir() or not face_model.is_dir():
        pytest.skip(f"needs the shared scene set at {data} and YuNet in {face_model} (set MASKWATCH_SHARED)")
    images = load_scenes(data)
    assert len(images) == 237 and sum(len(s) for s in images) == 980
    subset = images[::12][:20]
    model = default_model_path()
    if model is not None and model.is_file():
        # The whole pipeline, as `maskwatch evaluate` runs it.
        from maskwatch.engine import MaskDetector

        m = evaluate_scenes(MaskDetector(model, detector_model=face_model), subset, progress=False)
    else:
        # No trained classifier here: face recall is class-agnostic, so score the face detector's
        # boxes through the same metric code with uniform class probabilities.
        from maskwatch.faces.detector import create_face_detector
        from maskwatch.io.images import decode_image

        fd = create_face_detector("auto", face_model)
        preds = []
        for s in subset:
            boxes = fd.detect(decode_image(s.path))
            preds.append(ScenePrediction(np.round(boxes.xyxy), boxes.scores, np.full((len(boxes), 2), 0.5)))
        m = scene_metrics(preds, subset)
    assert m["n_images"] == 20
    assert m["face_recall@0.3"] > 0.7, format_scene_metrics(m)


# ------------------------------------------------------------------ IoU 0.3 / 0.5 / 0.5:0.95 (issue 15)


def _shifted(box: np.ndarray, frac: float) -> np.ndarray:
    """``box`` moved right by ``frac`` of its width (IoU with the original: (1 - frac) / (1 + frac))."""
    w = box[2] - box[0]
    return box + np.array([frac * w, 0, frac * w, 0])


def test_loose_boxes_count_at_iou_03_but_not_at_05():
    # Two right-labelled faces, each drawn in another box style: shifted by 40% of the width (IoU 0.43).
    images = [SceneImage("a.jpg", GT, ["with_mask", "without_mask"])]
    pred = ScenePrediction(np.stack([_shifted(GT[0], 0.4), _shifted(GT[1], 0.4)]), np.array([0.9, 0.8]),
                           np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]]))
    m = scene_metrics([pred], images)
    assert m["map_top1@0.3"] == pytest.approx(1.0) and m["face_ap@0.3"] == pytest.approx(1.0)
    assert m["map_top1@0.5"] == pytest.approx(0.0) and m["face_ap@0.5"] == pytest.approx(0.0)
    assert m["map_top1@0.5:0.95"] == pytest.approx(0.0)
    assert m["map_top1@0.3|0.5"] == pytest.approx(0.5)
    assert m["by_iou"]["0.3"]["ap_top1"]["with_mask"] == pytest.approx(1.0)
    assert m["map_top1"] == m["map_top1@0.5"]  # the default IoU's figures are the @0.5 ones


def test_coco_average_rewards_exact_boxes():
    images = [SceneImage("a.jpg", GT, ["with_mask", "with_mask"])]
    probs = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    exact = scene_metrics([ScenePrediction(GT, np.array([0.9, 0.8]), probs)], images)
    # Shifted by 10% of the width: IoU 0.818, a hit at 0.50..0.80 (7 of the 10 COCO thresholds), a miss above.
    near = scene_metrics([ScenePrediction(np.stack([_shifted(b, 0.1) for b in GT]), np.array([0.9, 0.8]), probs)],
                         images)
    assert exact["map_top1@0.5:0.95"] == pytest.approx(1.0)
    assert near["map_top1@0.5"] == pytest.approx(1.0)
    assert near["map_top1@0.5:0.95"] == pytest.approx(0.7)
    assert near["face_ap@0.5:0.95"] == pytest.approx(0.7)
    text = format_scene_metrics(near)
    assert "0.5:0.95" in text and "found and labelled" in text


def _tiny_yolo_set(root: Path, n: int = 4) -> Path:
    import shutil

    src = SHARED_DIR / "data" / "scenes-dev"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    shutil.copy(src / "classes.txt", root / "classes.txt")
    for img in sorted((src / "images").glob("*.jpg"))[:n]:
        shutil.copy(img, root / "images" / img.name)
        shutil.copy(src / "labels" / (img.stem + ".txt"), root / "labels" / (img.stem + ".txt"))
    return root


@pytest.mark.shared
def test_evaluate_cli_prints_both_ious_and_writes_json(tmp_path):
    import json

    from conftest import assert_one_line_error, run_cli

    model = default_model_path()
    if not (SHARED_DIR / "data" / "scenes-dev").is_dir() or model is None:
        pytest.skip(f"needs the shared scene set under {SHARED_DIR} (set MASKWATCH_SHARED) and a classifier model")
    data = _tiny_yolo_set(tmp_path / "scenes")
    out_json = tmp_path / "m.json"
    proc = run_cli("evaluate", str(model), str(data), "--project", str(tmp_path / "runs"), "--json", str(out_json))
    assert proc.returncode == 0, proc.stderr
    assert "by IoU" in proc.stdout
    rows = {ln.split()[0]: ln.split()[1:] for ln in proc.stdout.splitlines()
            if ln.startswith(("0.3 ", "0.5 ", "0.5:0.95"))}
    assert set(rows) == {"0.3", "0.5", "0.5:0.95"}
    m = json.loads(out_json.read_text())  # strict JSON: NaN written as null
    assert m["n_images"] == 4
    for key in ("map_top1@0.3", "map_top1@0.5", "map_top1@0.5:0.95", "face_ap@0.3", "face_ap@0.5", "face_ap@0.5:0.95"):
        assert 0.0 <= m[key] <= 1.0, key
    assert float(rows["0.3"][0]) == pytest.approx(m["map_top1@0.3"], abs=5e-4)
    # Looser matching never scores lower; the COCO mean never beats @0.5.
    assert m["map_top1@0.3"] >= m["map_top1@0.5"] >= m["map_top1@0.5:0.95"]
    assert m["face_ap@0.3"] >= m["face_ap@0.5"] >= m["face_ap@0.5:0.95"]
    # '-' puts the JSON alone on stdout (the report moves to stderr); an existing file is never overwritten.
    proc = run_cli("evaluate", str(model), str(data), "--project", str(tmp_path / "runs"), "--json", "-")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["by_iou"]["0.3"]["map_top1"] == pytest.approx(m["map_top1@0.3"])
    assert "by IoU" in proc.stderr
    before = out_json.read_text()
    proc = run_cli("evaluate", str(model), str(data), "--project", str(tmp_path / "runs"), "--json", str(out_json))
    assert_one_line_error(proc, "already exists")
    assert out_json.read_text() == before


def test_metrics_json_is_strict():
    import json

    from maskwatch.evaluate.runner import metrics_json

    text = metrics_json({"ap": {"mask_incorrect": float("nan"), "with_mask": np.float32(0.5)},
                         "confusion": np.array([[1, 2], [3, 4]]), "n": np.int64(3)})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}")) == {
        "ap": {"mask_incorrect": None, "with_mask": 0.5}, "confusion": [[1, 2], [3, 4]], "n": 3}
