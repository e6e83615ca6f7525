"""COCO mask AP of pixelwise predictions (pixelwise.engine.instance): hand-computed precision-recall cases,
crowd regions, the RLE round trip and the layouts it refuses."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("pycocotools")

from pixelwise.data.instances import encode_masks  # noqa: E402
from pixelwise.engine.instance import MaskAPEvaluator, format_ap_table, instances_to_coco  # noqa: E402

SIZE = (32, 32)


def box_mask(y0, x0, y1, x1):
    mask = torch.zeros(SIZE, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def truth(masks, labels, crowd=None):
    masks = torch.stack(masks) if masks else torch.zeros(0, *SIZE, dtype=torch.bool)
    return {"masks": masks, "labels": torch.tensor(labels, dtype=torch.long),
            "iscrowd": torch.tensor(crowd or [False] * len(labels))}


def prediction(masks, labels, scores):
    masks = torch.stack(masks).float() if masks else torch.zeros(0, *SIZE)
    boxes = torch.tensor([[m.nonzero()[:, 1].min(), m.nonzero()[:, 0].min(), m.nonzero()[:, 1].max() + 1,
                           m.nonzero()[:, 0].max() + 1] for m in masks.bool()], dtype=torch.float32).reshape(-1, 4)
    return {"masks": masks, "boxes": boxes, "labels": torch.tensor(labels, dtype=torch.long),
            "scores": torch.tensor(scores, dtype=torch.float32)}


def evaluate(pairs):
    evaluator = MaskAPEvaluator(num_classes=3)
    for gt, pred in pairs:
        evaluator.process({"instances": [gt]}, {"instances": [pred]})
    return evaluator.evaluate()


def test_perfect_predictions_score_one():
    a, b = box_mask(0, 0, 10, 10), box_mask(15, 15, 30, 30)
    result = evaluate([(truth([a, b], [1, 2]), prediction([a, b], [1, 2], [0.9, 0.8]))])
    assert result["mask_ap"] == pytest.approx(1.0) and result["box_ap"] == pytest.approx(1.0)
    assert result["per_class"] == {1: {"mask_ap": pytest.approx(1.0), "box_ap": pytest.approx(1.0)},
                                   2: {"mask_ap": pytest.approx(1.0), "box_ap": pytest.approx(1.0)}}


def test_half_the_objects_found_first_gives_51_of_101_recall_points():
    # Two objects, one found (the top detection), the other missed, a false positive below it: precision 1
    # up to recall 0.5, none beyond. COCO interpolates at 101 recall points 0, 0.01, ..., 1: 51 of them at 1.
    a, b, elsewhere = box_mask(0, 0, 10, 10), box_mask(15, 15, 30, 30), box_mask(0, 20, 8, 30)
    result = evaluate([(truth([a, b], [1, 1]), prediction([a, elsewhere], [1, 1], [0.9, 0.8]))])
    assert result["mask_ap"] == pytest.approx(51 / 101)
    assert result["mask_ap50"] == pytest.approx(51 / 101) and result["mask_ap75"] == pytest.approx(51 / 101)


def test_the_iou_thresholds_decide_which_ap_counts_a_match():
    # IoU 0.8 (80 of 100 pixels): a match at 0.50 ... 0.80, not at 0.85 ... 0.95: 7 of the 10 thresholds.
    target, predicted = box_mask(0, 0, 10, 10), box_mask(0, 0, 8, 10)
    result = evaluate([(truth([target], [1]), prediction([predicted], [1], [0.9]))])
    assert result["mask_ap50"] == pytest.approx(1.0) and result["mask_ap75"] == pytest.approx(1.0)
    assert result["mask_ap"] == pytest.approx(0.7)


def test_a_detection_on_a_crowd_region_is_not_a_false_positive():
    a, crowd = box_mask(0, 0, 10, 10), box_mask(15, 0, 32, 32)
    on_crowd = box_mask(16, 2, 30, 20)
    result = evaluate([(truth([a, crowd], [1, 1], [False, True]),
                        prediction([on_crowd, a], [1, 1], [0.95, 0.9]))])
    assert result["mask_ap"] == pytest.approx(1.0)  # the higher-scored detection over the crowd is ignored


def test_an_image_without_objects_is_a_valid_negative_and_no_detection_scores_zero():
    a = box_mask(0, 0, 10, 10)
    result = evaluate([(truth([a], [1]), prediction([], [], [])), (truth([], []), prediction([], [], []))])
    assert result["images"] == 2 and result["mask_ap"] == 0.0 and result["detections"] == 0
    assert math.isnan(MaskAPEvaluator(3).evaluate()["mask_ap"])  # nothing at all: undefined


def test_rle_and_results_entries_round_trip_through_pycocotools():
    from pycocotools import mask as mask_api

    masks = torch.stack([box_mask(1, 2, 5, 9), box_mask(10, 10, 11, 11)])
    for rle, mask in zip(encode_masks(masks), masks, strict=True):
        assert np.array_equal(mask_api.decode({**rle, "counts": rle["counts"].encode()}).astype(bool), mask.numpy())
    entries = instances_to_coco(prediction(list(masks), [2, 1], [0.5, 0.25]), image_id=7, category_ids=[10, 20, 30])
    assert [(e["image_id"], e["category_id"], e["score"]) for e in entries] == [(7, 30, 0.5), (7, 20, 0.25)]
    assert entries[0]["bbox"] == [2.0, 1.0, 7.0, 4.0]  # XYWH


def test_the_table_names_the_classes_and_wrong_outputs_are_refused():
    a = box_mask(0, 0, 10, 10)
    table = format_ap_table(evaluate([(truth([a], [1]), prediction([a], [1], [0.9]))]), ["bg", "car", "bus"])
    assert "car" in table and "100.00" in table and "absent" in table  # medium/large: no such objects
    evaluator = MaskAPEvaluator(3)
    with pytest.raises(TypeError, match="needs an instance model's eval-mode output"):
        evaluator.process({"instances": []}, torch.zeros(1, 3, 4, 4))
    with pytest.raises(KeyError, match="task='instance'"):
        evaluator.process({"mask": torch.zeros(1)}, {"instances": []})
