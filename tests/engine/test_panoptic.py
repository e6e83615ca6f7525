"""pixelwise/engine/panoptic.py: the panoptic evaluator, through inference_on_dataset with a panoptic model."""

from __future__ import annotations

import pytest
import torch

from pixelwise.engine import Evaluators, PanopticEvaluator, inference_on_dataset
from pixelwise.metrics import PanopticQuality
from pixelwise.models import create_model


def pairs_batch() -> torch.Tensor:
    target = torch.zeros(2, 4, 6, 2, dtype=torch.long)  # stuff 0; a thing of class 1 in each image
    target[:, 1:3, 1:3] = torch.tensor([1, 1])
    target[1, 3, 5, 0] = -1
    return target


def test_process_feeds_panoptic_quality_with_the_crowd_mask() -> None:
    target = pairs_batch()
    prediction = target.clone()
    prediction[1, 1:3, 1:3, 1] = 7  # instance ids need not match
    crowd = torch.zeros(2, 4, 6, dtype=torch.bool)
    evaluator = PanopticEvaluator(things=[1], stuffs=[0])
    evaluator.process({"panoptic": target, "crowd": crowd}, {"panoptic": prediction})
    expected = PanopticQuality(things=[1], stuffs=[0])
    expected.update(prediction, target, target_crowd=crowd)
    assert evaluator.evaluate() == expected.compute()
    assert {"pq", "sq", "rq", "things", "stuff", "per_class"} <= set(expected.compute())
    evaluator.reset()
    evaluator.process({"panoptic": target}, {"panoptic": torch.full_like(target, 0)})  # everything stuff 0
    assert evaluator.evaluate()["things"]["pq"] == 0.0


def test_a_semantic_output_is_refused_with_the_reason() -> None:
    evaluator = PanopticEvaluator(things=[1], stuffs=[0])
    with pytest.raises(TypeError, match="panoptic model's eval-mode output"):
        evaluator.process({"panoptic": pairs_batch()}, torch.zeros(2, 2, 4, 6))
    with pytest.raises(KeyError, match=r"targets in the batch as 'panoptic' \(a dataset built with task='panoptic'\)"):
        evaluator.process({"mask": torch.zeros(2, 4, 6)}, {"panoptic": pairs_batch()})


def test_inference_on_dataset_evaluates_a_panoptic_model() -> None:
    torch.manual_seed(0)
    model = create_model("panoptic_deeplab_small", num_classes=2, things=(1,), width_divisor=8)
    target = pairs_batch()
    loader = [{"image": torch.randn(2, 3, 4, 6), "panoptic": target}]
    result = inference_on_dataset(model, loader, Evaluators({"panoptic": PanopticEvaluator([1], [0])}),
                                  progress=False)
    assert 0.0 <= result["stuff"]["pq"] <= 1.0 and model.training  # the mode is restored
