"""Fast inference: ``optimize_for_inference(model)`` folds batch norms, switches to channels-last and runs
under ``torch.inference_mode``; optionally ``torch.compile``.

Batch-norm folding. In eval mode a batch norm is the affine map ``y = gamma (x - mean) / sqrt(var + eps)
+ beta``; after a convolution ``x = W * z + b`` it folds into that convolution:
``W' = W * s`` per output channel and ``b' = (b - mean) s + beta`` with ``s = gamma / sqrt(var + eps)``.
The fold is exact when the batch norm is the convolution's only consumer. Which convolution feeds which
batch norm is read from the graph ``torch.export`` records (every aten op carries the module that
called it), so the fold is sound for any model, whatever its ``forward`` does with the tensors. A model
``torch.export`` cannot trace falls back to the pairs it can prove from structure alone: a convolution
directly followed by a batch norm inside a plain ``nn.Sequential``.

The folded model is a copy; the original is left untouched. The result is still an ``nn.Module`` that
takes any input size (the padding of :class:`pixelwise.models.SegmentationModel` stays in Python).

>>> import torch
>>> from pixelwise.models import create_model
>>> model = create_model("unet", num_classes=2, base_width=4, depth=2).eval()
>>> fast = optimize_for_inference(model, example_size=(32, 32))
>>> fast.folded_batch_norms, sum(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
(10, 0)
>>> x = torch.randn(1, 3, 37, 53)
>>> bool((fast(x) - model(x)).abs().max() < 1e-4)
True
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["InferenceModel", "fold_batch_norms", "optimize_for_inference"]

_CONV_OPS = ("aten.conv2d.default", "aten.convolution.default")
_BN_OPS = ("aten.batch_norm.default", "aten._native_batch_norm_legit_no_training.default")


class InferenceModel(nn.Module):
    """The optimised model: channels-last input, ``torch.inference_mode``, the folded copy inside.

    ``folded_batch_norms`` counts the batch norms folded away; ``pairs_from`` says how they were found
    (``"graph"`` or ``"sequential"``); ``compiled`` whether ``torch.compile`` wraps the forward.
    """

    def __init__(self, model: nn.Module, *, channels_last: bool, compiled: bool, folded: int, pairs_from: str) -> None:
        super().__init__()
        self.model = model
        self.channels_last = channels_last
        self.compiled = compiled
        self.folded_batch_norms = folded
        self.pairs_from = pairs_from
        self._forward = torch.compile(model, dynamic=True) if compiled else model

    def forward(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            return self._forward(x)


def optimize_for_inference(model: nn.Module, *, channels_last: bool = True, compile: bool = False,
                           example_size: tuple[int, int] = (64, 64)) -> InferenceModel:
    """A copy of ``model`` for inference: eval mode, batch norms folded, channels-last, inference mode.

    Args:
        model: any ``nn.Module`` taking ``N x C x H x W``; pixelwise models read their input channels.
        channels_last: store activations NHWC (oneDNN's preferred layout on CPUs; cuDNN's with tensor cores).
        compile: wrap the forward in ``torch.compile`` (inductor; needs a C++ compiler on the CPU).
            ``benchmarks/inference.py`` measures where it helps.
        example_size: the ``H x W`` of the example input used to trace which convolution feeds which
            batch norm (the pairs do not depend on it).

    Numerically equal to the eager model within float32 rounding (tests/engine/test_optimize.py checks
    every registered model within 1e-4).
    """
    folded_model = copy.deepcopy(model).eval()
    example = torch.zeros(1, getattr(model, "in_channels", 3), *example_size, device=_device(model))
    pairs, pairs_from = conv_bn_pairs(folded_model, example)
    count = fold_batch_norms(folded_model, pairs)
    if channels_last:
        folded_model = folded_model.to(memory_format=torch.channels_last)
    return InferenceModel(folded_model, channels_last=channels_last, compiled=compile, folded=count,
                          pairs_from=pairs_from)


def conv_bn_pairs(model: nn.Module, example: Tensor) -> tuple[list[tuple[str, str]], str]:
    """``(conv name, batch-norm name)`` pairs where the batch norm is the convolution's only consumer.

    Read from the ``torch.export`` graph of ``model(example)``; when export fails, from plain
    ``nn.Sequential`` containers (a warning says so).
    """
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.export.export(model, (example,), strict=False).graph
    except Exception as error:  # noqa: BLE001 - any tracing failure leaves the structural pairs
        warnings.warn(f"optimize_for_inference: torch.export could not trace the model ({type(error).__name__}); "
                      "folding only convolution/batch-norm pairs inside nn.Sequential", stacklevel=3)
        return list(_sequential_pairs(model)), "sequential"
    return _graph_pairs(graph), "graph"


def _leaf_module(node: torch.fx.Node) -> str | None:
    stack = node.meta.get("nn_module_stack")
    return next(reversed(stack.values()))[0] if stack else None


def _graph_pairs(graph: torch.fx.Graph) -> list[tuple[str, str]]:
    """Pairs where every call of the convolution feeds only the batch norm and every call of the batch
    norm reads that convolution (a module called several times, as under multi-scale inputs, qualifies
    when all its calls do)."""
    calls = [node for node in graph.nodes if node.op == "call_function"]
    conv_calls = Counter(_leaf_module(node) for node in calls if str(node.target) in _CONV_OPS)
    bn_calls = Counter(_leaf_module(node) for node in calls if str(node.target) in _BN_OPS)
    fed: dict[str, set[str | None]] = {}
    for node in calls:
        if str(node.target) in _CONV_OPS:
            users = list(node.users)
            only_bn = len(users) == 1 and str(users[0].target) in _BN_OPS and users[0].args[0] is node
            fed.setdefault(_leaf_module(node), set()).add(_leaf_module(users[0]) if only_bn else None)
    return [(conv, next(iter(bns))) for conv, bns in fed.items()
            if conv and len(bns) == 1 and None not in bns and bn_calls[next(iter(bns))] == conv_calls[conv]]


def _sequential_pairs(model: nn.Module) -> Iterator[tuple[str, str]]:
    for name, module in model.named_modules():
        if type(module).forward is not nn.Sequential.forward:
            continue
        children = list(module.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                prefix = f"{name}." if name else ""
                yield prefix + conv_name, prefix + bn_name


def fold_batch_norms(model: nn.Module, pairs: list[tuple[str, str]]) -> int:
    """Fold each batch norm of ``pairs`` into its convolution and replace it by ``nn.Identity``; returns
    how many were folded (pairs whose batch norm uses batch statistics in eval mode are left alone)."""
    modules = dict(model.named_modules())
    folded = 0
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        if type(conv) is not nn.Conv2d or not isinstance(bn, nn.BatchNorm2d) or bn.running_var is None:
            continue
        _fold(conv, bn)
        parent_name, _, attribute = bn_name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, attribute, nn.Identity())
        folded += 1
    return folded


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale + (bn.bias if bn.bias is not None else 0.0)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
