"""Training, evaluation and prediction: the Python equivalents of the CLI commands."""

from pixelwise.engine.builders import build_trainer, load_model, train
from pixelwise.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pixelwise.engine.config import ConfigError, TrainConfig
from pixelwise.engine.evaluator import SegmentationEvaluator, evaluate
from pixelwise.engine.inference import predict_files, predict_mask
from pixelwise.engine.trainer import Trainer, TrainingError

__all__ = [
    "CheckpointError", "ConfigError", "SegmentationEvaluator", "TrainConfig", "Trainer", "TrainingError",
    "build_trainer", "evaluate", "load_checkpoint", "load_model", "predict_files", "predict_mask",
    "save_checkpoint", "train",
]
