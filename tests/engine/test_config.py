import pytest

from pixelwise.engine.config import ConfigError, TrainConfig


def test_yaml_round_trip(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("model: unet\nmodel_kwargs: {base_width: 8}\nepochs: 3\nscale: [0.75, 1.5]\n")
    config = TrainConfig.from_yaml(path)
    assert (config.model, config.model_kwargs, config.epochs, config.scale) == ("unet", {"base_width": 8}, 3, (0.75, 1.5))
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_unknown_key_names_the_close_one(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match=r"'epoch' \(did you mean \['epochs'\]\)"):
        TrainConfig.from_yaml(path)


@pytest.mark.parametrize("changes, message", [
    ({"optimizer": "adam"}, "optimizer must be"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"num_workers": -1}, "num_workers must be >= 0"),
    ({"schedule": "cosine"}, "schedule must be one of poly, exp"),
    ({"crop": 0}, r"crop must be a size >= 1 or \[height, width\], got 0"),
    ({"crop": [360, 480, 3]}, r"crop must be .* got \[360, 480, 3\]"),
    ({"crop": 96.5}, "crop must be"),
])
def test_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")


def test_rectangular_crop_round_trips_through_yaml(tmp_path):
    import yaml

    config = TrainConfig(crop=[360, 480])
    assert config.crop == (360, 480) and TrainConfig(crop=[96]).crop == 96
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    assert TrainConfig.from_yaml(path) == config
