"""Tests for pixelwise/metrics/panoptic.py: every COCO rule by hand, torchmetrics and a loop-based
panopticapi reference on random scenes, accumulation, and the checks at the door."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pixelwise.data.panoptic import VOID as DATA_VOID
from pixelwise.data.panoptic import decode_panoptic
from pixelwise.metrics import PanopticQuality
from pixelwise.metrics import panoptic as panoptic_module
from pixelwise.metrics.panoptic import VOID

THINGS, STUFFS = (1, 2), (7, 8)
V = VOID  # a void pixel: (V, 0)


def pairs(rows: list[list[tuple[int, int]]]) -> torch.Tensor:
    """An ``H x W x 2`` scene written out pixel by pixel as ``(category, instance)``."""
    return torch.tensor(rows, dtype=torch.int64)


def evaluate(pred, target, *, things=THINGS, stuffs=STUFFS, crowd=None) -> dict:
    metric = PanopticQuality(things, stuffs)
    metric.update(pred, target, target_crowd=crowd)
    return metric.compute()


def counts(result: dict, category: int) -> tuple[int, int, int]:
    entry = result["per_class"][category]
    return entry["tp"], entry["fp"], entry["fn"]


def flat(result: dict, prefix: str = "") -> dict[str, float]:
    """A ``compute()`` result as ``{"things.pq": ..., "per_class.1.tp": ...}``."""
    out: dict[str, float] = {}
    for key, value in result.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def same_results(actual: dict, expected: dict, tolerance: float = 1e-12) -> bool:
    """Equal keys, equal counts, scores within ``tolerance``, NaN where the other is NaN."""
    return flat(actual) == pytest.approx(flat(expected), abs=tolerance, rel=0, nan_ok=True)


# --- the COCO rules, by hand ---------------------------------------------------------------


def test_perfect_prediction_scores_one() -> None:
    target = pairs([[(1, 1), (1, 1), (7, 0)], [(1, 2), (8, 0), (7, 0)]])
    result = evaluate(target.clone(), target)
    assert (result["pq"], result["sq"], result["rq"], result["n"]) == (1.0, 1.0, 1.0, 3)
    assert counts(result, 1) == (2, 0, 0) and result["per_class"][1]["iou_sum"] == 2.0


def test_iou_of_exactly_one_half_is_not_a_match() -> None:
    # Thing: pred 2 px, target 1 px, intersection 1: IoU = 1 / (2 + 1 - 1) = 0.5, not > 0.5.
    # Stuff 7: pred 2 px inside target 3 px: IoU 2/3, a match.
    target = pairs([[(1, 1), (7, 0), (7, 0), (7, 0)]])
    pred = pairs([[(1, 1), (1, 1), (7, 0), (7, 0)]])
    result = evaluate(pred, target)
    assert counts(result, 1) == (0, 1, 1)
    assert counts(result, 7) == (1, 0, 0)
    assert result["per_class"][7]["iou_sum"] == pytest.approx(2 / 3)


def test_iou_just_above_one_half_is_a_match() -> None:
    # pred 3 px, target 2 px, intersection 2: IoU 2/3.
    target = pairs([[(1, 1), (1, 1), (7, 0), (7, 0)]])
    pred = pairs([[(1, 4), (1, 4), (1, 4), (7, 0)]])
    result = evaluate(pred, target)
    assert counts(result, 1) == (1, 0, 0)
    assert result["per_class"][1]["pq"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("void_category", [VOID, 0, 255])  # VOID, or any category neither thing nor stuff
def test_predicted_pixels_on_void_leave_the_union(void_category: int) -> None:
    # pred (1, 1) 4 px: 2 on the target segment, 2 on void. Union = 4 + 2 - 2 - 2 = 2: IoU 1.
    # Without the void rule it would be 2 / 4 = 0.5, no match.
    void = (void_category, 0)
    target = pairs([[(1, 1), (1, 1), void, void, (7, 0)]])
    pred = pairs([[(1, 1), (1, 1), (1, 1), (1, 1), (7, 0)]])
    result = evaluate(pred, target)
    assert counts(result, 1) == (1, 0, 0)
    assert result["per_class"][1]["iou_sum"] == 1.0


def test_predicted_void_pixels_stay_in_the_target_area() -> None:
    # COCO counts every pixel of a ground-truth segment, whatever the prediction there:
    # target 4 px, pred 2 px on it, 2 px predicted VOID: IoU = 2 / (2 + 4 - 2) = 0.5, no match.
    target = pairs([[(1, 1), (1, 1), (1, 1), (1, 1)]])
    pred = pairs([[(1, 3), (1, 3), (V, 0), (V, 0)]])
    result = evaluate(pred, target)
    assert counts(result, 1) == (0, 1, 1)


def test_false_positive_mostly_on_void_is_ignored() -> None:
    # (2, 1): 3 px, 2 on void (> half): ignored. (2, 2): 4 px, 2 on void (exactly half): a false positive.
    target = pairs([[(V, 0), (V, 0), (7, 0), (V, 0), (V, 0), (7, 0), (7, 0)]])
    pred = pairs([[(2, 1), (2, 1), (2, 1), (2, 2), (2, 2), (2, 2), (2, 2)]])
    result = evaluate(pred, target)
    assert counts(result, 2) == (0, 1, 0)
    assert counts(result, 7) == (0, 0, 1)


def test_false_positive_on_a_crowd_of_its_own_category_is_ignored_but_not_on_another() -> None:
    # Crowd region of thing 1 on the first three pixels. Pred (1, 5) lies on it: ignored.
    # Pred (2, 1) lies on it too, but is of category 2: a false positive.
    target = pairs([[(1, 0), (1, 0), (1, 0), (7, 0)], [(1, 0), (1, 0), (1, 0), (7, 0)]])
    crowd = torch.tensor([[True, True, True, False], [True, True, True, False]])
    pred = pairs([[(1, 5), (1, 5), (1, 5), (7, 0)], [(2, 1), (2, 1), (2, 1), (7, 0)]])
    result = evaluate(pred, target, crowd=crowd)
    assert counts(result, 1) == (0, 0, 0)
    assert counts(result, 2) == (0, 1, 0)
    assert counts(result, 7) == (1, 0, 0)


def test_crowd_and_void_add_up_against_a_false_positive() -> None:
    # (1, 5): 5 px, 2 on void, 1 on the crowd of category 1, 2 on stuff: 3/5 ignorable, ignored.
    target = pairs([[(V, 0), (V, 0), (1, 0), (7, 0), (7, 0)]])
    crowd = torch.tensor([[False, False, True, False, False]])
    pred = pairs([[(1, 5)] * 5])
    result = evaluate(pred, target, crowd=crowd)
    assert counts(result, 1) == (0, 0, 0)


def test_crowd_regions_are_not_false_negatives_and_are_never_matched() -> None:
    # Nothing predicted on the crowd of 1: no false negative. A prediction covering exactly the
    # crowd region is not a true positive either (ignored as a false positive).
    target = pairs([[(1, 0), (1, 0), (7, 0)]])
    crowd = torch.tensor([[True, True, False]])
    assert counts(evaluate(pairs([[(7, 0), (7, 0), (7, 0)]]), target, crowd=crowd), 1) == (0, 0, 0)
    assert counts(evaluate(pairs([[(1, 1), (1, 1), (7, 0)]]), target, crowd=crowd), 1) == (0, 0, 0)


def test_crowd_pixels_are_not_void_in_the_union() -> None:
    # pred (1, 5) 4 px: 2 on target (1, 1), 2 on the crowd of 1. Union = 4 + 2 - 2 = 4 (crowd not
    # subtracted, as in panopticapi): IoU 0.5, no match; only half of it is crowd: a false positive.
    target = pairs([[(1, 1), (1, 1), (1, 0), (1, 0)]])
    crowd = torch.tensor([[False, False, True, True]])
    result = evaluate(pairs([[(1, 5)] * 4]), target, crowd=crowd)
    assert counts(result, 1) == (0, 1, 1)


def test_crowd_on_void_pixels_is_void() -> None:
    target = pairs([[(V, 0), (V, 0), (1, 1)]])
    crowd = torch.tensor([[True, True, False]])
    plain, flagged = evaluate(pairs([[(1, 1)] * 3]), target), evaluate(pairs([[(1, 1)] * 3]), target, crowd=crowd)
    assert same_results(flagged, plain, 0)
    assert counts(plain, 1) == (1, 0, 0)  # union 3 + 1 - 1 - 2 = 1


def test_crowd_of_a_stuff_category_ignores_its_false_positives() -> None:
    target = pairs([[(8, 0), (8, 0), (7, 0)]])
    crowd = torch.tensor([[True, True, False]])
    result = evaluate(pairs([[(8, 0), (8, 0), (7, 0)]]), target, crowd=crowd)
    assert counts(result, 8) == (0, 0, 0) and counts(result, 7) == (1, 0, 0)


def test_stuff_instance_ids_are_ignored_but_thing_instance_ids_count() -> None:
    # Stuff 7 with instances 0 and 9 in the target and 3, 4 in the prediction: one segment each.
    target = pairs([[(7, 0), (7, 9), (1, 1), (1, 2)]])
    pred = pairs([[(7, 3), (7, 4), (1, 6), (1, 6)]])
    result = evaluate(pred, target)
    assert counts(result, 7) == (1, 0, 0) and result["per_class"][7]["iou_sum"] == 1.0
    # The two things are separate segments: IoU 1/2 each with the merged prediction.
    assert counts(result, 1) == (0, 1, 2)


def test_matches_only_within_a_category() -> None:
    target = pairs([[(1, 1), (1, 1), (7, 0)]])
    pred = pairs([[(2, 1), (2, 1), (7, 0)]])
    result = evaluate(pred, target)
    assert counts(result, 1) == (0, 0, 1) and counts(result, 2) == (0, 1, 0)


def test_empty_categories_are_left_out_of_the_means() -> None:
    # Thing 2 and stuff 8 appear nowhere: NaN and out of the means. Thing 1: PQ 1; stuff 7: PQ 1.
    target = pairs([[(1, 1), (7, 0)]])
    result = evaluate(target.clone(), target)
    assert result["n"] == 2 and result["pq"] == 1.0
    assert math.isnan(result["per_class"][2]["pq"]) and math.isnan(result["per_class"][8]["sq"])
    assert counts(result, 2) == (0, 0, 0)


def test_a_category_only_predicted_counts_with_pq_zero() -> None:
    target = pairs([[(1, 1), (7, 0), (7, 0)]])
    pred = pairs([[(1, 1), (7, 0), (8, 0)]])
    result = evaluate(pred, target)
    assert result["per_class"][8]["pq"] == 0.0 and counts(result, 8) == (0, 1, 0)
    assert result["stuff"]["n"] == 2


def test_things_stuff_split_and_sq_zero_without_true_positives() -> None:
    # Thing 1: one TP, IoU 2/3 -> PQ = SQ = 2/3, RQ 1. Thing 2: only a FN -> PQ 0, SQ 0 (COCO), RQ 0.
    # Stuff 7: TP IoU 1 (pred 3 px, target 3 px) -> 1. Stuff 8: absent.
    target = pairs([[(1, 1), (1, 1), (2, 1), (7, 0), (7, 0), (7, 0)]])
    pred = pairs([[(1, 1), (1, 1), (1, 1), (7, 0), (7, 0), (7, 0)]])
    result = evaluate(pred, target)
    things, stuff = result["things"], result["stuff"]
    assert things["n"] == 2 and things["pq"] == pytest.approx(1 / 3)
    assert things["sq"] == pytest.approx(1 / 3) and things["rq"] == pytest.approx(1 / 2)
    assert stuff == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1}
    assert result["pq"] == pytest.approx((2 / 3 + 0 + 1) / 3) and result["n"] == 3
    assert result["sq"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert result["rq"] == pytest.approx((1 + 0 + 1) / 3)


def test_per_class_entries() -> None:
    # Thing 1: target (1,1) 3 px and (1,2) 2 px; pred (1,7) covers (1,1) plus one pixel of (1,2):
    # IoU 3/4, a match; (1,2) missed; pred (1,8) on stuff 7 is a false positive.
    target = pairs([[(1, 1), (1, 1), (1, 1), (1, 2), (1, 2), (7, 0), (7, 0)]])
    pred = pairs([[(1, 7), (1, 7), (1, 7), (1, 7), (7, 0), (1, 8), (7, 0)]])
    entry = evaluate(pred, target)["per_class"][1]
    denominator = 1 + 0.5 * 1 + 0.5 * 1
    assert entry == {"pq": pytest.approx(0.75 / denominator), "sq": 0.75, "rq": pytest.approx(1 / denominator),
                     "tp": 1, "fp": 1, "fn": 1, "iou_sum": 0.75, "isthing": True}


def test_pq_is_sq_times_rq_per_class() -> None:
    target, pred, _ = random_scene(np.random.default_rng(3), crowd=False, pred_void=False)
    result = evaluate(pred, target, things=SCENE_THINGS, stuffs=SCENE_STUFFS)
    for entry in result["per_class"].values():
        if not math.isnan(entry["pq"]):
            assert entry["pq"] == pytest.approx(entry["sq"] * entry["rq"])


def test_no_category_present_gives_nan() -> None:
    result = evaluate(pairs([[(V, 0)]]), pairs([[(V, 0)]]))
    assert result["n"] == 0 and all(math.isnan(result[key]) for key in ("pq", "sq", "rq"))
    assert result["things"]["n"] == 0 and math.isnan(result["stuff"]["pq"])


def test_empty_images_count_nothing() -> None:
    result = evaluate(torch.zeros(2, 0, 5, 2, dtype=torch.int64), torch.zeros(2, 0, 5, 2, dtype=torch.int64))
    assert result["n"] == 0


# --- batches, accumulation, merging ------------------------------------------------------------


def test_segments_are_matched_within_their_own_image() -> None:
    # The same (category, instance) in two images is two segments. Image A: an exact match;
    # image B: a false positive (1, 1). Read as one image, (1, 1) would be one 5 px prediction
    # with IoU 2/5 against the 2 px target: no match.
    target_a, pred_a = pairs([[(1, 1), (1, 1), (7, 0), (7, 0)]]), pairs([[(1, 1), (1, 1), (7, 0), (7, 0)]])
    target_b, pred_b = pairs([[(7, 0)] * 4]), pairs([[(1, 1), (1, 1), (1, 1), (7, 0)]])
    assert counts(evaluate(torch.stack([pred_a, pred_b]), torch.stack([target_a, target_b])), 1) == (1, 1, 0)
    assert counts(evaluate(torch.cat([pred_a, pred_b], 1), torch.cat([target_a, target_b], 1)), 1) == (0, 1, 1)


def test_updates_accumulate_and_batches_equal_single_images() -> None:
    rng = np.random.default_rng(0)
    scenes = [random_scene(rng) for _ in range(4)]
    per_image = PanopticQuality(SCENE_THINGS, SCENE_STUFFS)
    for target, pred, crowd in scenes:
        per_image.update(pred, target, target_crowd=crowd)
    batched = PanopticQuality(SCENE_THINGS, SCENE_STUFFS)
    targets, preds, crowds = (torch.stack(parts) for parts in zip(*scenes))
    batched.update(preds, targets, target_crowd=crowds)
    nested = PanopticQuality(SCENE_THINGS, SCENE_STUFFS)  # leading dimensions (2, 2): four images
    nested.update(preds.view(2, 2, *preds.shape[1:]), targets.view(2, 2, *targets.shape[1:]),
                  target_crowd=crowds.view(2, 2, *crowds.shape[1:]))
    assert same_results(per_image.compute(), batched.compute())
    assert same_results(nested.compute(), batched.compute())
    assert int(batched.tp.sum()) > 0 and int(batched.fp.sum()) > 0 and int(batched.fn.sum()) > 0


def test_reset_forgets() -> None:
    target = pairs([[(1, 1), (7, 0)]])
    metric = PanopticQuality(THINGS, STUFFS)
    metric.update(target, target)
    metric.reset()
    assert metric.compute()["n"] == 0
    metric.update(pairs([[(2, 1), (7, 0)]]), target)
    assert metric.compute()["pq"] == pytest.approx(1 / 3)  # thing 1: FN, thing 2: FP, stuff 7: 1


def test_merge_and_add_equal_one_metric_over_all_images() -> None:
    rng = np.random.default_rng(1)
    scenes = [random_scene(rng) for _ in range(3)]
    whole, first, second = (PanopticQuality(SCENE_THINGS, SCENE_STUFFS) for _ in range(3))
    for index, (target, pred, crowd) in enumerate(scenes):
        whole.update(pred, target, target_crowd=crowd)
        (first if index < 2 else second).update(pred, target, target_crowd=crowd)
    expected = whole.compute()
    assert same_results((first + second).compute(), expected)
    assert not same_results(first.compute(), expected)  # + left its operands alone
    assert first.merge(second) is first and same_results(first.compute(), expected)
    with pytest.raises(ValueError, match="different categories"):
        first.merge(PanopticQuality([1], [7]))
    with pytest.raises(TypeError, match="PanopticQuality"):
        first.merge(whole.compute())


def test_numpy_and_narrow_integer_inputs() -> None:
    target, pred, crowd = random_scene(np.random.default_rng(2))
    expected = evaluate(pred, target, things=SCENE_THINGS, stuffs=SCENE_STUFFS, crowd=crowd)
    as_numpy = evaluate(pred.numpy(), target.numpy(), things=SCENE_THINGS, stuffs=SCENE_STUFFS, crowd=crowd.numpy())
    as_int32 = evaluate(pred.int(), target.int(), things=SCENE_THINGS, stuffs=SCENE_STUFFS, crowd=crowd)
    assert same_results(as_numpy, expected, 0) and same_results(as_int32, expected, 0)


def test_huge_instance_ids_and_category_ids_give_the_same_counts() -> None:
    target, pred, crowd = random_scene(np.random.default_rng(4))
    expected = evaluate(pred, target, things=SCENE_THINGS, stuffs=SCENE_STUFFS, crowd=crowd)
    shift = 2**40  # instance ids far beyond the pixel count are renumbered, not used as keys
    big_pred, big_target = pred.clone(), target.clone()
    big_pred[..., 1] += shift
    big_target[..., 1] *= shift
    assert same_results(evaluate(big_pred, big_target, things=SCENE_THINGS, stuffs=SCENE_STUFFS, crowd=crowd),
                        expected, 0)


def test_huge_category_ids_are_searched_instead_of_looked_up() -> None:
    # Ids past _MAX_LOOKUP_ID take the binary-search path; relabelling the categories so changes nothing.
    target, pred, crowd = random_scene(np.random.default_rng(7))
    expected = evaluate(pred, target, things=SCENE_THINGS, stuffs=SCENE_STUFFS, crowd=crowd)
    offset = 2**40
    known = torch.tensor(SCENE_THINGS + SCENE_STUFFS)
    big_pred, big_target = pred.clone(), target.clone()
    for side in (big_pred, big_target):
        side[..., 0] = torch.where(torch.isin(side[..., 0], known), side[..., 0] + offset, side[..., 0])
    big = evaluate(big_pred, big_target, things=[c + offset for c in SCENE_THINGS],
                   stuffs=[c + offset for c in SCENE_STUFFS], crowd=crowd)
    assert same_results({**big, "per_class": {c - offset: v for c, v in big["per_class"].items()}}, expected, 0)
    with pytest.raises(ValueError, match=f"neither things nor stuffs: 5, {offset + 99}"):
        evaluate(pairs([[(5, 0), (offset + 99, 0), (offset + 1, 0)]]), pairs([[(1, 1)] * 3]),
                 things=[offset + 1], stuffs=[])


def test_groups_of_images_equal_one_group(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    targets, preds, crowds = (torch.stack(parts) for parts in zip(*[random_scene(rng) for _ in range(5)]))
    expected = evaluate(preds, targets, things=SCENE_THINGS, stuffs=SCENE_STUFFS, crowd=crowds)
    for group_pixels in (1, 2 * SCENE_SIZE[0] * SCENE_SIZE[1]):  # one image at a time; groups of 2, 2, 1
        monkeypatch.setattr(panoptic_module, "_CPU_GROUP_PIXELS", group_pixels)
        assert same_results(evaluate(preds, targets, things=SCENE_THINGS, stuffs=SCENE_STUFFS, crowd=crowds),
                            expected, 0)


def test_sorting_path_equals_the_histogram_path(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    targets, preds, crowds = (torch.stack(parts) for parts in zip(*[random_scene(rng) for _ in range(3)]))
    expected = evaluate(preds, targets, things=SCENE_THINGS, stuffs=SCENE_STUFFS, crowd=crowds)
    monkeypatch.setattr(panoptic_module, "_DENSE_BINS_PER_PIXEL", 0)
    monkeypatch.setattr(panoptic_module, "_DENSE_BINS_FLOOR", 0)
    assert same_results(evaluate(preds, targets, things=SCENE_THINGS, stuffs=SCENE_STUFFS, crowd=crowds),
                        expected, 0)


def test_decoded_coco_annotation_with_a_crowd_segment() -> None:
    # Segment 1: a person (thing 1); segment 2: a crowd of people; segment 3: grass (stuff 7); 0: void.
    ids = np.array([[1, 1, 2, 2], [3, 3, 2, 0]])
    info = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1, "iscrowd": 1}, {"id": 3, "category_id": 7}]
    target = decode_panoptic(ids, info, {1: True, 7: False}, source="test")
    pred = pairs([[(1, 1), (1, 1), (1, 2), (1, 2)], [(7, 0), (7, 0), (1, 2), (7, 0)]])
    metric = PanopticQuality([1], [7])
    metric.update(torch.from_numpy(pred.numpy()), target.pairs, target_crowd=target.crowd)
    result = metric.compute()
    # Person matched; (1, 2) lies on the crowd of people: ignored; grass: 2 of 3 px on it, 1 on void.
    assert counts(result, 1) == (1, 0, 0) and counts(result, 7) == (1, 0, 0)
    assert result["per_class"][7]["iou_sum"] == 1.0
    assert VOID == DATA_VOID


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpu_counts() -> None:
    rng = np.random.default_rng(6)
    targets, preds, crowds = (torch.stack(parts) for parts in zip(*[random_scene(rng) for _ in range(4)]))
    cpu = PanopticQuality(SCENE_THINGS, SCENE_STUFFS)
    cpu.update(preds, targets, target_crowd=crowds)
    gpu = PanopticQuality(SCENE_THINGS, SCENE_STUFFS)
    gpu.update(preds.cuda(), targets.cuda(), target_crowd=crowds.cuda())
    assert gpu.tp.device.type == "cuda"
    assert same_results(gpu.compute(), cpu.compute())


# --- checks at the door ------------------------------------------------------------------------


def test_unknown_predicted_categories_are_named() -> None:
    target = pairs([[(1, 1), (7, 0), (7, 0), (7, 0)]])
    pred = pairs([[(5, 1), (9, 0), (5, 0), (V, 0)]])
    with pytest.raises(ValueError, match=r"neither things nor stuffs: 5, 9 \(mark unlabelled"):
        evaluate(pred, target)


def test_predicted_categories_below_void_are_unknown_too() -> None:
    with pytest.raises(ValueError, match=r"neither things nor stuffs: -5 \("):
        evaluate(pairs([[(-5, 0), (V, 0)]]), pairs([[(1, 1), (7, 0)]]))


@pytest.mark.parametrize("void_category", [42, -5, 2**40])
def test_unknown_target_categories_are_void_not_errors(void_category: int) -> None:
    result = evaluate(pairs([[(1, 1), (1, 1)]]), pairs([[(1, 1), (void_category, 3)]]))
    assert counts(result, 1) == (1, 0, 0) and result["per_class"][1]["iou_sum"] == 1.0


@pytest.mark.parametrize("side", ["pred", "target"])
def test_negative_instance_ids_are_named(side: str) -> None:
    good = pairs([[(1, 1), (7, 0), (8, 0)]])
    bad = pairs([[(1, -3), (7, -1), (8, -3)]])
    pred, target = (bad, good) if side == "pred" else (good, bad)
    with pytest.raises(ValueError, match=rf"{side} has negative instance ids: -3, -1;"):
        evaluate(pred, target)


@pytest.mark.parametrize(
    ("pred_shape", "target_shape", "message"),
    [
        ((2, 3, 3), (2, 3, 3), r"shape \(\.\.\., H, W, 2\)"),
        ((3, 2), (3, 2), r"shape \(\.\.\., H, W, 2\)"),
        ((2, 3, 2), (3, 2, 2), "shapes differ"),
        ((1, 2, 3, 2), (2, 3, 2), "shapes differ"),
    ],
)
def test_shapes_are_checked(pred_shape, target_shape, message) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate(torch.zeros(pred_shape, dtype=torch.int64) + 1, torch.ones(target_shape, dtype=torch.int64))


def test_crowd_mask_is_checked() -> None:
    target = pairs([[(1, 1), (7, 0)]])
    with pytest.raises(ValueError, match=r"shape of target without its last dimension, \(1, 2\)"):
        evaluate(target, target, crowd=torch.zeros(2, 1, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean mask"):
        evaluate(target, target, crowd=torch.zeros(1, 2, dtype=torch.int64))


def test_dtypes_and_types_are_checked() -> None:
    target = pairs([[(1, 1), (7, 0)]])
    with pytest.raises(TypeError, match="integer"):
        evaluate(target.float(), target)
    with pytest.raises(TypeError, match="torch.Tensor or numpy array"):
        evaluate(target.tolist(), target)


@pytest.mark.parametrize(
    ("things", "stuffs", "error", "message"),
    [
        ([1, 2], [2, 3], ValueError, r"both things and stuff: \[2\]"),
        ([], [], ValueError, "both empty"),
        ([-1], [3], ValueError, "non-negative integer"),
        ([1.5], [3], ValueError, "non-negative integer"),
        ("12", [3], TypeError, "collection of category ids"),
    ],
)
def test_categories_are_checked(things, stuffs, error, message) -> None:
    with pytest.raises(error, match=message):
        PanopticQuality(things, stuffs)


# --- random scenes: torchmetrics and a loop-based panopticapi reference ---------------------------

SCENE_THINGS, SCENE_STUFFS = (1, 2, 3), (10, 11, 12)
SCENE_SIZE = (24, 32)  # 768 pixels


def random_scene(rng: np.random.Generator, *, crowd: bool = True, pred_void: bool = True,
                 target_void: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(target, pred, target_crowd)`` of one random image: stuff bands under thing rectangles;
    the prediction jitters, drops, relabels and adds rectangles so that some segments match
    (IoU > 0.5), some nearly match and some do not. Stuff instance ids are random on both sides."""
    height, width = SCENE_SIZE
    target = np.zeros((height, width, 2), np.int64)
    pred = np.zeros_like(target)
    cuts = np.sort(rng.integers(1, width, 2))
    bands = rng.choice(SCENE_STUFFS, 3)
    for side, jitter in ((target, 0), (pred, 3)):
        edges = [0, *(cuts + rng.integers(-jitter, jitter + 1, 2)), width]
        for band, (start, stop) in zip(bands, zip(edges, edges[1:])):
            side[:, start:stop, 0] = band
        side[..., 1] = rng.integers(0, 4, (height, width))  # ignored for stuff
    crowd_mask = np.zeros((height, width), bool)
    for instance in range(1, rng.integers(3, 8) + 1):
        category = rng.choice(SCENE_THINGS)
        box = random_box(rng, height, width)
        paint(target, box, category, instance)
        if rng.random() < 0.8:
            pred_category = category if rng.random() < 0.85 else rng.choice(SCENE_THINGS)
            paint(pred, jittered(rng, box, height, width), pred_category, rng.integers(0, 50))
    if crowd:
        for _ in range(rng.integers(0, 3)):
            box = random_box(rng, height, width)
            category = rng.choice(SCENE_THINGS + SCENE_STUFFS[:1])
            paint(target, box, category, 0)
            crowd_mask[box[0]:box[2], box[1]:box[3]] = True
            if rng.random() < 0.7:
                pred_category = category if rng.random() < 0.6 else rng.choice(SCENE_THINGS)
                paint(pred, jittered(rng, box, height, width), pred_category, rng.integers(0, 50))
    for _ in range(rng.integers(0, 3)):  # spurious predictions
        paint(pred, random_box(rng, height, width), rng.choice(SCENE_THINGS), rng.integers(0, 50))
    if target_void:
        for _ in range(rng.integers(0, 3)):
            paint(target, random_box(rng, height, width), rng.choice([VOID, 0, 99]), 0)
    if pred_void:
        for _ in range(rng.integers(0, 2)):
            paint(pred, random_box(rng, height, width), VOID, 0)
    return torch.from_numpy(target), torch.from_numpy(pred), torch.from_numpy(crowd_mask)


def random_box(rng: np.random.Generator, height: int, width: int) -> tuple[int, int, int, int]:
    top, left = rng.integers(0, height - 2), rng.integers(0, width - 2)
    return top, left, top + rng.integers(2, 10), left + rng.integers(2, 12)


def jittered(rng: np.random.Generator, box, height: int, width: int) -> tuple[int, int, int, int]:
    top, left, bottom, right = (int(v) + int(rng.integers(-2, 3)) for v in box)
    return max(top, 0), max(left, 0), min(max(bottom, top + 1), height), min(max(right, left + 1), width)


def paint(side: np.ndarray, box, category: int, instance: int) -> None:
    top, left, bottom, right = box
    side[top:bottom, left:right] = (category, instance)


def to_coco(target: np.ndarray, crowd: np.ndarray, pred: np.ndarray, things, stuffs):
    """One image as panopticapi sees it: segment id maps (0: void) and ``{id: segment info}``."""
    known = set(things) | set(stuffs)

    def number(keys: dict, key) -> int:
        return keys.setdefault(key, len(keys) + 1)

    gt_ids, pred_ids = np.zeros(target.shape[:2], np.int64), np.zeros(pred.shape[:2], np.int64)
    gt_keys: dict = {}
    pred_keys: dict = {}
    for (row, column), category in np.ndenumerate(target[..., 0]):
        if category in known:
            instance = int(target[row, column, 1]) if category in things else 0
            key = (int(category), "crowd") if crowd[row, column] else (int(category), instance)
            gt_ids[row, column] = number(gt_keys, key)
    for (row, column), category in np.ndenumerate(pred[..., 0]):
        if category != VOID:
            instance = int(pred[row, column, 1]) if category in things else 0
            pred_ids[row, column] = number(pred_keys, (int(category), instance))
    gt_segments = {i: {"category_id": key[0], "iscrowd": int(key[1] == "crowd"), "area": int((gt_ids == i).sum())}
                   for key, i in gt_keys.items()}
    pred_segments = {i: {"category_id": key[0], "area": int((pred_ids == i).sum())} for key, i in pred_keys.items()}
    return gt_ids, gt_segments, pred_ids, pred_segments


def reference_stats(gt_ids, gt_segments, pred_ids, pred_segments, stats) -> None:
    """The per-image loop of panopticapi's ``pq_compute_single_core``, written out with dictionaries."""
    overlaps: dict[tuple[int, int], int] = {}
    for gt_id, pred_id in zip(gt_ids.ravel().tolist(), pred_ids.ravel().tolist()):
        overlaps[gt_id, pred_id] = overlaps.get((gt_id, pred_id), 0) + 1
    gt_matched, pred_matched = set(), set()
    for (gt_id, pred_id), intersection in overlaps.items():
        if gt_id == 0 or pred_id == 0 or gt_segments[gt_id]["iscrowd"]:
            continue
        category = gt_segments[gt_id]["category_id"]
        if category != pred_segments[pred_id]["category_id"]:
            continue
        union = (pred_segments[pred_id]["area"] + gt_segments[gt_id]["area"] - intersection
                 - overlaps.get((0, pred_id), 0))
        if intersection / union > 0.5:
            stats[category]["tp"] += 1
            stats[category]["iou"] += intersection / union
            gt_matched.add(gt_id)
            pred_matched.add(pred_id)
    crowd_of_category = {}
    for gt_id, info in gt_segments.items():
        if gt_id in gt_matched:
            continue
        if info["iscrowd"]:
            crowd_of_category[info["category_id"]] = gt_id
            continue
        stats[info["category_id"]]["fn"] += 1
    for pred_id, info in pred_segments.items():
        if pred_id in pred_matched:
            continue
        ignorable = overlaps.get((0, pred_id), 0)
        if info["category_id"] in crowd_of_category:
            ignorable += overlaps.get((crowd_of_category[info["category_id"]], pred_id), 0)
        if ignorable / info["area"] > 0.5:
            continue
        stats[info["category_id"]]["fp"] += 1


def reference_average(stats, categories) -> dict:
    """panopticapi's ``PQStat.pq_average`` (NaN instead of a ZeroDivisionError over no category)."""
    total = {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
    for category in categories:
        tp, fp, fn, iou = (stats[category][key] for key in ("tp", "fp", "fn", "iou"))
        if tp + fp + fn == 0:
            continue
        total["n"] += 1
        total["pq"] += iou / (tp + 0.5 * fp + 0.5 * fn)
        total["sq"] += iou / tp if tp else 0.0
        total["rq"] += tp / (tp + 0.5 * fp + 0.5 * fn)
    n = total["n"]
    return {key: (value / n if n else math.nan) if key != "n" else n for key, value in total.items()}


@pytest.mark.parametrize("seed", range(25))
def test_agrees_with_a_loop_based_panopticapi_reference_with_crowd_and_void(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    scenes = [random_scene(rng) for _ in range(3)]
    metric = PanopticQuality(SCENE_THINGS, SCENE_STUFFS)
    stats = {c: {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0} for c in SCENE_THINGS + SCENE_STUFFS}
    for target, pred, crowd in scenes:
        reference_stats(*to_coco(target.numpy(), crowd.numpy(), pred.numpy(), SCENE_THINGS, SCENE_STUFFS), stats)
    targets, preds, crowds = (torch.stack(parts) for parts in zip(*scenes))
    metric.update(preds[:1], targets[:1], target_crowd=crowds[:1])
    metric.update(preds[1:], targets[1:], target_crowd=crowds[1:])
    result = metric.compute()
    for category, expected in stats.items():
        entry = result["per_class"][category]
        assert (entry["tp"], entry["fp"], entry["fn"]) == (expected["tp"], expected["fp"], expected["fn"])
        assert entry["iou_sum"] == pytest.approx(expected["iou"], abs=1e-12)
    groups = {"all": SCENE_THINGS + SCENE_STUFFS, "things": SCENE_THINGS, "stuff": SCENE_STUFFS}
    for name, categories in groups.items():
        ours = {key: result[key] for key in ("pq", "sq", "rq", "n")} if name == "all" else result[name]
        assert ours == pytest.approx(reference_average(stats, categories), abs=1e-12, nan_ok=True)


def test_random_scenes_exercise_every_rule() -> None:
    """The random scenes above are worth their name: matches, misses, ignored FPs, crowd and void all occur."""
    rng = np.random.default_rng(1000)
    seen = {"tp": 0, "fp": 0, "fn": 0, "crowd": 0, "void": 0, "pred_void": 0}
    for _ in range(25 * 3):
        target, pred, crowd = random_scene(rng)
        result = evaluate(pred, target, things=SCENE_THINGS, stuffs=SCENE_STUFFS, crowd=crowd)
        for key in ("tp", "fp", "fn"):
            seen[key] += sum(entry[key] for entry in result["per_class"].values())
        seen["crowd"] += int(crowd.any())
        seen["void"] += int((~torch.isin(target[..., 0], torch.tensor(SCENE_THINGS + SCENE_STUFFS))).any())
        seen["pred_void"] += int((pred[..., 0] == VOID).any())
    assert all(count > 10 for count in seen.values()), seen


@pytest.mark.parametrize("seed", range(15))
def test_agrees_with_torchmetrics_without_crowd(seed: int) -> None:
    torchmetrics_detection = pytest.importorskip("torchmetrics.detection")
    rng = np.random.default_rng(seed)
    reference = torchmetrics_detection.PanopticQuality(
        things=set(SCENE_THINGS), stuffs=set(SCENE_STUFFS), return_sq_and_rq=True, return_per_class=True)
    reference_overall = torchmetrics_detection.PanopticQuality(
        things=set(SCENE_THINGS), stuffs=set(SCENE_STUFFS), return_sq_and_rq=True)
    metric = PanopticQuality(SCENE_THINGS, SCENE_STUFFS)
    for _ in range(2):  # two updates of a batch of 3 images each
        scenes = [random_scene(rng, crowd=False, pred_void=False) for _ in range(3)]
        targets, preds, _ = (torch.stack(parts) for parts in zip(*scenes))
        for each in (reference, reference_overall):
            each.update(preds, targets)
        metric.update(preds, targets)
    result = metric.compute()
    pq_avg, sq_avg, rq_avg = reference_overall.compute().tolist()
    assert (result["pq"], result["sq"], result["rq"]) == pytest.approx((pq_avg, sq_avg, rq_avg), abs=1e-6)
    # torchmetrics orders categories things first, then stuff, each sorted; absent ones read 0.
    per_class = reference.compute().reshape(-1, 3).tolist()
    for category, expected in zip(sorted(SCENE_THINGS) + sorted(SCENE_STUFFS), per_class):
        entry = result["per_class"][category]
        ours = [0.0 if math.isnan(entry[key]) else entry[key] for key in ("pq", "sq", "rq")]
        assert ours == pytest.approx(expected, abs=1e-6)
