"""The output convention every model follows, and the padding that lets a model take any input size.

Convention (docs/architecture.md, "Models"): in eval mode ``model(x)`` returns logits
``N x C x H x W`` at the input resolution, for any ``H, W``. In training mode a model with
auxiliary heads returns ``{"out": logits, "aux": [logits, ...]}`` (all at the input
resolution); a model without them returns the tensor. ``split_outputs`` reads either. Panoptic
models (``task="panoptic"`` in their metadata) return a dict of their predictions instead, in both
modes; their contract is in :mod:`pixelwise.models.panoptic_deeplab`.

``SegmentationModel`` implements the convention once: a subclass writes ``forward_padded``
for inputs whose sides are multiples of ``size_multiple`` and may return logits at a lower
stride; the base class pads, upsamples bilinearly and crops.

>>> import torch
>>> class Halve(SegmentationModel):  # a 1x1 conv applied at stride 2
...     def __init__(self):
...         super().__init__(num_classes=2, in_channels=3, size_multiple=2)
...         self.score = torch.nn.Conv2d(3, 2, 1)
...     def forward_padded(self, x):
...         return self.score(x[..., ::2, ::2])
>>> Halve()(torch.zeros(1, 3, 5, 7)).shape
torch.Size([1, 2, 5, 7])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

ModelOutput = Tensor | dict[str, Any]


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Zero-pad the bottom and right of ``x`` (``... x H x W``) so that H and W are multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)``; ``crop_to_size`` undoes the padding.

    Zeros rather than reflection, for three reasons: (1) model inputs are normalised with the
    dataset mean, so 0 is the mean colour, the same value every padded 3x3 convolution already
    sees beyond the border; (2) reflection needs the pad to be smaller than the side, which
    fails for images smaller than the multiple (a 16x16 crop into a stride-32 net); (3) a
    constant pad exports cleanly. Padding only the bottom and right keeps the crop a plain
    slice and leaves the top-left pixel grid aligned with the pooling grid.

    >>> import torch
    >>> padded, size = pad_to_multiple(torch.ones(1, 3, 37, 53), 32)
    >>> tuple(padded.shape), size, padded[0, 0, 40, 0].item()
    ((1, 3, 64, 64), (37, 53), 0.0)
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    height, width = x.shape[-2], x.shape[-1]
    pad_bottom, pad_right = -height % multiple, -width % multiple
    if pad_bottom or pad_right:
        x = F.pad(x, (0, pad_right, 0, pad_bottom))
    return x, (height, width)


def crop_to_size(x: Tensor, size: Sequence[int]) -> Tensor:
    """Keep the top-left ``size = (H, W)`` of ``x``: the inverse of ``pad_to_multiple``.

    >>> import torch
    >>> crop_to_size(torch.zeros(2, 4, 64, 64), (37, 53)).shape
    torch.Size([2, 4, 37, 53])
    """
    return x[..., : size[0], : size[1]]


def split_outputs(out: ModelOutput) -> tuple[Tensor, list[Tensor]]:
    """Return ``(logits, aux_logits)`` from either form of model output.

    >>> import torch
    >>> logits, aux = split_outputs(torch.zeros(1, 2, 4, 4))
    >>> tuple(logits.shape), aux
    ((1, 2, 4, 4), [])
    >>> logits, aux = split_outputs({"out": torch.zeros(1), "aux": [torch.ones(1)]})
    >>> len(aux)
    1
    """
    if isinstance(out, Tensor):
        return out, []
    if isinstance(out, Mapping) and "out" in out:
        return out["out"], list(out.get("aux", []))
    raise TypeError(
        "a model output is a logits tensor or a dict {'out': logits, 'aux': [logits, ...]}, "
        f"got {type(out).__name__}" + (f" with keys {sorted(out)}" if isinstance(out, Mapping) else "")
    )


def _to_input_size(logits: Tensor, padded_size: Sequence[int], size: Sequence[int]) -> Tensor:
    """Upsample stride-s logits of a padded input bilinearly to the padded size, then crop the padding."""
    if tuple(logits.shape[-2:]) != tuple(padded_size):
        logits = F.interpolate(logits, size=tuple(padded_size), mode="bilinear", align_corners=False)
    return crop_to_size(logits, size)


def rename_legacy_keys(state_dict: dict[str, Any], prefix: str, renamed: Mapping[str, str | None]) -> None:
    """Rename, in place, the keys under ``prefix`` that start with an old name of ``renamed`` to the new
    one; an old name mapped to None is dropped (a tensor the model now recomputes, not stores).

    >>> state = {"net.features.0.weight": 1, "net.upscore.weight": 2, "net.head.bias": 3}
    >>> rename_legacy_keys(state, "net.", {"features.": "backbone.features.", "upscore.weight": None})
    >>> sorted(state)
    ['net.backbone.features.0.weight', 'net.head.bias']
    """
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        local = key[len(prefix):]
        old = next((old for old in renamed if local.startswith(old)), None)
        if old is not None:
            value = state_dict.pop(key)
            if renamed[old] is not None:
                state_dict[prefix + renamed[old] + local[len(old):]] = value


def _rename_legacy_keys_hook(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    rename_legacy_keys(state_dict, prefix, module.legacy_keys)


class SegmentationModel(nn.Module):
    """Base class implementing the output convention and the any-input-size padding.

    Subclasses implement ``forward_padded(x)`` for ``x`` whose H and W are multiples of
    ``size_multiple`` (the total stride of the network), returning logits (or the dict form,
    for auxiliary heads) at that input's resolution or any integer stride of it.

    ``aux_weights`` are the weights of the auxiliary losses, one per auxiliary output, that the
    trainer applies (a property of the model: PSPNet's 0.4, DeepLab v2's multi-scale 1.0s).
    ``legacy_keys`` maps state-dict names of an earlier version to today's (None: no longer stored),
    so checkpoints saved before a rename still load, through ``load_state_dict`` too.
    """

    legacy_keys: ClassVar[Mapping[str, str | None]] = {}

    def __init__(self, *, num_classes: int, in_channels: int, size_multiple: int,
                 aux_weights: Sequence[float] = ()) -> None:
        super().__init__()
        arguments = {"num_classes": num_classes, "in_channels": in_channels, "size_multiple": size_multiple}
        for name, value in arguments.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got {value!r}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.size_multiple = size_multiple
        self.aux_weights = tuple(float(weight) for weight in aux_weights)
        if self.legacy_keys:
            self._register_load_state_dict_pre_hook(_rename_legacy_keys_hook, with_module=True)

    def forward_padded(self, x: Tensor) -> ModelOutput:
        raise NotImplementedError(f"{type(self).__name__} must implement forward_padded")

    def forward(self, x: Tensor) -> ModelOutput:
        """Logits ``N x num_classes x H x W`` for ``x`` of shape ``N x in_channels x H x W``, any H, W."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input N x {self.in_channels} x H x W, got {tuple(x.shape)}"
            )
        padded, size = pad_to_multiple(x, self.size_multiple)
        logits, aux = split_outputs(self.forward_padded(padded))
        padded_size = padded.shape[-2:]
        logits = _to_input_size(logits, padded_size, size)
        if self.training and aux:
            return {"out": logits, "aux": [_to_input_size(a, padded_size, size) for a in aux]}
        return logits
