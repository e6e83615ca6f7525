"""Segmentation metrics: confusion-matrix scores (pixel accuracy, mIoU, fwIoU, Dice), panoptic quality."""

from pixelwise.metrics.confusion import (
    ConfusionMatrix,
    confusion_matrix,
    format_table,
    per_class_table,
    scores_from_confusion_matrix,
)
from pixelwise.metrics.panoptic import PanopticQuality, format_panoptic_table

__all__ = [
    "ConfusionMatrix",
    "PanopticQuality",
    "confusion_matrix",
    "format_panoptic_table",
    "format_table",
    "per_class_table",
    "scores_from_confusion_matrix",
]
