"""The Ray Data actor: loads the engine once, then reads, decodes and labels batches of work items.

A work item is one image or one chunk of a video. The actor returns one row per item with its
status and its frames serialised exactly as ``maskwatch detect --json`` writes them
(:meth:`FrameResult.to_dict`), so the two fronts cannot drift apart. A bad input is a ``failed`` row,
never an exception: one corrupt file must not fail the batch it shares with good ones.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Columns of the table a work item becomes on its way to the labeller.
ITEM_COLUMNS = ("unit", "source", "kind", "chunk", "n_chunks", "start", "end", "expected")
#: Columns of the table the labeller returns (one row per work item).
RESULT_COLUMNS = ("unit", "source", "kind", "chunk", "n_chunks", "status", "error", "width", "height", "fps",
                  "n_frames", "cpu_s", "payload")


@dataclass(frozen=True)
class EngineConfig:
    """Everything an actor needs to build the same :class:`~maskwatch.engine.MaskDetector` as the driver:
    the engine spec (:meth:`~maskwatch.spec.EngineSpec.to_dict`) and OpenCV's thread count."""

    spec: dict[str, Any] = field(default_factory=dict)
    cv_threads: int = 1

    def build(self):
        from maskwatch.engine import MaskDetector
        from maskwatch.spec import EngineSpec

        return MaskDetector(spec=EngineSpec.from_dict(self.spec))


def read_bytes(source: str) -> bytes:
    """The bytes of a local file or an object-store URI (pyarrow's filesystem layer)."""
    from maskwatch.batch.inputs import filesystem_for, is_uri
    from maskwatch.errors import InputError

    if not is_uri(source):
        path = Path(source)
        if not path.exists():
            raise InputError(f"{source}: no such file (it was listed when the run started). Check the path.")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise InputError(f"{source}: cannot be read ({exc.strerror or exc}).") from exc
    fs, inner = filesystem_for(source)
    try:
        with fs.open_input_stream(inner) as fh:
            return fh.read()
    except Exception as exc:  # noqa: BLE001 - network / permission errors of object stores
        raise InputError(f"{source}: cannot be read ({type(exc).__name__}: {exc}).") from exc


class Labeller:
    """Callable class for ``Dataset.map_batches``: one engine per actor, ONNX Runtime on one thread."""

    def __init__(self, config: EngineConfig) -> None:
        import cv2

        cv2.setNumThreads(max(1, int(config.cv_threads)))
        logging.getLogger("maskwatch").setLevel(logging.ERROR)
        self.config = config
        self.engine = config.build()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        out: dict[str, list] = {c: [] for c in RESULT_COLUMNS}
        n = len(batch["unit"])
        for i in range(n):
            item = {c: _scalar(batch[c][i]) for c in ITEM_COLUMNS}
            row = self._label(item)
            for c in RESULT_COLUMNS:
                out[c].append(row.get(c))
        return out

    def _label(self, item: dict[str, Any]) -> dict[str, Any]:
        import time

        from maskwatch.errors import MaskwatchError

        cpu0 = time.process_time()  # this actor's CPU time: reading, decoding, detecting, classifying
        row = {c: item.get(c) for c in ("unit", "source", "kind", "chunk", "n_chunks")}
        row.update(status="ok", error=None, width=None, height=None, fps=None, n_frames=0)
        frames: list[dict] = []
        try:
            if item["kind"] == "image":
                frames.append(self._image(item["source"]))
            else:
                row["fps"] = self._video(item, frames)
        except MaskwatchError as exc:
            row.update(status="failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - an unexpected failure on one input must not end the run
            log.exception("labelling %s failed", item["source"])
            row.update(status="failed", error=f"{item['source']}: internal error {type(exc).__name__}: {exc}")
        if frames:
            row["width"], row["height"] = frames[0]["width"], frames[0]["height"]
        row["n_frames"] = len(frames)
        row["payload"] = json.dumps(frames, ensure_ascii=False)
        row["cpu_s"] = time.process_time() - cpu0
        return row

    def _image(self, source: str) -> dict:
        from maskwatch.io.images import decode_image

        image = decode_image(read_bytes(source), name=source, max_pixels=self.engine.max_pixels)
        return self.engine.detect(image, source=source).to_dict()

    def _video(self, item: dict[str, Any], frames: list[dict]) -> float | None:
        """Label one chunk through the one frame loop (its tracker is closed at the chunk's end)."""
        from maskwatch.batch.video import local_copy, probe_video
        from maskwatch.io.sources import Source
        from maskwatch.runloop import FrameLoop, drive
        from maskwatch.sinks.base import Sink

        source = item["source"]
        end = None if item["end"] is None or item["end"] < 0 else int(item["end"])

        class _Rows(Sink):  # the JSON object of each frame, named by the input (not a local copy)
            def write(self, result) -> None:
                d = result.to_dict()
                d["source"] = source
                frames.append(d)

        local, tmp = local_copy(source)
        loop = FrameLoop(self.engine, [_Rows()])
        try:
            fps = probe_video(local).fps
            try:
                for _ in drive(loop, [Source("video", local)], start=int(item["start"]), end=end):
                    pass
            except BaseException:
                loop.end_source()  # the frames decoded before the failure are kept, as detect keeps them
                raise
        finally:
            loop.end(error=None)
            if tmp is not None:
                tmp.cleanup()
        return fps or None


def _scalar(value: Any) -> Any:
    """NumPy scalars from a Ray Data batch as plain Python values."""
    if hasattr(value, "item"):
        return value.item()
    return value
