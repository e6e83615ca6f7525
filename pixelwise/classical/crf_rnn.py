"""CRF-as-RNN: mean-field inference in the dense CRF as a trainable layer.

Zheng, Jayasumana, Romera-Paredes, Vineet, Su, Du, Huang & Torr 2015, "Conditional Random
Fields as Recurrent Neural Networks" (ICCV). Each mean-field iteration of the fully connected
CRF (:func:`pixelwise.classical.dense_crf`) is written as differentiable steps (section 4):

1. normalise: ``Q = softmax(Z)``, starting from the network's logits ``Z = U``;
2. message passing: ``Q~_m = K~_m Q`` for the smoothness and the appearance kernel
   (permutohedral-lattice filtering: splat, blur and slice are linear maps, so gradients flow
   through them by the transposed filter);
3. weighting the filter outputs: ``Q^(l) = sum_m w_m^(l) Q~_m(l)``, one learnable weight per
   kernel and per class (the paper's "1x1 convolution with M input channels");
4. compatibility transform: ``P(l) = sum_l' mu(l, l') Q^(l')`` with a learnable ``C x C`` matrix
   ``mu`` initialised to the Potts model ``[l != l']``;
5. adding the unary: ``Z = U - P``.

After ``T`` iterations the layer returns ``Z`` (refined logits; ``softmax(Z)`` is the CRF's
``Q``). With Potts ``mu`` and class-independent weights equal to ``pos_w`` / ``bi_w``, the layer
computes exactly :func:`~pixelwise.classical.dense_crf` on ``softmax(U)``.

The defaults are the values of the authors' released model (github.com/torrvision/crfasrnn,
``TVG_CRFRNN_new_deploy.prototxt``): ``theta_alpha = 160`` (bi_xy_std), ``theta_beta = 3``
(bi_rgb_std), ``theta_gamma = 3`` (pos_xy_std), spatial weight 3, bilateral weight 5, and the
paper's ``T = 5`` iterations for training (the deploy file uses 10: pass ``iterations=10`` at
test time). Kernels are symmetrically normalised as in Krähenbühl's code (the Caffe layer divides
by the row sums instead), so that the layer and :func:`dense_crf` agree.

>>> import torch
>>> crf = CRFRNN(num_classes=3, iterations=2)
>>> logits = torch.randn(1, 3, 8, 9)
>>> image = torch.randint(0, 256, (1, 3, 8, 9), dtype=torch.uint8)
>>> crf(logits, image).shape
torch.Size([1, 3, 8, 9])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pixelwise.classical.crf import dense_crf_kernels
from pixelwise.classical.permutohedral import PermutohedralLattice
from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize
from pixelwise.registry import unexpected_arguments

__all__ = ["CRFRNN", "CRFRNNModel", "with_crf_rnn"]


class CRFRNN(nn.Module):
    """The CRF-RNN layer: ``forward(logits N x C x H x W, image N x 3 x H x W) -> logits``.

    ``image`` is the *un-normalised* RGB image: uint8, or float in 0..255 (the kernel widths are
    in those units). Learnable parameters: ``compatibility`` (``C x C``, Potts init) and
    ``kernel_weights`` (``2 x C``: smoothness and appearance weight per class).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        iterations: int = 5,
        pos_xy_std: float = 3.0,
        pos_w: float = 3.0,
        bi_xy_std: float = 160.0,
        bi_rgb_std: float = 3.0,
        bi_w: float = 5.0,
    ) -> None:
        super().__init__()
        if num_classes < 1 or iterations < 0:
            raise ValueError(f"need num_classes >= 1 and iterations >= 0, got {num_classes} and {iterations}")
        self.num_classes = num_classes
        self.iterations = iterations
        self.kernel_options = {"pos_xy_std": pos_xy_std, "bi_xy_std": bi_xy_std, "bi_rgb_std": bi_rgb_std}
        self.compatibility = nn.Parameter(1.0 - torch.eye(num_classes))
        self.kernel_weights = nn.Parameter(torch.tensor([[pos_w], [bi_w]]).repeat(1, num_classes))

    def forward(self, logits: Tensor, image: Tensor) -> Tensor:
        _check_pair(logits, image, self.num_classes)
        batch, classes, height, width = logits.shape
        # One lattice per image and kernel, joined block-diagonally: the whole batch is filtered
        # in one call per kernel and iteration (the images stay independent).
        with torch.no_grad():
            per_image = [dense_crf_kernels(picture.permute(1, 2, 0), **self.kernel_options) for picture in image]
            kernels = [PermutohedralLattice.block_diagonal(list(parts)) for parts in zip(*per_image)]
        unary = logits.permute(0, 2, 3, 1).reshape(-1, classes)  # pixels of image 0, then image 1, ...
        weights = self.kernel_weights.to(unary.dtype)
        compatibility = self.compatibility.to(unary.dtype)
        refined = unary
        for _ in range(self.iterations):
            # Softmax over the classes of N x C rows, computed on the transposed view: torch's CPU
            # kernel is several times faster along a strided dim than along a short contiguous one.
            q = torch.softmax(refined.t(), 0).t()
            weighted = sum(kernel.filter(q) * weight for kernel, weight in zip(kernels, weights))
            refined = unary - weighted @ compatibility.t()
        return refined.reshape(batch, height, width, classes).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        options = ", ".join(f"{key}={value}" for key, value in self.kernel_options.items())
        return f"num_classes={self.num_classes}, iterations={self.iterations}, {options}"


def _check_pair(logits: Tensor, image: Tensor, num_classes: int) -> None:
    if logits.ndim != 4 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must be N x {num_classes} x H x W, got shape {tuple(logits.shape)}")
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be N x 3 x H x W (RGB, un-normalised), got shape {tuple(image.shape)}")
    if image.shape[0] != logits.shape[0] or image.shape[2:] != logits.shape[2:]:
        raise ValueError(f"image {tuple(image.shape)} and logits {tuple(logits.shape)} differ in N, H or W")
    if image.dtype != torch.uint8 and not image.is_floating_point():
        raise TypeError(f"image must be uint8 or float in 0..255, got dtype {image.dtype}")


class CRFRNNModel(nn.Module):
    """``model`` followed by a :class:`CRFRNN`, end to end (Zheng et al. 2015 train FCN-8s + CRF-RNN).

    Keeps the library's output convention: ``forward(x)`` takes the normalised input
    ``N x 3 x H x W`` and returns logits ``N x C x H x W`` (in training mode, a model's
    ``{"out", "aux"}`` dict keeps its auxiliary logits and gets refined ``"out"``). The CRF needs
    the RGB image, which is reconstructed from ``x`` with
    :func:`pixelwise.data.transforms.denormalize` (``mean``/``std``, ImageNet by default) times
    255; pass the statistics the input was normalised with.

    >>> import torch
    >>> from pixelwise.models import create_model
    >>> model = with_crf_rnn(create_model("fcn8s_tiny", num_classes=3), iterations=1).eval()
    >>> model(torch.zeros(1, 3, 20, 24)).shape
    torch.Size([1, 3, 20, 24])
    """

    def __init__(self, model: nn.Module, crf: CRFRNN, *, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.model = model
        self.crf = crf
        self.num_classes = crf.num_classes  # like every model, for tiling and the CLI
        self.aux_weights = tuple(getattr(model, "aux_weights", ()))  # the auxiliary outputs pass through
        self.mean, self.std = tuple(mean), tuple(std)

    def forward(self, x: Tensor) -> Tensor | dict[str, Any]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"CRF-RNN needs RGB input N x 3 x H x W, got shape {tuple(x.shape)}")
        out = self.model(x)
        image = denormalize(x.detach(), self.mean, self.std) * 255
        if isinstance(out, dict):
            return {**out, "out": self.crf(out["out"], image)}
        return self.crf(out, image)


def with_crf_rnn(model: nn.Module, *, num_classes: int | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, **crf_kwargs: Any) -> CRFRNNModel:
    """Append a :class:`CRFRNN` (``crf_kwargs``) to any model; ``num_classes`` defaults to the
    model's ``num_classes`` attribute (every :class:`~pixelwise.models.SegmentationModel` has one)."""
    unknown, accepted = unexpected_arguments(CRFRNN, crf_kwargs)
    if unknown:
        raise TypeError(f"CRF-RNN got unexpected argument(s) {', '.join(unknown)} (--crf-rnn-arg / crf_rnn_kwargs); "
                        f"it accepts {', '.join(sorted(set(accepted) - {'num_classes'}))}")
    num_classes = num_classes if num_classes is not None else getattr(model, "num_classes", None)
    if num_classes is None:
        raise ValueError(f"{type(model).__name__} has no num_classes attribute: pass num_classes=")
    return CRFRNNModel(model, CRFRNN(num_classes, **crf_kwargs), mean=mean, std=std)
