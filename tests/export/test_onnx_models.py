"""Every registered model exports to ONNX and agrees with PyTorch, or is listed with the reason.

Models are built with their registered ``test_kwargs`` (small widths, the papers' layer counts)
and checked at the sizes ``pixelwise export`` checks: 64x64, 37x53 and 96x80 with dynamic height
and width, or at one size for the fixed-size-only models.
"""

import json
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from pixelwise.engine import onnx as onnx_export  # noqa: E402
from pixelwise.engine.export import untrained_checkpoint  # noqa: E402
from pixelwise.engine.onnx import (  # noqa: E402
    FIXED_SIZE_ONLY,
    LOGIT_TOLERANCE,
    NOT_EXPORTABLE,
    MIN_AGREEMENT,
    ExportError,
    export_onnx,
    fixed_size_table_markdown,
    read_onnx_metadata,
)
from pixelwise.models import list_models, model_info  # noqa: E402

FIXED_SIZE = (48, 96)
README = (Path(__file__).parents[2] / "README.md").read_text()


def tiny_checkpoint(name: str) -> dict:
    return untrained_checkpoint(name, num_classes=3, model_kwargs=model_info(name)["test_kwargs"])


# Panoptic models return a dict with data-dependent post-processing; the logits export is the semantic models'.
@pytest.mark.parametrize("name", [name for name in list_models()
                                  if name not in NOT_EXPORTABLE and model_info(name)["task"] == "semantic"])
def test_every_model_exports_with_parity(tmp_path, name):
    fixed = name in FIXED_SIZE_ONLY
    report = export_onnx(tiny_checkpoint(name), tmp_path / "m.onnx", input_size=FIXED_SIZE if fixed else None)
    assert report["passed"], report
    assert [row["size"] for row in report["sizes"]] == ([list(FIXED_SIZE)] if fixed else [[64, 64], [37, 53], [96, 80]])
    for row in report["sizes"]:
        assert row["argmax_agreement"] >= MIN_AGREEMENT
        assert row["max_abs_diff"] <= LOGIT_TOLERANCE * max(1.0, row["max_abs_logit"])
    sides = "48 x 96" if fixed else "height x width"
    assert report["input"] == f"input: 1 x 3 x {sides} float32"
    assert report["output"] == f"logits: 1 x 3 x {sides} float32"
    assert json.loads((tmp_path / "m.onnx.parity.json").read_text()) == report
    meta = read_onnx_metadata(tmp_path / "m.onnx")
    assert (meta["model_name"], meta["num_classes"], meta["in_channels"]) == (name, 3, 3)


@pytest.mark.parametrize("name", ["unet_original"])
def test_fixed_size_only_models_do_fail_with_dynamic_sizes(tmp_path, monkeypatch, name):
    # The list is not a guess: without it, neither exporter gives a graph that agrees at all sizes.
    monkeypatch.setattr(onnx_export, "FIXED_SIZE_ONLY", {})
    with pytest.raises(ExportError, match="could not export"):
        export_onnx(tiny_checkpoint(name), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    report = json.loads((tmp_path / "m.onnx.parity.json").read_text())
    assert not report["passed"] and [a["exporter"] for a in report["attempts"]] == ["torchscript", "dynamo"]


def test_dynamic_export_of_a_fixed_size_only_model_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="unet_original cannot be exported with dynamic height and width: its "
                                         "forward pads .* pass --input-size HxW"):
        export_onnx(tiny_checkpoint("unet_original"), tmp_path / "m.onnx")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", sorted(NOT_EXPORTABLE))
def test_models_no_graph_expresses_are_refused_with_the_reason_and_nothing_written(tmp_path, name):
    with pytest.raises(ExportError, match=f"{name} cannot be exported to ONNX: its CRF-RNN layer"):
        export_onnx(tiny_checkpoint(name), tmp_path / "m.onnx")
    assert not any(tmp_path.iterdir())


def test_fixed_size_only_models_are_registered_and_listed_in_the_readme():
    assert set(FIXED_SIZE_ONLY) | set(NOT_EXPORTABLE) <= set(list_models())
    assert fixed_size_table_markdown() in README
