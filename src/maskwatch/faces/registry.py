"""The face-backend registry: the one place where a backend's name is tied to the code that builds it.

Every front (CLI ``--detector``, the server's ``MASKWATCH_DETECTOR``, batch actors, evaluate, watch)
builds its face detector through :func:`create_face_detector`, so a backend registered here is
offered everywhere. To add one, call :func:`register_backend` (or declare an entry point in the
``maskwatch.face_backends`` group naming a ``factory(model_path, settings) -> BaseDetector``)::

    from maskwatch.faces.registry import register_backend

    @register_backend("mine", "my detector (what it is good at)")
    def _mine(model_path, settings):
        return MyDetector(model_path, settings)   # a maskwatch.faces.base.BaseDetector
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from maskwatch.errors import InputError
from maskwatch.faces.base import BaseDetector, DetectorSettings

log = logging.getLogger(__name__)

Factory = Callable[["str | Path | None", DetectorSettings], BaseDetector]

#: Entry-point group through which installed packages add face backends.
ENTRY_POINT_GROUP = "maskwatch.face_backends"


@dataclass(frozen=True)
class Backend:
    name: str
    help: str
    factory: Factory


_BACKENDS: dict[str, Backend] = {}
_entry_points_loaded = False


def register_backend(name: str, help: str = "", factory: Factory | None = None):
    """Register ``factory(model_path, settings) -> BaseDetector`` under ``name``; usable as a decorator.

    Registering a name again replaces it (a later plug-in wins)."""
    def add(f: Factory) -> Factory:
        _BACKENDS[name] = Backend(name, help, f)
        return f

    return add(factory) if factory is not None else add


def unregister_backend(name: str) -> None:
    """Remove a registered backend (tests and plug-ins that clean up after themselves)."""
    _BACKENDS.pop(name, None)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            register_backend(ep.name, f"plug-in {ep.value}", ep.load())
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not break the built-in backends
            log.warning("face backend plug-in %s could not be loaded: %s", ep.name, exc)


def backends() -> dict[str, Backend]:
    """Every registered backend, by name (built-ins first)."""
    _load_entry_points()
    return dict(_BACKENDS)


def backend_names() -> tuple[str, ...]:
    return tuple(backends())


def create_face_detector(
    backend: str = "auto",
    model_path: str | Path | None = None,
    settings: DetectorSettings | None = None,
) -> BaseDetector:
    """Build a face detector of a registered backend.

    Args:
        backend: ``"auto"`` (YuNet via OpenCV when its file is found, else yuface), ``"yunet"``,
            ``"yuface"``, ``"centerface"``, ``"fused"`` (YuNet and CenterFace, boxes fused), or any
            backend registered with :func:`register_backend`.
        model_path: the backend's ONNX file or a folder holding it (default: the models folders).
        settings: thresholds, detection size and box calibration.
    """
    found = backends().get(backend)
    if found is None:
        raise InputError(f"unknown face detector {backend!r}; choose one of {', '.join(backend_names())}")
    return found.factory(model_path, settings or DetectorSettings())


# --- built-in backends ---------------------------------------------------------------------------

@register_backend("auto", "YuNet through OpenCV (bundled file); the built-in yuface if the file is missing")
def _auto(model_path, settings):
    from maskwatch.faces.models import find_yunet
    from maskwatch.faces.yunet import YuFaceDetector, YuNetDetector

    path = find_yunet(model_path)
    if path is not None:
        return YuNetDetector(path, settings)
    log.warning(
        "YuNet model file not found (the package's own copy is missing: reinstall maskwatch, set "
        "MASKWATCH_MODELS or run 'maskwatch models fetch'); using the built-in yuface detector"
    )
    return YuFaceDetector(settings)


@register_backend("yunet", "YuNet through OpenCV's FaceDetectorYN (the bundled ONNX file)")
def _yunet(model_path, settings):
    from maskwatch.faces.models import fetch_yunet, find_yunet
    from maskwatch.faces.yunet import YuNetDetector

    path = find_yunet(model_path)
    return YuNetDetector(path if path is not None else fetch_yunet(), settings)


@register_backend("yuface", "YuNet compiled into the yuface package (no file needed)")
def _yuface(model_path, settings):  # noqa: ARG001 - needs no file
    from maskwatch.faces.yunet import YuFaceDetector

    return YuFaceDetector(settings)


@register_backend("centerface", "CenterFace (bundled): more small and masked faces, 2-3x YuNet's time")
def _centerface(model_path, settings):
    from maskwatch.faces.centerface import CenterFaceDetector

    return CenterFaceDetector(model_path, settings)


@register_backend("fused", "YuNet and CenterFace, boxes fused")
def _fused(model_path, settings):
    from maskwatch.faces.centerface import CenterFaceDetector
    from maskwatch.faces.fusion import FusedDetector

    folder = model_path if model_path is None or Path(model_path).is_dir() else Path(model_path).parent
    return FusedDetector([_auto(folder, settings), CenterFaceDetector(folder, settings)], settings)
