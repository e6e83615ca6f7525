"""The page of ``pixelwise serve`` in a real browser: headless Chromium (Debian's ``chromium``
package, driven by Playwright; no browser download) against a real uvicorn server on a free port.

Skipped, with the reason, only where ``/usr/bin/chromium`` is absent (``.ci/run`` installs it).
The screenshot is a test artefact in the test's ``tmp_path``; with ``PIXELWISE_SCREENSHOT=PATH``
it is also written to PATH (the README's is made with
``PIXELWISE_SCREENSHOT=docs/serve.png python -m pytest tests/serve/test_browser.py``; with
``PIXELWISE_SERVE_CHECKPOINT=RUN/best.pt`` that run's model is served instead of the tests' tiny one).
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.serve.helpers import scene_png

pytest.importorskip("fastapi", reason="pixelwise serve needs the serve extra: pip install -e '.[serve]'")

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that reaches for the network on its own (this machine's closed network
# answers those with refused connections).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SYNTHETIC_CLASSES = ["sky", "ground", "water", "disk", "rectangle", "triangle", "ring"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"Chromium is absent ({CHROMIUM}); install Debian's chromium package "
                                       "(apt-get install chromium) to run the browser test")


@pytest.fixture
def server(segmenters):
    """A uvicorn server of the app on a free port of 127.0.0.1, in a thread; yields its URL."""
    import uvicorn

    from pixelwise.serve import create_app, load_segmenters

    own = os.environ.get("PIXELWISE_SERVE_CHECKPOINT")
    app = create_app(load_segmenters([own]) if own else segmenters)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_page_segments_an_upload_in_chromium(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    image = tmp_path / "scene.png"
    image.write_bytes(scene_png(11, (144, 192)))
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 640})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{server}/")
            page.wait_for_selector("#model option", state="attached")
            page.set_input_files("#file", str(image))
            page.wait_for_selector('#overlay[data-ready="true"]', timeout=30_000)

            rows = page.eval_on_selector_all("#legend tbody tr", "rows => rows.map(row => [row.dataset.class, "
                                                                "Number(row.dataset.percent)])")
            assert [name for name, _ in rows] == SYNTHETIC_CLASSES
            assert sum(percent for _, percent in rows) == pytest.approx(100.0, abs=1e-6)
            assert page.text_content("#legend-total") == "100.0%"
            assert "inference" in page.text_content("#timing") and " ms" in page.text_content("#timing")
            size = page.eval_on_selector("#overlay", "img => [img.naturalWidth, img.naturalHeight]")
            assert size == [192, 144]

            page.fill("#opacity", "45")  # moves the slider and fires its input event
            assert float(page.eval_on_selector("#overlay", "img => getComputedStyle(img).opacity")) == \
                pytest.approx(0.45)
            assert page.text_content("#opacity-value") == "45%"
            assert page.is_hidden("#error")
            page.screenshot(path=str(tmp_path / "serve.png"))

            # A dropped file, segmented by k-means (no CRF for it): the legend lists its segments.
            page.select_option("#model", "kmeans")
            assert page.is_disabled("#crf") and page.is_visible("#segments")
            page.fill("#segments", "3")
            dropped = base64.b64encode(scene_png(12, (40, 60))).decode()
            page.evaluate("""data => {
                const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
                document.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
            }""", dropped)
            expect(page.locator("#timing")).to_contain_text("60 x 40 pixels")
            page.wait_for_selector('#overlay[data-ready="true"]')
            names = page.eval_on_selector_all("#legend tbody tr", "rows => rows.map(row => row.dataset.class)")
            assert names == ["segment 1", "segment 2", "segment 3"]
            assert page.text_content("#legend-total") == "100.0%"
        finally:
            browser.close()
    assert (tmp_path / "serve.png").stat().st_size > 10_000
    outside = [url for url in requests if not url.startswith((server, "blob:" + server, "data:"))]
    assert not outside, f"the page loaded resources from elsewhere: {outside}"
    if target := os.environ.get("PIXELWISE_SCREENSHOT"):
        shutil.copyfile(tmp_path / "serve.png", target)
