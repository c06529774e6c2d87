"""File sinks: JSON Lines, CSV and Parquet, one row builder (:mod:`maskwatch.results`) for all three.

Writers never overwrite: a path that exists is refused. ``-`` means standard output for JSON Lines
and CSV. After a failed run what was written is kept (results up to the failure are still
results).
"""

from __future__ import annotations

import csv
import logging
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


def make_writer(path: str | Path, kind: str, crops: bool = False):
    """A JSON Lines (``"json"``) or CSV (``"csv"``) writer."""
    return JsonlWriter(path) if kind == "json" else CsvWriter(path, crops=crops)


__all__ = ["CsvWriter", "JsonlWriter", "make_writer", "open_output"]
