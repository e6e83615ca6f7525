"""The FastAPI application of ``pixelwise serve``: the page, its assets, and the JSON API.

- ``GET /``: the page (``static/index.html``; its script and style under ``/static``), which
  loads nothing from elsewhere (a Content-Security-Policy of ``'self'`` says so to the browser);
- ``GET /api/models``: the checkpoints and classical methods on offer, and the limits;
- ``POST /api/segment``: a multipart form (the image in ``file``; ``model``, ``crf``, ``segments``
  optional) -> the class table and the label map as a base64 index PNG, the bytes
  ``pixelwise predict`` writes for that image;
- ``GET /openapi.json``: the schema. FastAPI's ``/docs`` and ``/redoc`` pages are switched off:
  they load Swagger UI and ReDoc from a CDN.

Every error is JSON ``{"detail": "one readable sentence", ...}``: 400 for a body that is not a
multipart form, 413 for an upload over ``max_upload_bytes`` or an image with a side over
``max_side`` pixels, 422 for anything that is not a readable image or a form this API does not
take, 500 when a model fails on an image (the server goes on serving).

(No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at run
time, and one of them names a type built inside :func:`create_app`.)
"""

import base64
import enum
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixelwise import __version__
from pixelwise.serve.segmenters import (
    EXPECTED_FORMATS,
    MAX_SEGMENTS,
    Segmenter,
    SegmenterFailed,
    UploadError,
    class_table,
    decode_upload,
)

STATIC = Path(__file__).parent / "static"
MB = 1_000_000
DEFAULT_MAX_UPLOAD_BYTES = 25 * MB
DEFAULT_MAX_SIDE = 8192
DEFAULT_MAX_CONCURRENT = 4
# Room for the multipart framing and the small form fields around the file.
FORM_OVERHEAD_BYTES = 64 * 1024
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

log = logging.getLogger("pixelwise.serve")


# ----------------------------------------------------------------------------- response schemas
class ClassRow(BaseModel):
    index: int = Field(description="the label's value in the label map")
    name: str
    color: str = Field(description="#rrggbb, the label's colour in label_png's palette")
    pixels: int
    share: float = Field(description="pixels / all pixels, 0..1")
    percent: float = Field(description="the share in percent, one decimal; the rows add up to 100.0")


class SegmentResponse(BaseModel):
    model: str = Field(description="the checkpoint or classical method that segmented the image")
    kind: str = Field(description="checkpoint | classical")
    crf: bool = Field(description="whether the dense CRF refined the model's prediction")
    width: int
    height: int
    classes: list[ClassRow]
    label_png: str = Field(description="the label map, base64: an index PNG (pixel = class index, palette = "
                                       "the class colours), the bytes pixelwise predict writes for this image")
    inference_ms: float = Field(description="the model (and CRF) or method alone")
    total_ms: float = Field(description="decoding, inference, the class table and the PNG")


class ModelClass(BaseModel):
    name: str
    color: str


class SegmentsOption(BaseModel):
    option: str = Field(description="the method's own name of the option (k, n_segments)")
    default: int
    max: int


class ModelInfo(BaseModel):
    name: str = Field(description="the value of the form field 'model'")
    kind: str = Field(description="checkpoint | classical")
    crf: bool = Field(description="whether the dense CRF can refine it")
    architecture: str | None = None
    segments: SegmentsOption | None = Field(None, description="classical methods: what 'segments' sets")
    classes: list[ModelClass] = Field(description="a checkpoint's classes; empty for classical methods")


class Limits(BaseModel):
    max_upload_bytes: int
    max_side: int


class ModelsResponse(BaseModel):
    version: str
    default: str = Field(description="the model used when the form names none")
    models: list[ModelInfo]
    limits: Limits


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, and what was expected")
    errors: list[dict[str, Any]] | None = Field(None, description="the form's field errors, for 422")


FORM_HINT = "POST /api/segment takes a multipart form with the image in the field 'file'"
ERRORS = {400: {"model": ErrorResponse, "description": "a body that is not a readable multipart form"},
          413: {"model": ErrorResponse, "description": "upload or image too large"},
          422: {"model": ErrorResponse, "description": "not a readable image, or a form field out of range"},
          500: {"model": ErrorResponse, "description": "the model failed on this image (the server goes on)"}}


# ----------------------------------------------------------------------------- middleware
class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413: at once when ``Content-Length`` says so,
    else as soon as the streamed body passes the limit, so an oversized upload is never read in full."""

    def __init__(self, app: ASGIApp, limit: int, max_upload_bytes: int) -> None:
        self.app, self.limit, self.max_upload_bytes = app, limit, max_upload_bytes

    def error(self) -> HTTPException:
        return HTTPException(413, too_large_message(self.max_upload_bytes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await send_json(send, 413, {"detail": self.error().detail})
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise self.error()  # FastAPI's form parsing lets HTTPException through: a 413
            return message

        await self.app(scope, limited_receive, send)


class SecurityHeaders:
    """The page's Content-Security-Policy ('self' only) and ``nosniff`` on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                            (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


async def send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    response = JSONResponse(body, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def too_large_message(max_upload_bytes: int) -> str:
    return (f"the upload is larger than this server takes: at most {describe_bytes(max_upload_bytes)} "
            "(pixelwise serve --max-upload-mb)")


def describe_bytes(count: int) -> str:
    """``25_000_000`` -> ``'25 MB'``; ``1500`` -> ``'1.5 kB'``."""
    for unit, size in (("MB", MB), ("kB", 1000)):
        if count >= size:
            return f"{count / size:g} {unit}"
    return f"{count} bytes"


# ----------------------------------------------------------------------------- the app
def create_app(segmenters: Mapping[str, Segmenter], *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_side: int = DEFAULT_MAX_SIDE, max_concurrent: int = DEFAULT_MAX_CONCURRENT) -> FastAPI:
    """The web app serving ``segmenters`` (name -> :class:`~pixelwise.serve.segmenters.Segmenter`,
    e.g. from :func:`~pixelwise.serve.segmenters.load_segmenters`; the first is the default), with
    uploads up to ``max_upload_bytes``, images up to ``max_side`` pixels a side, and at most
    ``max_concurrent`` images in memory at once."""
    if not segmenters:
        raise ValueError("nothing to serve: give at least one checkpoint or classical method")
    if min(max_upload_bytes, max_side, max_concurrent) < 1:
        raise ValueError(f"the limits must be positive, got max_upload_bytes={max_upload_bytes}, "
                         f"max_side={max_side}, max_concurrent={max_concurrent}")
    segmenters = dict(segmenters)
    default = next(iter(segmenters))
    app = FastAPI(title="pixelwise serve", version=__version__, docs_url=None, redoc_url=None,
                  description="Segment an image with a checkpoint or a classical method (k-means, SLIC), "
                              "optionally refined by the dense CRF.")
    app.add_middleware(BodyLimit, limit=max_upload_bytes + FORM_OVERHEAD_BYTES, max_upload_bytes=max_upload_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/models", response_model=ModelsResponse, summary="What this server segments with")
    def models() -> dict[str, Any]:
        return {"version": __version__, "default": default,
                "models": [segmenter.describe() for segmenter in segmenters.values()],
                "limits": {"max_upload_bytes": max_upload_bytes, "max_side": max_side}}

    # At most this many images decoded and segmented at once (each may be max_side x max_side);
    # FastAPI runs the endpoint in a thread pool of 40, and the others wait here.
    busy = threading.BoundedSemaphore(max_concurrent)
    # The names on offer, as an enum: the schema lists them, and FastAPI refuses any other.
    ModelName = enum.Enum("ModelName", [(f"model_{index}", name) for index, name in enumerate(segmenters)],
                          type=str)

    @app.post("/api/segment", response_model=SegmentResponse, responses=ERRORS, summary="Segment one image")
    def segment(
        file: Annotated[UploadFile, File(description=f"the image: {EXPECTED_FORMATS}")],
        model: Annotated[ModelName | None, Form(description=f"a name from GET /api/models (default: {default})")]
        = None,
        crf: Annotated[bool, Form(description="refine a checkpoint's prediction with the dense CRF")] = False,
        segments: Annotated[int | None, Form(ge=1, le=MAX_SEGMENTS, description="classical methods only: the "
                                             "number of clusters (kmeans) or superpixels (slic)")] = None,
    ) -> Any:
        start = time.perf_counter()
        name = default if model is None else model.value
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            return error_response(413, too_large_message(max_upload_bytes))
        with busy:
            return answer(name, segmenters[name], data, file.filename, crf=crf, segments=segments,
                          max_side=max_side, start=start)

    return app


def answer(name: str, segmenter: Segmenter, data: bytes, filename: str | None, *, crf: bool,
           segments: int | None, max_side: int, start: float) -> dict[str, Any] | JSONResponse:
    """The JSON answer of ``POST /api/segment`` for one upload to the segmenter served as ``name``,
    or its error response; ``start`` is when the request's handling began."""
    from pixelwise.visualize import index_png_bytes

    try:
        image = decode_upload(data, filename, max_side=max_side)
        result = segmenter.segment(image, crf=crf, segments=segments)
    except UploadError as error:
        return error_response(error.status, str(error))
    except SegmenterFailed as error:
        log.exception("POST /api/segment: %s", error)
        return error_response(500, str(error))
    except ValueError as error:  # a method's own check (k larger than the image, say)
        return error_response(422, str(error))
    png = index_png_bytes(result.labels, result.palette)
    height, width = result.labels.shape
    return {"model": name, "kind": segmenter.kind, "crf": crf, "width": width, "height": height,
            "classes": class_table(result.labels, result.classes, result.palette),
            "label_png": base64.b64encode(png).decode("ascii"),
            "inference_ms": round(result.seconds * 1000, 2),
            "total_ms": round((time.perf_counter() - start) * 1000, 2)}


def error_response(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """A form FastAPI could not read: 422 with one sentence naming the fields, and the field errors."""
    errors = [{"loc": [str(part) for part in item.get("loc", ())], "msg": str(item.get("msg", "")),
               "type": str(item.get("type", ""))} for item in error.errors()]
    fields = "; ".join(f"{'.'.join(item['loc'][1:]) or item['loc'][0] if item['loc'] else 'request'}: "
                       f"{item['msg']}" for item in errors)
    hint = f" ({FORM_HINT})" if any(item["loc"][-1:] == ["file"] for item in errors) else ""
    return JSONResponse({"detail": f"{fields}{hint}", "errors": errors}, status_code=422)


async def http_error(request: Request, error: HTTPException) -> JSONResponse:
    """FastAPI's answer to an HTTPException, plus what the form should look like when the body
    could not be parsed (400)."""
    detail = f"{error.detail} ({FORM_HINT})" if error.status_code == 400 else error.detail
    return JSONResponse({"detail": detail}, status_code=error.status_code, headers=getattr(error, "headers", None))
