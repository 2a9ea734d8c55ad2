"""Keeping pruned weights exactly zero during retraining.

Zeroing the gradient is not enough: Adam's running moments and SGD's
momentum buffer remember gradients from before pruning (and weight decay
adds its own term), so a masked weight can still move.  Hence two
mechanisms, both installed by :class:`MaskSet`:

* a tensor hook on each weight zeroes the pruned part of its gradient, so
  optimizer state never accumulates anything new there;
* after ``optimizer.step()`` the weights are re-masked, either by an
  optimizer step post-hook (:meth:`MaskSet.attach`) or by calling
  :meth:`MaskSet.apply` yourself.
"""

from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn


class MaskSet:
    def __init__(self):
        self.masks: Dict[str, torch.Tensor] = {}
        self.modules: Dict[str, nn.Module] = {}
        self._grad_handles: List = []
        self._opt_handles: List = []

    def __len__(self) -> int:
        return len(self.masks)

    def add(self, name: str, module: nn.Module, mask: torch.Tensor) -> None:
        if mask.shape != module.weight.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not match weight {tuple(module.weight.shape)} of '{name}'"
            )
        self.masks[name] = mask.to(torch.bool)
        self.modules[name] = module

    def _mask_for(self, name: str, like: torch.Tensor) -> torch.Tensor:
        m = self.masks[name]
        if m.device != like.device:
            # The model may have moved to another device after pruning.
            m = self.masks[name] = m.to(like.device)
        return m

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every pruned weight (in place)."""
        for name, module in self.modules.items():
            w = module.weight
            w.masked_fill_(~self._mask_for(name, w), 0)

    def hook_gradients(self) -> None:
        """Zero the pruned part of each weight's gradient as it is computed."""
        self.remove_gradient_hooks()
        for name, module in self.modules.items():
            def hook(grad, name=name):
                return grad.masked_fill(~self._mask_for(name, grad), 0)

            self._grad_handles.append(module.weight.register_hook(hook))

    def attach(self, optimizer: torch.optim.Optimizer):
        """Re-mask the weights after every ``optimizer.step()``; returns the hook handle."""
        handle = optimizer.register_step_post_hook(lambda opt, args, kwargs: self.apply())
        self._opt_handles.append(handle)
        return handle

    def remove_gradient_hooks(self) -> None:
        for h in self._grad_handles:
            h.remove()
        self._grad_handles.clear()

    def remove(self) -> None:
        """Remove all hooks; the weights stay as they are."""
        self.remove_gradient_hooks()
        for h in self._opt_handles:
            h.remove()
        self._opt_handles.clear()

    def density(self, name: str) -> float:
        m = self.masks[name]
        return float(m.sum()) / m.numel()
