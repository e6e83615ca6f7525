"""``pixelwise serve`` under bad input and faults: oversized uploads and images, corrupt files and
non-images, a failing model, concurrent requests, and a schemathesis fuzz of the API from its own
OpenAPI schema (in-process, through the ASGI app)."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from tests.serve.helpers import make_client, png_bytes, scene_png

pytest.importorskip("fastapi", reason="pixelwise serve needs the serve extra: pip install -e '.[serve]'")

from pixelwise.serve import CheckpointSegmenter, ClassicalSegmenter, create_app  # noqa: E402

EXPECTED = "expected an image file: PNG, JPEG, BMP, TIFF or WebP"


def upload(client, data: bytes, name: str = "image.png", **fields):
    return client.post("/api/segment", files={"file": (name, data, "application/octet-stream")},
                       data={key: str(value) for key, value in fields.items()})


def multipart(data: bytes, boundary: str = "pixelwise-test") -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()


@pytest.mark.reliability(fault="an upload over --max-upload-mb, with and without Content-Length",
                         outcome="413 naming the limit and its flag; a streamed body is cut off at the limit")
def test_oversized_uploads_are_413(segmenters):
    limit = 20_000
    client = make_client(create_app(segmenters, max_upload_bytes=limit))
    too_big = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)  # ~30 kB, incompressible
    data = png_bytes(too_big)
    assert limit < len(data) < limit + 64 * 1024  # under the body limit: the file's own size check refuses it
    for answer in (upload(client, data), upload(client, data + bytes(100_000))):
        assert answer.status_code == 413
        assert answer.json()["detail"] == ("the upload is larger than this server takes: at most 20 kB "
                                           "(pixelwise serve --max-upload-mb)")
    assert upload(client, scene_png(0, 32)).status_code == 200

    async def streamed():  # chunked: no Content-Length, refused once the stream passes the limit
        import httpx

        body = multipart(data + bytes(200_000))
        sent = []

        async def chunks():
            for start in range(0, len(body), 16_384):
                sent.append(start)
                yield body[start:start + 16_384]

        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as http:
            answer = await http.post("/api/segment", content=chunks(),
                                     headers={"content-type": "multipart/form-data; boundary=pixelwise-test"})
        return answer, len(sent) * 16_384, len(body)

    answer, read, total = asyncio.run(streamed())
    assert answer.status_code == 413 and "at most 20 kB" in answer.json()["detail"]
    assert read < total  # stopped reading early


@pytest.mark.reliability(fault="an image with a side over --max-side, and a 9000 x 9000 PNG of 10 kB",
                         outcome="413 naming the size and the limit, from the header, before any pixel is decoded")
def test_oversized_images_are_413(segmenters, client):
    small = make_client(create_app(segmenters, max_side=64))
    answer = upload(small, png_bytes(np.zeros((10, 65, 3), np.uint8)))
    assert answer.status_code == 413
    assert answer.json()["detail"] == ("the image is 65 x 10 pixels; this server takes at most 64 pixels a side "
                                       "(pixelwise serve --max-side)")
    assert upload(small, png_bytes(np.zeros((64, 64, 3), np.uint8))).status_code == 200

    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, format="PNG")  # 81 Mpixels in a few kB
    start = time.perf_counter()
    answer = upload(client, buffer.getvalue())
    assert answer.status_code == 413 and "9000 x 9000 pixels" in answer.json()["detail"]
    assert time.perf_counter() - start < 2  # decoding it would take far longer (and 243 MB of RGB)


@pytest.mark.reliability(fault="a corrupt upload: a PNG cut short, a PNG with flipped bytes, an empty file",
                         outcome="422 saying the upload is not a readable image and naming the formats expected")
def test_corrupt_uploads_are_422(client):
    good = scene_png(1, 48)
    flipped = bytearray(good)
    flipped[60:80] = bytes(255 - value for value in flipped[60:80])
    for data, reason in ((good[: len(good) // 2], "truncated"), (bytes(flipped), ""), (b"", "is empty")):
        answer = upload(client, data, name="scene.png")
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert detail.startswith("upload 'scene.png' ") and EXPECTED in detail and reason in detail.lower()


@pytest.mark.reliability(fault="uploads that are not images: text, JSON, a PDF header, random bytes",
                         outcome="422 naming the upload and the image formats expected")
def test_non_images_are_422(client):
    rng = np.random.default_rng(1)
    for name, data in (("notes.txt", b"just some words\n" * 50), ("data.json", b'{"image": null}'),
                       ("paper.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), ("noise.png", rng.bytes(5000))):
        answer = upload(client, data, name=name)
        assert answer.status_code == 422, name
        assert answer.json()["detail"].startswith(f"upload '{name}' is not an image this server can read")
        assert EXPECTED in answer.json()["detail"]


class FailsOnWideImages(torch.nn.Module):
    """A model that raises (as an out-of-memory error would) on images wider than 40 pixels."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.shape[-1] > 40:
            raise RuntimeError("simulated out of memory")
        return self.inner(inputs)


@pytest.mark.reliability(fault="a model that raises on some images",
                         outcome="500 with the model's error as JSON; the same model and the server go on serving")
def test_a_failing_model_does_not_take_the_server_down(segmenters, caplog):
    good = next(iter(segmenters.values()))
    broken = CheckpointSegmenter("broken", FailsOnWideImages(good.model), good.checkpoint)
    client = make_client(create_app({"broken": broken, **segmenters}))
    answer = upload(client, scene_png(2, (32, 48)), model="broken")
    assert answer.status_code == 500
    assert answer.json() == {"detail": "broken failed on this image: RuntimeError: simulated out of memory"}
    assert "simulated out of memory" in caplog.text  # logged with its traceback
    assert upload(client, scene_png(2, (32, 40)), model="broken").status_code == 200  # its lock was released
    assert upload(client, scene_png(2, 32), model=good.name).status_code == 200
    assert client.get("/api/models").status_code == 200


class Overlap(ClassicalSegmenter):
    """k-means that holds each request a moment and records how many ran at once."""

    running = peak = 0
    guard = threading.Lock()

    def segment(self, image, *, crf=False, segments=None):
        with Overlap.guard:
            Overlap.running += 1
            Overlap.peak = max(Overlap.peak, Overlap.running)
        try:
            time.sleep(0.2)
            return super().segment(image, crf=crf, segments=segments)
        finally:
            with Overlap.guard:
                Overlap.running -= 1


@pytest.mark.reliability(fault="eight different images sent at once, to a checkpoint and to k-means",
                         outcome="each answer is that image's own label map and class table, as when sent alone")
def test_concurrent_requests_get_their_own_answers(segmenters):
    import httpx

    model = next(iter(segmenters))
    app = create_app({**segmenters, "kmeans": Overlap("kmeans", "k", default_segments=4)})
    jobs = [(scene_png(seed, (40 + 8 * seed, 64 - 4 * seed)), model if seed % 2 else "kmeans") for seed in range(8)]
    client = make_client(app)
    alone = [upload(client, image, model=name).json() for image, name in jobs]
    assert len({answer["label_png"] for answer in alone}) == len(jobs)  # all different

    async def at_once():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as http:
            return await asyncio.gather(*(http.post("/api/segment", data={"model": name},
                                                    files={"file": (f"{i}.png", image, "image/png")})
                                          for i, (image, name) in enumerate(jobs)))

    Overlap.peak = 0
    answers = [answer.json() for answer in asyncio.run(at_once())]
    assert Overlap.peak > 1  # the k-means requests really ran side by side
    for answer, expected, (image, _) in zip(answers, alone, jobs, strict=True):
        assert answer["label_png"] == expected["label_png"] and answer["classes"] == expected["classes"]
        width, height = Image.open(io.BytesIO(image)).size
        assert (answer["width"], answer["height"]) == (width, height)
        assert Image.open(io.BytesIO(base64.b64decode(answer["label_png"]))).size == (width, height)
