"""Training, evaluation and prediction: the Python equivalents of the CLI commands.

The names are imported on first use (PEP 562), so that ``pixelwise.engine.config`` and the
command line's ``--help`` load without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "build_trainer": "builders", "load_model": "builders", "train": "builders",
    "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "ConfigError": "config", "TrainConfig": "config",
    "Evaluators": "evaluator", "SemanticEvaluator": "evaluator", "evaluate": "evaluator",
    "inference_on_dataset": "evaluator",
    "InferenceOptions": "inference", "predict_mask": "inference", "predict_files": "predictor",
    "export_onnx": "onnx", "load_onnx_model": "onnx", "PanopticEvaluator": "panoptic", "predict_panoptic": "panoptic",
    "MaskAPEvaluator": "instance", "build_task_dataset": "tasks", "task_evaluator": "tasks",
    "InferenceModel": "optimize", "optimize_for_inference": "optimize",
    "Trainer": "trainer", "TrainingError": "trainer",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
