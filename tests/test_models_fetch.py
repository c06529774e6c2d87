"""`maskwatch models fetch` without internet: the YuNet detector ships inside the package, so the user
is told nothing is missing rather than shown a download error."""

from __future__ import annotations

import urllib.request

import pytest

from maskwatch.cli import main
from maskwatch.faces.models import BUNDLED_DIR, YUNET_FILENAME


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # an empty user cache
    monkeypatch.delenv("MASKWATCH_DEBUG", raising=False)


def test_fetch_offline_says_the_detector_is_already_bundled(offline, capsys):
    assert (BUNDLED_DIR / YUNET_FILENAME).is_file()
    assert main(["models", "fetch"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(BUNDLED_DIR / YUNET_FILENAME)
    lines = err.splitlines()
    assert len(lines) == 1 and "bundled" in lines[0] and "error" not in lines[0], err


def test_fetch_offline_into_a_chosen_folder_fails_in_one_line_naming_the_bundled_copy(offline, capsys, tmp_path):
    assert main(["models", "fetch", "--dest", str(tmp_path / "models")]) != 0
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("maskwatch: error: could not download"), err
    assert str(BUNDLED_DIR / YUNET_FILENAME) in lines[0], err
    assert not (tmp_path / "models" / YUNET_FILENAME).exists()
