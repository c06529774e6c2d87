"""Photo routes: ``POST /v1/detect`` (one image, all its faces) and ``POST /v1/classify`` (face crops).

Every upload is read into memory with a size and time limit (:meth:`EnginePool.receive`), sniffed
(its declared type is not trusted), its header checked against the request's pixel budget, and
decoded (large images reduced where the model does not need their full size) on a worker; nothing
is written to disk.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from maskwatch.annotate import annotate
from maskwatch.io.images import ImageInfo, decode_image_with_size, encode_image, probe_image
from maskwatch.results import FrameResult
from maskwatch.server.errors import HTTPError
from maskwatch.server.pool import Worker, give_memory_back
from maskwatch.server.schemas import ERRORS, CropResultModel, FrameResultModel, image_body
from maskwatch.server.settings import ServerSettings
from maskwatch.server.uploads import Upload, require_image


def _result_headers(result: FrameResult) -> dict[str, str]:
    counts = result.counts()
    timing = ", ".join(f"{k};dur={v:.1f}" for k, v in result.timings_ms.items())
    return {
        "X-Faces-Total": str(counts.get("total", 0)),
        "X-Faces-With-Mask": str(counts.get("with_mask", 0)),
        "X-Faces-Without-Mask": str(counts.get("without_mask", 0)),
        "X-Faces-Mask-Incorrect": str(counts.get("mask_incorrect", 0)),
        "X-Faces-Uncertain": str(counts.get("uncertain", 0)),
        "Server-Timing": timing,
    }


def _one_upload(uploads: list[Upload]) -> Upload:
    if len(uploads) != 1:
        names = ", ".join(u.label for u in uploads)
        raise HTTPError(
            422, f"send one image per request to /v1/detect, got {len(uploads)} files ({names}); "
            "use /v1/classify for several face crops."
        )
    return uploads[0]


router = APIRouter(tags=["detection"])


@router.post(
    "/v1/detect",
    summary="Find every face in an image and label it with_mask / without_mask",
    description=(
        "Upload one image (JPEG, PNG, WebP, BMP, TIFF, GIF) as a multipart file field or as the raw body. "
        "Returns the same JSON object as one line of `maskwatch detect --json`, or with `format=jpeg|png` "
        "the annotated image (counts in the `X-Faces-*` headers). Per-stage times are in the "
        "`Server-Timing` header. Nothing is written to disk. A photo with a long side of 5120 px or more (four "
        "times the detection size) is decoded reduced by an integer factor that keeps it at 2560 px or more: "
        "boxes are still in its full pixels; the annotated image comes back at the reduced size."
    ),
    openapi_extra=image_body(multi=False),
    responses={
        200: {
            "model": FrameResultModel,
            "description": "the faces found (JSON), or the annotated image",
            "content": {"image/jpeg": {}, "image/png": {}},
        },
        **ERRORS,
    },
    tags=["detection"],
)
async def detect(
    request: Request,
    fmt: Literal["json", "jpeg", "png"] = Query(
        "json", alias="format", description="`json`: the result object; `jpeg` / `png`: the annotated image"
    ),
    banner: bool = Query(False, description="with format=jpeg|png: draw the face counts in a banner"),
    live: bool = Query(
        False, description="video-frame mode (the web page's live camera): detect faces at the server's live "
        "detection size instead of enlarging small images; faster for small frames"
    ),
) -> Response:
    settings = request.app.state.settings
    pool = request.app.state.pool
    uploads = await pool.receive(request)
    with pool.admit():
        upload = _one_upload(uploads)
        require_image(upload)
        source = upload.filename or "<upload>"
        (info,) = within_budget([upload], [source], settings)
        want_image = fmt != "json"

        def work(worker: Worker) -> tuple[FrameResult, bytes | None]:
            engine = worker.live if live else worker.photo
            detect_size = getattr(getattr(engine.face_detector, "settings", None), "detect_size", None)
            try:
                t0 = time.perf_counter()
                # The detector sees the image at `detect_size`: decode no larger than twice that.
                image, full = decode_image_with_size(
                    upload.data, name=source, max_pixels=settings.max_pixels,
                    reduce_to=2 * detect_size if detect_size else None,
                )
                decode_ms = (time.perf_counter() - t0) * 1e3
                result = engine.detect(image, source=source, keep_image=want_image)
                del image
                result.timings_ms = {"decode": decode_ms, **result.timings_ms}
                body = None
                if want_image and result.image is not None:  # drawn at the decoded size
                    body = encode_image(annotate(result.image, result.faces, counts=banner, still=True), fmt)
                result.image = None
                to_full_size(result, full)
                return result, body
            finally:
                give_memory_back(info.pixels)

        result, image = await pool.run(work, request)
    headers = _result_headers(result)
    if image is not None:
        return Response(image, media_type=f"image/{fmt}", headers=headers)
    return Response(result.to_json(), media_type="application/json", headers=headers)


@router.post(
    "/v1/classify",
    summary="Label face crops with_mask / without_mask (no face detection)",
    description=(
        "Each uploaded image is taken as one whole face crop. Send several multipart file fields for "
        "several crops, or one crop as the raw body. Returns a JSON array with one object per crop, in "
        "upload order: the same objects as `maskwatch classify --json`. The crops of one request share "
        "its pixel budget; large crops are decoded reduced (the model sees them at its input size)."
    ),
    openapi_extra=image_body(multi=True),
    responses={200: {"model": list[CropResultModel], "description": "one verdict per crop"}, **ERRORS},
    tags=["detection"],
)
async def classify(request: Request) -> Response:
    settings = request.app.state.settings
    pool = request.app.state.pool
    uploads = await pool.receive(request, max_parts=settings.max_crops + 16)
    with pool.admit():
        if len(uploads) > settings.max_crops:
            raise HTTPError(
                413, f"{len(uploads)} crops in one request is over the limit of {settings.max_crops}; "
                "split them over several requests."
            )
        for up in uploads:
            require_image(up)
        names = [up.filename or ("<upload>" if len(uploads) == 1 else f"<crop {i}>") for i, up in enumerate(uploads)]
        infos = within_budget(uploads, names, settings)
        reduce_to = 2 * pool.engine.classifier.input_size

        def work(worker: Worker) -> list[dict[str, Any]]:
            try:
                crops = [
                    decode_image_with_size(up.data, name=name, max_pixels=settings.max_pixels, reduce_to=reduce_to)[0]
                    for up, name in zip(uploads, names)
                ]
                return [r.to_dict() for r in worker.photo.classify(crops, names)]
            finally:
                give_memory_back(sum(i.pixels for i in infos))

        return JSONResponse(await pool.run(work, request))


def within_budget(uploads: list[Upload], names: list[str], settings: ServerSettings) -> list[ImageInfo]:
    """The header sizes of the uploads; 413 when together they are over the request's pixel budget.

    Read from the image headers only: nothing is decoded before the request is known to fit.
    """
    infos = [probe_image(up.data, name=name) for up, name in zip(uploads, names)]
    total = sum(i.pixels for i in infos)
    budget = settings.max_pixels
    if total > budget:
        if len(infos) == 1:
            i = infos[0]
            detail = (
                f"{names[0]}: {i.width}x{i.height} pixels is too large: over the limit of {budget:,} pixels per "
                "request. Shrink the image first (or start the server with a higher MASKWATCH_MAX_PIXELS)."
            )
        else:
            k = max(range(len(infos)), key=lambda j: infos[j].pixels)
            detail = (
                f"the {len(infos)} images of this request add up to {total:,} pixels, too large for the budget of "
                f"{budget:,} pixels per request (the largest, {names[k]}, is {infos[k].width}x{infos[k].height}). "
                "Send smaller crops, or fewer per request."
            )
        raise HTTPError(413, detail)
    return infos


def to_full_size(result: FrameResult, full: tuple[int, int]) -> None:
    """Map a result computed on a reduced image back to the full image's pixels (boxes, width, height)."""
    w, h = full
    if (result.width, result.height) == (w, h):
        return
    sx, sy = w / result.width, h / result.height
    result.faces = [
        dataclasses.replace(f, box=(
            min(w, max(0, round(f.box[0] * sx))), min(h, max(0, round(f.box[1] * sy))),
            min(w, max(0, round(f.box[2] * sx))), min(h, max(0, round(f.box[3] * sy))),
        ))
        for f in result.faces
    ]
    result.width, result.height = w, h


__all__ = ["router", "to_full_size", "within_budget"]
