"""Joint transforms keep image and mask aligned.

The image is built from the mask (channel value = LABEL_STEP * label + LABEL_BASE), so the
label of every pixel can be read back from the transformed image and compared with the
transformed mask at the same position.
"""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from pixelwise.data.transforms import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAD_FILL,
    RandomScale,
    denormalize,
    elastic_deformation,
    eval_transforms,
    random_shift,
    train_transforms,
)

NUM_LABELS = 7
LABEL_STEP, LABEL_BASE = 30, 10  # label 0 -> 10, never the pad value 0
BLOCK = 8  # mask is made of BLOCK x BLOCK squares so resampled interiors stay exact
NEAREST = v2.InterpolationMode.NEAREST_EXACT  # what masks use when resized


def make_sample(height: int = 48, width: int = 64, seed: int = 0, block: int = BLOCK) -> dict:
    generator = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, NUM_LABELS, (height // block, width // block), generator=generator)
    mask = blocks.repeat_interleave(block, 0).repeat_interleave(block, 1)
    image = (mask * LABEL_STEP + LABEL_BASE).to(torch.uint8).expand(3, -1, -1).clone()
    return {"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask), "name": "toy"}


def decode(image: torch.Tensor) -> torch.Tensor:
    """Labels encoded in a uint8-range image (channel 0)."""
    return torch.round((image[0].float() - LABEL_BASE) / LABEL_STEP).long()


def agreement(image: torch.Tensor, mask: torch.Tensor, margin: int = 1) -> float:
    """Share of interior mask pixels whose label the image encodes. Interior: the
    (2 * margin + 1)^2 neighbourhood has one label, is not ignored and does not cross the
    image border (where bilinear sampling blends in the fill)."""
    window = 2 * margin + 1
    padded = torch.nn.functional.pad(mask[None, None].float(), (margin,) * 4, value=IGNORE_INDEX)
    low = -torch.nn.functional.max_pool2d(-padded, window, stride=1)[0, 0]
    high = torch.nn.functional.max_pool2d(padded, window, stride=1)[0, 0]
    interior = (low == high) & (low != IGNORE_INDEX)
    assert interior.sum() > 100, "too few interior pixels to judge alignment"
    return (decode(image)[interior] == mask[interior]).float().mean().item()


def to_uint8_range(image: torch.Tensor) -> torch.Tensor:
    return denormalize(image) * 255.0


def assert_exactly_aligned(sample: dict) -> None:
    image, mask = sample["image"], sample["mask"]
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64
    assert image.shape[-2:] == mask.shape
    ignored = mask == IGNORE_INDEX
    assert (image[:, ignored] == 0).all(), "padded pixels must be 0 in the image"
    expected = (mask[~ignored] * LABEL_STEP + LABEL_BASE).to(torch.uint8)
    assert torch.equal(image[0][~ignored], expected)
    assert set(mask.unique().tolist()) <= set(range(NUM_LABELS)) | {IGNORE_INDEX}


GEOMETRIC = {
    "scale": lambda: RandomScale((0.5, 2.0), interpolation=NEAREST),
    "crop_pad": lambda: v2.RandomCrop(80, pad_if_needed=True, fill=PAD_FILL),
    "crop": lambda: v2.RandomCrop(32, fill=PAD_FILL),
    "hflip": lambda: v2.RandomHorizontalFlip(p=1.0),
    "shift": lambda: random_shift(0.3),
    "elastic": lambda: elastic_deformation(alpha=60.0, interpolation=v2.InterpolationMode.NEAREST),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geometric_transform_keeps_image_and_mask_aligned(name: str, seed: int) -> None:
    torch.manual_seed(seed)
    assert_exactly_aligned(GEOMETRIC[name]()(make_sample(seed=seed)))


@pytest.mark.parametrize("name", ["shift", "crop_pad", "elastic"])
def test_uncovered_pixels_are_filled_with_ignore(name: str) -> None:
    torch.manual_seed(0)
    out = GEOMETRIC[name]()(make_sample())
    assert (out["mask"] == IGNORE_INDEX).any()


def test_alignment_check_detects_a_misaligned_transform() -> None:
    # Negative control: flipping the image alone must be caught.
    sample = make_sample()
    flipped_image = v2.RandomHorizontalFlip(p=1.0)(sample["image"])
    assert agreement(flipped_image, sample["mask"]) < 0.9
    with pytest.raises(AssertionError):
        assert_exactly_aligned({**sample, "image": flipped_image})


@pytest.mark.parametrize("seed", range(6))
def test_train_preset_keeps_alignment_with_bilinear_resampling(seed: int) -> None:
    transform = train_transforms(56, scale=(0.5, 2.0), shift=0.1, elastic=True)
    torch.manual_seed(seed)
    out = transform(make_sample(64, 96, seed=seed, block=16))
    assert out["image"].dtype == torch.float32 and out["image"].shape == (3, 56, 56)
    assert isinstance(out["mask"], tv_tensors.Mask) and out["mask"].dtype == torch.int64
    assert out["mask"].shape == (56, 56) and out["name"] == "toy"
    assert set(out["mask"].unique().tolist()) <= set(range(NUM_LABELS)) | {IGNORE_INDEX}
    # Bilinear scaling then elastic warping blends image pixels up to 2 px from a boundary.
    assert agreement(to_uint8_range(out["image"]), out["mask"], margin=2) >= 0.99


@pytest.mark.parametrize("seed", range(10))
def test_random_scale_keeps_mask_on_the_bilinear_image_grid(seed: int) -> None:
    # Legacy "nearest" mask resizing is up to half a source pixel off; this catches it.
    torch.manual_seed(seed)
    out = RandomScale((0.5, 2.0))(make_sample(64, 96, seed=seed))
    assert agreement(out["image"], out["mask"], margin=1) >= 0.999


def test_train_preset_pads_image_with_zero_and_mask_with_ignore() -> None:
    out = train_transforms(96, scale=None, hflip=False)(make_sample(48, 64))
    ignored = out["mask"] == IGNORE_INDEX
    assert ignored.sum().item() == 96 * 96 - 48 * 64
    assert torch.allclose(to_uint8_range(out["image"])[:, ignored], torch.tensor(0.0), atol=1e-3)
    assert agreement(to_uint8_range(out["image"]), out["mask"]) == 1.0


def test_train_preset_is_deterministic_under_manual_seed() -> None:
    transform = train_transforms(40, shift=0.1, color=0.3, elastic=True)

    def run(seed: int) -> dict:
        torch.manual_seed(seed)
        return transform(make_sample(seed=3))

    first, second, other = run(0), run(0), run(1)
    assert torch.equal(first["image"], second["image"]) and torch.equal(first["mask"], second["mask"])
    assert not torch.equal(first["image"], other["image"])


def test_color_jitter_changes_the_image_only() -> None:
    sample = make_sample()
    torch.manual_seed(0)
    out = v2.ColorJitter(brightness=0.5, contrast=0.5)(sample)
    assert torch.equal(out["mask"], sample["mask"])
    assert not torch.equal(out["image"], sample["image"])


def test_random_scale_stays_in_range_and_rejects_bad_input() -> None:
    torch.manual_seed(0)
    for _ in range(20):
        out = RandomScale((0.5, 1.5))(make_sample(40, 64))
        height, width = out["mask"].shape
        assert 20 <= height <= 60 and 32 <= width <= 96 and out["image"].shape[-2:] == (height, width)
    with pytest.raises(ValueError, match="scale_range"):
        RandomScale((2.0, 1.0))
    mismatched = {"image": make_sample(40, 64)["image"], "mask": make_sample(48, 64)["mask"]}
    with pytest.raises(ValueError, match="one common size"):
        RandomScale()(mismatched)


def test_eval_transforms_normalise_without_resizing() -> None:
    sample = make_sample(40, 56)
    out = eval_transforms()(sample)
    assert out["image"].dtype == torch.float32 and out["image"].shape == (3, 40, 56)
    assert torch.equal(out["mask"], sample["mask"]) and out["mask"].dtype == torch.int64
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(out["image"], (sample["image"].float() / 255 - mean) / std, atol=1e-6)


def test_denormalize_inverts_normalisation_for_single_and_batched_images() -> None:
    image = make_sample()["image"]
    normalised = eval_transforms()({"image": image})["image"]
    assert torch.allclose(denormalize(normalised) * 255, image.float(), atol=1e-3)
    batch = torch.stack([normalised, normalised])
    assert torch.allclose(denormalize(batch)[1] * 255, image.float(), atol=1e-3)


def test_rectangular_training_crop() -> None:
    out = train_transforms((40, 72), scale=None)(make_sample(48, 64))
    assert out["image"].shape == (3, 40, 72) and out["mask"].shape == (40, 72)
    # 40 of the 48 rows are kept; the 64 columns are all kept and padded by 8 columns of ignore.
    assert ((out["mask"] == IGNORE_INDEX).sum(1) == 8).all()
