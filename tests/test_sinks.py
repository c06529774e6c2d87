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


@needs_shared
def test_detect_parquet_has_the_csv_rows_and_the_batch_columns(tmp_path, model_path):
    """One face->row builder: detect --parquet holds exactly detect --csv's rows, typed."""
    import csv

    pq = pytest.importorskip("pyarrow.parquet", reason="needs the scale extra (pyarrow)")
    from conftest import run_cli

    clip = str(SHARED / "data" / "video" / "putting-mask-on.mp4")
    photo = str(SHARED / "data" / "scenes-kaggle" / "images" / "maksssksksss0.jpg")
    proc = run_cli("detect", clip, photo, "-m", str(model_path), "--csv", str(tmp_path / "f.csv"),
                   "--parquet", str(tmp_path / "f.parquet"))
    assert proc.returncode == 0, proc.stderr
    rows = pq.read_table(tmp_path / "f.parquet").to_pylist()
    with open(tmp_path / "f.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(rows) == len(csv_rows) > 200
    for r, c in zip(rows, csv_rows):
        assert (r["source"], r["face"], r["label"], r["x1"], r["y2"]) == (c["source"], int(c["face"]), c["label"],
                                                                          int(c["x1"]), int(c["y2"]))
        assert r["uncertain"] == bool(int(c["uncertain"]))
        assert r["frame"] == (int(c["frame"]) if c["frame"] else None)
    assert not (tmp_path / "f.parquet.partial").exists()


def test_parquet_sink_commits_only_a_whole_run(engine, tmp_path):
    import maskwatch
    from maskwatch.sinks.files import ParquetWriter

    pytest.importorskip("pyarrow", reason="needs the scale extra (pyarrow)")
    out = tmp_path / "faces.parquet"
    with pytest.raises(OSError, match="disk full"):
        maskwatch.run(_pngs(tmp_path, 3), [ParquetWriter(out), Recorder(fail_on=2)], engine)
    assert not out.exists() and (tmp_path / "faces.parquet.partial").exists()
    out2 = tmp_path / "ok.parquet"
    maskwatch.run(_pngs(tmp_path, 2), [ParquetWriter(out2)], engine)
    assert out2.exists() and not (tmp_path / "ok.parquet.partial").exists()
