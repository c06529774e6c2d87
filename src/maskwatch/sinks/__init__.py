"""Sinks: where results go. One protocol (:mod:`maskwatch.sinks.base`), many outputs.

=================  ==================================================================
``JsonlWriter``    JSON Lines, one object per frame (the public contract)
``CsvWriter``      one CSV row per face
``ParquetWriter``  one Parquet row per face (needs pyarrow: ``maskwatch[scale]``)
``MediaSaver``     annotated images and H.264 videos into a folder
``LiveWindow``     an OpenCV window (``q`` stops)
``EventLog``       the event log (SQLite / PostgreSQL), :mod:`maskwatch.events`
``Alerts``         unmasked alerts, optionally POSTed to a webhook, :mod:`maskwatch.alerts`
``ComplianceReport``  people, compliance and timeline, :mod:`maskwatch.report`
``SummarySink``    the one summary every front prints, :mod:`maskwatch.summary`
=================  ==================================================================

Names are imported lazily, so ``import maskwatch.sinks`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from maskwatch.sinks.base import Sink, Sinks, StopRun

_LAZY = {
    "JsonlWriter": "maskwatch.sinks.files",
    "CsvWriter": "maskwatch.sinks.files",
    "ParquetWriter": "maskwatch.sinks.files",
    "make_writer": "maskwatch.sinks.files",
    "open_output": "maskwatch.sinks.files",
    "MediaSaver": "maskwatch.sinks.media",
    "LiveWindow": "maskwatch.sinks.media",
    "VideoWriter": "maskwatch.sinks.media",
    "EventLog": "maskwatch.events",
    "Alerts": "maskwatch.alerts",
    "ComplianceReport": "maskwatch.report",
    "SummarySink": "maskwatch.summary",
}

__all__ = ["Sink", "Sinks", "StopRun", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'maskwatch.sinks' has no attribute {name!r}")
    return getattr(import_module(module), name)
