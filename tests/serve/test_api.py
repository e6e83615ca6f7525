"""``pixelwise serve``'s API through FastAPI's test client: what it lists, what it answers, and that
its label maps are the bytes ``pixelwise predict`` writes."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pixelwise.cli.main import main
from tests.serve.helpers import make_client, scene_png

pytest.importorskip("fastapi", reason="pixelwise serve needs the serve extra: pip install -e '.[serve]'")


def segment(client, image: bytes, name: str = "scene.png", **fields):
    return client.post("/api/segment", files={"file": (name, image, "image/png")},
                       data={key: str(value).lower() if isinstance(value, bool) else str(value)
                             for key, value in fields.items()})


def labels_of(answer: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["label_png"]))))


def test_models_lists_the_checkpoint_and_the_classical_methods(client, checkpoint):
    info = client.get("/api/models").json()
    models = {model["name"]: model for model in info["models"]}
    assert info["default"] == str(checkpoint)
    assert models[str(checkpoint)]["kind"] == "checkpoint" and models[str(checkpoint)]["crf"] is True
    assert models[str(checkpoint)]["architecture"] == "fcn8s_tiny"
    assert [row["name"] for row in models[str(checkpoint)]["classes"]] == \
        ["sky", "ground", "water", "disk", "rectangle", "triangle", "ring"]
    assert models["kmeans"] == {"name": "kmeans", "kind": "classical", "crf": False, "architecture": None,
                                "segments": {"option": "k", "default": 8, "max": 200}, "classes": []}
    assert "slic" in models  # scikit-image is a dev dependency
    assert info["limits"] == {"max_upload_bytes": 25_000_000, "max_side": 8192}


@pytest.mark.parametrize("crf", [False, True])
def test_label_png_is_the_file_predict_writes(client, checkpoint, tmp_path, crf):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "scene.png").write_bytes(scene_png(5, (56, 72)))
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out"), *(["--crf"] if crf else [])]) == 0
    answer = segment(client, (tmp_path / "in" / "scene.png").read_bytes(), crf=crf)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert base64.b64decode(body["label_png"]) == (tmp_path / "out" / "scene.png").read_bytes()
    assert (body["width"], body["height"], body["crf"], body["kind"]) == (72, 56, crf, "checkpoint")


def sixteen_bit_png(path, pixels):
    """``pixels`` (uint8 RGB) as a 16-bit grey PNG whose 8-bit reading is its first channel."""
    Image.fromarray(pixels[..., 0].astype(np.uint16) * 257).save(path)


def exif_rotated_jpeg(path, pixels):
    """``pixels`` stored turned, with the EXIF orientation (6) that turns it back."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(pixels, 1).copy()).save(path, quality=95, exif=exif)


@pytest.mark.parametrize("write, suffix", [(sixteen_bit_png, ".png"), (exif_rotated_jpeg, ".jpg")],
                         ids=["16-bit PNG", "EXIF-rotated JPEG"])
def test_uploads_are_read_as_predict_reads_files(client, checkpoint, tmp_path, write, suffix):
    from pixelwise.data.scenes import generate_scene

    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / f"scene{suffix}"
    write(path, generate_scene(6, size=(40, 56)).image)
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(path), "--output",
                 str(tmp_path / "out")]) == 0
    body = segment(client, path.read_bytes(), name=path.name).json()
    assert base64.b64decode(body["label_png"]) == (tmp_path / "out" / "scene.png").read_bytes()
    assert (body["width"], body["height"]) == (56, 40)


def test_class_table_counts_the_label_map(client):
    body = segment(client, scene_png(2, 64)).json()
    labels = labels_of(body)
    assert [row["name"] for row in body["classes"]] == ["sky", "ground", "water", "disk", "rectangle", "triangle",
                                                        "ring"]
    assert [row["pixels"] for row in body["classes"]] == np.bincount(labels.ravel(), minlength=7).tolist()
    assert sum(row["share"] for row in body["classes"]) == pytest.approx(1.0)
    assert sum(row["percent"] for row in body["classes"]) == pytest.approx(100.0)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", row["color"]) for row in body["classes"])
    palette = Image.open(io.BytesIO(base64.b64decode(body["label_png"]))).getpalette()
    assert [f"#{bytes(palette[3 * i:3 * i + 3]).hex()}" for i in range(7)] == [row["color"] for row in body["classes"]]
    assert body["inference_ms"] > 0 and body["total_ms"] >= body["inference_ms"]


@pytest.mark.parametrize("method, segments", [("kmeans", 4), ("slic", 12)])
def test_classical_methods_name_their_segments(client, method, segments):
    body = segment(client, scene_png(3, 64), model=method, segments=segments).json()
    count = len(body["classes"])
    assert body["kind"] == "classical" and 1 <= count <= (segments if method == "kmeans" else 3 * segments)
    assert [row["name"] for row in body["classes"]] == [f"segment {i + 1}" for i in range(count)]
    assert labels_of(body).max() == count - 1
    assert all(row["pixels"] > 0 for row in body["classes"])


@pytest.mark.parametrize("fields, message", [
    ({"model": "nope"}, "model: Input should be "),
    ({"model": "kmeans", "crf": True}, "the dense CRF refines a model's class scores, and kmeans has none"),
    ({"segments": 3}, "'segments' sets a classical method's number of segments"),
    ({"model": "kmeans", "segments": 0}, "segments: Input should be greater than or equal to 1"),
    ({"crf": "perhaps"}, "crf: Input should be a valid boolean"),
])
def test_form_errors_are_422_with_a_sentence(client, fields, message):
    answer = segment(client, scene_png(0, 32), **fields)
    assert answer.status_code == 422
    assert message in answer.json()["detail"]


def test_a_form_without_the_file_names_the_field(client):
    answer = client.post("/api/segment", data={"model": "kmeans"})
    assert answer.status_code == 422
    assert answer.json()["detail"] == ("file: Field required (POST /api/segment takes a multipart form with the "
                                       "image in the field 'file')")


def test_the_page_loads_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert references and not [ref for ref in references if ref.startswith(("http:", "https:", "//"))]
    for reference in references:
        if reference.startswith("/"):
            assert client.get(reference).status_code == 200, reference
    for asset in ("/static/app.js", "/static/style.css"):
        assert not re.search(r"https?://", client.get(asset).text), asset


def test_openapi_schema_is_served_and_the_cdn_pages_are_off(client):
    schema = client.get("/openapi.json").json()
    assert {"/api/segment", "/api/models"} <= set(schema["paths"])
    form = schema["paths"]["/api/segment"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in form
    assert {"413", "422", "500"} <= set(schema["paths"]["/api/segment"]["post"]["responses"])
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404


def test_serve_help_imports_neither_torch_nor_fastapi():
    script = ("import sys\nfrom pixelwise.cli.main import main\n"
              "try:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
              "print(sorted(name for name in ('torch', 'fastapi', 'uvicorn') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("[]")
    assert "--max-upload-mb" in result.stdout and "(default: 127.0.0.1" in result.stdout


def test_serve_command_starts_uvicorn_with_the_limits(checkpoint, monkeypatch, capsys):
    import uvicorn

    calls = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.update(app=app, **kwargs))
    assert main(["serve", "--checkpoint", str(checkpoint), "--max-upload-mb", "2", "--max-side", "512"]) == 0
    assert (calls["host"], calls["port"]) == ("127.0.0.1", 8000)
    limits = make_client(calls["app"]).get("/api/models").json()["limits"]
    assert limits == {"max_upload_bytes": 2_000_000, "max_side": 512}
    assert "open http://127.0.0.1:8000/" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--max-upload-mb", "0"], "--max-upload-mb must be positive"),
    (["--port", "70000"], "--port must be in 0..65535"),
    (["--checkpoint", "missing.pt"], "missing.pt"),
])
def test_serve_command_refuses_bad_flags_in_one_line(flags, message, capsys):
    assert main(["serve", *flags]) == 2
    assert message in capsys.readouterr().err
