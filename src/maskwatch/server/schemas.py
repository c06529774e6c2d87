"""OpenAPI documentation models of the HTTP API (the answers themselves come from the result classes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class FaceModel(BaseModel):
    """One face."""

    box: list[int] = Field(description="x1, y1, x2, y2 in pixels of the image as shown (EXIF orientation applied)")
    face_score: float = Field(description="face detector confidence, 0..1")
    label: str = Field(description="most probable class: with_mask or without_mask")
    score: float = Field(description="probability of `label`, 0..1")
    probs: dict[str, float] = Field(description="probability of every class")
    track_id: int | None = Field(None, description="video face track; always null for an uploaded image")


class FrameResultModel(BaseModel):
    """The result for one image: the same object as one line of `maskwatch detect --json`."""

    source: str = Field(description="the uploaded file name, or `<upload>` for a raw body")
    frame: int | None = Field(description="always null for an uploaded image")
    time_s: float | None = Field(description="always null for an uploaded image")
    width: int
    height: int
    faces: list[FaceModel]


class CropResultModel(BaseModel):
    """The classifier's verdict on one face crop (same object as `maskwatch classify --json`)."""

    source: str
    label: str
    score: float
    probs: dict[str, float]


class HealthModel(BaseModel):
    status: str = Field(description="`ok` once the model is loaded")
    version: str = Field(description="maskwatch version")
    model: str = Field(description="classifier model name")
    classes: list[str]
    detector: str = Field(description="face detector backend: yunet or yuface")
    workers: int
    max_queue: int
    max_upload_bytes: int
    max_pixels: int
    live_detect_size: int


class ErrorModel(BaseModel):
    detail: str = Field(description="what went wrong and what to do about it")


def image_body(multi: bool) -> dict[str, Any]:
    file_schema = {"type": "string", "format": "binary"}
    form = (
        {"type": "object", "properties": {"files": {"type": "array", "items": file_schema}}}
        if multi else
        {"type": "object", "properties": {"file": file_schema}, "required": ["file"]}
    )
    return {
        "requestBody": {
            "required": True,
            "description": (
                "The image as a multipart/form-data file field (`curl -F file=@photo.jpg`), or the raw "
                "image bytes as the body (`curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg'`). "
                "The format is judged from the bytes, not the declared type."
                + (" Several file fields give several crops." if multi else "")
            ),
            "content": {
                "multipart/form-data": {"schema": form},
                "image/jpeg": {"schema": file_schema},
                "image/png": {"schema": file_schema},
                "application/octet-stream": {"schema": file_schema},
            },
        }
    }


ERRORS: dict[int | str, dict[str, Any]] = {
    408: {"model": ErrorModel, "description": "the upload did not arrive in time (MASKWATCH_UPLOAD_TIMEOUT)"},
    413: {"model": ErrorModel, "description": "upload over the size limit, or images over the request's pixel budget"},
    415: {"model": ErrorModel, "description": "the body is not a JPEG, PNG, WebP, BMP, TIFF or GIF image (judged "
          "from its bytes; EPS, PDF, SVG are never decoded)"},
    422: {"model": ErrorModel, "description": "corrupt or truncated image, empty body, malformed form, bad parameter"},
    429: {"model": ErrorModel, "description": "this client holds all the live sessions it may "
          "(MASKWATCH_MAX_LIVE_SESSIONS_PER_CLIENT); end one or retry after `Retry-After`"},
    431: {"model": ErrorModel, "description": "too many or too large request headers"},
    503: {"model": ErrorModel, "description": "the server is busy (uploads arriving, the queue or the live sessions "
          "are full); retry after the `Retry-After` header's seconds"},
}
