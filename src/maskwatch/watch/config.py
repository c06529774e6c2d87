"""The site file: which cameras to watch, how fast, and when to alert.

A site file is TOML (read with the standard library's :mod:`tomllib`), or YAML with the same keys
(``.yaml`` / ``.yml``, with PyYAML)::

    [site]
    name = "Demo site"
    db = "watch-events.db"          # optional event log (``--db`` overrides it)

    [defaults]                      # optional; any camera key may be set here for every camera
    fps = 5
    alert_after_s = 10

    [[camera]]
    name = "entrance"
    source = "../shared/data/video/airport-crowd.mp4"   # a file (looped), rtsp://, http(s)://, or 0 / "cam:0"
    fps = 5
    alert_after_s = 10              # a person without a mask this long raises an alert
    webhook = "http://127.0.0.1:9000/alerts"

Every mistake is reported with the key that holds it (``camera[2].fps: expected a number > 0 ...``);
all mistakes of a file are reported together in one message.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskwatch.errors import InputError
from maskwatch.io.sources import CAMERA_PREFIX, STREAM_PREFIXES, VIDEO_EXTENSIONS

#: Keys a camera may have (in ``[[camera]]`` or ``[defaults]``).
CAMERA_KEYS = ("name", "source", "fps", "loop", "alert_after_s", "alert_cooldown_s", "webhook",
               "reconnect_min_s", "reconnect_max_s")
SITE_KEYS = ("name", "db", "detector")
TOP_KEYS = ("site", "defaults", "camera")


@dataclass(frozen=True)
class CameraConfig:
    """One camera of a site.

    Attributes:
        name: unique name (shown on the dashboard, stored as the event source).
        source: what to read: a video file, ``rtsp://...``, ``http(s)://...`` or a camera index.
        kind: ``"file"``, ``"stream"`` or ``"camera"`` (from ``source``).
        fps: at most this many frames per second are analysed; newer frames replace older ones.
        loop: a file is played again from the start when it ends (real time, as a camera would).
        alert_after_s: a person without a mask this long raises an alert (``None``: no alerts).
        alert_cooldown_s: after an alert, none other from this camera for this long.
        webhook: POST each alert as JSON to this URL.
        reconnect_min_s, reconnect_max_s: backoff between reconnection attempts (doubling).
    """

    name: str
    source: str
    kind: str
    fps: float = 5.0
    loop: bool = True
    alert_after_s: float | None = 10.0
    alert_cooldown_s: float = 0.0
    webhook: str | None = None
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0


@dataclass(frozen=True)
class SiteConfig:
    """A whole site: its name, event store and cameras."""

    name: str
    cameras: tuple[CameraConfig, ...]
    db: str | None = None
    detector: str = "auto"
    path: Path | None = field(default=None, compare=False)


def _source_kind(source: str) -> str | None:
    low = source.lower()
    if low.startswith(STREAM_PREFIXES):
        return "stream"
    text = source[len(CAMERA_PREFIX):] if low.startswith(CAMERA_PREFIX) else source
    if text.isascii() and text.isdigit():
        return "camera"
    return None


class _Checker:
    """Collects every mistake, each naming its key."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, key: str, message: str) -> None:
        self.errors.append(f"{key}: {message}")

    def number(self, key: str, value: Any, *, minimum: float = 0.0, open_min: bool = True) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"expected a number {'>' if open_min else '>='} {minimum:g}, got {value!r}")
            return None
        if value < minimum or (open_min and value == minimum):
            self.fail(key, f"expected a number {'>' if open_min else '>='} {minimum:g}, got {value!r}")
            return None
        return float(value)

    def unknown(self, where: str, table: dict, allowed: tuple[str, ...]) -> None:
        for k in table:
            if k not in allowed:
                self.fail(f"{where}{k}" if where else k,
                          f"unknown key; expected one of {', '.join(allowed)}")


def _camera(chk: _Checker, i: int, raw: Any, defaults: dict, base: Path) -> CameraConfig | None:
    where = f"camera[{i + 1}]"
    if not isinstance(raw, dict):
        chk.fail(where, f"expected a table ([[camera]] with name and source), got {raw!r}")
        return None
    chk.unknown(f"{where}.", raw, CAMERA_KEYS)
    merged = {**defaults, **raw}
    n_before = len(chk.errors)
    name = merged.get("name")
    if not isinstance(name, str) or not name.strip():
        chk.fail(f"{where}.name", f"expected a non-empty string naming the camera, got {name!r}")
    source = merged.get("source")
    if isinstance(source, int) and not isinstance(source, bool):
        source = str(source)
    kind = None
    if not isinstance(source, str) or not source.strip():
        chk.fail(f"{where}.source", "expected a video file, an rtsp:// or http(s):// URL, or a camera index "
                                    f"(0 or \"cam:0\"), got {source!r}")
    else:
        kind = _source_kind(source)
        if kind is None:
            path = Path(source).expanduser()
            found = path if path.is_absolute() or path.exists() else (base / path)
            if not found.is_file():
                chk.fail(f"{where}.source", f"{source}: no such file (relative paths are read from the current "
                                            f"folder, then from the site file's folder {base}); expected a video "
                                            "file, an rtsp:// or http(s):// URL, or a camera index")
            elif found.suffix.lower() not in VIDEO_EXTENSIONS:
                chk.fail(f"{where}.source", f"{source}: not a video file (expected one of "
                                            f"{', '.join(sorted(VIDEO_EXTENSIONS))})")
            else:
                source, kind = str(found), "file"
    kw: dict[str, Any] = {}
    if "fps" in merged:
        kw["fps"] = chk.number(f"{where}.fps", merged["fps"])
    if "loop" in merged:
        if not isinstance(merged["loop"], bool):
            chk.fail(f"{where}.loop", f"expected true or false, got {merged['loop']!r}")
        kw["loop"] = merged["loop"]
    if "alert_after_s" in merged:
        v = merged["alert_after_s"]
        kw["alert_after_s"] = None if v is False else chk.number(f"{where}.alert_after_s", v, open_min=False)
    if "alert_cooldown_s" in merged:
        kw["alert_cooldown_s"] = chk.number(f"{where}.alert_cooldown_s", merged["alert_cooldown_s"], open_min=False)
    if "webhook" in merged:
        hook = merged["webhook"]
        if not isinstance(hook, str) or not hook.lower().startswith(("http://", "https://")):
            chk.fail(f"{where}.webhook", f"expected an http:// or https:// URL, got {hook!r}")
        kw["webhook"] = hook
    for key in ("reconnect_min_s", "reconnect_max_s"):
        if key in merged:
            kw[key] = chk.number(f"{where}.{key}", merged[key])
    if len(chk.errors) > n_before:
        return None
    if kw.get("reconnect_min_s", 0.5) > kw.get("reconnect_max_s", 30.0):
        chk.fail(f"{where}.reconnect_max_s", "must be >= reconnect_min_s")
        return None
    return CameraConfig(name=name.strip(), source=source, kind=kind, **kw)


def parse_site(data: dict[str, Any], path: Path | None = None) -> SiteConfig:
    """Check a parsed site file; raises :class:`InputError` listing every mistake with its key."""
    chk = _Checker()
    base = path.parent if path is not None else Path.cwd()
    chk.unknown("", data, TOP_KEYS)
    site = data.get("site", {})
    if not isinstance(site, dict):
        chk.fail("site", f"expected a table [site], got {site!r}")
        site = {}
    chk.unknown("site.", site, SITE_KEYS)
    name = site.get("name", path.stem if path is not None else "site")
    if not isinstance(name, str) or not name.strip():
        chk.fail("site.name", f"expected a non-empty string, got {name!r}")
    db = site.get("db")
    if db is not None and (not isinstance(db, str) or not db.strip()):
        chk.fail("site.db", f"expected a file path for the event log, got {db!r}")
    detector = site.get("detector", "auto")
    choices = ("auto", "yunet", "yuface", "centerface", "fused")
    if detector not in choices:
        chk.fail("site.detector", f"expected one of {', '.join(choices)}, got {detector!r}")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        chk.fail("defaults", f"expected a table [defaults], got {defaults!r}")
        defaults = {}
    chk.unknown("defaults.", defaults, tuple(k for k in CAMERA_KEYS if k not in ("name", "source")))
    defaults = {k: v for k, v in defaults.items() if k not in ("name", "source")}
    raw_cams = data.get("camera")
    cameras: list[CameraConfig] = []
    if raw_cams is None or raw_cams == []:
        chk.fail("camera", "no cameras; add at least one [[camera]] table with name and source")
    elif not isinstance(raw_cams, list):
        chk.fail("camera", "expected [[camera]] tables (an array of tables), got a single value")
    else:
        seen: dict[str, int] = {}
        for i, raw in enumerate(raw_cams):
            name_i = raw.get("name") if isinstance(raw, dict) else None
            if isinstance(name_i, str) and name_i.strip() in seen:
                chk.fail(f"camera[{i + 1}].name", f"{name_i.strip()!r} is already the name of "
                                                  f"camera[{seen[name_i.strip()]}]; give each camera its own name")
            elif isinstance(name_i, str):
                seen[name_i.strip()] = i + 1
            cam = _camera(chk, i, raw, defaults, base)
            if cam is not None:
                cameras.append(cam)
    if chk.errors:
        where = f"{path}: " if path is not None else ""
        raise InputError(where + "; ".join(chk.errors))
    return SiteConfig(name=name.strip(), cameras=tuple(cameras), db=db, detector=detector, path=path)


def load_site(path: str | Path) -> SiteConfig:
    """Read and check a TOML site file (see the module doc); raises :class:`InputError` on any mistake."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a site file (TOML), e.g. examples/site.toml.")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such site file; expected a TOML file such as examples/site.toml.") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text file; expected a TOML site file.") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}).") from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        data = _yaml(path, text)
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{path}: not valid TOML ({exc}); see examples/site.toml for the format.") from exc
    return parse_site(data, path)


def _yaml(path: Path, text: str) -> dict[str, Any]:
    """A YAML site file (the same keys as TOML; ``camera:`` is a list); needs PyYAML (the watch extra)."""
    try:
        import yaml
    except ImportError as exc:
        from maskwatch.errors import DependencyError

        raise DependencyError(f"{path}: YAML site files need PyYAML: pip install 'maskwatch[watch]' "
                              "(or write the site file in TOML).") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({' '.join(str(exc).split())}).") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a YAML mapping with site, defaults and camera keys, got "
                         f"{type(data).__name__}.")
    return data
