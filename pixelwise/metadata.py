"""The metadata schemas of registered models and backbones, validated when they are registered.

A paper's numbers are typed once, here in a registration, and every table, docstring and test
reads them from the registry (torchvision's ``Weights.meta``, timm's ``PretrainedCfg``).
Unknown keys are refused at registration, so a typo never silently drops a number.

>>> ModelMetadata(paper="Doe 2020", description="x", quality=({"miou": 70.1, "dataset": "VOC 2012",
...               "split": "val", "input_size": "513x513"},)).quality[0]["miou"]
70.1
>>> ModelMetadata(paper="Doe 2020", description="x", arxiv="12345")
Traceback (most recent call last):
...
ValueError: arxiv id must look like 1606.00915, got '12345'
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

QUALITY_KEYS = {"miou": (int, float), "dataset": str, "split": str, "input_size": str}
QUALITY_OPTIONAL = {"note": str}
# The percentage a quality entry reports, by task: mean IoU, mask AP, panoptic quality.
QUALITY_METRICS = {"semantic": "miou", "instance": "ap", "panoptic": "pq"}
_NUMBER = (int, float)
# A reported speed: what a paper's (or the survey's) speed table prints for the model.
SPEED_KEYS = {"input_size": str, "fps": _NUMBER, "source": str}
SPEED_OPTIONAL = {"time_ms": _NUMBER, "gflops": _NUMBER, "flops_kind": str, "params_m": _NUMBER, "hardware": str,
                  "miou": _NUMBER, "dataset": str, "row": str, "order": int, "note": str}
FLOPS_KINDS = ("macs", "flops", "unknown")
TASKS = ("semantic", "instance", "panoptic")
_COMMON_ARGUMENTS = {"num_classes", "in_channels"}


def _builder_parameters(builder: Callable[..., Any]) -> set[str] | None:
    """The keyword names ``builder`` takes, or None when it takes ``**kwargs``."""
    parameters = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return set(parameters)


def _check_keys_are_arguments(owner: str, what: str, keys: Mapping[str, Any], builder: Callable[..., Any]) -> None:
    accepted = _builder_parameters(builder)
    if accepted is None:
        return
    unknown = sorted(set(keys) - accepted - _COMMON_ARGUMENTS)
    if unknown:
        raise ValueError(f"{owner}: {what} {', '.join(unknown)} are not arguments of its builder")


def _check_quality(owner: str, entries: Sequence[Mapping[str, Any]], metric: str = "miou") -> None:
    """Each entry has ``metric`` (a percentage: ``QUALITY_METRICS`` of the model's task) in place of ``miou``."""
    required = {metric: QUALITY_KEYS["miou"], **{k: v for k, v in QUALITY_KEYS.items() if k != "miou"}}
    for entry in entries:
        _check_entry(owner, "quality", entry, required, QUALITY_OPTIONAL)
        if not 0 <= entry[metric] <= 100:
            raise ValueError(f"{owner}: quality {metric} is a percentage 0..100, got {entry[metric]!r}")


def _check_entry(owner: str, what: str, entry: Mapping[str, Any], required: Mapping[str, Any],
                 optional: Mapping[str, Any]) -> None:
    missing = sorted(set(required) - set(entry))
    unknown = sorted(set(entry) - set(required) - set(optional))
    if missing or unknown:
        raise ValueError(f"{owner}: a {what} entry needs {', '.join(required)} (and may have "
                         f"{', '.join(optional)}); missing {missing}, unknown {unknown}")
    for key, kind in {**required, **optional}.items():
        if key in entry and (not isinstance(entry[key], kind) or isinstance(entry[key], bool)):
            raise ValueError(f"{owner}: {what} {key} must be {kind}, got {entry[key]!r}")


def _check_speed(owner: str, entries: Sequence[Mapping[str, Any]]) -> None:
    for entry in entries:
        _check_entry(owner, "speed", entry, SPEED_KEYS, SPEED_OPTIONAL)
        if not re.fullmatch(r"\d+x\d+", entry["input_size"]):
            raise ValueError(f"{owner}: speed input_size is HEIGHTxWIDTH such as 1024x2048, got {entry['input_size']!r}")
        if entry.get("flops_kind", "unknown") not in FLOPS_KINDS:
            raise ValueError(f"{owner}: speed flops_kind must be one of {', '.join(FLOPS_KINDS)}, "
                             f"got {entry['flops_kind']!r}")
        if "gflops" in entry and "flops_kind" not in entry:
            raise ValueError(f"{owner}: a speed entry with gflops must say flops_kind (macs: the paper counts "
                             "multiply-adds; flops: 2 per multiply-add; unknown)")
        if entry["fps"] <= 0:
            raise ValueError(f"{owner}: speed fps must be > 0, got {entry['fps']!r}")


def _check_arxiv(arxiv: str | None) -> None:
    if arxiv is not None and not re.fullmatch(r"\d{4}\.\d{4,5}", arxiv):
        raise ValueError(f"arxiv id must look like 1606.00915, got {arxiv!r}")


SURVEY = "survey"
# The survey's table takes its older rows from ICNet's Table 5, timed there on one GPU.
TITAN_X_VIA_ICNET = "NVIDIA Titan X (Maxwell), as quoted by ICNet (Zhao et al. 2018, Table 5)"
SURVEY_TABLE = ("the speed/quality table closing the survey (../shared/seed, taken from the multi-scale "
                "spatial attention paper); Cityscapes mIoU")


def survey_speed(order: int, row: str, input_size: str, *, fps: float, miou: float, time_ms: float | None = None,
                 gflops: float | None = None, params_m: float | None = None, flops_kind: str = "unknown",
                 hardware: str = "not stated in the survey's table", note: str | None = None) -> dict[str, Any]:
    """One row of the survey's speed/quality table as a ``speed`` entry (``source="survey"``).

    ``input_size`` is HEIGHTxWIDTH (the survey prints 640x360 for ENet and SegNet: width first);
    a figure the table leaves out ("-") is None and left out of the entry.

    >>> survey_speed(4, "ENet (Paszke et al., 2016)", "360x640", fps=135.4, miou=57.0, gflops=3.8)["flops_kind"]
    'unknown'
    """
    entry = {"source": SURVEY, "order": order, "row": row, "input_size": input_size, "fps": fps, "miou": miou,
             "dataset": "Cityscapes", "hardware": hardware, "time_ms": time_ms, "gflops": gflops,
             "flops_kind": flops_kind if gflops is not None else None, "params_m": params_m, "note": note}
    return {key: value for key, value in entry.items() if value is not None}


@dataclass(frozen=True)
class ModelMetadata:
    """What a model's registration records.

    - ``paper``: the citation ("Chen et al. 2017, DeepLab: ..."); ``arxiv``: its arXiv id.
    - ``description``: one line.
    - ``params``: the parameter count the paper (or reference code) reports, or None; checked within
      ``params_tolerance`` (relative) in ``paper_kwargs``, the setting it refers to (its class count,
      input channels and any builder argument; 21 classes when not given). ``params_note`` says
      why no count is checked, or how the count is to be read.
    - ``quality``: reported results, each ``{"miou": %, "dataset", "split", "input_size", "note"?}``; a
      panoptic model reports ``"pq"`` and an instance model ``"ap"`` in place of ``"miou"``.
    - ``aux_weight``: the weight of each auxiliary loss in the paper's training (a number, or one per
      auxiliary output); ``create_model`` gives it to builders that take ``aux_weight``.
    - ``test_kwargs``: arguments that make the model small for the registry-wide tests.
    - ``task``: semantic, instance or panoptic.
    - ``speed``: reported speeds, each ``{"input_size": "HxW", "fps", "source"}`` and optionally
      ``time_ms``, ``gflops`` with ``flops_kind`` (``macs`` when the paper counts multiply-adds as
      "FLOPs", ``flops`` for 2 per multiply-add, ``unknown``), ``params_m``, ``hardware``, ``miou``,
      ``dataset``, ``row`` (the row's label in its table) and ``order`` (its position). Entries whose
      ``source`` is ``"survey"`` are the rows of the survey's speed/quality table that
      ``pixelwise bench --paper-table`` measures.
    """

    paper: str
    description: str
    arxiv: str | None = None
    params: int | None = None
    paper_kwargs: Mapping[str, Any] = field(default_factory=dict)
    params_tolerance: float = 0.02
    params_note: str = ""
    quality: Sequence[Mapping[str, Any]] = ()
    aux_weight: float | Sequence[float] | None = None
    test_kwargs: Mapping[str, Any] = field(default_factory=dict)
    task: str = "semantic"
    speed: Sequence[Mapping[str, Any]] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.paper, str) or not self.paper or not isinstance(self.description, str) \
                or not self.description:
            raise ValueError("paper and description must be non-empty strings")
        _check_arxiv(self.arxiv)
        if self.params is not None and (isinstance(self.params, bool) or not isinstance(self.params, int)
                                        or self.params < 1):
            raise ValueError(f"params must be a positive int or None, got {self.params!r}")
        if not 0 < self.params_tolerance < 0.5:
            raise ValueError(f"params_tolerance is a relative tolerance in (0, 0.5), got {self.params_tolerance!r}")
        weights = (self.aux_weight,) if isinstance(self.aux_weight, (int, float)) else self.aux_weight or ()
        if any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 for w in weights):
            raise ValueError(f"aux_weight must be a number >= 0 or a sequence of them, got {self.aux_weight!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")

    def check(self, name: str, builder: Callable[..., Any]) -> None:
        """Values that must agree with the builder: test and paper arguments it takes, quality entries."""
        owner = f"model {name!r}"
        _check_keys_are_arguments(owner, "test_kwargs", self.test_kwargs, builder)
        _check_keys_are_arguments(owner, "paper_kwargs", self.paper_kwargs, builder)
        _check_quality(owner, self.quality, QUALITY_METRICS[self.task])
        _check_speed(owner, self.speed)
        if self.aux_weight is not None and (accepted := _builder_parameters(builder)) is not None \
                and "aux_weight" not in accepted:
            raise ValueError(f"{owner}: aux_weight is given but its builder takes no aux_weight argument")


@dataclass(frozen=True)
class BackboneMetadata:
    """What a backbone's registration records: the paper, a line, the torchvision network whose
    ImageNet state dict loads as ``weights``, the output strides it can be built at, and small test
    arguments."""

    paper: str
    description: str
    arxiv: str | None = None
    torchvision: str | None = None
    output_strides: Sequence[int] = (32,)
    test_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.paper or not self.description:
            raise ValueError("paper and description must be non-empty strings")
        _check_arxiv(self.arxiv)
        if not self.output_strides or any(s not in (4, 8, 16, 32, 64, 128) for s in self.output_strides):
            raise ValueError(f"output_strides must list powers of 2 from 4 to 128, got {self.output_strides!r}")

    def check(self, name: str, builder: Callable[..., Any]) -> None:
        _check_keys_are_arguments(f"backbone {name!r}", "test_kwargs", self.test_kwargs, builder)
