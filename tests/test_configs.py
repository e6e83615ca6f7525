"""Every recipe under configs/ is valid: known keys, a registered model, dataset and loss."""

from pathlib import Path

import pytest

from pixelwise.cli.demo import DEMO_RECIPE
from pixelwise.engine import TrainConfig
from pixelwise.losses import build_loss
from pixelwise.models import parameter_count
from pixelwise.data import list_datasets
from pixelwise.engine.tasks import check_model_task
from pixelwise.registry import DATASETS

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_there_are_recipes():
    assert {"demo.yaml", "unet_camvid.yaml", "unet_voc.yaml", "unet_cityscapes.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipe_builds(path):
    config = TrainConfig.from_yaml(path)
    assert config.dataset in list_datasets()
    assert parameter_count(config.model, 21, **config.model_kwargs) > 0
    build_loss(config.loss)
    check_model_task(config.model, config.task)  # the model is one of the recipe's task
    assert config.task in getattr(DATASETS.get(config.dataset), "tasks", ("semantic",))


def test_demo_recipe_matches_its_yaml():
    from_yaml = TrainConfig.from_yaml(Path(__file__).parents[1] / "configs" / "demo.yaml")
    assert from_yaml == TrainConfig.from_dict({**DEMO_RECIPE, "out": from_yaml.out})
