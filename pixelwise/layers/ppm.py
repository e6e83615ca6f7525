"""The pyramid pooling module (Zhao et al. 2017, PSPNet, section 3.2), in the authors' PyTorch names.

The feature map is average-pooled to ``bins x bins`` grids (1, 2, 3, 6), each pooled map reduced
by a 1x1 conv -> BN -> ReLU to ``reduction`` maps and upsampled back (bilinear, corners aligned,
as the authors' code), and the input is concatenated with them: ``in + len(bins) * reduction``
maps. The branches are ``features.0 ... features.3`` as in the authors' ``PPM``, so their
weights load key for key.

>>> import torch
>>> ppm = PyramidPooling(16, reduction=4).eval()
>>> ppm(torch.zeros(1, 16, 9, 11)).shape, ppm.out_channels
(torch.Size([1, 32, 9, 11]), 32)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def adaptive_average(x: Tensor, bins: int, dim: int) -> Tensor:
    """``F.adaptive_avg_pool2d``'s average along one ``dim``: cell ``i`` of ``bins`` averages the indices
    ``[floor(i n / bins), ceil((i + 1) n / bins))`` of the ``n`` there, computed from prefix sums.

    The window bounds are arithmetic on the size, not Python numbers, so an ONNX graph (which has no
    adaptive pooling) keeps them for every input size.

    >>> x = torch.randn(1, 2, 5, 7)
    >>> torch.allclose(adaptive_average(adaptive_average(x, 3, 2), 3, 3), F.adaptive_avg_pool2d(x, 3), atol=1e-6)
    True
    """
    size = x.shape[dim]
    prefix = torch.cat([torch.zeros_like(x.narrow(dim, 0, 1)), x.cumsum(dim)], dim)
    cells = torch.arange(bins, device=x.device)
    start, end = cells * size // bins, ((cells + 1) * size + bins - 1) // bins
    shape = [bins if axis == dim % x.dim() else 1 for axis in range(x.dim())]
    count = (end - start).to(x.dtype).view(shape)
    return (prefix.index_select(dim, end) - prefix.index_select(dim, start)) / count


class AdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d(output_size)`` (square grids) through :func:`adaptive_average`: the same values,
    and an ONNX export keeps the windows for every input size.

    >>> x = torch.randn(2, 3, 9, 11)
    >>> torch.allclose(AdaptiveAvgPool2d(6)(x), F.adaptive_avg_pool2d(x, 6), atol=1e-6)
    True
    """

    def __init__(self, output_size: int) -> None:
        super().__init__()
        self.output_size = output_size  # nn.AdaptiveAvgPool2d's name

    def forward(self, x: Tensor) -> Tensor:
        return adaptive_average(adaptive_average(x, self.output_size, -2), self.output_size, -1)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class PyramidPooling(nn.Module):
    """See the module docstring; ``bins`` are the grid sides, ``reduction`` the maps per branch."""

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6), reduction: int | None = None) -> None:
        super().__init__()
        if not bins or not all(isinstance(b, int) and b >= 1 for b in bins):
            raise ValueError(f"pyramid pooling bins must be positive ints, got {bins!r}")
        reduction = reduction or in_channels // len(bins)
        self.features = nn.ModuleList(
            nn.Sequential(AdaptiveAvgPool2d(bin_size), nn.Conv2d(in_channels, reduction, 1, bias=False),
                          nn.BatchNorm2d(reduction), nn.ReLU(inplace=True))
            for bin_size in bins)
        self.out_channels = in_channels + len(bins) * reduction

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(branch(x), size=size, mode="bilinear", align_corners=True) for branch in self.features]
        return torch.cat([x, *pooled], dim=1)
