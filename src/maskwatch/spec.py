"""The engine spec: the one place where an engine's settings and their defaults are declared.

An :class:`EngineSpec` is a frozen, serialisable description of a
:class:`~maskwatch.engine.MaskDetector`: which classifier, which face backend with which thresholds and
sizes, how video faces are re-classified, whether photos are classified with their mirror image,
the pixel limit, and the face tracker's alert settings. Every front derives from it:

- the CLI's options are generated from its fields (:mod:`maskwatch.options`), so ``detect``, ``batch``,
  ``benchmark``, ``evaluate`` and ``serve`` declare each option once, with one default and one range;
- ``MASKWATCH_*`` environment variables are read by :meth:`EngineSpec.from_env` (the server);
- batch actors receive :meth:`EngineSpec.to_dict` and build the same engine with :meth:`from_dict`;
- ``maskwatch models info`` and ``GET /v1/info`` show the effective spec.

A front that wants another default says so in one visible line, e.g. the server's
``EngineSpec(mirror_photos=False)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from maskwatch.errors import InputError


def _opt(default: Any, help: str, *, cli: str | None = None, env: str | None = None, lo: float | None = None,
         hi: float | None = None, choices: tuple[str, ...] | None = None, group: str = "engine") -> Any:
    """A spec field with its CLI flag, environment variable, range and help text (field metadata)."""
    meta = {"help": help, "cli": cli, "env": env, "lo": lo, "hi": hi, "choices": choices, "group": group}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class EngineSpec:
    """Everything that makes one engine behave as it does; the defaults here are the project's defaults.

    Build one with keywords (unknown ones are a ``TypeError``), from ``MASKWATCH_*`` variables
    (:meth:`from_env`) or from a dict (:meth:`from_dict`); derive variants with :meth:`replace`.
    Values are checked when the spec is made (:class:`~maskwatch.errors.InputError` naming the option).
    """

    # --- the classifier -----------------------------------------------------------------------
    model: str | None = _opt(None, "maskwatch .onnx classifier (default: the bundled model).",
                             cli="--model", env="MASKWATCH_MODEL", group="model")
    threads: int = _opt(1, "ONNX Runtime threads for the classifier.", env="MASKWATCH_THREADS", lo=1, hi=64,
                        group="runtime")
    mirror_photos: bool = _opt(
        True, "Photos: classify each face with its mirror image and average the two (steadier on real faces, "
              "twice the classifier's time; video frames never). Chosen on scenes-kaggle validation faces "
              "(accuracy 0.950 -> 0.961).", cli="--mirror/--no-mirror", env="MASKWATCH_MIRROR", group="mirror")
    # --- the face stage -----------------------------------------------------------------------
    detector: str = _opt("auto", "Face detector backend (auto: YuNet, bundled; centerface/fused find more small "
                                 "faces, slower).", cli="--detector", env="MASKWATCH_DETECTOR", group="face")
    detector_model: str | None = _opt(None, "Detector .onnx file or folder (default: $MASKWATCH_MODELS, the user "
                                            "cache, the bundled copy).", cli="--detector-model",
                                      env="MASKWATCH_DETECTOR_MODEL", group="face")
    face_threshold: float = _opt(0.55, "Minimum face-detector confidence.", cli="--face-threshold",
                                 env="MASKWATCH_FACE_THRESHOLD", lo=0.0, hi=1.0, group="face")
    nms_threshold: float = _opt(0.3, "IoU above which overlapping face boxes are merged.", lo=0.0, hi=1.0,
                                group="face")
    # Fitted on one half of scenes-dev, checked on the other (benchmarks/tune_detector.py); small photos
    # are enlarged so that small faces become findable.
    detect_size: int | None = _opt(1280, "Scale a photo's long side to this many pixels for face detection "
                                         "(None: native size).", env="MASKWATCH_DETECT_SIZE", lo=64, hi=4096,
                                   group="face")
    # Real time first: airport-crowd.mp4 (640x360) ran at 76 frames/s at 640 against 32 at 1280.
    video_detect_size: int | None = _opt(640, "The same for video frames (files, cameras, streams).",
                                         env="MASKWATCH_VIDEO_DETECT_SIZE", lo=64, hi=4096, group="face")
    min_face: int = _opt(8, "Ignore faces narrower than N pixels.", cli="--min-face", env="MASKWATCH_MIN_FACE",
                         lo=0, group="face")
    # Box calibration fitted on both annotation styles (scenes-kaggle train + scenes-dev FIT, equal
    # weight; benchmarks/fit_faces.py): faces 12.5% wider, 7.5% taller, centre 7.5% of a box lower.
    box_scale: tuple[float, float] = _opt((1.125, 1.075), "Face box width and height multipliers.", group="face")
    box_shift: tuple[float, float] = _opt((0.0, 0.075), "Face box centre shift, as fractions of its size.",
                                          group="face")
    max_pixels: int = _opt(100_000_000, "Largest image or video frame accepted, in pixels (decompression-bomb "
                                        "guard).", env="MASKWATCH_MAX_PIXELS", lo=1, group="runtime")
    # --- video faces --------------------------------------------------------------------------
    reclassify_every: int = _opt(5, "In videos, classify a tracked face again after N frames (1 and "
                                    "--reclassify-stable-every 1: every frame).", cli="--reclassify-every",
                                 env="MASKWATCH_RECLASSIFY_EVERY", lo=1, group="tracking")
    reclassify_stable_every: int = _opt(
        15, "The same for a stable face (its last verdicts agreed, confidently, and it kept its size); at least "
            "--reclassify-every.", cli="--reclassify-stable-every", env="MASKWATCH_RECLASSIFY_STABLE_EVERY", lo=1,
        group="tracking")
    stable_confidence: float = _opt(0.9, "A verdict counts towards a track's stability at this calibrated "
                                         "probability or more.", lo=0.0, hi=1.0, group="tracking")
    alert_after_s: float = _opt(2.0, "Seconds a tracked face must be without a mask before one unmasked_alert.",
                                cli="--alert-after", env="MASKWATCH_ALERT_AFTER", lo=0.0, group="alerts")
    alert_cooldown_s: float = _opt(0.0, "Seconds after an alert during which the same source raises no other.",
                                   cli="--alert-cooldown", env="MASKWATCH_ALERT_COOLDOWN", lo=0.0, group="alerts")
    min_track_frames: int = _opt(3, "A face track counts as a person when seen on at least N frames.",
                                 cli="--min-track-frames", env="MASKWATCH_MIN_TRACK_FRAMES", lo=1, group="alerts")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"{_label(f)} must be a finite number, got {value}")
            if lo is not None and value < lo:
                raise InputError(f"{_label(f)} must be >= {lo}, got {value}")
            if hi is not None and value > hi:
                raise InputError(f"{_label(f)} must be <= {hi}, got {value}")
        for name in ("box_scale", "box_shift"):
            value = getattr(self, name)
            if len(value) != 2:
                raise InputError(f"{name} must have two numbers (x, y), got {value!r}")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        if self.nms_threshold <= 0:
            raise InputError(f"the NMS threshold must be in (0, 1], got {self.nms_threshold}")
        if self.reclassify_stable_every < self.reclassify_every:
            object.__setattr__(self, "reclassify_stable_every", self.reclassify_every)
        for name in ("model", "detector_model"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, os.fspath(value))

    # --- derivation ---------------------------------------------------------------------------
    def replace(self, **changes: Any) -> EngineSpec:
        """This spec with some fields changed (checked again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples as lists); :meth:`from_dict` reads it back."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineSpec:
        """A spec from :meth:`to_dict`'s output (unknown keys are an error)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown engine setting(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**{k: (tuple(v) if k in ("box_scale", "box_shift") and v is not None else v)
                      for k, v in data.items()})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, base: EngineSpec | None = None,
                 **overrides: Any) -> EngineSpec:
        """``base`` (default: the project defaults) with the ``MASKWATCH_*`` variables that are set, then
        ``overrides`` that are not ``None``. A variable that does not parse is an :class:`InputError`
        naming it."""
        env = os.environ if environ is None else environ
        spec = base or cls()
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = f.metadata.get("env")
            raw = env.get(var) if var else None
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _parse(f, var, raw.strip(), getattr(spec, f.name))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(spec, **values)

    def changed(self, settings: Any = None, **fields: Any) -> EngineSpec:
        """This spec with the ``fields`` that are not ``None`` changed, and the face stage of ``settings``
        (a :class:`~maskwatch.faces.base.DetectorSettings`) when given: the shortcut arguments of
        ``MaskDetector(...)``, ``maskwatch.batch.run(...)`` and the server settings."""
        changes = {k: v for k, v in fields.items() if v is not None}
        if settings is not None:
            changes.update(face_threshold=settings.score_threshold, nms_threshold=settings.nms_threshold,
                           detect_size=settings.detect_size, video_detect_size=settings.video_detect_size,
                           min_face=settings.min_face, box_scale=tuple(settings.box_scale),
                           box_shift=tuple(settings.box_shift))
        return replace(self, **changes) if changes else self

    def tracker_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~maskwatch.track.FaceTracker` from this spec."""
        return {"reclassify_every": self.reclassify_every, "reclassify_stable_every": self.reclassify_stable_every,
                "stable_confidence": self.stable_confidence, "alert_after_s": self.alert_after_s,
                "alert_cooldown_s": self.alert_cooldown_s}

    def differences(self, other: EngineSpec | None = None) -> dict[str, Any]:
        """The fields that differ from ``other`` (default: the project defaults)."""
        other = other or EngineSpec()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)}


def _label(f) -> str:
    cli = f.metadata.get("cli")
    return f"{cli.split('/')[0]} ({f.name})" if cli else f.name


def _parse(f, var: str, raw: str, current: Any) -> Any:
    kind = type(current) if current is not None else (int if "int" in str(f.type) else float if "float" in str(f.type)
                                                        else str)
    try:
        if kind is bool:
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if raw.lower() in ("none", "native", "0") and "None" in str(f.type):
                return None
            return int(raw)
        if kind is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            return value
        if kind is tuple:
            parts = [float(x) for x in raw.split(",")]
            if len(parts) != 2:
                raise ValueError
            return tuple(parts)
        return raw
    except ValueError:
        what = {bool: "1 or 0", int: "a whole number", float: "a finite number", tuple: "two numbers 'x,y'"}.get(kind,
                                                                                                               "text")
        raise InputError(f"{var}={raw!r} is not valid: expected {what} (for {f.name}). Fix or unset the variable.") \
            from None


#: The project defaults, as one spec.
DEFAULT_SPEC = EngineSpec()
