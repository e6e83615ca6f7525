"""Loading weights into modules: checkpoints, backbone weight files, state dicts.

One function loads a state dict and, when it does not fit, lists every mismatch (missing and
unexpected keys, shape differences) instead of stopping at the first. Files are read with
``torch.load(weights_only=True)``: opening one never runs code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be read or does not fit its model."""


def read_torch_file(path: str | Path, what: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with errors a user can act on: a folder names the
    checkpoints inside it, a whole pickled model (``torch.save(model)``) says how to save weights.
    ``what`` names the file's role in messages (``"checkpoint"``, ``"weights file"``).

    A safetensors file reads too (:func:`read_safetensors`): as a checkpoint where pixelwise
    exported it, else as a plain state dict. Neither format can run code when opened."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.pt"))
        inside = f" holding {', '.join(found)}" if found else " with no .pt file"
        example = next((name for name in ("best.pt", "last.pt", *found) if name in found), "best.pt")
        raise CheckpointError(f"{what} {path} is a folder{inside}; pass a file, e.g. {path / example}")
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    if is_safetensors(path):
        return read_safetensors(path, what, map_location)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle errors, truncated files, foreign objects
        raise CheckpointError(_unreadable_message(path, what, error)) from error


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` starts as a safetensors file does: an 8-byte little-endian header length,
    then the JSON header."""
    with path.open("rb") as file:
        head = file.read(9)
    return len(head) == 9 and head[8:] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= 100_000_000


def read_safetensors(path: Path, what: str = "weights file", map_location: str | torch.device = "cpu") -> dict:
    """A safetensors file: the checkpoint dict :func:`pixelwise.engine.export.export_safetensors`
    wrote (its metadata under the ``"pixelwise"`` key, the tensors under ``"model"``), or, for any
    other safetensors file, its tensors as a state dict."""
    try:
        from safetensors import safe_open
    except ImportError as error:
        raise ImportError(f"{what} {path} is a safetensors file; reading it needs the safetensors package: "
                          "pip install 'pixelwise[safetensors]'") from error
    device = str(map_location)
    try:
        with safe_open(str(path), framework="pt", device=device) as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (not a dict)
    except Exception as error:  # a truncated or corrupt header
        raise CheckpointError(f"cannot read {what} {path} as safetensors: {error}") from error
    if "pixelwise" not in metadata:
        return tensors
    try:
        meta = json.loads(metadata["pixelwise"])
    except ValueError as error:
        raise CheckpointError(f"{what} {path}: its 'pixelwise' metadata is not JSON ({error})") from error
    return {**meta, "model": tensors}


def _unreadable_message(path: Path, what: str, error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``path``, said for a pixelwise user."""
    refused = re.search(r"GLOBAL ([\w.]+)", str(error))
    if refused is None:
        return f"cannot read {what} {path}: {error}"
    name = refused.group(1)
    if name.startswith(("torch.nn.modules.", "torchvision.models.", "pixelwise.")) or name.endswith("Module"):
        return (f"{path} is a whole pickled model ({name}, written by torch.save(model)), not a checkpoint: "
                "pixelwise only reads files of tensors, which cannot run code when opened. Save the weights "
                "with torch.save(model.state_dict(), FILE) and load them with `pixelwise train --init-from FILE`, "
                "backbone_weights=FILE or model.load_state_dict(torch.load(FILE)); a file you trust can be "
                "converted once: torch.save(torch.load(PATH, weights_only=False).state_dict(), FILE)")
    return (f"cannot read {what} {path}: it holds Python objects ({name}) besides tensors, and pixelwise only "
            "opens files that cannot run code (torch.load(weights_only=True))")


def upgrade_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` with the names of an earlier version renamed as the modules of ``model`` that
    declare ``legacy_keys`` say (:class:`pixelwise.models.SegmentationModel`), at any depth."""
    from pixelwise.models.base import rename_legacy_keys

    upgraded = dict(state_dict)
    for name, module in model.named_modules():
        renamed = getattr(module, "legacy_keys", None)
        if renamed:
            rename_legacy_keys(upgraded, f"{name}." if name else "", renamed)
    return upgraded


def load_model_state(model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str) -> None:
    """``model.load_state_dict`` with an error that lists every mismatch, not just the first."""
    state_dict = upgrade_state_dict(model, state_dict)
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
    state_dict = read_torch_file(path, "weights file")
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
    candidates = [upgrade_state_dict(model, candidate) for candidate in candidates]
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
