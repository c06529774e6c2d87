"""File sinks: JSON Lines, CSV and Parquet, one row builder (:mod:`maskwatch.results`) for all three.

Writers never overwrite: a path that exists is refused. ``-`` means standard output for JSON Lines
and CSV. After a failed run what was written is kept (results up to the failure are still
results).
"""

from __future__ import annotations

import csv
import logging
import os
import sys
from pathlib import Path
from typing import TextIO

from maskwatch.errors import InputError
from maskwatch.results import CSV_COLUMNS, CropResult, FrameResult
from maskwatch.runs import output_error
from maskwatch.sinks.base import Sink

log = logging.getLogger(__name__)

def open_output(path: str | Path) -> tuple[TextIO, bool]:
    """Open a new text output (``-`` = stdout); returns the file and whether the caller must close it.

    An existing file is refused, never overwritten."""
    if str(path) == "-":
        return sys.stdout, False
    p = Path(path)
    if p.exists() or p.is_symlink():
        raise InputError(f"{p}: already exists; choose a new output file (outputs never overwrite).")
    try:
        if p.parent and not p.parent.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
        # "x": created here and now, so a file that appeared meanwhile is still never overwritten.
        return open(p, "x", encoding="utf-8", newline=""), True
    except FileExistsError as exc:
        raise InputError(f"{p}: already exists; choose a new output file (outputs never overwrite).") from exc
    except OSError as exc:
        raise output_error(p, exc) from exc


class JsonlWriter(Sink):
    """One JSON object per line per result (the public contract in :mod:`maskwatch.results`)."""

    def __init__(self, path: str | Path) -> None:
        self._fh, self._owned = open_output(path)

    def write(self, result: FrameResult | CropResult) -> None:
        self._fh.write(result.to_json() + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._owned:
            self._fh.close()


class CsvWriter(Sink):
    """One CSV row per face (:data:`~maskwatch.results.CSV_COLUMNS`); crops get source,label,score,probs."""

    def __init__(self, path: str | Path, crops: bool = False) -> None:
        self._fh, self._owned = open_output(path)
        self._csv = csv.writer(self._fh)
        self._crops = crops
        self._header_done = False

    def write(self, result: FrameResult | CropResult) -> None:
        if isinstance(result, CropResult):
            if not self._header_done:
                self._csv.writerow(["source", "label", "score", *(f"p_{c}" for c in result.probs)])
                self._header_done = True
            self._csv.writerow([result.source, result.label, round(result.score, 4),
                                *(round(v, 4) for v in result.probs.values())])
        else:
            if not self._header_done:
                self._csv.writerow(CSV_COLUMNS)
                self._header_done = True
            self._csv.writerows(result.csv_rows())
        self._fh.flush()

    def close(self) -> None:
        if self._owned:
            self._fh.close()


class ParquetWriter(Sink):
    """One Parquet row per face (:func:`~maskwatch.results.face_rows`: the CSV's columns, typed), needs pyarrow
    (``pip install "maskwatch[scale]"``).

    Rows are written to ``PATH.partial`` as the run goes (one row group per ``flush_rows`` faces) and the
    file is renamed to ``PATH`` when the run succeeds (:meth:`finish`). After a failure the rows so far stay
    in ``PATH.partial``, so a file at ``PATH`` is always a whole run.
    """

    def __init__(self, path: str | Path, classes: tuple[str, ...] = ("with_mask", "without_mask", "mask_incorrect"),
                 flush_rows: int = 10_000) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise InputError('--parquet needs pyarrow: pip install "maskwatch[scale]"') from exc
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        for p in (self.path, self.partial):
            if p.exists() or p.is_symlink():
                raise InputError(f"{p}: already exists; choose a new output file (outputs never overwrite).")
        self.classes = tuple(classes)
        self.flush_rows = flush_rows
        self._pa, self._pq = pa, pq
        self._schema = pa.schema([
            ("source", pa.string()), ("frame", pa.int64()), ("time_s", pa.float64()), ("width", pa.int32()),
            ("height", pa.int32()), ("face", pa.int32()), ("x1", pa.int32()), ("y1", pa.int32()),
            ("x2", pa.int32()), ("y2", pa.int32()), ("face_score", pa.float64()), ("label", pa.string()),
            ("score", pa.float64()), *[(f"p_{c}", pa.float64()) for c in self.classes], ("track_id", pa.int64()),
            ("uncertain", pa.bool_()),
        ])
        try:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(str(self.partial), self._schema, compression="zstd")
        except OSError as exc:
            raise output_error(self.path, exc) from exc
        self._rows: list[dict] = []

    def write(self, result: FrameResult) -> None:
        from maskwatch.results import face_rows

        self._rows.extend(face_rows(result.to_dict(), self.classes))
        if len(self._rows) >= self.flush_rows:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(self._pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []

    def finish(self, summary) -> None:  # noqa: ARG002 - the run went well: commit the file
        self._flush()
        self._writer.close()
        self._writer = None
        os.replace(self.partial, self.path)

    def failed(self, error: BaseException) -> None:
        self._flush()
        log.warning("the run failed (%s); the faces written so far are in %s", error, self.partial)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def make_writer(path: str | Path, kind: str, crops: bool = False):
    """A JSON Lines (``"json"``) or CSV (``"csv"``) writer."""
    return JsonlWriter(path) if kind == "json" else CsvWriter(path, crops=crops)


__all__ = ["CsvWriter", "JsonlWriter", "ParquetWriter", "make_writer", "open_output"]
