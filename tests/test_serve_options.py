"""`maskwatch serve` takes the same face-detector options as every other command."""

from __future__ import annotations

import pytest

from conftest import assert_one_line_error, run_cli

pytest.importorskip("fastapi")


def test_serve_engine_uses_the_detector_options(model_path):
    from maskwatch.faces.detector import DetectorSettings
    from maskwatch.server.app import ServerSettings, load_engine

    settings = ServerSettings(model=str(model_path),
                              detector_settings=DetectorSettings(score_threshold=0.9, min_face=20))
    engine = load_engine(settings)
    assert engine.face_detector.settings.score_threshold == 0.9
    assert engine.face_detector.settings.min_face == 20


def test_serve_lists_and_checks_the_shared_detector_options():
    out = run_cli("serve", "--help")
    for opt in ("--detector", "--detector-model", "--face-threshold", "--detect-size", "--min-face"):
        assert opt in out.stdout
    assert_one_line_error(run_cli("serve", "--face-threshold", "2"), "face-threshold")


def test_server_classifies_photos_without_mirror_images_unless_told(model_path):
    from maskwatch.errors import InputError
    from maskwatch.server.app import ServerSettings, load_engine

    assert not load_engine(ServerSettings(model=str(model_path))).mirror_photos  # latency under load first
    assert load_engine(ServerSettings.from_env({"MASKWATCH_MIRROR": "1"}, model=str(model_path))).mirror_photos
    assert not ServerSettings.from_env({"MASKWATCH_MIRROR": "1"}, mirror_photos=False).mirror_photos  # option wins
    with pytest.raises(InputError, match="MASKWATCH_MIRROR"):
        ServerSettings.from_env({"MASKWATCH_MIRROR": "maybe"})
    assert "--mirror / --no-mirror" in run_cli("serve", "--help").stdout
