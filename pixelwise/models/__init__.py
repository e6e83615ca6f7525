"""The model zoo: every model is built by name from the ``MODELS`` registry.

A builder is ``fn(*, num_classes, in_channels=3, **kwargs) -> nn.Module`` (a class, or a family's
class or function with the variant's arguments fixed by ``functools.partial``: one pattern for every
family), registered with ``MODELS.register(name, paper=..., params=..., description=..., ...)``. The
metadata follows one schema, :class:`pixelwise.metadata.ModelMetadata`, validated at registration
(unknown keys refused): the paper and its arXiv id, the reported parameter count and its setting,
reported mIoUs, the auxiliary-loss weight, the test arguments.

Every model follows one output convention (``pixelwise.models.base``); ``split_outputs``
reads it.

>>> import torch
>>> model = create_model("unet", num_classes=2, base_width=4, depth=2).eval()
>>> model(torch.zeros(1, 3, 37, 53)).shape
torch.Size([1, 2, 37, 53])
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
import fnmatch
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pixelwise.models.base import SegmentationModel, split_outputs
from pixelwise.registry import MODELS, UnknownNameError, unexpected_arguments

__all__ = [
    "MODELS",
    "SegmentationModel",
    "UnknownNameError",
    "count_parameters",
    "create_model",
    "list_models",
    "model_info",
    "model_table_markdown",
    "parameter_count",
    "split_outputs",
    "from_torchvision",
    "to_torchvision",
]

_COMMON_ARGUMENTS = ("num_classes", "in_channels")


def _import_model_files() -> None:
    """Import every module in this package: each file registers its builders when imported."""
    for module in pkgutil.iter_modules(__path__):
        if module.name not in ("base", "interop"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_model_files()

from pixelwise.models.interop import from_torchvision, to_torchvision  # noqa: E402  (after the registrations)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching the shell-style ``pattern``.

    >>> list_models("fc_densenet*")
    ['fc_densenet103', 'fc_densenet56', 'fc_densenet67']
    """
    return [name for name in MODELS.names() if fnmatch.fnmatchcase(name, pattern)]


def create_model(name: str, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name``; ``kwargs`` go to its builder.

    Raises ``UnknownNameError`` (a ``KeyError`` listing close names) for an unknown name and
    ``TypeError`` naming the model and its accepted arguments for an unknown keyword.

    >>> create_model("unet", num_classes=2, widht=8)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: model 'unet' got unexpected argument(s) 'widht'; it accepts num_classes, ..., base_width, ...
    """
    builder = MODELS.get(name)
    _check_kwargs(name, builder, kwargs)
    aux_weight = MODELS.metadata(name)["aux_weight"]
    if aux_weight is not None and "aux_weight" in _builder_parameters(builder):
        kwargs.setdefault("aux_weight", aux_weight)  # the paper's weight, typed once in the metadata
    model = builder(num_classes=num_classes, in_channels=in_channels, **kwargs)
    model.registered_as = name  # what to_torchvision and the bench tables call it
    return model


def _builder_parameters(builder: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(builder).parameters)


def _check_kwargs(name: str, builder: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    unexpected, accepted = unexpected_arguments(builder, kwargs)
    if unexpected:
        raise TypeError(
            f"model {name!r} got unexpected argument(s) {', '.join(map(repr, unexpected))}; "
            f"it accepts {', '.join(accepted)}"
        )


def model_info(name: str) -> dict[str, Any]:
    """The registration metadata of ``name`` (:class:`pixelwise.metadata.ModelMetadata`, as a dict) plus
    ``name`` and ``default_kwargs`` (read from the builder).

    >>> info = model_info("unet")
    >>> info["default_kwargs"]["depth"], info["params"], info["test_kwargs"]
    (4, None, {'base_width': 8})
    """
    info: dict[str, Any] = {"name": name, **copy.deepcopy(MODELS.metadata(name))}
    info["default_kwargs"] = {
        arg: parameter.default
        for arg, parameter in _builder_parameters(MODELS.get(name)).items()
        if arg not in _COMMON_ARGUMENTS and parameter.default is not inspect.Parameter.empty
    }
    return info


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (buffers such as batch-norm statistics excluded).

    >>> count_parameters(nn.Conv2d(3, 8, 3))  # 8 * 3 * 3 * 3 weights + 8 biases
    224
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_count(name: str, num_classes: int = 21, in_channels: int = 3, **kwargs: Any) -> int:
    """Parameters of ``create_model(name, num_classes, in_channels, **kwargs)``, built without memory.

    The model is built on the ``meta`` device, so counting a large model is instant; builders
    must therefore not read their weights' values (tests/models/test_all_models.py checks).

    >>> parameter_count("unet", num_classes=2, in_channels=1, batch_norm=False)
    31030658
    """
    with torch.device("meta"):
        return count_parameters(create_model(name, num_classes, in_channels, **kwargs))


def _markdown_cell(value: object) -> str:
    return str(value).replace("|", "\\|")


def _reported_quality(info: dict[str, Any]) -> str:
    return "; ".join(f"{_reported_score(q)} ({q['dataset']} {q['split']}, {q['input_size']}"
                     f"{', ' + q['note'] if q.get('note') else ''})" for q in info["quality"]) or "—"


def _reported_score(entry: dict[str, Any]) -> str:
    """The mIoU as a bare number (the column's unit); a panoptic or instance model's score named: "PQ 59.7"."""
    if "miou" in entry:
        return str(entry["miou"])
    key = "pq" if "pq" in entry else "ap"
    return f"{key.upper()} {entry[key]}"


def model_table_markdown() -> str:
    """A Markdown table of the registered models, generated from the registry metadata.

    Columns: name; the exact parameter count in the paper's setting (``paper_kwargs``: its
    class count and input channels; 21 classes where the paper has none); the count the paper
    reports (or the note explaining why none is checked); the setting; the reported mIoU; the paper.
    """
    lines = [
        "| Model | Params (exact, paper setting) | Paper reports | Setting | Reported mIoU % | Paper |",
        "|---|---:|---:|---|---|---|",
    ]
    for name in list_models():
        info = model_info(name)
        setting = {"num_classes": 21, **info["paper_kwargs"]}
        reported = (info["params_note"] or "—") if info["params"] is None else f"{info['params'] / 1e6:.2f}M"
        paper = info["paper"] + (f" ([arXiv:{info['arxiv']}](https://arxiv.org/abs/{info['arxiv']}))"
                                 if info["arxiv"] else "")
        cells = [
            f"`{name}`",
            f"{parameter_count(name, **setting):,}",
            reported,
            ", ".join(f"{key}={value}" for key, value in setting.items()),
            _reported_quality(info),
            paper,
        ]
        lines.append("| " + " | ".join(_markdown_cell(cell) for cell in cells) + " |")
    lines.append("")
    lines.append(
        "Generated by `pixelwise.models.model_table_markdown()` (`pixelwise models --markdown`) from the "
        "registry metadata; the registry tests check every reported count within its tolerance (2% unless "
        "the model says otherwise)."
    )
    return "\n".join(lines)
