"""pixelwise/models/panoptic_deeplab.py: the panoptic output contract, checked on every model registered with
task "panoptic" (the semantic models' contract is tests/models/test_all_models.py's)."""

from __future__ import annotations

import pytest
import torch

from pixelwise.models import count_parameters, create_model, list_models, model_info, parameter_count

NUM_CLASSES = 4  # 0, 1: stuff; 2, 3: things
THINGS = (2, 3)
ODD_SIZE = (37, 53)
TRAIN_KEYS = {"semantic", "center", "offset"}
panoptic_models = pytest.mark.parametrize("name", [n for n in list_models() if model_info(n)["task"] == "panoptic"])


def build(name: str, **kwargs: object) -> torch.nn.Module:
    return create_model(name, NUM_CLASSES, **{**model_info(name)["test_kwargs"], "things": THINGS, **kwargs})


def images(height: int, width: int, batch: int = 2, channels: int = 3) -> torch.Tensor:
    return torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(0))


def two_instance_batch(height: int, width: int) -> dict[str, torch.Tensor]:
    """Stuff 0 above row h/2, stuff 1 below; a thing of class 2 and one of class 3; a void corner."""
    pairs = torch.zeros(2, height, width, 2, dtype=torch.long)
    pairs[:, height // 2:, :, 0] = 1
    pairs[:, 2:10, 3:12] = torch.tensor([2, 1])
    pairs[:, 15:25, 20:30] = torch.tensor([3, 1])
    pairs[:, :2, :2, 0] = -1
    mask = pairs[..., 0].masked_fill(pairs[..., 0] < 0, 255)
    return {"panoptic": pairs, "mask": mask}


@panoptic_models
def test_metadata_says_panoptic(name: str) -> None:
    assert model_info(name)["task"] == "panoptic"


@panoptic_models
@pytest.mark.parametrize("training", [True, False])
def test_forward_gives_the_panoptic_outputs_at_input_size(name: str, training: bool) -> None:
    model = build(name).train(training)
    with torch.no_grad():
        out = model(images(*ODD_SIZE))
    assert set(out) == TRAIN_KEYS | ({"panoptic"} if not training else set())
    assert out["semantic"].shape == (2, NUM_CLASSES, *ODD_SIZE)
    assert out["center"].shape == (2, 1, *ODD_SIZE) and out["offset"].shape == (2, 2, *ODD_SIZE)
    if not training:
        pairs = out["panoptic"]
        assert pairs.shape == (2, *ODD_SIZE, 2) and pairs.dtype == torch.int64
        assert set(pairs[..., 0].unique().tolist()) <= {-1, *range(NUM_CLASSES)}


@panoptic_models
def test_losses_backpropagate_finite_gradients_to_all_parameters(name: str) -> None:
    model = build(name).train()
    losses = model.losses(model(images(*ODD_SIZE)), two_instance_batch(*ODD_SIZE))
    assert set(losses) == TRAIN_KEYS and all(loss.dim() == 0 and torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {param_name}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient for {param_name}"


@panoptic_models
def test_eval_is_deterministic_and_a_state_dict_round_trips(name: str) -> None:
    torch.manual_seed(0)
    model = build(name).eval()
    torch.manual_seed(1)
    fresh = build(name).eval()
    fresh.load_state_dict(model.state_dict())
    x = images(*ODD_SIZE)
    with torch.no_grad():
        first, second, loaded = model(x), model(x), fresh(x)
    for key in first:
        assert torch.equal(first[key], second[key]) and torch.equal(first[key], loaded[key]), key


@panoptic_models
def test_meta_device_count_equals_real_count(name: str) -> None:
    kwargs = {**model_info(name)["test_kwargs"], "things": THINGS}
    assert parameter_count(name, 21, **kwargs) == count_parameters(create_model(name, 21, **kwargs))


@panoptic_models
def test_rejects_wrong_input_channels(name: str) -> None:
    model = build(name, in_channels=1).eval()
    assert model(images(16, 16, channels=1))["semantic"].shape == (2, NUM_CLASSES, 16, 16)
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        model(images(16, 16))


def test_resnet50_parameter_count_in_the_paper_setting() -> None:
    # The paper gives no count. By hand, with Cityscapes' 19 classes (dilation does not change it):
    # ResNet-50 without fc 23,508,032; each ASPP on 2048 maps 15,535,104 (1x1 524,800, three 3x3 atrous
    # 4,719,104 each, pooling 524,800, projection 328,192); semantic decoder 214,240 (projections 32,896 and
    # 8,256; 5x5 separable fusions 91,072 and 82,016), instance decoder 88,048; heads 77,843 (semantic),
    # 7,649 (centre), 7,682 (offsets).
    info = model_info("panoptic_deeplab_resnet50")
    count = parameter_count("panoptic_deeplab_resnet50", **info["paper_kwargs"])
    print(f"panoptic_deeplab_resnet50 (19 classes): {count:,} parameters")
    assert info["params"] is None and info["paper_kwargs"] == {"num_classes": 19}
    assert count == 23_508_032 + 2 * 15_535_104 + 214_240 + 88_048 + 77_843 + 7_649 + 7_682 == 54_973_702
    assert f"{count:,}" in info["params_note"]
    assert info["quality"][0]["pq"] == 59.7


def test_things_are_checked() -> None:
    with pytest.raises(ValueError, match="things must be distinct class indices in 0..3"):
        build("panoptic_deeplab_small", things=(2, 4))


def test_offsets_are_in_input_pixels() -> None:
    # Upsampling the stride-4 offsets multiplies them by 4: a constant 1 at stride 4 is 4 input pixels.
    model = build("panoptic_deeplab_small").eval()
    with torch.no_grad():
        head = model.offset_head[-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor([1.0, -0.5]))
        out = model(images(*ODD_SIZE, batch=1))
    torch.testing.assert_close(out["offset"][0, :, 5, 7], torch.tensor([4.0, -2.0]))


def test_losses_are_zero_for_perfect_instance_predictions() -> None:
    from pixelwise.losses.panoptic import panoptic_targets

    model = build("panoptic_deeplab_small")
    batch = two_instance_batch(32, 40)
    targets = panoptic_targets(batch["panoptic"], THINGS, sigma=model.center_sigma)
    logits = torch.nn.functional.one_hot(batch["mask"].clamp(max=NUM_CLASSES - 1), NUM_CLASSES).permute(0, 3, 1, 2)
    outputs = {"semantic": 50.0 * logits.float(), "center": targets.center, "offset": targets.offset}
    losses = model.losses(outputs, batch)
    assert losses["center"].item() == 0.0 and losses["offset"].item() == 0.0
    assert losses["semantic"].item() < 1e-6
