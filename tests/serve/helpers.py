"""Helpers of the ``pixelwise serve`` tests: synthetic images as upload bytes, the test client."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image


def scene_png(seed: int, size: int | tuple[int, int] = 64) -> bytes:
    """A synthetic scene (:func:`pixelwise.data.scenes.generate_scene`) as PNG bytes."""
    from pixelwise.data.scenes import generate_scene

    return png_bytes(generate_scene(seed, size=size).image)


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_client(app):
    """FastAPI's test client for ``app``. Starlette now suggests httpx2 for it; httpx (a dev
    dependency) still works, so that deprecation warning is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2.*")
        from fastapi.testclient import TestClient
    return TestClient(app)
