"""The task contract at the config layer (pixelwise.engine.tasks): recipes, datasets, evaluators and scores."""

import pytest
import torch

from pixelwise.data import DatasetError
from pixelwise.engine.builders import check_resume_compatible, model_meta
from pixelwise.engine.checkpoint import CheckpointError
from pixelwise.engine.config import ConfigError, TrainConfig
from pixelwise.engine.evaluator import SemanticEvaluator
from pixelwise.engine.instance import MaskAPEvaluator
from pixelwise.engine.panoptic import PanopticEvaluator
from pixelwise.engine.tasks import build_task_dataset, check_model_task, score_key, task_evaluator


def test_a_recipe_names_its_task_and_unknown_tasks_are_refused():
    assert TrainConfig().task == "semantic"
    assert TrainConfig(task="panoptic").to_dict()["task"] == "panoptic"
    with pytest.raises(ConfigError, match="task must be one of semantic, instance, panoptic, got 'depth'"):
        TrainConfig(task="depth")


def test_each_task_brings_its_evaluator_and_score():
    assert isinstance(task_evaluator("semantic", num_classes=3), SemanticEvaluator)
    panoptic = task_evaluator("panoptic", num_classes=3, things=[1], stuffs=[0])
    assert isinstance(panoptic.evaluators["panoptic"], PanopticEvaluator)  # and the semantic head's mIoU:
    pairs = torch.tensor([[[[0, 0], [1, 1]]]])  # 1 x 1 x 2: stuff 0, a thing of class 1
    logits = torch.tensor([[[[5.0, 0.0]], [[0.0, 0.0]], [[0.0, 5.0]]]])  # predicts classes 0 and 2
    panoptic.process({"panoptic": pairs, "mask": pairs[..., 0]}, {"panoptic": pairs, "semantic": logits})
    result = panoptic.evaluate()
    assert result["pq"] == 1.0 and result["semantic_pixel_accuracy"] == 0.5 and "semantic_per_class" in result
    assert isinstance(task_evaluator("instance", num_classes=3), MaskAPEvaluator)
    assert [score_key(task) for task in ("semantic", "panoptic", "instance")] == ["miou", "pq", "mask_ap"]


def test_a_model_runs_only_its_own_task():
    check_model_task("panoptic_deeplab_small", "panoptic")
    with pytest.raises(ValueError, match="'maskrcnn_small' is an instance model; it cannot run the panoptic task"):
        check_model_task("maskrcnn_small", "panoptic")


def test_datasets_give_the_targets_of_the_task_or_say_which_they_serve(tmp_path):
    sample = build_task_dataset("synthetic", None, "val", None, "panoptic", size=32, num_samples=1)[0]
    assert sample["panoptic"].shape == (32, 32, 2)
    with pytest.raises(DatasetError, match=r"dataset 'camvid' has no instance targets: it serves semantic "
                                           r"\(datasets with instance targets: cityscapes, coco, coco_panoptic"):
        build_task_dataset("camvid", tmp_path, "val", None, "instance")


def test_checkpoints_keep_the_task_and_resuming_into_another_task_is_refused():
    dataset = build_task_dataset("synthetic", None, "val", None, "panoptic", size=32, num_samples=1)
    meta = model_meta(TrainConfig(task="panoptic", model="panoptic_deeplab_small"), dataset)
    assert (meta["task"], meta["things"], meta["stuffs"]) == ("panoptic", [3, 4, 5, 6], [0, 1, 2])
    older = {key: value for key, value in meta.items() if key != "task"}  # a checkpoint from before tasks
    with pytest.raises(CheckpointError, match="task: checkpoint 'semantic' vs now 'panoptic'"):
        check_resume_compatible(older, meta, "old.pt")
    semantic = model_meta(TrainConfig(), dataset)
    check_resume_compatible({key: value for key, value in semantic.items() if key != "task"}, semantic, "old.pt")
