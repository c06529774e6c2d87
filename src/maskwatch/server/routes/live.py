"""Live camera routes: ``POST /v1/live?session=ID`` (one frame, tracked within its session) and
``DELETE /v1/live?session=ID``; sessions are kept by :class:`maskwatch.server.live.LiveSessions`."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from maskwatch.io.images import decode_image_with_size, probe_image
from maskwatch.server import lazy_state
from maskwatch.server.admission import client_key
from maskwatch.server.errors import HTTPError
from maskwatch.server.live import SESSION_PATTERN, LiveSessions
from maskwatch.server.pool import Worker, give_memory_back
from maskwatch.server.routes.photo import to_full_size
from maskwatch.server.schemas import ERRORS
from maskwatch.server.uploads import require_image

router = APIRouter(tags=["live"])


def sessions(request: Request) -> LiveSessions:
    """The app's live sessions, made on first use."""
    def make() -> LiveSessions:
        s = request.app.state.settings
        return LiveSessions(max_sessions=s.max_live_sessions, db=s.db, per_client=s.max_live_sessions_per_client)

    return lazy_state(request.app, "live_sessions", make)


@router.post("/v1/live", summary="One live camera frame, tracked within a session, with running totals",
             responses=ERRORS)
async def live_frame(request: Request, session: str = Query(..., pattern=SESSION_PATTERN,
                                                             description="the browser's session id "
                                                                         "(8-64 of A-Z a-z 0-9 _ -)")
                     ) -> JSONResponse:
    settings = request.app.state.settings
    pool = request.app.state.pool
    uploads = await pool.receive(request)  # an upload slot while the frame arrives
    with pool.admit():  # then the same bounded queue as /v1/detect (503 when full)
        if len(uploads) != 1:
            raise HTTPError(422, f"send one frame per request to /v1/live, got {len(uploads)} files.")
        upload = uploads[0]
        require_image(upload)
        info = probe_image(upload.data, name="frame")  # the header, before anything is decoded
        if info.pixels > settings.max_frame_pixels:
            raise HTTPError(413, f"the frame is {info.width}x{info.height} pixels, over the limit of "
                                 f"{settings.max_frame_pixels:,} pixels per live frame (MASKWATCH_MAX_FRAME_PIXELS); "
                                 "send smaller frames (the page sends at most 1280 px wide).")
        sess = sessions(request).get(session, pool.engine, client_key(request.scope.get("client")))

        def work(worker: Worker):  # noqa: ANN202
            try:
                t0 = time.perf_counter()
                # The detector sees the frame at the live detection size: decode no larger than twice that.
                image, full = decode_image_with_size(upload.data, name="frame", max_pixels=settings.max_frame_pixels,
                                                     reduce_to=2 * settings.live_detect_size)
                t1 = time.perf_counter()
                boxes = worker.live.find_faces(image)  # the worker's own detector at the live detection size
                t2 = time.perf_counter()
                out = sess.add(worker.live, image, boxes, {"decode": (t1 - t0) * 1e3, "detect": (t2 - t1) * 1e3})
                del image
                to_full_size(out[0], full)
                return out
            finally:
                give_memory_back(info.pixels)

        result, totals = await pool.run(work, request)  # dropped if the browser has gone meanwhile
    body = result.to_dict()
    body["session"] = totals
    timing = ", ".join(f"{k};dur={v:.1f}" for k, v in result.timings_ms.items())
    return JSONResponse(body, headers={"Server-Timing": timing})


@router.delete("/v1/live", status_code=204, summary="End a live camera session")
async def end_live(request: Request, session: str = Query(..., pattern=SESSION_PATTERN)) -> Response:
    sessions(request).end(session)
    return Response(status_code=204)


__all__ = ["router", "sessions"]
