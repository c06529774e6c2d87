"""Training end to end through the CLI on a tiny real subset (1 epoch), then evaluating the result."""

from __future__ import annotations

import json

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

    ev = run_cli("evaluate", str(run / "model.onnx"), str(shared / "data" / "mask-crops"),
                 "--split-file", str(run / "splits" / "test.txt"), "--project", str(runs))
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
