"""Fuzzing the recipe loader: arbitrary YAML documents and values of every wrong type.

Every failure must be a ``ConfigError`` (a ``ValueError``) whose message names the file or the key
and what was expected: never a ``TypeError`` or a PyYAML error from deep inside, never a value of
the wrong type accepted (``epochs: "ten"``, ``crop: -3``, ``lr: [1]``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pixelwise.cli.common import CRF_FLAGS, load_crf_config, parse_assignments  # noqa: E402
from pixelwise.engine.config import ConfigError, TrainConfig, load_yaml, parse_yaml  # noqa: E402

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))

# Any value YAML can hold: scalars of every type, and lists and mappings of them.
SCALARS = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12) | st.sampled_from(["ten", "1e-3", "1e-06", "3", "true", "", "sgd", "[1]"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6) | st.integers(-3, 3), inner, max_size=3), max_leaves=6)


def expected_type(name: str, value: object) -> bool:
    """The type every accepted value must have once in the config (independent of the checks)."""
    field = FIELDS[name]
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    if name == "crop":
        return (isinstance(value, int) and value >= 1) or (isinstance(value, tuple) and len(value) == 2
                                                           and all(isinstance(v, int) and v >= 1 for v in value))
    if name == "scale":
        return isinstance(value, tuple) and len(value) == 2 and all(type(v) is float for v in value) \
            and 0 < value[0] <= value[1] and math.isfinite(value[1])
    if name == "class_weights":
        return value is None or (isinstance(value, list) and value and all(type(v) is float and v >= 0 for v in value))
    if value is None:
        return "None" in str(FIELDS[name].type)
    base = str(FIELDS[name].type).removesuffix(" | None")
    kind = {"float": float, "str": str, "int": int, "bool": bool}.get(base, type(default))
    if kind is float:
        return type(value) is float and math.isfinite(value)
    return type(value) is kind and (not isinstance(value, dict) or all(isinstance(k, str) for k in value))


@pytest.mark.reliability(fault="a recipe key given a value of another type or out of range (epochs: ten, lr: [1])",
                         outcome="refused with a ConfigError naming the file, the key and what it expects")
@FIXTURE_OK
@given(name=st.sampled_from(sorted(FIELDS)), value=VALUES)
@example(name="epochs", value="ten")
@example(name="epochs", value=2.5)
@example(name="epochs", value=True)
@example(name="crop", value=-3)
@example(name="lr", value=[1])
@example(name="lr", value="1e-3")  # a quoted number, and what PyYAML made of `lr: 1e-3` before
@example(name="lr", value=math.nan)
@example(name="weight_decay", value="1e-06")  # was accepted, then crashed the first optimiser step
@example(name="scale", value=5)  # was a TypeError
@example(name="scale", value=[2, 1])  # was accepted, then refused by the first training sample
@example(name="num_workers", value="2")  # was a TypeError
@example(name="hflip", value="yes")  # was accepted (a truthy string)
@example(name="model_kwargs", value=[1])  # was accepted, then a TypeError in the model builder
@example(name="model_kwargs", value={1: 2})
@example(name="class_weights", value="a")
@example(name="out", value=None)
def test_wrong_values_are_refused_by_key(record_inputs, name, value):
    record_inputs("TrainConfig.from_dict")
    try:
        config = TrainConfig.from_dict({name: value}, source="recipe.yaml")
    except ConfigError as error:
        message = str(error)
        assert message.startswith("recipe.yaml: ") and name in message, message
        assert "must be" in message, message
        return
    assert expected_type(name, getattr(config, name)), (name, value, getattr(config, name))


@pytest.mark.reliability(fault="a recipe key that is not a name (1: 2) or unknown",
                         outcome="refused by name, with the close valid key")
@FIXTURE_OK
@given(key=st.integers() | st.text(max_size=10) | st.none() | st.booleans())
@example(key=1)  # was a TypeError inside difflib
@example(key="epoch")
def test_unknown_keys_are_named(record_inputs, key):
    record_inputs("TrainConfig.from_dict")
    if key in FIELDS:
        return
    with pytest.raises(ConfigError, match=r"^recipe.yaml: unknown keys"):
        TrainConfig.from_dict({key: 1}, source="recipe.yaml")


# YAML documents: text built from YAML's significant characters, and valid recipes damaged by a cut,
# a deleted or an inserted character.
YAML_TEXT = st.text(alphabet=st.sampled_from(list(" \t\n:-[]{},#&*!|>'\"%@`?=.0123456789eEabcyz\\\x00\x85\ufeff")),
                    max_size=60)


@st.composite
def damaged_recipes(draw):
    values = draw(st.dictionaries(st.sampled_from(sorted(FIELDS)), VALUES, max_size=5))
    text = yaml.safe_dump(values, default_flow_style=draw(st.booleans()))
    if text and draw(st.booleans()):
        at = draw(st.integers(0, len(text) - 1))
        change = draw(st.sampled_from(["cut", "delete", "insert"]))
        insert = draw(st.sampled_from(list(":-[]{}'\"\t&*!%\n ")))
        text = {"cut": text[:at], "delete": text[:at] + text[at + 1:], "insert": text[:at] + insert + text[at:]}[change]
    return text


@pytest.mark.reliability(fault="arbitrary and damaged YAML recipe files (syntax errors, tabs, bad bytes, duplicates)",
                         outcome="loaded, or a ConfigError naming the file (and the line for syntax errors)")
@FIXTURE_OK
@given(text=YAML_TEXT | damaged_recipes() | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
@example(text="epochs: 3\nepochs: 4\n")  # duplicate key: the last one silently won
@example(text="lr: [1, 2\n")  # a PyYAML ParserError escaped
@example(text="\tepochs: 3\n")  # a PyYAML ScannerError escaped
@example(text="weight_decay: 1e-06\n")  # read as the string '1e-06'
@example(text="false\n")  # an empty recipe was silently assumed
@example(text="!!python/object:os.system x\n")
@example(text="? [1]\n: 2\n")
def test_yaml_documents_load_or_raise_config_error(tmp_path, record_inputs, text):
    record_inputs("load_yaml")
    path = tmp_path / "recipe.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        values = load_yaml(path)
    except ConfigError as error:
        assert str(error).startswith(f"{path}: ") or str(path) in str(error), error
        if "not valid YAML at" in str(error):
            assert "line" in str(error)
        return
    assert isinstance(values, dict)
    try:
        TrainConfig.from_yaml(path)
    except ConfigError as error:
        assert str(error).startswith(f"{path}: "), error


@pytest.mark.reliability(fault="a recipe with an unclosed [ on line 3, a key given twice, bytes that are not UTF-8",
                         outcome="a ConfigError naming the file, the line and the problem")
def test_malformed_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("model: unet\nepochs: 3\nscale: [0.5, 2.0\nlr: 0.1\n")
    with pytest.raises(ConfigError, match=rf"^{path}: not valid YAML at line 4, column 3: while parsing a flow "
                                          r"sequence \(from line 3\) expected ',' or '\]'"):
        TrainConfig.from_yaml(path)
    path.write_text("model: unet\nepochs: 3\nmodel: fcn8s\n")
    with pytest.raises(ConfigError, match=r"line 3, column 1: .*key 'model' twice \(first on line 1\)"):
        TrainConfig.from_yaml(path)
    path.write_bytes(b"model: \xff\xfeunet\n")
    with pytest.raises(ConfigError, match=rf"^{path}: not valid YAML"):
        TrainConfig.from_yaml(path)


@pytest.mark.reliability(fault="a recipe writing 1e-6 (PyYAML reads it as a string)", outcome="read as the number 1e-6")
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_recipes_hold_numbers_where_numbers_belong(path):
    # Three shipped recipes wrote `weight_decay: 1e-06`: PyYAML gave the string '1e-06', the recipe
    # loaded, and training crashed at its first optimiser step (add(): argument 'alpha' must be Number).
    config = TrainConfig.from_yaml(path)
    for field in dataclasses.fields(TrainConfig):
        assert expected_type(field.name, getattr(config, field.name)), (path.name, field.name)


@pytest.mark.reliability(fault="valid recipes dumped to YAML and read back",
                         outcome="the same recipe, for every one generated")
@FIXTURE_OK
@given(epochs=st.integers(1, 10**6), lr=st.floats(1e-12, 10.0), weight_decay=st.floats(0, 1.0),
       crop=st.integers(1, 4096) | st.tuples(st.integers(1, 4096), st.integers(1, 4096)),
       scale=st.tuples(st.floats(1e-3, 1.0), st.floats(1.0, 8.0)), hflip=st.booleans(),
       class_weights=st.none() | st.lists(st.floats(0, 100), min_size=1, max_size=4))
def test_valid_recipes_round_trip_through_yaml(tmp_path, record_inputs, epochs, lr, weight_decay, crop, scale, hflip,
                                               class_weights):
    record_inputs("load_yaml")
    config = TrainConfig(epochs=epochs, lr=lr, weight_decay=weight_decay, crop=crop, scale=scale, hflip=hflip,
                         class_weights=class_weights)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    assert TrainConfig.from_yaml(path) == config


@pytest.mark.reliability(fault="CRF parameter files with wrong keys, types, NaN, negative or non-mapping values",
                         outcome="a ValueError naming the file and the parameter, or the checked parameters")
@FIXTURE_OK
@given(values=st.dictionaries(st.sampled_from(["kind", *CRF_FLAGS, "colour"]), VALUES, max_size=4) | VALUES)
@example(values={"iterations": math.nan})  # was a bare "cannot convert float NaN to integer"
@example(values={"bi_rgb_std": math.inf})  # was accepted
@example(values={"pos_xy_std": -3.0})  # was accepted, refused only at the first image
@example(values={"kind": "grid", "connectivity": 6})
def test_crf_parameter_files_load_or_name_the_problem(tmp_path, record_inputs, values):
    record_inputs("load_crf_config")
    path = tmp_path / "crf.yaml"
    path.write_text(yaml.safe_dump(values))
    try:
        kind, params = load_crf_config(path)
    except ValueError as error:
        assert str(path) in str(error), error
        return
    assert kind in ("dense", "grid")
    for name, value in params.items():
        assert kind in CRF_FLAGS[name][2] and type(value) is CRF_FLAGS[name][0] and math.isfinite(value)
        assert value > 0 or (value >= 0 and name in ("iterations", "pos_w", "bi_w", "weight"))


@pytest.mark.reliability(fault="--model-arg / --dataset-arg strings of any shape (KEY=VALUE, bad YAML)",
                         outcome="parsed, or a ValueError naming the flag and the argument")
@FIXTURE_OK
@given(items=st.lists(st.text(max_size=12) | st.builds("{}={}".format, st.text(max_size=4), YAML_TEXT), max_size=3))
@example(items=["a=[1,"])  # a PyYAML ParserError escaped the CLI's error handling
@example(items=[" =3"])  # an empty key was accepted
@example(items=["lr=1e-4"])  # was the string '1e-4'
def test_key_value_arguments_parse_or_name_the_flag(record_inputs, items):
    record_inputs("parse_assignments", len(items) or 1)
    try:
        values = parse_assignments(items, "--model-arg")
    except ValueError as error:
        assert "--model-arg" in str(error), error
        return
    assert all(isinstance(key, str) and key for key in values)
    if items == ["lr=1e-4"]:
        assert values == {"lr": 1e-4}


def test_yaml_floats_follow_yaml_1_2():
    assert parse_yaml("a: 1e-06\nb: 1E3\nc: -.5e+2\nd: 1.0\ne: 12\nf: e5\ng: 1e\nh: .inf") == {
        "a": 1e-06, "b": 1000.0, "c": -50.0, "d": 1.0, "e": 12, "f": "e5", "g": "1e", "h": math.inf}
    # Merge keys may still be overridden, not flagged as duplicates.
    assert parse_yaml("base: &b {x: 1, y: 3}\nm:\n  <<: *b\n  x: 2")["m"] == {"x": 2, "y": 3}
