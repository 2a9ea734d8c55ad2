"""The contract with the lrc compiler.

After :meth:`ADMMPruner.hard_prune` every pruned module carries
``module.lr_sparsity``, a plain dict::

    {"kind": "filter" | "channel" | "column" | "kernel" | "pattern"
             | "pattern+kernel" | "irregular",
     "rate": float,            # fraction of the weight that is zero
     "library": [(flat positions kept, row-major in kh*kw), ...] or None,
     "kernel_shape": [kh, kw]}

It states intent only; the compiler re-derives each kernel's pattern id
from the zeros of the weight itself.
"""

from __future__ import annotations

import copy
from typing import Dict, Optional

from torch import nn

from .layers import kernel_shape, prunable_layers
from .patterns import PatternLibrary
from .projections import KINDS, PATTERN_KINDS

ATTR = "lr_sparsity"


def make_structure(module: nn.Module, kind: str, rate: float, library: Optional[PatternLibrary]) -> dict:
    if kind not in KINDS:
        raise ValueError(f"unknown pruning kind {kind!r}")
    kh, kw = kernel_shape(module)
    return {
        "kind": kind,
        "rate": float(rate),
        "library": [tuple(int(i) for i in p) for p in library] if kind in PATTERN_KINDS else None,
        "kernel_shape": [kh, kw],
    }


def structure_of(model: nn.Module) -> Dict[str, dict]:
    """``{qualified module name: lr_sparsity dict}`` for every pruned module."""
    return {
        name: copy.deepcopy(getattr(m, ATTR))
        for name, m in model.named_modules()
        if isinstance(getattr(m, ATTR, None), dict)
    }


def sparsity_of(model: nn.Module) -> Dict[str, float]:
    """``{qualified name: fraction of weight entries that are exactly zero}``
    for every prunable (Conv2d / ConvTranspose2d / Linear) layer, pruned or not."""
    return {
        name: float((m.weight.detach() == 0).sum()) / m.weight.numel()
        for name, m in prunable_layers(model)
    }
