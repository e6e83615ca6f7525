"""pixelwise/losses/panoptic.py: Panoptic-DeepLab's targets and losses, on hand-made maps."""

from __future__ import annotations

import math

import pytest
import torch

from pixelwise.losses.panoptic import (
    bootstrapped_cross_entropy,
    panoptic_deeplab_losses,
    panoptic_targets,
    semantic_from_pairs,
)


def two_instances() -> torch.Tensor:
    """1 x 12 x 16: stuff 0; a 3 x 5 thing of class 2 (centre of mass (2, 3)); a 4 x 4 thing of class 3
    (centre (8.5, 11.5)); a crowd region of class 2 (instance 0); one void pixel."""
    pairs = torch.zeros(1, 12, 16, 2, dtype=torch.long)
    pairs[0, 1:4, 1:6] = torch.tensor([2, 1])
    pairs[0, 7:11, 10:14] = torch.tensor([3, 1])
    pairs[0, 0, 14:16] = torch.tensor([2, 0])
    pairs[0, 11, 0] = torch.tensor([-1, 0])
    return pairs


def test_heatmap_peaks_equal_one_at_the_centres_and_is_gaussian_around_them() -> None:
    targets = panoptic_targets(two_instances(), things=[2, 3], sigma=2.0)
    heatmap = targets.center[0, 0]
    assert targets.center.shape == (1, 1, 12, 16)
    assert heatmap[2, 3].item() == 1.0  # (2, 3) exactly
    assert heatmap[8, 12].item() == 1.0  # (8.5, 11.5) rounds half to even: (8, 12)
    assert heatmap[2, 5].item() == pytest.approx(math.exp(-4 / 8))  # 2 px from the centre, sigma 2
    assert heatmap.max().item() == 1.0 and (heatmap == 1.0).sum() == 2


def test_offsets_point_from_each_instance_pixel_to_its_centre_of_mass() -> None:
    targets = panoptic_targets(two_instances(), things=[2, 3])
    offset = targets.offset[0]
    assert offset[:, 1, 1].tolist() == [1.0, 2.0] and offset[:, 3, 5].tolist() == [-1.0, -2.0]
    assert offset[:, 7, 10].tolist() == [1.5, 1.5] and offset[:, 10, 13].tolist() == [-1.5, -1.5]
    rows, cols = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    inside = targets.weights.offset[0, 0].bool()
    pointed = torch.stack([rows + offset[0], cols + offset[1]])[:, inside]
    assert {tuple(p) for p in pointed.T.tolist()} == {(2.0, 3.0), (8.5, 11.5)}
    assert (offset[:, ~inside] == 0).all()  # stuff, crowd and void: no offset


def test_weights_leave_out_void_and_crowd_and_weight_small_instances() -> None:
    targets = panoptic_targets(two_instances(), things=[2, 3], small_instance_area=16, small_instance_weight=3.0)
    center, offset, semantic = (w[0].squeeze(0) for w in (targets.weights.center, targets.weights.offset,
                                                          targets.weights.semantic))
    assert center[11, 0] == 0 and center[0, 14] == 0 and center.sum() == 12 * 16 - 3
    assert offset.sum() == 15 + 16
    assert semantic[2, 3] == 3.0 and semantic[8, 11] == 1.0 and semantic[0, 0] == 1.0  # 15 < 16 <= 16


def test_an_image_without_things_has_an_empty_heatmap() -> None:
    targets = panoptic_targets(torch.zeros(2, 4, 5, 2, dtype=torch.long), things=[2])
    assert targets.center.abs().sum() == 0 and targets.offset.abs().sum() == 0
    assert targets.weights.center.sum() == 40 and targets.weights.offset.sum() == 0


def test_targets_refuse_other_layouts() -> None:
    with pytest.raises(ValueError, match="N x H x W x 2"):
        panoptic_targets(torch.zeros(4, 5, 2, dtype=torch.long), things=[1])
    with pytest.raises(TypeError, match="integers"):
        panoptic_targets(torch.zeros(1, 4, 5, 2), things=[1])


def test_semantic_labels_of_pairs_ignore_void() -> None:
    assert semantic_from_pairs(two_instances())[0, 11, 0] == 255
    assert semantic_from_pairs(two_instances())[0, 2, 2] == 2


def test_bootstrapping_keeps_the_hardest_pixels() -> None:
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 1] = torch.tensor([0.0, 4.0, -4.0, 2.0])
    target = torch.ones(1, 1, 4, dtype=torch.long)
    per_pixel = -torch.log_softmax(logits, 1)[0, 1, 0]
    hardest = per_pixel.sort(descending=True).values
    assert bootstrapped_cross_entropy(logits, target, top_k=0.5).item() == pytest.approx(hardest[:2].mean().item())
    assert bootstrapped_cross_entropy(logits, target, top_k=1.0).item() == pytest.approx(per_pixel.mean().item())
    weights = torch.tensor([[[1.0, 1.0, 3.0, 1.0]]])
    assert bootstrapped_cross_entropy(logits, target, top_k=0.25, pixel_weights=weights).item() == \
        pytest.approx(3 * per_pixel[2].item())
    assert bootstrapped_cross_entropy(logits, torch.full_like(target, 255)).item() == 0.0


def test_loss_terms_have_the_papers_weights_and_normalisation() -> None:
    pairs = two_instances()
    targets = panoptic_targets(pairs, things=[2, 3])
    outputs = {"semantic": torch.zeros(1, 4, 12, 16), "center": targets.center + 0.5,
               "offset": targets.offset + 2.0}
    losses = panoptic_deeplab_losses(outputs, targets, semantic_from_pairs(pairs))
    assert losses["center"].item() == pytest.approx(200 * 0.25)  # squared error 0.25 on every weighted pixel
    assert losses["offset"].item() == pytest.approx(0.01 * 2.0)  # absolute error 2 on both components
    assert losses["semantic"].item() == pytest.approx(math.log(4))  # uniform logits: -log(1/4) everywhere
    with pytest.raises(ValueError, match="outputs\\['center'\\] has shape"):
        panoptic_deeplab_losses({**outputs, "center": torch.zeros(1, 1, 6, 8)}, targets, semantic_from_pairs(pairs))
