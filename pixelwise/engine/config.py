"""The training recipe: one flat dataclass shared by the YAML configs and the CLI flags.

A YAML file under ``configs/`` uses exactly these keys; ``pixelwise train`` flags of the same
name (``--batch-size`` for ``batch_size``) override the file. Modules never read this class:
the builders in :mod:`pixelwise.engine.builders` turn it into plain constructor arguments.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pixelwise.metadata import TASKS

OPTIMIZERS = ("sgd", "adamw", "rmsprop")
SCHEDULES = ("poly", "exp")


class ConfigError(ValueError):
    """A recipe with unknown keys or values out of their allowed set."""


@dataclass
class TrainConfig:
    # what to train
    task: str = "semantic"  # semantic | instance | panoptic: the targets, the model's outputs, the evaluator
    model: str = "unet"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    crf_rnn: bool = False  # append a CRF-as-RNN layer (Zheng et al. 2015), trained end to end
    crf_rnn_kwargs: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None  # a checkpoint whose matching weights start the run (staged training)
    dataset: str = "synthetic"
    data_root: str | None = None
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"
    # schedule
    epochs: int = 10
    batch_size: int = 8
    optimizer: str = "adamw"  # sgd | adamw | rmsprop
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 0
    schedule: str = "poly"  # poly (over the whole run) | exp (lr_gamma per epoch)
    poly_power: float = 0.9
    lr_gamma: float = 0.995  # the exp schedule's factor per epoch
    grad_clip: float | None = None
    # A step whose loss is NaN/inf is skipped (counted, logged) instead of stopping the run.
    skip_nonfinite: bool = False
    amp: bool = False  # bf16 autocast on CPU, fp16 with a grad scaler on CUDA
    loss: str = "ce"
    class_weights: list[float] | None = None
    # data pipeline
    crop: int | tuple[int, int] = 128  # square side, or [height, width]
    scale: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    color: float = 0.0
    elastic: bool = False
    num_workers: int = 0
    # A sample whose files cannot be read or do not fit is replaced by the next readable one in
    # training and left out of evaluation (counted, logged) instead of stopping the run; a run
    # where most samples fail still stops.
    skip_bad_samples: bool = False
    # bookkeeping
    eval_every: int = 1
    checkpoint_every: int | None = None  # also write last.pt every N steps (else: after each epoch)
    figures: int = 4  # val samples in RUN/figures.png (image | ground truth | prediction | errors); 0: none
    # A CRF parameter file (configs/crf/) that `pixelwise evaluate` applies to this run's checkpoints
    # unless told otherwise (--no-crf): DeepLab v1/v2 are scored after the dense CRF. Training-time
    # validation runs without it.
    eval_crf: str | None = None
    log_every: int = 10
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # Batch-norm statistics over all processes under torchrun (SyncBatchNorm, GPUs only); unset: on
    # for several GPUs, off otherwise. A single process is never converted.
    sync_bn: bool | None = None
    out: str = "runs/train"

    def __post_init__(self) -> None:
        # Every value is checked against its field's type here, so that a recipe with `epochs: "ten"`,
        # `lr: [1]` or `hflip: "yes"` is refused by name, not accepted or failing deep inside training.
        for name, (kind, bound) in _FIELD_CHECKS.items():
            setattr(self, name, _checked(name, getattr(self, name), kind, bound))
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        self.crop = _crop_size(self.crop)
        self.scale = _scale_range(self.scale)  # YAML gives lists
        self.class_weights = _class_weights(self.class_weights)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping, rejecting unknown keys with the close valid ones and wrong values
        with the key, the value and what was expected (all messages start with ``source``)."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [key for key in values if key not in known]
        if unknown:
            hints = [f"{key!r} (did you mean {difflib.get_close_matches(str(key), known, 1)})" for key in unknown]
            raise ConfigError(f"{source}: unknown keys {', '.join(hints)}; valid keys: {', '.join(sorted(known))}")
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(load_yaml(path), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["scale"] = list(self.scale)
        if isinstance(self.crop, tuple):
            values["crop"] = list(self.crop)
        return values

    def replace(self, **changes: Any) -> TrainConfig:
        return self.from_dict({**self.to_dict(), **changes})


# The checks of __post_init__ follow each field's annotation: str, bool, int, float, dict[...] (a
# mapping with name keys), "| None" when null is allowed; the fields below are paths (str or
# os.PathLike, stored as str); crop, scale and class_weights have checks of their own.
_PATH_FIELDS = frozenset({"init_from", "data_root", "eval_crf", "out"})
_OWN_CHECKS = frozenset({"crop", "scale", "class_weights"})
# Numeric fields' lowest value: (bound, "closed") allows it, (bound, "open") does not.
_BOUNDS: dict[str, tuple[float, str]] = {
    "epochs": (1, "closed"), "batch_size": (1, "closed"), "lr": (0, "open"), "momentum": (0, "closed"),
    "weight_decay": (0, "closed"), "warmup_iters": (0, "closed"), "poly_power": (0, "closed"),
    "lr_gamma": (0, "open"), "grad_clip": (0, "open"), "color": (0, "closed"), "num_workers": (0, "closed"),
    "eval_every": (1, "closed"), "checkpoint_every": (1, "closed"), "figures": (0, "closed"),
    "log_every": (1, "closed"),
}
_EXPECTED = {"str": "a string", "path": "a path (a string)", "bool": "true or false", "int": "an integer",
             "float": "a number", "mapping": "a mapping of names to values"}


def _field_checks() -> dict[str, tuple[str, tuple[float, str] | None]]:
    """Field -> (kind, bound) from the annotations: kind as in _EXPECTED, "?" appended for "| None"."""
    checks = {}
    for item in dataclasses.fields(TrainConfig):
        if item.name in _OWN_CHECKS:
            continue
        annotation = str(item.type)
        optional = annotation.endswith(" | None")
        base = annotation.removesuffix(" | None")
        kind = "path" if item.name in _PATH_FIELDS else "mapping" if base.startswith("dict[") else base
        if kind not in _EXPECTED:
            raise TypeError(f"TrainConfig.{item.name}: no check for its annotation {annotation!r}")
        checks[item.name] = (kind + "?" * optional, _BOUNDS.get(item.name))
    return checks


_FIELD_CHECKS = _field_checks()


def _checked(name: str, value: Any, kind: str, bound: tuple[float, str] | None) -> Any:
    """``value`` checked (and normalised: ints and floats as such, paths as str) for field ``name``."""
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]
    expected = _EXPECTED[kind] + (" or null" if _FIELD_CHECKS[name][0].endswith("?") else "")
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "path" and isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "mapping" and isinstance(value, Mapping):
        bad = [key for key in value if not isinstance(key, str)]
        if bad:
            raise ConfigError(f"{name} keys must be names (strings), got {bad[0]!r}")
        return dict(value)
    if kind in ("int", "float") and isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
        if not math.isfinite(number):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if kind == "int" and number != int(number):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        number = int(value) if kind == "int" else number
        if bound is not None and (number < bound[0] or (bound[1] == "open" and number == bound[0])):
            raise ConfigError(f"{name} must be {'>=' if bound[1] == 'closed' else '>'} {bound[0]}, got {value!r}")
        return number
    if kind == "float" and isinstance(value, str) and _looks_like_number(value):
        expected += " (a quoted number is a string: write it without quotes)"
    raise ConfigError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")


def _looks_like_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _crop_size(value: Any) -> int | tuple[int, int]:
    """``crop``: one positive int (a square) or two (``[height, width]``, from YAML or the CLI)."""
    sizes = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(sizes) not in (1, 2) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes):
        raise ConfigError(f"crop must be a size >= 1 or [height, width], got {value!r}")
    return sizes[0] if len(sizes) == 1 else (sizes[0], sizes[1])


def _scale_range(value: Any) -> tuple[float, float]:
    """``scale``: ``[min, max]``, two finite numbers with ``0 < min <= max``."""
    numbers_ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not numbers_ok or not 0 < value[0] <= value[1]:
        raise ConfigError(f"scale must be [min, max] with 0 < min <= max, got {value!r}")
    return float(value[0]), float(value[1])


def _class_weights(value: Any) -> list[float] | None:
    """``class_weights``: null, or a list of finite non-negative numbers, one per class."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in value):
        raise ConfigError(f"class_weights must be null or a list of numbers >= 0 (one per class), got {value!r}")
    return [float(v) for v in value]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with two fixes for recipes: YAML 1.2 floats (``1e-6``, which YAML 1.1
    and so PyYAML read as the *string* "1e-6") and duplicate keys refused (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class says so, with its line
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"found the key {key!r} twice (first on line {seen[key].start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def parse_yaml(text: str | bytes, source: str = "<text>") -> Any:
    """A YAML document read as recipes are (:func:`load_yaml`); ``ConfigError`` naming ``source``
    and the line when it is not valid YAML.

    >>> parse_yaml("weight_decay: 1e-6")
    {'weight_decay': 1e-06}
    """
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark, start = error.problem_mark or error.context_mark, error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
        context = error.context or ""
        if context and start is not None and mark is not None and start.line != mark.line:
            context += f" (from line {start.line + 1})"  # an unclosed bracket: where it was opened
        problem = " ".join(str(part) for part in (context, error.problem) if part)
        raise ConfigError(f"{source}: not valid YAML at {where}: {problem}") from None
    except yaml.YAMLError as error:  # undecodable bytes, characters YAML does not allow
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(error).split())}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (empty: ``{}``); ``ConfigError`` naming the file (and the
    line) when it is missing, unreadable, not YAML or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = path.read_bytes()  # PyYAML decodes UTF-8 / UTF-16 itself and names bad bytes
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    values = parse_yaml(data, str(path))
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(values).__name__}")
    return values
