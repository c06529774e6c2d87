"""Moved: the writers are sinks now, in :mod:`maskwatch.sinks` (this module keeps old imports working)."""

from maskwatch.sinks.files import CsvWriter, JsonlWriter, make_writer, open_output
from maskwatch.sinks.media import FALLBACK_FPS, LiveWindow, MediaSaver, VideoWriter

__all__ = ["CsvWriter", "FALLBACK_FPS", "JsonlWriter", "LiveWindow", "MediaSaver", "VideoWriter", "make_writer",
           "open_output"]
