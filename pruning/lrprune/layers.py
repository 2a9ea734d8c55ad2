"""Which modules can be pruned, and one weight layout for all of them.

Every projection works on a *canonical* weight of shape
``(out, in_per_group, kh, kw)`` -- the Conv2d layout, where dim 0 is a
filter (one output channel) and dim 1 an input channel of the GEMM.
``Linear`` weights ``(out, in)`` are viewed as ``(out, in, 1, 1)``.
``ConvTranspose2d`` stores ``(in, out_per_group, kh, kw)``; it is permuted
per group so that "filter" still means an output channel of the layer.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

PRUNABLE_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def prunable_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """(qualified name, module) of every prunable layer, in registration order."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, PRUNABLE_TYPES) and isinstance(getattr(m, "weight", None), torch.Tensor)
    ]


def prunable_dict(model: nn.Module) -> Dict[str, nn.Module]:
    return dict(prunable_layers(model))


def kernel_shape(module: nn.Module) -> Tuple[int, int]:
    if isinstance(module, nn.Linear):
        return (1, 1)
    kh, kw = module.weight.shape[-2:]
    return (int(kh), int(kw))


def to_canonical(module: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """View ``weight`` (shaped like ``module.weight``) in the canonical layout."""
    if isinstance(module, nn.Linear):
        return weight.reshape(weight.shape[0], weight.shape[1], 1, 1)
    if isinstance(module, nn.ConvTranspose2d):
        g = module.groups
        cin, opg, kh, kw = weight.shape
        # (g*ipg, opg, kh, kw) -> (g, opg, ipg, kh, kw): output channel
        # g*opg + j only ever reads the input channels of its own group.
        w = weight.reshape(g, cin // g, opg, kh, kw).transpose(1, 2)
        return w.reshape(g * opg, cin // g, kh, kw)
    return weight


def from_canonical(module: nn.Module, canon: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_canonical`."""
    shape = module.weight.shape
    if isinstance(module, nn.Linear):
        return canon.reshape(shape)
    if isinstance(module, nn.ConvTranspose2d):
        g = module.groups
        cin, opg, kh, kw = shape
        w = canon.reshape(g, opg, cin // g, kh, kw).transpose(1, 2)
        return w.reshape(shape)
    return canon
