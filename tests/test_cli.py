"""The command line as a user runs it: results on stdout, one clear error line on stderr."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, assert_one_line_error, needs_shared, run_cli

SCENE = "images/01242020_masks-qa_151720-780x520.jpg"


@pytest.fixture()
def blank(tmp_path) -> Path:
    p = tmp_path / "blank wall.png"
    Image.new("RGB", (64, 48), (128, 128, 128)).save(p)
    return p


def test_version_and_help():
    out = run_cli("--version")
    assert out.returncode == 0 and "maskwatch" in out.stdout
    out = run_cli("--help")
    assert out.returncode == 0
    for cmd in ("detect", "classify", "train", "evaluate", "benchmark", "serve"):
        assert cmd in out.stdout


def test_missing_path(model_path):
    assert_one_line_error(run_cli("detect", "no/such/photo.jpg"), "no such file")


def test_unknown_option_value_lists_the_valid_ones():
    assert_one_line_error(run_cli("detect", "x.jpg", "--detector", "haar"), "'auto', 'yunet', 'yuface'")


def test_empty_folder(tmp_path, model_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("detect", str(tmp_path / "empty")), "no images or videos")


def test_corrupt_and_non_image_files(tmp_path, model_path):
    fake = tmp_path / "report.jpg"
    fake.write_text("quarterly numbers")
    assert_one_line_error(run_cli("detect", str(fake), "-m", str(model_path)), "not an image")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(buf, "JPEG")
    cut = tmp_path / "cut off.jpg"
    cut.write_bytes(buf.getvalue()[:3000])
    proc = run_cli("detect", str(cut), "-m", str(model_path))
    assert proc.returncode != 0 and "truncated" in proc.stderr and "Traceback" not in proc.stderr


def test_a_bad_file_in_a_folder_is_skipped_and_the_rest_processed(tmp_path, blank, model_path):
    (blank.parent / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    proc = run_cli("detect", str(blank.parent), "-m", str(model_path), "--json", "-")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "skipped" in proc.stderr and "broken.png" in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["faces"] == []


def test_unplayable_and_truncated_video(tmp_path, model_path):
    bogus = tmp_path / "clip.mp4"
    bogus.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    assert_one_line_error(run_cli("detect", str(bogus), "-m", str(model_path)), "video")


def test_camera_that_cannot_be_opened(model_path):
    assert_one_line_error(run_cli("detect", "7", "-m", str(model_path)), "camera 7 cannot be opened")


def test_bad_model_files(tmp_path, blank):
    assert_one_line_error(run_cli("detect", str(blank), "-m", str(tmp_path / "nope.onnx")), "not found")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"definitely not protobuf" * 10)
    assert_one_line_error(run_cli("detect", str(blank), "-m", str(junk)), "not a readable onnx model")


@needs_shared
def test_truncated_video_reports_the_frames_it_got(shared, model_path, tmp_path):
    data = (shared / "data" / "video" / "single-masked.mp4").read_bytes()
    cut = tmp_path / "cut clip.mp4"
    cut.write_bytes(data[: len(data) // 2])
    proc = run_cli("detect", str(cut), "-m", str(model_path), "--json", str(tmp_path / "out.jsonl"))
    assert_one_line_error(proc, "truncated")
    assert "[h264" not in proc.stderr  # no FFmpeg noise
    frames = (tmp_path / "out.jsonl").read_text().splitlines()
    assert 10 < len(frames) < 244  # what could be decoded was processed and kept


@needs_shared
def test_model_of_the_wrong_kind(shared, blank):
    yunet = shared / "weights" / "face" / "face_detection_yunet_2023mar.onnx"
    assert_one_line_error(run_cli("classify", str(blank), "-m", str(yunet)), "not a maskwatch classifier")


@needs_shared
def test_detect_json_to_stdout_is_only_json(shared, model_path):
    proc = run_cli("detect", str(shared / "data" / "scenes-dev" / SCENE), "-m", str(model_path), "--json", "-")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    d = json.loads(lines[0])
    assert d["frame"] is None and d["width"] == 780 and d["height"] == 520
    assert len(d["faces"]) >= 5
    for f in d["faces"]:
        x1, y1, x2, y2 = f["box"]
        assert 0 <= x1 < x2 <= 780 and 0 <= y1 < y2 <= 520
        assert f["label"] in ("with_mask", "without_mask", "mask_incorrect")
        assert abs(sum(f["probs"].values()) - 1) < 1e-3


@needs_shared
def test_save_writes_a_new_run_folder_each_time_and_never_overwrites(shared, model_path, tmp_path):
    img = shared / "data" / "scenes-dev" / SCENE
    out1 = run_cli("detect", str(img), "-m", str(model_path), "--save", "--project", str(tmp_path / "runs"))
    out2 = run_cli("detect", str(img), "-m", str(model_path), "--save", "--project", str(tmp_path / "runs"))
    assert out1.returncode == 0 and out2.returncode == 0, out2.stderr
    a = tmp_path / "runs" / "detect" / "exp" / Path(SCENE).name
    b = tmp_path / "runs" / "detect" / "exp2" / Path(SCENE).name
    assert a.is_file() and b.is_file()
    annotated = cv2.imread(str(a))
    assert annotated.shape[1:] == (780, 3) and annotated.shape[0] >= 520  # a legend under it when labels were shortened
    assert not np.array_equal(annotated, cv2.imread(str(img)))  # boxes were drawn
    existing = tmp_path / "results.jsonl"
    existing.write_text("keep me\n")
    assert_one_line_error(run_cli("detect", str(img), "-m", str(model_path), "--json", str(existing)),
                          "already exists")
    assert existing.read_text() == "keep me\n"


@needs_shared
def test_video_json_and_csv(shared, model_path, tmp_path):
    video = shared / "data" / "video" / "putting-mask-on.mp4"
    proc = run_cli("detect", str(video), "-m", str(model_path), "--json", str(tmp_path / "out.jsonl"),
                   "--csv", str(tmp_path / "out.csv"), "--vid-stride", "10", "--save", "--project",
                   str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in rows] == list(range(0, 234, 10))
    assert all(r["time_s"] is not None for r in rows)
    assert rows[5]["time_s"] == pytest.approx(50 / 25, rel=0.2)
    n_faces = sum(len(r["faces"]) for r in rows)
    assert n_faces >= len(rows) // 2
    csv_lines = (tmp_path / "out.csv").read_text().splitlines()
    assert csv_lines[0].startswith("source,frame,time_s") and len(csv_lines) == n_faces + 1
    saved = tmp_path / "runs" / "detect" / "exp" / "putting-mask-on.mp4"
    cap = cv2.VideoCapture(str(saved))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(rows)
    assert "face tracks:" in proc.stdout


@needs_shared
def test_classify_crops(shared, model_path):
    crops = shared / "data" / "mask-crops"
    with_mask = sorted((crops / "with_mask").glob("*.jpg"))[:3]
    proc = run_cli("classify", *map(str, with_mask), "-m", str(model_path), "--json", "-")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["source"] for r in rows] == [str(p) for p in with_mask]
    assert all(set(r) >= {"source", "label", "score", "probs"} for r in rows)


def test_show_without_a_display_fails_clearly(blank, model_path):
    proc = run_cli("detect", str(blank), "-m", str(model_path), "--show", env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})
    assert_one_line_error(proc, "display")


@needs_shared
def test_benchmark_prints_a_table_per_pipeline(shared, model_path, tmp_path):
    clip = shared / "data" / "video" / "putting-mask-on.mp4"
    proc = run_cli("benchmark", str(clip), "-m", str(model_path), "--frames", "20", "--json",
                   str(tmp_path / "bench.json"))
    assert proc.returncode == 0, proc.stderr
    assert "maskwatch (tracked" in proc.stdout and "every face, every frame" in proc.stdout
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert len(rows) == 2 and all(r["frames"] == 20 and r["fps"] > 0 for r in rows)
    tracked, every = rows
    assert tracked["classified_per_frame"] <= every["classified_per_frame"]


@needs_shared
def test_evaluate_a_small_yolo_scene_set(shared, model_path, tmp_path):
    import shutil

    src = shared / "data" / "scenes-dev"
    data = tmp_path / "scènes"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    shutil.copy(src / "classes.txt", data / "classes.txt")
    for img in sorted((src / "images").glob("*.jpg"))[:6]:
        shutil.copy(img, data / "images" / img.name)
        shutil.copy(src / "labels" / (img.stem + ".txt"), data / "labels" / (img.stem + ".txt"))
    proc = run_cli("evaluate", str(model_path), str(data), "--project", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    assert "mAP" in proc.stdout and "with_mask" in proc.stdout
    metrics = json.loads((tmp_path / "runs" / "evaluate" / "exp" / "metrics.json").read_text())
    assert metrics["n_images"] == 6 and 0 < metrics["map"] <= 1
    assert metrics["face_recall@0.3"] > 0.5


@needs_shared
def test_evaluate_scene_split_list_with_both_conventions_and_confusion(shared, model_path, tmp_path):
    root = shared / "data" / "scenes-kaggle"
    lst = tmp_path / "few.txt"
    names = [ln for ln in (ROOT / "docs" / "scenes-kaggle" / "val.txt").read_text().splitlines()
             if ln and not ln.startswith("#")][:5]
    lst.write_text("# five validation photos\n" + "\n".join(names) + "\n")
    proc = run_cli("evaluate", str(model_path), str(root), "--split-file", str(lst), "--face-threshold", "0.6",
                   "--project", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    assert "top-1" in proc.stdout and "multi" in proc.stdout and "confusion" in proc.stdout
    m = json.loads((tmp_path / "runs" / "evaluate" / "exp" / "metrics.json").read_text())
    assert m["n_images"] == 5 and m["operating_threshold"] == 0.6 and m["score_floor"] == 0.05
    assert m["map_multilabel"] >= m["map_top1"] - 1e-9
    cm = m["confusion"]
    matched = sum(v for r, row in cm.items() if r != "no_face" for c, v in row.items() if c != "missed")
    assert matched == m["operating_point"]["faces"]["tp"]
    bad = tmp_path / "bad.txt"
    bad.write_text("images/not-there.jpg\n")
    assert_one_line_error(run_cli("evaluate", str(model_path), str(root), "--split-file", str(bad)), "not in")
