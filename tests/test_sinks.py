"""The sink lifecycle (start / write / finish or failed / close) and the one summary's counts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, needs_shared
from maskwatch.sinks import Sink


class Recorder(Sink):
    def __init__(self, fail_on: int | None = None):
        self.calls: list[str] = []
        self.fail_on = fail_on

    def start(self):
        self.calls.append("start")

    def write(self, result):
        self.calls.append("write")
        if self.fail_on is not None and len([c for c in self.calls if c == "write"]) == self.fail_on:
            raise OSError("disk full")

    def finish(self, summary):
        self.calls.append(f"finish:{summary.frames}")

    def failed(self, error):
        self.calls.append(f"failed:{type(error).__name__}")

    def close(self):
        self.calls.append("close")


def _pngs(tmp_path: Path, n: int) -> list[str]:
    import cv2

    paths = []
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), np.full((48, 64, 3), 40 * i, np.uint8))
        paths.append(str(p))
    return paths


def test_a_successful_run_starts_writes_finishes_and_closes(engine, tmp_path):
    import maskwatch

    rec = Recorder()
    summary = maskwatch.run(_pngs(tmp_path, 3), [rec], engine)
    assert summary.frames == 3
    assert rec.calls == ["start", "write", "write", "write", "finish:3", "close"]


def test_a_failed_run_tells_failed_not_finish_and_still_closes_every_sink(engine, tmp_path):
    import maskwatch

    bad, other = Recorder(fail_on=2), Recorder()
    with pytest.raises(OSError, match="disk full"):
        maskwatch.run(_pngs(tmp_path, 3), [bad, other], engine)
    assert bad.calls[-2:] == ["failed:OSError", "close"]
    assert other.calls[-2:] == ["failed:OSError", "close"]
    assert not any(c.startswith("finish") for c in bad.calls + other.calls)


@needs_shared
def test_the_documented_ten_line_sink_counts_what_the_summary_counts(engine, capsys):
    """The example on the Python API page, run as a user would; its numbers agree with Summary's."""
    import maskwatch
    from maskwatch.summary import Summary

    page = (Path(__file__).resolve().parents[1] / "docs" / "python-api.md").read_text(encoding="utf-8")
    example = re.search(r"### Writing a sink.*?```python\n(.*?)```", page, re.S).group(1)
    clip = str(SHARED / "data" / "video" / "putting-mask-on.mp4")
    code = example.replace('maskwatch.run(["clip.mp4"], [LabelCounter()])', "")
    scope: dict = {}
    exec(compile(code, "python-api.md", "exec"), scope)  # noqa: S102 - the documented example itself
    counter, summary = scope["LabelCounter"](), Summary()
    maskwatch.run([clip], [counter, summary], engine)
    out = capsys.readouterr().out
    assert "in 234 frames" in out
    src = summary.sources[clip]
    assert sum(counter.counts.values()) == src.faces == sum(src.counts.values())
    assert src.frames == 234


@needs_shared
def test_summary_counts_add_up_and_uncertain_is_apart(engine):
    from maskwatch.summary import Summary

    folder = SHARED / "data" / "scenes-kaggle" / "images"
    photos = sorted(str(p) for p in folder.glob("*.jpg"))[:12]
    s = Summary(engine.classes)
    for r in engine.process(photos):
        s.write(r)
        assert sum(s.sources[r.source].counts.values()) == len(r.faces)
        assert s.sources[r.source].counts["uncertain"] == sum(f.uncertain for f in r.faces)
    total = s.total()
    assert total["faces"] == sum(total["counts"].values()) > 0
    assert set(total["counts"]) == {*engine.classes, "uncertain"}
