"""Test-time augmentation: the model's class probabilities averaged over scales and flips.

The papers' multi-scale numbers (DeepLab, PSPNet: scales 0.5-1.75 and left-right flips) come
from this: the image is resized by each scale (bilinear), optionally mirrored, run through the
network; each output is mirrored back, resized to the input's size and turned into
probabilities, and the probabilities are averaged. The wrapper returns the log of the mean
probabilities, so anything that takes logits (argmax, a CRF, the sliding window) takes it.
Its cost is one forward pass per (scale, flip) pair, at that scale's size.

>>> import torch
>>> model = torch.nn.Conv2d(3, 2, 1).eval()
>>> tta = TestTimeAugmentation(model, scales=(0.5, 1.0), flip=True)
>>> tta.passes, tuple(tta(torch.randn(1, 3, 20, 30)).shape)
(4, (1, 2, 20, 30))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from pixelwise.models.base import split_outputs


def parse_scales(text: str) -> tuple[float, ...]:
    """``"0.5,0.75,1.0"`` -> ``(0.5, 0.75, 1.0)``; every scale positive.

    >>> parse_scales("0.5, 1,1.75")
    (0.5, 1.0, 1.75)
    """
    try:
        scales = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated scales such as 0.5,1.0,1.5, got {text!r}") from None
    if not scales or min(scales) <= 0:
        raise ValueError(f"every scale must be > 0, got {text!r}")
    return scales


class TestTimeAugmentation(nn.Module):
    """``model`` averaged over ``scales`` (factors of the input size) and, with ``flip``, mirror images."""

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(self, model: nn.Module, scales: Sequence[float] = (1.0,), flip: bool = False) -> None:
        super().__init__()
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive factors, got {tuple(scales)}")
        self.model, self.scales, self.flip = model, tuple(float(s) for s in scales), flip

    @property
    def num_classes(self) -> int | None:
        return getattr(self.model, "num_classes", None)

    @property
    def passes(self) -> int:
        """Forward passes per input."""
        return len(self.scales) * (2 if self.flip else 1)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        total = None
        for scale in self.scales:
            scaled = x if scale == 1 else F.interpolate(
                x, size=[max(1, round(side * scale)) for side in size], mode="bilinear", align_corners=False)
            for mirrored in (False, True) if self.flip else (False,):
                inputs = scaled.flip(-1) if mirrored else scaled
                logits = split_outputs(self.model(inputs))[0].float()
                logits = logits.flip(-1) if mirrored else logits
                if logits.shape[-2:] != size:
                    logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
                probabilities = logits.softmax(1)
                total = probabilities if total is None else total + probabilities
        return (total / self.passes).log()
