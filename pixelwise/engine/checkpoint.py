"""One checkpoint format: a dict of tensors and plain values, written atomically.

Loading always uses ``torch.load(weights_only=True)``, so opening a checkpoint can never
execute code. A checkpoint carries what is needed to rebuild its model without the recipe
(``model_name``, ``model_kwargs``, ``num_classes``, ``in_channels``, ``classes``) and, for
training checkpoints, everything needed to resume bit-for-bit (optimizer, scheduler, scaler,
RNG states, epoch and iteration, the full config).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixelwise.files import atomic_write
from pixelwise.weights import CheckpointError, load_model_state, read_torch_file  # noqa: F401  (re-exported)

FORMAT = "pixelwise-checkpoint/1"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`pixelwise.files.atomic_write`): a crash, a kill
    or a full disk while writing leaves the previous file intact."""
    return atomic_write(path, lambda file: torch.save({"format": FORMAT, **state}, file), "checkpoint")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (no code execution) and check its format tag."""
    return check_format(read_torch_file(path, "checkpoint", map_location), path)


def check_format(state: Any, path: str | Path) -> dict[str, Any]:
    """``state`` (a file's contents), if it is a pixelwise checkpoint; else an error naming ``path``."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pixelwise checkpoint (expected format {FORMAT!r})")
    return state


def checkpoint_palette(checkpoint: dict[str, Any]) -> np.ndarray:
    """The ``num_classes x 3`` colours of a checkpoint's classes: its dataset's, or the default palette."""
    from pixelwise.visualize import default_palette

    palette = checkpoint.get("palette")
    return default_palette(checkpoint["num_classes"]) if palette is None else np.asarray(palette, np.uint8)


def capture_rng_state() -> dict[str, Any]:
    """The state of every random generator training touches, as tensors and plain values."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_plain(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _numpy_state_from_plain(state: dict[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["cached"])


def _as_tuple(value: Any) -> Any:
    """Pickle round trips may turn the nested tuples of ``random.getstate`` into lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
