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


def load_matching_state(model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str) -> dict[str, list[str]]:
    """Warm start: copy every tensor of ``state_dict`` whose name and shape match ``model``'s.

    For staged training (FCN-32s -> 16s -> 8s, a network -> the same network + CRF-RNN,
    fine-tuning on a label set of another size): tensors only one side has, or whose shapes
    differ, keep the model's own initialisation and are reported, not silently dropped. Names
    are also tried with the ``model.`` prefix added or removed, so a plain network's weights load
    into its :class:`~pixelwise.classical.CRFRNNModel` wrapper and back. Returns
    ``{"loaded": [...], "new": [...], "skipped": ["name: checkpoint (...) vs model (...)", ...]}``;
    raises :class:`CheckpointError` when not a single tensor fits.

    >>> source, target = nn.Linear(2, 3), nn.Sequential()
    >>> target.add_module("model", nn.Linear(2, 3))
    >>> load_matching_state(target, source.state_dict(), source="linear")["loaded"]
    ['model.bias', 'model.weight']
    >>> bool(torch.equal(target.model.weight, source.weight))
    True
    """
    own = model.state_dict()
    candidates = [dict(state_dict), {f"model.{key}": value for key, value in state_dict.items()},
                  {key[len("model."):]: value for key, value in state_dict.items() if key.startswith("model.")}]
    renamed = max(candidates, key=lambda mapping: len(set(mapping) & set(own)))
    common = sorted(set(renamed) & set(own))
    loaded = [key for key in common if renamed[key].shape == own[key].shape]
    skipped = [f"{key}: checkpoint {tuple(renamed[key].shape)} vs model {tuple(own[key].shape)}"
               for key in common if renamed[key].shape != own[key].shape]
    if not loaded:
        raise CheckpointError(f"{source}: no tensor fits this model (names and shapes differ everywhere; "
                              f"checkpoint keys start {_shorten(sorted(state_dict), 4)})")
    model.load_state_dict({key: renamed[key] for key in loaded}, strict=False)
    return {"loaded": loaded, "new": sorted(set(own) - set(renamed)), "skipped": skipped}
