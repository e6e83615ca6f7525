"""pixelwise/models/panoptic_postprocessing.py: centres, grouping and merging on hand-made predictions."""

from __future__ import annotations

import pytest
import torch

from pixelwise.models.panoptic_postprocessing import (
    find_instance_centers,
    group_pixels,
    merge_semantic_and_instances,
    panoptic_from_outputs,
)

NUM_CLASSES = 4  # 0, 1: stuff; 2, 3: things
THINGS = (2, 3)
IS_THING = torch.tensor([False, False, True, True])


def hand_made_outputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """10 x 12 image: stuff 0 on the left third, thing class 2 elsewhere, with two centres."""
    logits = torch.zeros(1, NUM_CLASSES, 10, 12)
    logits[0, 0, :, :4] = 5.0
    logits[0, 2, :, 4:] = 5.0
    heatmap = torch.zeros(1, 1, 10, 12)
    heatmap[0, 0, 2, 6] = 0.9
    heatmap[0, 0, 7, 9] = 0.8
    heatmap[0, 0, 2, 7] = 0.5  # next to a stronger peak: suppressed
    heatmap[0, 0, 8, 1] = 0.05  # under the threshold
    offsets = torch.zeros(1, 2, 10, 12)
    return logits, heatmap, offsets


def test_two_centres_give_two_instances_with_the_right_pixels() -> None:
    logits, heatmap, offsets = hand_made_outputs()
    assert find_instance_centers(heatmap[0, 0], threshold=0.1, nms_kernel=3).tolist() == [[2, 6], [7, 9]]
    # Every thing pixel points at the centre its half belongs to: rows 0-4 at (2, 6), rows 5-9 at (7, 9).
    rows, cols = torch.meshgrid(torch.arange(10.0), torch.arange(12.0), indexing="ij")
    top = rows < 5
    offsets[0, 0] = torch.where(top, 2 - rows, 7 - rows)
    offsets[0, 1] = torch.where(top, 6 - cols, 9 - cols)
    pairs = panoptic_from_outputs(logits, heatmap, offsets, THINGS, nms_kernel=3, stuff_area=1)[0]
    thing = torch.zeros(10, 12, dtype=torch.bool)
    thing[:, 4:] = True
    assert (pairs[..., 0][thing] == 2).all()
    assert (pairs[..., 1][thing & top] == 1).all() and (pairs[..., 1][thing & ~top] == 2).all()
    assert (pairs[..., 0][~thing] == 0).all() and (pairs[..., 1][~thing] == 0).all()  # stuff kept, instance 0


def test_grouping_without_offsets_takes_the_nearest_centre() -> None:
    mask = torch.ones(1, 7, dtype=torch.bool)
    ids = group_pixels(torch.tensor([[0, 1], [0, 5]]), torch.zeros(2, 1, 7), mask)
    assert ids.tolist() == [[1, 1, 1, 1, 2, 2, 2]]  # pixel 3 is 2 from both: the first centre


def test_the_class_of_an_instance_is_its_majority_vote() -> None:
    semantic = torch.tensor([[2, 2, 3, 3, 3, 0]])
    instances = torch.tensor([[1, 1, 1, 2, 2, 0]])  # instance 1: two votes for 2, one for 3; instance 2: class 3
    pairs = merge_semantic_and_instances(semantic, instances, IS_THING, stuff_area=1)[0]
    assert pairs.tolist() == [[2, 1], [2, 1], [2, 1], [3, 1], [3, 1], [0, 0]]


def test_instances_are_numbered_within_their_class() -> None:
    semantic = torch.tensor([[2, 3, 2, 2]])
    instances = torch.tensor([[1, 2, 3, 4]])
    pairs = merge_semantic_and_instances(semantic, instances, IS_THING)[0]
    assert pairs.tolist() == [[2, 1], [3, 1], [2, 2], [2, 3]]


def test_small_stuff_becomes_void_and_large_stuff_stays() -> None:
    semantic = torch.tensor([[0, 0, 0, 1, 1, 2]])  # stuff 0: 3 pixels; stuff 1: 2 pixels
    instances = torch.tensor([[0, 0, 0, 0, 0, 1]])
    pairs = merge_semantic_and_instances(semantic, instances, IS_THING, stuff_area=3)[0]
    assert pairs.tolist() == [[0, 0], [0, 0], [0, 0], [-1, 0], [-1, 0], [2, 1]]


def test_no_thing_pixels_give_no_instance() -> None:
    logits, heatmap, offsets = hand_made_outputs()
    logits[0, 2] = 0.0
    logits[0, 1, :, 4:] = 5.0  # all stuff now; the heatmap still has its peaks
    pairs = panoptic_from_outputs(logits, heatmap, offsets, THINGS, nms_kernel=3, stuff_area=1)[0]
    assert (pairs[..., 1] == 0).all() and set(pairs[..., 0].unique().tolist()) == {0, 1}


def test_thing_pixels_without_a_centre_are_void() -> None:
    logits, heatmap, offsets = hand_made_outputs()
    pairs = panoptic_from_outputs(logits, torch.zeros_like(heatmap), offsets, THINGS, stuff_area=1)[0]
    assert (pairs[:, 4:, 0] == -1).all() and (pairs[:, :4, 0] == 0).all() and (pairs[..., 1] == 0).all()


def test_top_k_keeps_the_strongest_centres_in_raster_order() -> None:
    heatmap = torch.zeros(5, 5)
    heatmap[0, 0], heatmap[0, 4], heatmap[4, 0], heatmap[4, 4] = 0.3, 0.9, 0.8, 0.2
    assert find_instance_centers(heatmap, nms_kernel=3, top_k=2).tolist() == [[0, 4], [4, 0]]
    with pytest.raises(ValueError, match="odd"):
        find_instance_centers(heatmap, nms_kernel=4)
