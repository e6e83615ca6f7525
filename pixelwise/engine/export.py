"""Exported models: weights and what rebuilds their model, in formats that cannot run code.

``export_safetensors`` writes a checkpoint's weights as a safetensors file, with the model's
name, arguments and classes as JSON in its metadata; :func:`pixelwise.engine.load_model`,
``--checkpoint`` and ``--init-from`` read it back (:func:`pixelwise.weights.read_safetensors`).
Training state (optimizer, RNG) is not exported: the file is for using a model, not resuming.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pixelwise.engine.checkpoint import FORMAT
from pixelwise.files import atomic_write

# The checkpoint keys that describe a model (pixelwise.engine.builders.model_meta), exported with it.
MODEL_KEYS = ("model_name", "model_kwargs", "num_classes", "in_channels", "classes", "palette",
              "ignore_index", "crf_rnn", "dataset", "config")
FORMATS = ("safetensors",)


def export_safetensors(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """Write ``checkpoint["model"]`` and the keys that describe its model to ``path`` (atomically)."""
    try:
        from safetensors.torch import save
    except ImportError as error:
        raise ImportError("exporting safetensors needs the safetensors package: "
                          "pip install 'pixelwise[safetensors]'") from error
    # Own, contiguous copies: safetensors refuses tensors that share memory (tied weights).
    tensors = {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in checkpoint["model"].items()}
    meta = {"format": FORMAT, **{key: checkpoint.get(key) for key in MODEL_KEYS}}
    data = save(tensors, metadata={"pixelwise": json.dumps(meta)})
    return atomic_write(path, lambda file: file.write(data), "safetensors file")


def untrained_checkpoint(model_name: str, num_classes: int, in_channels: int = 3,
                         model_kwargs: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """A checkpoint dict of a freshly initialised registered model (weights seeded by ``seed``)."""
    from pixelwise.engine.builders import build_model

    meta = {"model_name": model_name, "model_kwargs": dict(model_kwargs or {}), "num_classes": num_classes,
            "in_channels": in_channels, "classes": [f"class {index}" for index in range(num_classes)],
            "palette": None, "ignore_index": 255, "crf_rnn": None, "dataset": None, "config": {}}
    torch.manual_seed(seed)
    return {**meta, "model": build_model(meta, meta["model_kwargs"]).state_dict()}
