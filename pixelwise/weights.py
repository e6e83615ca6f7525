"""Loading weights into modules: checkpoints, backbone weight files, state dicts.

One function loads a state dict and, when it does not fit, lists every mismatch (missing and
unexpected keys, shape differences) instead of stopping at the first. Files are read with
``torch.load(weights_only=True)``: opening one never runs code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be read or does not fit its model."""


def load_model_state(model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str) -> None:
    """``model.load_state_dict`` with an error that lists every mismatch, not just the first."""
    own = model.state_dict()
    problems = []
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing:
        problems.append(f"missing keys: {_shorten(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_shorten(unexpected)}")
    shapes = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(own[key].shape)}"
        for key in sorted(set(own) & set(state_dict))
        if own[key].shape != state_dict[key].shape
    ]
    if shapes:
        problems.append(f"shape mismatches: {_shorten(shapes)}")
    if problems:
        raise CheckpointError(f"{source} does not fit this model; " + "; ".join(problems))
    model.load_state_dict(state_dict)


def _shorten(items: list[str], limit: int = 8) -> str:
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def load_weights_file(module: nn.Module, path: str | Path) -> nn.Module:
    """Load a plain state-dict file (for example torchvision ImageNet weights) into ``module``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"cannot read weights file {path}: {error}") from error
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path} does not hold a state dict (got {type(state_dict).__name__})")
    load_model_state(module, state_dict, source=str(path))
    return module
