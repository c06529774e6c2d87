"""What ``maskwatch batch`` is asked to label: folders, globs, files, URIs and manifests, as one list.

Every path goes through pyarrow's filesystem layer, so ``s3://``, ``gs://``, ``abfs://`` and
``hdfs://`` URIs work wherever the cluster has credentials; plain paths are local files. Each input
is stat'ed once here: its size and modification time are its identity for resuming (an input is done
when ``sources/`` holds a row with the same path, size and mtime).

Manifests are files that list inputs rather than being one: a ``.txt`` / ``.lst`` file with one path
per line (``#`` comments and blank lines ignored), or a ``.csv`` / ``.parquet`` file with a ``path``
column. Relative paths in a manifest are relative to the manifest's folder.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from maskwatch.errors import InputError
from maskwatch.io.images import IMAGE_EXTENSIONS
from maskwatch.io.sources import STREAM_PREFIXES, VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

MANIFEST_EXTENSIONS = frozenset({".txt", ".lst", ".csv", ".parquet"})
_MAGIC = ("*", "?", "[")


@dataclass(frozen=True)
class InputFile:
    """One input: ``source`` is the path as the user (or the manifest) gave it, as ``detect`` names it."""

    source: str
    kind: str  # "image" | "video"
    size: int
    mtime_ns: int

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.source, self.size, self.mtime_ns)


def is_uri(path: str) -> bool:
    return "://" in path and not path.lower().startswith("file://")


def _suffix(path: str) -> str:
    return PurePosixPath(path.split("?", 1)[0]).suffix.lower()


def media_kind(path: str) -> str | None:
    """``"image"``, ``"video"`` or ``None`` judged by the file extension."""
    ext = _suffix(path)
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    return None


def filesystem_for(path: str):
    """``(pyarrow filesystem, path inside it)`` for a local path or a URI."""
    from pyarrow import fs as pafs

    if is_uri(path):
        try:
            return pafs.FileSystem.from_uri(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad URIs / missing credentials
            raise InputError(f"{path}: cannot open this URI ({type(exc).__name__}: {exc}); check the scheme and "
                             "the credentials on this machine.") from exc
    if path.lower().startswith("file://"):
        path = path[len("file://"):]
    return pafs.LocalFileSystem(), path


def _info_to_input(source: str, info) -> InputFile | None:
    kind = media_kind(info.path)
    if kind is None:
        return None
    mtime_ns = int(info.mtime_ns) if info.mtime_ns is not None else 0
    return InputFile(source, kind, int(info.size or 0), mtime_ns)


def _list_folder(spec: str, fs, inner: str) -> list[InputFile]:
    from pyarrow import fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    out = []
    for info in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
        # Name each file like detect does for a folder: the folder as given joined with the relative path.
        rel = info.path[len(inner.rstrip("/")) + 1:] if info.path.startswith(inner.rstrip("/") + "/") else info.path
        source = spec.rstrip("/") + "/" + rel if is_uri(spec) else str(PurePosixPath(spec) / rel)
        item = _info_to_input(source, info)
        if item is not None:
            out.append(item)
    return out


def _expand_uri_glob(spec: str) -> list[InputFile]:
    """A glob in a URI: list recursively under the part before the first wildcard, then match."""
    from pyarrow import fs as pafs

    scheme, rest = spec.split("://", 1)
    parts = rest.split("/")
    fixed = []
    for p in parts:
        if any(m in p for m in _MAGIC):
            break
        fixed.append(p)
    base = f"{scheme}://{'/'.join(fixed)}"
    fs, inner = filesystem_for(base)
    pattern = inner.rstrip("/") + "/" + "/".join(parts[len(fixed):])
    infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    out = []
    for info in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
        if fnmatch.fnmatchcase(info.path, pattern):
            item = _info_to_input(f"{scheme}://{info.path}", info)
            if item is not None:
                out.append(item)
    return out


def _read_manifest(spec: str, fs, inner: str) -> list[str]:
    """Paths listed by a manifest file, made relative to the manifest's folder where they are relative."""
    ext = _suffix(spec)
    try:
        if ext == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(inner, filesystem=fs, columns=None)
            if "path" not in table.column_names:
                raise InputError(f"{spec}: a Parquet manifest needs a 'path' column; it has "
                                 f"{', '.join(table.column_names) or 'no columns'}.")
            paths = [p for p in table.column("path").to_pylist() if p]
        else:
            with fs.open_input_stream(inner) as fh:
                text = fh.read().decode("utf-8-sig")
            if ext == ".csv":
                import csv
                import io

                reader = csv.DictReader(io.StringIO(text))
                if not reader.fieldnames or "path" not in [f.strip() for f in reader.fieldnames]:
                    raise InputError(f"{spec}: a CSV manifest needs a header with a 'path' column; the header is "
                                     f"{reader.fieldnames!r}.")
                key = next(f for f in reader.fieldnames if f.strip() == "path")
                paths = [row[key].strip() for row in reader if (row.get(key) or "").strip()]
            else:
                paths = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt Parquet/CSV, unreadable file
        raise InputError(f"{spec}: cannot read this manifest ({type(exc).__name__}: {exc}); expected a text file "
                         "of paths, or a CSV / Parquet file with a 'path' column.") from exc
    base = spec.rsplit("/", 1)[0] if "/" in spec else ""
    out = []
    for p in paths:
        p = str(p)
        if is_uri(p) or p.startswith("/") or not base:
            out.append(p)
        else:
            out.append(f"{base}/{p}" if is_uri(base) else str(PurePosixPath(base) / p))
    return out


def resolve_inputs(specs: Sequence[str], *, _depth: int = 0) -> list[InputFile]:
    """Expand INPUTS into files with their size and mtime; raises :class:`InputError` naming the first bad one.

    Folders are searched recursively for images and videos; globs are expanded (``**`` for any depth);
    manifest files are read. The same file given twice is kept once.
    """
    from pyarrow import fs as pafs

    if not specs:
        raise InputError("no input given; pass folders, globs, image or video files, or a manifest "
                         "(.txt of paths, or .csv / .parquet with a 'path' column).")
    out: list[InputFile] = []
    for spec in specs:
        spec = str(spec)
        camera = spec.lower().startswith("cam:") or (spec.isascii() and spec.isdigit() and not os.path.exists(spec))
        if camera or (spec.lower().startswith(STREAM_PREFIXES) and not spec.lower().startswith(("http://", "https://"))):
            raise InputError(f"{spec}: batch labels files (images, videos, manifests), not cameras or live "
                             "streams; use 'maskwatch detect' for those.")
        if spec.lower().startswith(("http://", "https://")):
            raise InputError(f"{spec}: batch reads files through a filesystem (local paths or s3://, gs://, "
                             "hdfs:// URIs), not web URLs; download the files or list them in a manifest.")
        if is_uri(spec) and any(m in spec for m in _MAGIC):
            media = _expand_uri_glob(spec)
            if not media:
                raise InputError(f"{spec}: pattern matches no images or videos.")
            out.extend(media)
            continue
        if not is_uri(spec) and not os.path.exists(spec) and glob.has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            found = False
            for m in matches:
                fs, inner = filesystem_for(m)
                info = fs.get_file_info(inner)
                if info.type == pafs.FileType.File:
                    item = _info_to_input(m, info)
                    if item is not None:
                        out.append(item)
                        found = True
            if not found:
                raise InputError(f"{spec}: pattern matches no images or videos.")
            continue
        fs, inner = filesystem_for(spec)
        try:
            info = fs.get_file_info(inner)
        except Exception as exc:  # noqa: BLE001 - permission / network errors from object stores
            raise InputError(f"{spec}: cannot be listed ({type(exc).__name__}: {exc}).") from exc
        if info.type == pafs.FileType.NotFound and _depth > 0:
            # A manifest's missing path is one failed input (failures.jsonl), not a refused batch.
            kind = "video" if _suffix(spec) in VIDEO_EXTENSIONS else "image"
            out.append(InputFile(spec, kind, -1, -1))
            continue
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"{spec}: no such file or folder; expected an image, video, folder, glob or manifest "
                             "(.txt of paths, .csv / .parquet with a 'path' column).")
        if info.type == pafs.FileType.Directory:
            media = _list_folder(spec, fs, inner)
            if not media:
                raise InputError(f"{spec}: folder has no images or videos (.jpg, .png, .mp4, ...).")
            out.extend(media)
        elif _suffix(spec) in MANIFEST_EXTENSIONS:
            if _depth > 0:
                raise InputError(f"{spec}: a manifest may not list another manifest; list image and video files.")
            listed = _read_manifest(spec, fs, inner)
            if not listed:
                raise InputError(f"{spec}: the manifest lists no paths.")
            out.extend(resolve_inputs(listed, _depth=_depth + 1))
        else:
            item = _info_to_input(spec, info)
            if item is None:
                raise InputError(f"{spec}: not an image, video or manifest by its extension; expected .jpg, .png, "
                                 ".mp4, ... or a manifest (.txt, .csv, .parquet).")
            out.append(item)
    seen: set[str] = set()
    unique = []
    for item in out:
        if item.source not in seen:
            seen.add(item.source)
            unique.append(item)
    return unique
