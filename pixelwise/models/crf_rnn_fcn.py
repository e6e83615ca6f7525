"""FCN-8s with the CRF-RNN layer, trained end to end (Zheng, Jayasumana, Romera-Paredes, Vineet, Su, Du,
Huang & Torr 2015, "Conditional Random Fields as Recurrent Neural Networks", ICCV, arXiv:1502.03240).

The paper's network is the VGG-16 FCN-8s of Long et al. (``pixelwise.models.fcn``,
registered as ``fcn8s``) whose logits are the unaries ``U`` of a fully connected CRF; ``T`` mean-field
iterations of that CRF, each written as differentiable network layers (message passing by
permutohedral-lattice filtering, the learned filter weights, the learned compatibility transform,
adding the unaries), refine them. The layer is :class:`pixelwise.classical.crf_rnn.CRFRNN`, with the
kernel widths and weights of the authors' released model (its module docstring); here:

- ``T = 5`` iterations in training and ``T = 10`` at test time, as in the paper (fewer in training,
  against vanishing and exploding gradients and for time); ``train()`` / ``eval()`` switch between
  them;
- the CRF's appearance kernel needs the image's colours in 0..255. The model's input is the
  normalised image, so the colours are recovered from it (``x * std + mean``, ImageNet's statistics
  unless given; one grey channel is repeated into three), detached: the CRF does not
  differentiate through the image. This is :class:`~pixelwise.classical.crf_rnn.CRFRNNModel`'s
  reconstruction, in a :class:`~pixelwise.models.SegmentationModel`, so that the registered model
  follows the library's output convention and input checks;
- the submodules are ``model`` (the FCN-8s) and ``crf``, the names ``CRFRNNModel`` gives them, so a
  state dict of this model and one of ``fcn8s`` trained with ``crf_rnn: true`` are interchangeable.

Parameters: FCN-8s's plus the CRF's ``C^2`` compatibility and ``2 C`` kernel weights: 483 with
PASCAL VOC's 21 classes, 134,377,346 in all; 134,363,234 without the learned x2 upsamplings, which
is how ``fcn8s`` reads the FCN paper's 134.36M (``tests/models/test_crf_rnn_fcn.py``).

Export: the permutohedral lattice is built from the image's colours and positions, its number of
vertices and its neighbour tables depend on the data, so no graph can record the CRF's steps
(:data:`EXPORT_LIMITATION`). Under ``torch.export`` the model therefore calls the CRF as one custom
operator, ``pixelwise::crf_rnn`` (:func:`crf_rnn_op`: the eager layer inside, the output shaped like
the logits), so the exported program runs exactly what the module runs and graph-based tools
(``optimize_for_inference``) see every other layer. ONNX has no such operator: only the FCN-8s
exports to ONNX (this model's ``model.*`` weights load into ``fcn8s``).

>>> import torch
>>> model = CRFRNNFCN8s(num_classes=3, width_divisor=32, zero_init_scores=False, test_iterations=1).eval()
>>> model(torch.zeros(1, 3, 20, 24)).shape
torch.Size([1, 3, 20, 24])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from pixelwise.classical.crf_rnn import CRFRNN
from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from pixelwise.metadata import TITAN_X_VIA_ICNET, survey_speed
from pixelwise.models.base import SegmentationModel
from pixelwise.models.fcn import FCN
from pixelwise.registry import MODELS

EXPORT_LIMITATION = ("its CRF-RNN layer cannot be written in ONNX: the permutohedral lattice has as many vertices as "
                     "the image has distinct colours and positions (data-dependent shapes and neighbour tables); "
                     "torch.export records it as the custom operator pixelwise::crf_rnn")
GREY_MEAN, GREY_STD = (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)


@torch.library.custom_op("pixelwise::crf_rnn", mutates_args=())
def crf_rnn_op(logits: Tensor, image: Tensor, compatibility: Tensor, kernel_weights: Tensor, iterations: int,
               pos_xy_std: float, bi_xy_std: float, bi_rgb_std: float) -> Tensor:
    """:class:`CRFRNN` with these parameters and options as one operator (inference only, no gradient):
    what ``torch.export`` records for the layer. Same shapes and values as ``CRFRNN.forward``."""
    crf = CRFRNN(logits.shape[1], iterations=iterations, pos_xy_std=pos_xy_std, bi_xy_std=bi_xy_std,
                 bi_rgb_std=bi_rgb_std)
    with torch.no_grad():
        refined = torch.func.functional_call(
            crf, {"compatibility": compatibility, "kernel_weights": kernel_weights}, (logits, image))
    return refined.contiguous()


@crf_rnn_op.register_fake
def _crf_rnn_shape(logits: Tensor, image: Tensor, compatibility: Tensor, kernel_weights: Tensor, iterations: int,
                   pos_xy_std: float, bi_xy_std: float, bi_rgb_std: float) -> Tensor:
    return torch.empty_like(logits)  # the refined logits are shaped like the unaries


def colour_image(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """The RGB image in 0..255 that the normalised ``x`` (``N x 3 x H x W``, or one grey channel,
    repeated) came from: ``clamp(x * std + mean, 0, 1) * 255``, detached.

    >>> image = colour_image(torch.ones(1, 1, 2, 2), (0.5,), (0.25,))  # grey 0.75
    >>> image.shape, image[0, :, 0, 0].tolist()
    (torch.Size([1, 3, 2, 2]), [191.25, 191.25, 191.25])
    """
    x = x.detach()
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    image = (x * std_t + mean_t).clamp(0.0, 1.0) * 255
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


class CRFRNNFCN8s(SegmentationModel):
    """FCN-8s followed by CRF-RNN; see the module docstring.

    Args:
        num_classes: output channels (logits).
        in_channels: 3 (RGB) or 1 (grey: its value is every colour channel of the CRF's image).
        width_divisor, backbone_weights, learn_upsampling, zero_init_scores: FCN-8s's
            (:class:`pixelwise.models.fcn.FCN`).
        train_iterations, test_iterations: mean-field iterations ``T`` in training and in eval mode.
        mean, std: the statistics the input was normalised with, one per input channel (None:
            ImageNet's; for a grey input their channel averages).
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, width_divisor: int = 1,
                 backbone_weights: str | Path | None = None, learn_upsampling: bool = True,
                 zero_init_scores: bool = True, train_iterations: int = 5, test_iterations: int = 10,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        if in_channels not in (1, 3):
            raise ValueError(f"crf_rnn_fcn8s: the CRF's appearance kernel reads colours, so in_channels must be "
                             f"3 (RGB) or 1 (grey), got {in_channels!r}")
        if isinstance(test_iterations, bool) or not isinstance(test_iterations, int) or test_iterations < 0:
            raise ValueError(f"crf_rnn_fcn8s: test_iterations must be an int >= 0, got {test_iterations!r}")
        super().__init__(num_classes=num_classes, in_channels=in_channels, size_multiple=1)
        self.model = FCN(num_classes=num_classes, output_stride=8, in_channels=in_channels,
                         width_divisor=width_divisor, backbone_weights=backbone_weights,
                         learn_upsampling=learn_upsampling, zero_init_scores=zero_init_scores)
        self.crf = CRFRNN(num_classes, iterations=train_iterations)
        self.train_iterations, self.test_iterations = train_iterations, test_iterations
        self.mean, self.std = _statistics(in_channels, mean, std)

    def train(self, mode: bool = True) -> CRFRNNFCN8s:
        """As ``nn.Module.train``, and the CRF runs ``train_iterations`` (``mode``) or ``test_iterations``."""
        super().train(mode)
        self.crf.iterations = self.train_iterations if mode else self.test_iterations
        return self

    def forward_padded(self, x: Tensor) -> Tensor:
        """The CRF-refined logits at the input resolution (FCN-8s aligns its logits to any size)."""
        logits, image = self.model(x), colour_image(x, self.mean, self.std)
        if torch.compiler.is_exporting():  # one opaque operator: see the module docstring
            return crf_rnn_op(logits, image, self.crf.compatibility, self.crf.kernel_weights, self.crf.iterations,
                              **self.crf.kernel_options)
        return self.crf(logits, image)


def _statistics(in_channels: int, mean: Sequence[float] | None,
                std: Sequence[float] | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    defaults = (IMAGENET_MEAN, IMAGENET_STD) if in_channels == 3 else (GREY_MEAN, GREY_STD)
    mean, std = tuple(defaults[0] if mean is None else mean), tuple(defaults[1] if std is None else std)
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"crf_rnn_fcn8s: mean and std need one value per input channel ({in_channels}), "
                         f"got {mean!r} and {std!r}")
    return mean, std


MODELS.register(
    "crf_rnn_fcn8s",
    paper="Zheng, Jayasumana, Romera-Paredes, Vineet, Su, Du, Huang & Torr 2015, Conditional Random Fields as "
    "Recurrent Neural Networks",
    arxiv="1502.03240",
    params=134_360_000,
    paper_kwargs={"num_classes": 21},
    params_note="FCN-8s's 134.36M (Long et al. 2015) plus the CRF's 21 * 21 + 2 * 21 = 483: 134,377,346 with the "
                "learned x2 upsamplings (134,363,234 without)",
    speed=[survey_speed(5, "CRF-RNN (Zheng et al., 2015)", "512x1024", fps=1.4, time_ms=700, miou=62.5,
                        hardware=TITAN_X_VIA_ICNET)],
    test_kwargs={"width_divisor": 32, "zero_init_scores": False, "train_iterations": 1, "test_iterations": 2},
    description="FCN-8s (VGG-16) whose logits are refined by 5 (training) / 10 (test) mean-field iterations of "
                "a dense CRF written as recurrent layers, trained end to end.",
)(CRFRNNFCN8s)
