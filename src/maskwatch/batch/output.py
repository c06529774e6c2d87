"""The output folder of ``maskwatch batch``: Parquet parts committed atomically, resumable.

Layout::

    DIR/faces/part-*.parquet     one row per face
    DIR/frames/part-*.parquet    one row per image or video frame (frames with no face included)
    DIR/sources/part-*.parquet   one row per input: what it was, what was found, status, error
    DIR/failures.jsonl           one line per input that could not be labelled
    DIR/_settings.json           model and settings of the run (a rerun must use the same ones)
    DIR/_SUCCESS                 written last: settings, model card summary, counts, wall time

A part is written under a hidden temporary name and renamed into place; ``faces`` and ``frames``
parts are renamed first and the ``sources`` part with the same name last, so a ``sources`` row is the
commit record of its input. A run that dies leaves at most hidden temporary files and ``faces`` /
``frames`` parts without their ``sources`` part; the next run removes both before it starts, then
skips every input that has a ``sources`` row with the same path, size and mtime. Readers (pandas,
DuckDB, Spark, Ray) ignore names starting with ``.`` or ``_``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from maskwatch.errors import InputError
from maskwatch.results import face_rows
from maskwatch.summary import count_keys, count_labels

log = logging.getLogger(__name__)

TABLES = ("faces", "frames", "sources")


def _pa():
    import pyarrow as pa

    return pa


def faces_schema(classes: Iterable[str]):
    pa = _pa()
    return pa.schema([
        ("source", pa.string()), ("frame", pa.int64()), ("time_s", pa.float64()), ("face", pa.int32()),
        ("x1", pa.int32()), ("y1", pa.int32()), ("x2", pa.int32()), ("y2", pa.int32()),
        ("face_score", pa.float64()), ("label", pa.string()), ("score", pa.float64()),
        *[(f"p_{c}", pa.float64()) for c in classes], ("track_id", pa.int64()), ("uncertain", pa.bool_()),
    ])


def frames_schema(classes: Iterable[str]):
    pa = _pa()
    return pa.schema([
        ("source", pa.string()), ("frame", pa.int64()), ("time_s", pa.float64()), ("width", pa.int32()),
        ("height", pa.int32()), ("faces", pa.int32()), *[(f"n_{c}", pa.int32()) for c in count_keys(classes)],
    ])


def sources_schema(classes: Iterable[str]):
    pa = _pa()
    return pa.schema([
        ("source", pa.string()), ("kind", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
        ("width", pa.int32()), ("height", pa.int32()), ("fps", pa.float64()), ("frames", pa.int64()),
        ("chunks", pa.int32()), ("faces", pa.int64()), *[(f"n_{c}", pa.int64()) for c in count_keys(classes)],
        ("tracks", pa.int64()), ("status", pa.string()), ("error", pa.string()), ("run_id", pa.string()),
    ])


@dataclass
class Done:
    """An input fully labelled (or failed): its frames as ``FrameResult.to_dict`` objects, and its source row."""

    source: dict[str, Any]
    frames: list[dict[str, Any]]


class OutputDir:
    """Create or reopen an output folder, find what is already done, and commit new parts."""

    def __init__(self, path: str, classes: tuple[str, ...], settings: dict[str, Any]) -> None:
        from maskwatch.batch.inputs import filesystem_for, is_uri

        self.uri = str(path)
        self.fs, self.root = filesystem_for(self.uri)
        self.local = not is_uri(self.uri)
        self.classes = tuple(classes)
        self.settings = settings
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        self._seq = 0
        self._lock_path: str | None = None

    # -- paths -------------------------------------------------------------------------------------------
    def _p(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def _exists(self, path: str) -> bool:
        from pyarrow import fs as pafs

        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def _write_text(self, name: str, text: str) -> None:
        tmp = self._p(f".tmp-{self.run_id}-{name}")
        with self.fs.open_output_stream(tmp) as fh:
            fh.write(text.encode("utf-8"))
        self.fs.move(tmp, self._p(name))

    def _read_text(self, name: str) -> str | None:
        if not self._exists(self._p(name)):
            return None
        with self.fs.open_input_stream(self._p(name)) as fh:
            return fh.read().decode("utf-8")

    # -- opening -----------------------------------------------------------------------------------------
    def open(self) -> None:
        """Create the folder (or check an existing one), take the lock, clear leftovers of a crashed run."""
        from pyarrow import fs as pafs

        try:
            info = self.fs.get_file_info(self.root)
        except OSError as exc:
            raise InputError(f"{self.uri}: cannot be looked at ({exc}); choose another --output folder.") from exc
        if info.type not in (pafs.FileType.NotFound, pafs.FileType.Directory):
            what = "a file" if info.type == pafs.FileType.File else "not a folder (a device or special file)"
            raise InputError(f"{self.uri}: is {what}; --output wants a folder (new or made by maskwatch batch).")
        if info.type == pafs.FileType.Directory:
            entries = self.fs.get_file_info(pafs.FileSelector(self.root))
            names = {e.base_name for e in entries}
            if names and "_settings.json" not in names:
                raise InputError(f"{self.uri}: folder exists and was not made by maskwatch batch; choose a new or "
                                 "empty --output folder (outputs never overwrite).")
        try:
            self.fs.create_dir(self.root, recursive=True)
        except OSError as exc:
            import re

            m = re.search(r"\[errno \d+\] (.*)$", str(exc))
            reason = getattr(exc, "strerror", None) or (m.group(1) if m else str(exc))
            raise InputError(f"{self.uri}: the --output folder cannot be created ({reason}); choose a folder you "
                             "can write, e.g. results/.") from exc
        self._take_lock()
        previous = self._read_text("_settings.json")
        if previous is not None:
            old = json.loads(previous)
            if old != json.loads(json.dumps(self.settings)):
                diff = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
                self.release()
                raise InputError(f"{self.uri}: holds results made with other settings ({', '.join(diff)}); rerun "
                                 "with the same model and options to resume, or choose a new --output folder.")
        else:
            self._write_text("_settings.json", json.dumps(self.settings, indent=2, sort_keys=True) + "\n")
        for t in TABLES:
            self.fs.create_dir(self._p(t), recursive=True)
        self._clean_leftovers()

    def _take_lock(self) -> None:
        lock = self._p("_LOCK")
        text = self._read_text("_LOCK")
        if text is not None and self.local:
            try:
                holder = json.loads(text)
                alive = holder.get("host") == socket.gethostname() and _pid_alive(int(holder.get("pid", -1)))
            except (ValueError, TypeError):
                alive = False
            if alive:
                raise InputError(f"{self.uri}: another maskwatch batch (pid {holder['pid']}) is writing here; wait "
                                 "for it to finish or choose another --output folder.")
            log.info("%s: removing the lock of a run that ended without cleaning up", self.uri)
        self._write_text("_LOCK", json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                              "run_id": self.run_id}))
        self._lock_path = lock

    def release(self) -> None:
        if self._lock_path is not None:
            try:
                self.fs.delete_file(self._lock_path)
            except OSError:
                pass
            self._lock_path = None

    def _parts(self, table: str) -> dict[str, Any]:
        from pyarrow import fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self._p(table), allow_not_found=True))
        return {i.base_name: i for i in infos if i.type == pafs.FileType.File}

    def _clean_leftovers(self) -> None:
        """Delete temporary files and parts whose ``sources`` part (their commit record) never arrived."""
        committed = {n for n in self._parts("sources") if not n.startswith((".", "_"))}
        removed = 0
        for t in TABLES:
            for name, info in self._parts(t).items():
                if name.startswith(".tmp-") or (t != "sources" and name.endswith(".parquet")
                                                and name not in committed):
                    self.fs.delete_file(info.path)
                    removed += 1
        from pyarrow import fs as pafs

        for info in self.fs.get_file_info(pafs.FileSelector(self.root)):
            if info.type == pafs.FileType.File and info.base_name.startswith(".tmp-"):
                self.fs.delete_file(info.path)
                removed += 1
        if removed:
            log.info("%s: removed %d uncommitted file(s) of an interrupted run", self.uri, removed)

    def completed(self) -> dict[tuple[str, int, int], str]:
        """``(source, size, mtime_ns) -> status`` of every input already committed."""
        import pyarrow.parquet as pq

        done: dict[tuple[str, int, int], str] = {}
        for name, info in sorted(self._parts("sources").items()):
            if name.startswith((".", "_")) or not name.endswith(".parquet"):
                continue
            t = pq.read_table(info.path, filesystem=self.fs, columns=["source", "size", "mtime_ns", "status"])
            for s, z, m, st in zip(*(t.column(c).to_pylist() for c in ("source", "size", "mtime_ns", "status"))):
                done[(s, int(z), int(m))] = st
        return done

    # -- writing -----------------------------------------------------------------------------------------
    def commit(self, items: list[Done]) -> str | None:
        """Write one part (faces, frames, sources) for these inputs; returns the part name."""
        if not items:
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._seq += 1
        name = f"part-{self.run_id}-{self._seq:05d}.parquet"
        faces, frames = self._face_rows(items), self._frame_rows(items)
        tables = {
            "faces": pa.Table.from_pylist(faces, schema=faces_schema(self.classes)),
            "frames": pa.Table.from_pylist(frames, schema=frames_schema(self.classes)),
            "sources": pa.Table.from_pylist([d.source for d in items], schema=sources_schema(self.classes)),
        }
        for t in TABLES:  # sources last: it is the commit record
            tmp = self._p(t, f".tmp-{name}")
            pq.write_table(tables[t], tmp, filesystem=self.fs, compression="zstd")
            self.fs.move(tmp, self._p(t, name))
        return name

    def _face_rows(self, items: list[Done]) -> list[dict[str, Any]]:
        names = faces_schema(self.classes).names
        return [{k: r[k] for k in names} for d in items for fr in d.frames for r in face_rows(fr, self.classes)]

    def _frame_rows(self, items: list[Done]) -> list[dict[str, Any]]:
        rows = []
        for d in items:
            for fr in d.frames:
                counts = count_labels(fr["faces"], self.classes)
                rows.append({"source": fr["source"], "frame": fr["frame"], "time_s": fr["time_s"],
                             "width": fr["width"], "height": fr["height"], "faces": len(fr["faces"]),
                             **{f"n_{k}": v for k, v in counts.items()}})
        return rows

    def append_failures(self, rows: list[dict[str, Any]]) -> None:
        """Add lines to ``failures.jsonl`` (rewritten whole through a temporary file: object stores cannot append)."""
        if not rows:
            return
        old = self._read_text("failures.jsonl") or ""
        new = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        self._write_text("failures.jsonl", old + new)

    def rebuild_failures(self) -> int:
        """Make ``failures.jsonl`` list exactly the failed inputs recorded in ``sources`` (once each)."""
        import pyarrow.parquet as pq

        lines = []
        for name, info in sorted(self._parts("sources").items()):
            if name.startswith((".", "_")) or not name.endswith(".parquet"):
                continue
            t = pq.read_table(info.path, filesystem=self.fs, columns=["source", "kind", "status", "error", "run_id"])
            for row in t.to_pylist():
                if row["status"] != "ok":
                    lines.append({"source": row["source"], "kind": row["kind"], "error": row["error"],
                                  "run_id": row["run_id"]})
        if lines or self._exists(self._p("failures.jsonl")):
            self._write_text("failures.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))
        return len(lines)

    def clear_success(self) -> None:
        if self._exists(self._p("_SUCCESS")):
            self.fs.delete_file(self._p("_SUCCESS"))

    def write_success(self, summary: dict[str, Any]) -> None:
        self._write_text("_SUCCESS", json.dumps(summary, indent=2, sort_keys=True) + "\n")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
