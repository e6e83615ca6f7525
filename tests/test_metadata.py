"""pixelwise/metadata.py: one schema for registered models and backbones, checked at registration."""

import pytest
from torch import nn

from pixelwise.registry import MODELS, Registry
from pixelwise.metadata import ModelMetadata


def builder(*, num_classes: int, in_channels: int = 3, width: int = 4, aux_weight: float = 0.0) -> nn.Module:
    return nn.Conv2d(in_channels, num_classes, 1)


def register(**metadata):
    registry = Registry("model", schema=ModelMetadata)
    return registry.register("demo", **{"paper": "Doe 2020", "description": "a demo", **metadata})(builder)


def test_unknown_keys_are_refused_at_registration():
    with pytest.raises(ValueError, match=r"model 'demo': unknown metadata parms; the schema has paper, description"):
        register(parms=5)


@pytest.mark.parametrize("metadata, message", [
    ({"arxiv": "1606.915"}, "arxiv id must look like"),
    ({"params": 2.5}, "params must be a positive int"),
    ({"test_kwargs": {"widht": 2}}, "test_kwargs widht are not arguments of its builder"),
    ({"paper_kwargs": {"num_classes": 19, "depth": 3}}, "paper_kwargs depth are not arguments"),
    ({"quality": [{"miou": 70.0, "dataset": "VOC"}]}, "a quality entry needs miou, dataset, split, input_size"),
    ({"quality": [{"miou": 0.7, "dataset": "VOC", "split": "val", "input_size": 513}]}, "quality input_size must be"),
    ({"quality": [{"miou": 170.0, "dataset": "VOC", "split": "val", "input_size": "513"}]}, "percentage"),
    ({"aux_weight": -1.0}, "aux_weight must be a number >= 0"),
    ({"task": "depth"}, "task must be one of semantic, instance, panoptic"),
    ({"speed": [{"input_size": "1024x2048", "fps": 30.3}]}, r"a speed entry needs input_size, fps, source.*missing \['source'\]"),
    ({"speed": [{"input_size": "1024×2048", "fps": 30.3, "source": "survey"}]}, "speed input_size is HEIGHTxWIDTH"),
    ({"speed": [{"input_size": "8x8", "fps": 30.3, "source": "survey", "gflops": 3.0}]}, "must say flops_kind"),
    ({"speed": [{"input_size": "8x8", "fps": 3, "source": "s", "gflops": 3.0, "flops_kind": "MAC"}]},
     "flops_kind must be one of macs, flops, unknown, got 'MAC'"),
    ({"speed": [{"input_size": "8x8", "fps": 0, "source": "survey"}]}, "fps must be > 0"),
    ({"speed": [{"input_size": "8x8", "fps": "fast", "source": "survey"}]}, "speed fps must be"),
])
def test_bad_values_are_refused_naming_them(metadata, message):
    with pytest.raises(ValueError, match=message):
        register(**metadata)


def test_a_missing_required_field_is_named():
    registry = Registry("model", schema=ModelMetadata)
    with pytest.raises(ValueError, match="model 'demo'.*description"):
        registry.register("demo", paper="Doe 2020")(builder)


def test_aux_weight_needs_a_builder_that_takes_it():
    def plain(*, num_classes: int, in_channels: int = 3) -> nn.Module:
        return nn.Identity()

    registry = Registry("model", schema=ModelMetadata)
    with pytest.raises(ValueError, match="aux_weight is given but its builder takes no aux_weight"):
        registry.register("plain", paper="Doe", description="x", aux_weight=0.4)(plain)


def test_every_registered_model_reads_back_all_schema_fields():
    for name in MODELS.names():
        assert set(MODELS.metadata(name)) == set(ModelMetadata.__dataclass_fields__)
