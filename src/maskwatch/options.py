"""Command-line options generated from the engine spec, so that every command declares each one once.

:func:`spec_options` turns the :class:`~maskwatch.spec.EngineSpec` fields of some groups (``model``,
``face``, ``tracking``, ``mirror``, ``alerts``) into click options with the spec's help, range and
default; :func:`spec_from_options` turns what the user gave back into a spec. An option left out
keeps the spec's value (or the front's own base spec, e.g. the server's mirror off), so a default
can never differ between commands.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from maskwatch.spec import DEFAULT_SPEC, EngineSpec

#: The web app's own engine defaults (the rest are the spec's), read by ``maskwatch serve`` and the server
#: settings: with 8 clients on 2 cores the mirror pass took photo latency from 864 to 1206 ms p95
#: (benchmarks/serve_load.py), over the 1 s the web app must keep.
SERVE_DEFAULTS = {"mirror_photos": False}

#: Spec fields whose option is not a plain copy of the field.
_DETECT_SIZE_HELP = ("Scale the long side to this many pixels for face detection, photos and video frames alike "
                     f"(0: native size; default {DEFAULT_SPEC.detect_size} for photos, "
                     f"{DEFAULT_SPEC.video_detect_size} for video frames).")


class BackendChoice(click.Choice):
    """``--detector``: the face backends registered when the command runs (plug-ins included)."""

    def __init__(self) -> None:
        super().__init__([], case_sensitive=True)

    @property  # type: ignore[override]
    def choices(self):  # noqa: D401 - click reads this attribute
        from maskwatch.faces.registry import backend_names

        return backend_names()

    @choices.setter
    def choices(self, value) -> None:  # click's __init__ assigns it
        pass


def _click_type(f) -> Any:
    meta = f.metadata
    if f.name == "detector":
        return BackendChoice()
    if f.name in ("model", "detector_model"):
        return click.Path(path_type=Path)
    default = getattr(DEFAULT_SPEC, f.name)
    lo, hi = meta.get("lo"), meta.get("hi")
    if isinstance(default, bool):
        return bool
    if isinstance(default, int) and not isinstance(default, bool):
        return click.IntRange(None if lo is None else int(lo), None if hi is None else int(hi))
    if isinstance(default, float):
        return click.FloatRange(lo, hi)
    return str


def _fields_of(groups: tuple[str, ...]):
    return [f for f in fields(EngineSpec)
            if (f.metadata.get("group") in groups or f.name in groups) and f.metadata.get("cli")]


def spec_options(*groups: str, defaults: Mapping[str, Any] | None = None) -> Callable:
    """A decorator adding the options of these spec groups (or single fields); ``defaults`` names a front's own defaults
    (shown in ``--help``; :func:`spec_from_options` must then get the same ``base``)."""
    shown = {**DEFAULT_SPEC.to_dict(), **(defaults or {})}

    def decorate(func: Callable) -> Callable:
        options = []
        for f in _fields_of(groups):
            flag = f.metadata["cli"]
            default = shown[f.name]
            names = [flag, "-m", f.name] if f.name == "model" else [flag, f.name]
            kwargs: dict[str, Any] = {"default": default, "help": f.metadata["help"],
                                      "show_default": default is not None}
            if "/" not in flag:
                kwargs["type"] = _click_type(f)
            options.append(click.option(*names, **kwargs))
            if f.name == "face_threshold":  # the face-size option sits beside the threshold
                options.append(click.option("--detect-size", "detect_size", type=click.IntRange(0, 4096),
                                            default=None, help=_DETECT_SIZE_HELP))
        for opt in reversed(options):
            func = opt(func)
        return func

    return decorate


def spec_from_options(kwargs: dict[str, Any], base: EngineSpec | None = None) -> EngineSpec:
    """Take the generated options out of a command's ``kwargs`` and return ``base`` changed by those the
    user gave (an option left at its default keeps ``base``'s value, e.g. one from ``MASKWATCH_*``)."""
    from click.core import ParameterSource

    names = {f.name for f in fields(EngineSpec)} | {"detect_size"}
    given = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
    ctx = click.get_current_context(silent=True)

    def from_user(name: str) -> bool:
        if ctx is None:
            return True
        source = ctx.get_parameter_source(name)
        return source is not None and source not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)

    changes = {k: v for k, v in given.items() if v is not None and from_user(k)}
    if "detect_size" in changes:  # given explicitly: for photos and video frames alike; 0 = native size
        size = changes.pop("detect_size") or None
        changes["detect_size"] = changes["video_detect_size"] = size
    return (base or EngineSpec()).replace(**changes)
