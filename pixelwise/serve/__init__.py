"""``pixelwise serve``: a web page and a JSON API that segment uploaded images.

:func:`create_app` builds the FastAPI application (:mod:`pixelwise.serve.app`) around the
segmenters of :func:`load_segmenters` (:mod:`pixelwise.serve.segmenters`: checkpoints, k-means,
SLIC). FastAPI and uvicorn are the ``serve`` extra (``pip install 'pixelwise[serve]'``); they are
imported on first use of :func:`create_app`, so the segmenters load without them.
"""

from __future__ import annotations

from typing import Any

from pixelwise.serve.segmenters import (
    CheckpointSegmenter,
    ClassicalSegmenter,
    Segmentation,
    Segmenter,
    class_table,
    decode_upload,
    load_segmenters,
)

__all__ = ["CheckpointSegmenter", "ClassicalSegmenter", "Segmentation", "Segmenter", "class_table", "create_app",
           "decode_upload", "load_segmenters"]


def create_app(*args: Any, **kwargs: Any):
    """:func:`pixelwise.serve.app.create_app` (imported here on first use: FastAPI is an extra)."""
    try:
        from pixelwise.serve.app import create_app as build
    except ImportError as error:
        raise ImportError(f"pixelwise serve needs FastAPI, uvicorn and python-multipart ({error}): "
                          "pip install 'pixelwise[serve]'") from error
    return build(*args, **kwargs)
