"""Segmentation metrics: confusion-matrix scores (pixel accuracy, mIoU, fwIoU, Dice)."""

from pixelwise.metrics.confusion import (
    ConfusionMatrix,
    confusion_matrix,
    format_table,
    per_class_table,
    scores_from_confusion_matrix,
)

__all__ = [
    "ConfusionMatrix",
    "confusion_matrix",
    "format_table",
    "per_class_table",
    "scores_from_confusion_matrix",
]
