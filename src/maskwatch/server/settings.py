"""The server's settings: one object, read from arguments and ``MASKWATCH_*`` variables, validated at start.

:class:`ServerSettings` is a ``pydantic-settings`` model: each field is read from the environment
variable named in :data:`ENV_NAMES` (``MASKWATCH_`` + the field name in capitals, but for the few
listed there), arguments win over the environment, and every value is checked when the object is
made, so a bad setting stops ``maskwatch serve`` at start with one line naming the variable.
docs/server.md has the table of every setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from pydantic import AliasChoices, Field, InstanceOf, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from maskwatch.defaults import MAX_UPLOAD_MB
from maskwatch.errors import InputError
from maskwatch.faces.base import DetectorSettings
from maskwatch.faces.registry import backend_names
from maskwatch.options import SERVE_DEFAULTS
from maskwatch.spec import EngineSpec

MB = 1 << 20
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

#: Fields whose environment variable is not ``MASKWATCH_`` + the field name in capitals.
_ENV_EXCEPTIONS = {
    "upload_timeout_s": "MASKWATCH_UPLOAD_TIMEOUT",
    "mirror_photos": "MASKWATCH_MIRROR",
}


def _env(name: str) -> Any:
    """The field's validation aliases: its own name (arguments) and its environment variable."""
    return AliasChoices(name, _ENV_EXCEPTIONS.get(name, f"MASKWATCH_{name.upper()}"))


#: The environment :meth:`ServerSettings.from_env` was given (``None``: the process environment).
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("maskwatch_server_environ", default=None)


class _Environment(EnvSettingsSource):
    """The environment-variable source, reading the mapping handed to ``from_env`` when there is one."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _ENVIRON.get()
        env = os.environ if env is None else env
        return {(k if self.case_sensitive else k.lower()): v for k, v in env.items() if v.strip()}


class ServerSettings(BaseSettings):
    """Everything ``maskwatch serve`` can be told (docs/server.md has the table with defaults).

    Attributes:
        host / port: where to listen.
        model: maskwatch ``.onnx`` classifier, ``None`` for the bundled one.
        detector / detector_model: face-detector backend and its model file or folder.
        detector_settings: face-detector thresholds and sizes (``--face-threshold``, ``--detect-size``,
            ``--min-face``); ``None`` for the defaults. Not read from the environment.
        mirror_photos: classify photo faces with their mirror image too, as the CLI does. Off here:
            with 8 clients on 2 cores the second classifier pass took photo latency from 864 to 1206 ms
            p95 (benchmarks/serve_load.py), over the 1 s the web app must keep. Video frames never are.
        max_upload_mb: request body limit (MB of 2**20 bytes), 413 above.
        max_pixels: pixel budget of one photo request, all its images added up (from their headers,
            before decoding), 413 above.
        max_frame_pixels: pixel limit of one video frame: every frame of a video job (the stream
            header is checked before the first frame is decoded) and every ``/v1/live`` frame.
        workers: images processed at once; they share one classifier.
        max_queue: requests whose body has arrived that may wait for a worker; 503 beyond.
        max_uploads / max_uploads_per_client: request bodies arriving at once, overall and from one
            client address; 503 beyond. Slow uploads hold these, never a place in the queue.
        upload_timeout_s: seconds a photo body may take to arrive (408 after); for a video, the
            longest pause.
        max_live_sessions / max_live_sessions_per_client: live camera sessions open at once, overall
            (503 beyond) and from one address (429 beyond).
        live_detect_size: face-detection size (long side, px) of live frames.
        max_crops: most face crops in one ``/v1/classify`` request.
        max_video_mb / max_video_s / max_jobs / job_ttl_s: video job limits: upload size, duration,
            jobs uploading, waiting or running at once, seconds a finished job's files are kept.
        jobs_dir: the jobs folder (``None``: ``~/.cache/maskwatch/jobs``).
        db: SQLite event log recording live sessions and video jobs (``--db``).
        log_level: maskwatch's and uvicorn's log level.
        access_log: one line per request, in the combined log format, on ``maskwatch.access``.
    """

    model_config = SettingsConfigDict(
        extra="forbid", validate_default=True, populate_by_name=True, protected_namespaces=(),
        env_ignore_empty=True,
    )

    host: str = Field("127.0.0.1", validation_alias=_env("host"))
    port: int = Field(8000, ge=1, le=65535, validation_alias=_env("port"))
    model: str | None = Field(None, validation_alias=_env("model"))
    detector: str = Field("auto", validation_alias=_env("detector"))
    detector_model: str | None = Field(None, validation_alias=_env("detector_model"))
    detector_settings: InstanceOf[DetectorSettings] | None = Field(None, exclude=True)
    mirror_photos: bool = Field(SERVE_DEFAULTS["mirror_photos"], validation_alias=_env("mirror_photos"))
    max_upload_mb: float = Field(MAX_UPLOAD_MB, validation_alias=_env("max_upload_mb"))
    max_pixels: int = Field(50_000_000, validation_alias=_env("max_pixels"))
    max_frame_pixels: int = Field(4096 * 4096, validation_alias=_env("max_frame_pixels"))
    workers: int = Field(max(1, min(2, os.cpu_count() or 1)), validation_alias=_env("workers"))
    max_queue: int = Field(32, validation_alias=_env("max_queue"))
    max_uploads: int = Field(64, validation_alias=_env("max_uploads"))
    max_uploads_per_client: int = Field(8, validation_alias=_env("max_uploads_per_client"))
    upload_timeout_s: float = Field(30.0, validation_alias=_env("upload_timeout_s"))
    max_live_sessions: int = Field(32, validation_alias=_env("max_live_sessions"))
    max_live_sessions_per_client: int = Field(4, validation_alias=_env("max_live_sessions_per_client"))
    live_detect_size: int = Field(480, validation_alias=_env("live_detect_size"))
    max_crops: int = Field(64, validation_alias=_env("max_crops"))
    max_video_mb: float = Field(200.0, validation_alias=_env("max_video_mb"))
    max_video_s: float = Field(600.0, validation_alias=_env("max_video_s"))
    max_jobs: int = Field(4, validation_alias=_env("max_jobs"))
    job_ttl_s: float = Field(3600.0, validation_alias=_env("job_ttl_s"))
    jobs_dir: str | None = Field(None, validation_alias=_env("jobs_dir"))
    db: str | None = Field(None, validation_alias=_env("db"))
    log_level: str = Field("warning", validation_alias=_env("log_level"))
    access_log: bool = Field(True, validation_alias=_env("access_log"))

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the environment; no ``.env`` or secrets files."""
        return init_settings, _Environment(settings_cls)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise InputError(_describe(exc)) from None

    @model_validator(mode="after")
    def _check(self) -> ServerSettings:
        checks = [
            (self.max_upload_mb > 0, f"the upload limit must be > 0 MB, got {self.max_upload_mb}"),
            (self.max_pixels >= 1, f"the pixel limit must be >= 1, got {self.max_pixels}"),
            (self.max_frame_pixels >= 1, f"the frame pixel limit must be >= 1, got {self.max_frame_pixels}"),
            (1 <= self.workers <= 64, f"workers must be between 1 and 64, got {self.workers}"),
            (self.max_queue >= 0, f"the queue limit must be >= 0, got {self.max_queue}"),
            (self.max_uploads >= 1 and self.max_uploads_per_client >= 1,
             f"the upload limits must be >= 1, got {self.max_uploads} and {self.max_uploads_per_client}"),
            (self.max_live_sessions >= 1 and self.max_live_sessions_per_client >= 1,
             f"the live session limits must be >= 1, got {self.max_live_sessions} and "
             f"{self.max_live_sessions_per_client}"),
            (self.upload_timeout_s > 0, f"the upload timeout must be > 0 s, got {self.upload_timeout_s}"),
            (64 <= self.live_detect_size <= 4096,
             f"the live detection size must be 64..4096 px, got {self.live_detect_size}"),
            (self.max_crops >= 1, f"max crops must be >= 1, got {self.max_crops}"),
            (self.max_video_mb > 0 and self.max_video_s > 0, "the video limits (MB, s) must be > 0"),
            (self.max_jobs >= 1, f"max jobs must be >= 1, got {self.max_jobs}"),
            (self.job_ttl_s > 0, f"the job time to live must be > 0 s, got {self.job_ttl_s}"),
            (self.detector in backend_names(),
             f"unknown face detector {self.detector!r}; choose one of {', '.join(backend_names())}"),
            (self.log_level.lower() in LOG_LEVELS,
             f"unknown log level {self.log_level!r}; choose one of {', '.join(LOG_LEVELS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        self.__dict__["log_level"] = self.log_level.lower()
        # The engine's other settings (face threshold, sizes, re-classification, ...) come from the
        # spec's own MASKWATCH_* variables, read from the same environment.
        env = _ENVIRON.get()
        self.__dict__["_spec_env"] = dict(os.environ if env is None else env)
        return self

    def engine_spec(self) -> EngineSpec:
        """The effective engine: the spec's defaults, its ``MASKWATCH_*`` variables, then these settings
        (model, face backend, face-detector settings, mirror, pixel limit), one ONNX Runtime thread."""
        spec = EngineSpec.from_env(self.__dict__.get("_spec_env"), base=EngineSpec(**SERVE_DEFAULTS))
        return spec.changed(self.detector_settings, model=self.model, detector=self.detector,
                            detector_model=self.detector_model, mirror_photos=self.mirror_photos,
                            max_pixels=self.max_pixels, threads=1)

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_upload_mb * MB)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerSettings:
        """Settings from ``environ`` (default: the process environment); ``overrides`` that are not ``None`` win."""
        unknown = set(overrides) - set(cls.model_fields)
        if unknown:
            raise TypeError(f"unknown server settings: {', '.join(sorted(unknown))}")
        given = {k: (str(v) if k in ("model", "detector_model", "db", "jobs_dir") else v)
                 for k, v in overrides.items() if v is not None}
        token = _ENVIRON.set(environ)
        try:
            return cls(**given)
        finally:
            _ENVIRON.reset(token)


#: The environment variable of every setting that has one.
ENV_NAMES: dict[str, str] = {
    name: _ENV_EXCEPTIONS.get(name, f"MASKWATCH_{name.upper()}")
    for name in ServerSettings.model_fields if name != "detector_settings"
}


def _describe(exc: ValidationError) -> str:
    """One line for a person: which setting (and variable), the value, what it should be."""
    parts = []
    for err in exc.errors():
        loc = str(err["loc"][0]) if err.get("loc") else "?"
        name = next((n for n, e in ENV_NAMES.items() if loc in (n, e, e.lower())), loc)
        env = ENV_NAMES.get(name, "")
        value = err.get("input")
        parts.append(f"server setting {name} ({env}) = {value!r}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) + ". Fix the option or environment variable (see docs/server.md)."


__all__ = ["ENV_NAMES", "LOG_LEVELS", "ServerSettings"]
