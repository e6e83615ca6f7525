"""Every registered model, tested the day it is registered, plus the model API (pixelwise.models).

Models are built with their registered ``test_kwargs`` (small widths) and fed tiny inputs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelwise.models import (
    MODELS,
    SegmentationModel,
    UnknownNameError,
    count_parameters,
    create_model,
    list_models,
    model_info,
    model_table_markdown,
    parameter_count,
    split_outputs,
)
from pixelwise.models.base import crop_to_size, pad_to_multiple

NUM_CLASSES = 3
ODD_SIZE = (37, 53)


def build(name: str, **kwargs: object) -> nn.Module:
    return create_model(name, NUM_CLASSES, **{**model_info(name)["test_kwargs"], **kwargs})


def images(height: int, width: int, batch: int = 2, channels: int = 3) -> torch.Tensor:
    return torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(0))


all_models = pytest.mark.parametrize("name", list_models())
# The logits contract (pixelwise.models.base) is the semantic models'; panoptic models return a dict and are
# tested on theirs in tests/models/test_panoptic_deeplab.py.
semantic_models = pytest.mark.parametrize("name", [name for name in list_models()
                                                   if model_info(name)["task"] == "semantic"])


# ---------------------------------------------------------------- every model


@all_models
def test_metadata_is_complete(name: str) -> None:
    info = model_info(name)
    assert isinstance(info["paper"], str) and info["paper"]
    assert isinstance(info["description"], str) and info["description"]
    assert info["params"] is None or isinstance(info["params"], int)
    assert set(info["test_kwargs"]) <= set(info["default_kwargs"])


@semantic_models
@pytest.mark.parametrize("size", [ODD_SIZE, (64, 64)])
@pytest.mark.parametrize("training", [False, True])
def test_forward_gives_logits_at_input_size(name: str, size: tuple[int, int], training: bool) -> None:
    model = build(name).train(training)
    with torch.no_grad():
        out = model(images(*size))
    logits, aux = split_outputs(out)
    assert logits.shape == (2, NUM_CLASSES, *size)
    assert all(a.shape == logits.shape for a in aux)
    if not training:
        assert isinstance(out, torch.Tensor)  # eval mode: always the bare tensor


@semantic_models
def test_backward_gives_finite_gradients_on_all_parameters(name: str) -> None:
    model = build(name).train()
    logits, aux = split_outputs(model(images(*ODD_SIZE)))
    sum([logits.square().mean(), *(a.square().mean() for a in aux)]).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {param_name}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient for {param_name}"


@semantic_models
def test_eval_is_deterministic(name: str) -> None:
    model = build(name).eval()
    x = images(*ODD_SIZE)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@semantic_models
def test_state_dict_round_trip(name: str) -> None:
    torch.manual_seed(0)
    model = build(name).eval()
    torch.manual_seed(1)
    fresh = build(name).eval()
    fresh.load_state_dict(model.state_dict())
    x = images(*ODD_SIZE)
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


@semantic_models
def test_export_matches_eager(name: str) -> None:
    model = build(name).eval()
    x = images(*ODD_SIZE, batch=1)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


@all_models
def test_meta_device_count_equals_real_count(name: str) -> None:
    # parameter_count builds on the meta device (the README table uses it); it must not differ.
    kwargs = model_info(name)["test_kwargs"]
    assert parameter_count(name, 21, **kwargs) == count_parameters(create_model(name, 21, **kwargs))


@all_models
def test_parameter_count_matches_paper(name: str) -> None:
    info = model_info(name)
    if info["params"] is None:
        pytest.skip(f"{name}: the paper reports no parameter count")
    kwargs = {"num_classes": 21, **info["paper_kwargs"]}
    assert parameter_count(name, **kwargs) == pytest.approx(info["params"], rel=info["params_tolerance"])


@semantic_models
def test_auxiliary_outputs_have_their_loss_weights(name: str) -> None:
    model = build(name).train()
    _, aux = split_outputs(model(images(*ODD_SIZE)))
    assert len(aux) == len(model.aux_weights)  # the trainer weights each auxiliary loss by these
    metadata_weight = model_info(name)["aux_weight"]
    if isinstance(metadata_weight, (int, float)):  # one weight, for each auxiliary output
        assert model.aux_weights == (metadata_weight,) * len(aux)
    elif metadata_weight is not None:
        assert model.aux_weights == tuple(metadata_weight)


@semantic_models
def test_rejects_wrong_input_channels(name: str) -> None:
    model = build(name, in_channels=1).eval()
    assert split_outputs(model(images(16, 16, channels=1)))[0].shape == (2, NUM_CLASSES, 16, 16)
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        model(images(16, 16, channels=3))


def test_every_model_is_covered_by_the_contract_tests_of_its_task() -> None:
    # A task without contract tests would leave its models untested: semantic here, panoptic in
    # tests/models/test_panoptic_deeplab.py, instance in tests/models/test_mask_rcnn.py.
    assert {model_info(name)["task"] for name in list_models()} <= {"semantic", "panoptic", "instance"}
    assert {name for name in list_models() if model_info(name)["task"] == "instance"} == {
        "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "maskrcnn_small"}


# ---------------------------------------------------------------- model API


def test_unknown_model_name_lists_close_names() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean: unet") as caught:
        create_model("unte", num_classes=2)
    assert isinstance(caught.value, KeyError)


def test_unknown_keyword_names_the_model_and_its_arguments() -> None:
    with pytest.raises(TypeError, match=r"model 'unet' got unexpected argument\(s\) 'widht'.*base_width"):
        create_model("unet", num_classes=2, widht=8)


def test_list_models_filters_by_pattern() -> None:
    assert list_models() == MODELS.names()
    assert list_models("fcn[0-9]*") == ["fcn16s", "fcn32s", "fcn8s", "fcn8s_tiny"]
    assert list_models("nothing*") == []


def test_model_info_reads_defaults_from_the_builder_and_returns_a_copy() -> None:
    info = model_info("unet")
    assert info["name"] == "unet"
    assert info["default_kwargs"] == {
        "depth": 4,
        "base_width": 64,
        "batch_norm": True,
        "upsampling": "transpose",
        "dropout": 0.0,
    }
    info["test_kwargs"]["base_width"] = 1000
    assert model_info("unet")["test_kwargs"] == {"base_width": 8}


def test_count_parameters_by_hand() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))  # 4*3*3*3 + 4 = 112, then 4 + 4
    assert count_parameters(model) == 120
    model[1].requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 112


def test_model_table_lists_every_model() -> None:
    table = model_table_markdown()
    rows = table.splitlines()
    assert rows[0].startswith("| Model | Params (exact, paper setting) |")
    for name in list_models():
        assert any(row.startswith(f"| `{name}` |") for row in rows)
    # U-Net in the paper's setting (1 input channel, 2 classes): 31,030,658, the paper's 31.03M
    assert "| `unet_original` | 31,030,658 | 31.03M | num_classes=2, in_channels=1 | — |" in table
    assert "62.2 (PASCAL VOC 2012 test" in table and "[arXiv:1411.4038](https://arxiv.org/abs/1411.4038)" in table


class DummyWithAux(SegmentationModel):
    """1x1 conv logits at stride 4 plus one auxiliary head at stride 2."""

    def __init__(self) -> None:
        super().__init__(num_classes=2, in_channels=3, size_multiple=4)
        self.head = nn.Conv2d(3, 2, 1)
        self.aux_head = nn.Conv2d(3, 2, 1)

    def forward_padded(self, x: torch.Tensor) -> dict[str, object]:
        return {"out": self.head(x[..., ::4, ::4]), "aux": [self.aux_head(x[..., ::2, ::2])]}


def test_split_outputs_reads_both_conventions() -> None:
    model = DummyWithAux()
    x = images(*ODD_SIZE)
    train_out = model.train()(x)
    assert set(train_out) == {"out", "aux"}
    logits, aux = split_outputs(train_out)
    assert logits.shape == (2, 2, *ODD_SIZE) and [a.shape for a in aux] == [(2, 2, *ODD_SIZE)]
    eval_out = model.eval()(x)
    assert isinstance(eval_out, torch.Tensor)
    assert split_outputs(eval_out) == (eval_out, [])
    torch.testing.assert_close(eval_out, logits)


def test_split_outputs_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="keys"):
        split_outputs({"logits": torch.zeros(1)})
    with pytest.raises(TypeError):
        split_outputs([torch.zeros(1)])


def test_pad_to_multiple_pads_bottom_right_with_zeros_and_crop_undoes_it() -> None:
    x = torch.ones(1, 2, 5, 3)  # smaller than the multiple: reflection padding could not do this
    padded, size = pad_to_multiple(x, 8)
    assert padded.shape == (1, 2, 8, 8) and size == (5, 3)
    assert padded[..., :5, :3].eq(1).all() and padded.sum() == x.sum()
    assert torch.equal(crop_to_size(padded, size), x)


def test_pad_to_multiple_leaves_multiples_alone() -> None:
    x = torch.ones(1, 1, 16, 32)
    assert pad_to_multiple(x, 16)[0] is x
    with pytest.raises(ValueError):
        pad_to_multiple(x, 0)
