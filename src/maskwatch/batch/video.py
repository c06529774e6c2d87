"""Long videos split into frame ranges (chunks) so that one file does not sit on one worker.

**Frame numbers are exact.** A chunk worker does not seek: OpenCV's frame seek
(``CAP_PROP_POS_FRAMES``) landed one frame early on ``airport-crowd.mp4`` at 5 of 8 positions
tried, and its timestamps are irregular, so a seek cannot say which frame it reached. Instead a
chunk worker *grabs* (demuxes and decodes, without colour conversion) the frames before its start
and labels frames ``[start, end)``; frame ``n`` is the ``n``-th decoded frame, exactly as in
``maskwatch detect``. Skipping costs a fraction of labelling a frame (measured on airport-crowd.mp4:
grab 1.3 ms against ~12.5 ms to label a frame), but it grows with the chunk's start: cutting a video
into ``C`` chunks adds about ``(C - 1) / 2`` times that fraction of CPU work. So a video is cut into at
most ``max_chunks`` chunks (default 4: about 15% extra work, a long file spread over 4 workers);
the chunk length grows for long files, and ``max_chunks=1`` turns chunking off.

**Tracking across chunks.** Each chunk starts a fresh tracker (``MaskDetector.new_tracker``); its
track ids are renumbered when chunks are stitched so that ids stay unique within the video and keep
their order of appearance. A face visible across a chunk boundary therefore gets a new track id in
the next chunk and its label (the mean of its track's verdicts) starts again from the new chunk's
verdicts. A video that fits in one chunk gives exactly what ``maskwatch detect --json`` gives.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass

from maskwatch.io.sources import Source, open_capture


@dataclass(frozen=True)
class VideoProbe:
    frames: int  # as the container states it (0: unknown)
    fps: float  # 0.0: unknown


def probe_video(path: str) -> VideoProbe:
    """Frame count and frame rate from the container (cheap: nothing is decoded)."""
    import cv2

    cap = open_capture(Source("video", path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    return VideoProbe(max(n, 0), fps if 0 < fps < 1000 else 0.0)


def plan_chunks(probe: VideoProbe, chunk_seconds: float, max_chunks: int) -> list[tuple[int, int | None]]:
    """Frame ranges ``[start, end)`` covering the video; the last one has ``end=None`` (to the end of the file).

    Chunks are ``chunk_seconds`` long, or longer when the video would need more than ``max_chunks``.
    A video with an unknown length or frame rate is one chunk.
    """
    if probe.frames <= 0 or probe.fps <= 0 or chunk_seconds <= 0:
        return [(0, None)]
    per = max(int(round(chunk_seconds * probe.fps)), math.ceil(probe.frames / max(1, max_chunks)), 1)
    starts = list(range(0, probe.frames, per))
    # A last chunk shorter than a fifth of a chunk is folded into the one before it.
    if len(starts) > 1 and probe.frames - starts[-1] < per / 5:
        starts.pop()
    return [(s, starts[i + 1] if i + 1 < len(starts) else None) for i, s in enumerate(starts)]


def local_copy(source: str) -> tuple[str, tempfile.TemporaryDirectory | None]:
    """A local path OpenCV can open: the path itself, or a temporary copy of an object-store URI."""
    from maskwatch.batch.inputs import filesystem_for, is_uri

    if not is_uri(source):
        return source, None
    import os
    import shutil

    fs, inner = filesystem_for(source)
    tmp = tempfile.TemporaryDirectory(prefix="maskwatch-video-")
    local = os.path.join(tmp.name, "video" + os.path.splitext(inner)[1])
    with fs.open_input_stream(inner) as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst, 8 << 20)
    return local, tmp
