"""Heuristic panoptic fusion (Kirillov et al. 2019): each rule on a hand-made image, and the fused model."""

import pytest
import torch
from torch import nn

from pixelwise.models.panoptic_fusion import PanopticFusion, heuristic_fusion

VOID = -1


def instances(masks, labels, scores):
    return {"masks": torch.stack(masks).float(), "labels": torch.tensor(labels), "scores": torch.tensor(scores)}


def square(y0, x0, y1, x1, size=6):
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_instances_are_pasted_by_score_and_the_later_ones_keep_their_free_pixels():
    # The lower-scored instance overlaps the first on 2 of its 6 pixels (1/3 <= 0.5): kept, without them.
    first, second = square(0, 0, 2, 2), square(1, 1, 3, 3) | square(3, 1, 4, 3)
    pairs = heuristic_fusion(instances([second, first], [2, 1], [0.6, 0.9]), torch.zeros(6, 6, dtype=torch.long),
                             things=[1, 2], stuff_area=1)
    assert (pairs[first] == torch.tensor([1, 1])).all()
    assert (pairs[second & ~first] == torch.tensor([2, 2])).all()  # numbered in pasting order
    assert (pairs[~(first | second)] == torch.tensor([0, 0])).all()  # stuff class 0 fills the rest


def test_overlapping_low_scored_and_empty_instances_are_dropped():
    big, inside, tiny = square(0, 0, 4, 4), square(1, 1, 3, 3), torch.zeros(6, 6, dtype=torch.bool)
    found = instances([big, inside, tiny, square(4, 4, 6, 6)], [1, 1, 1, 1], [0.9, 0.8, 0.95, 0.4])
    pairs = heuristic_fusion(found, torch.zeros(6, 6, dtype=torch.long), things=[1], stuff_area=1)
    assert set(pairs[..., 1].unique().tolist()) == {0, 1}  # only the big one: inside overlaps fully, 0.4 < 0.5
    pairs = heuristic_fusion(found, torch.zeros(6, 6, dtype=torch.long), things=[1], stuff_area=1,
                             score_threshold=0.3, overlap_threshold=1.0)
    assert set(pairs[..., 1].unique().tolist()) == {0, 1, 2}  # + the 0.4 one; inside has no free pixel left
    assert (pairs[4:, 4:, 1] == 2).all()


def test_small_stuff_regions_and_uncovered_thing_pixels_become_void():
    semantic = torch.zeros(6, 6, dtype=torch.long)
    semantic[0, :3] = 2  # 3 pixels of stuff class 2
    semantic[5, :] = 1  # the semantic model sees a thing where no instance is
    pairs = heuristic_fusion(instances([square(2, 2, 4, 4)], [1], [0.9]), semantic, things=[1], stuff_area=4)
    assert (pairs[0, :3, 0] == VOID).all() and (pairs[5, :, 0] == VOID).all()
    assert (pairs[2:4, 2:4] == torch.tensor([1, 1])).all()
    assert pairs[1, 0].tolist() == [0, 0]


def test_masks_of_another_size_are_refused():
    with pytest.raises(ValueError, match="the semantic map's size"):
        heuristic_fusion(instances([square(0, 0, 1, 1, size=4)], [1], [0.9]), torch.zeros(6, 6, dtype=torch.long),
                         things=[1])


class Fixed(nn.Module):
    def __init__(self, output):
        super().__init__()
        self.output = output

    def forward(self, x):
        return self.output


def test_the_fused_model_gives_pairs_per_image_and_refuses_training():
    logits = torch.zeros(1, 3, 6, 6)
    logits[:, 2] = 1.0  # stuff class 2 everywhere
    found = instances([square(0, 0, 3, 3)], [1], [0.9])
    model = PanopticFusion(Fixed({"instances": [found]}), Fixed(logits), things=[1], stuff_area=1).eval()
    pairs = model(torch.zeros(1, 3, 6, 6))["panoptic"]
    assert pairs.shape == (1, 6, 6, 2) and pairs[0, 0, 0].tolist() == [1, 1] and pairs[0, 5, 5].tolist() == [2, 0]
    with pytest.raises(RuntimeError, match="train each on its own task"):
        model.train()(torch.zeros(1, 3, 6, 6))
    with pytest.raises(TypeError):
        PanopticFusion(Fixed(None), Fixed(None), things=[1], nms=True)  # an unknown option, refused at once
