"""Exact Euclidean projections onto structured-sparsity sets.

Each set is "at most k of these groups are non-zero" (plus, for patterns,
"each kernel is supported inside one library pattern").  The nearest point
of such a set keeps the groups with the largest squared norm and zeroes the
rest, because the squared distance is exactly the energy of what is
dropped.  Everything here is computed as a boolean *mask* first, so that the
ADMM code can reuse the mask for hard pruning.

Weights are in the canonical layout ``(out, in_per_group, kh, kw)`` (see
:mod:`lrprune.layers`); 2-D ``(out, in)`` weights are treated as 1x1 kernels.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import nn

from .layers import from_canonical, to_canonical
from .patterns import PatternLibrary

KINDS = ("filter", "channel", "column", "kernel", "pattern", "pattern+kernel", "irregular")
#: kinds whose ``rate`` counts groups of this kind (pattern has no rate).
RATED_KINDS = ("filter", "channel", "column", "kernel", "pattern+kernel", "irregular")
PATTERN_KINDS = ("pattern", "pattern+kernel")

LibraryLike = Union[PatternLibrary, list, tuple, None]


def check_kind(kind: str, layer: Optional[str] = None) -> str:
    if kind not in KINDS:
        where = f" for layer '{layer}'" if layer else ""
        raise ValueError(f"unknown pruning kind {kind!r}{where}; expected one of {', '.join(KINDS)}")
    return kind


def check_rate(kind: str, rate, layer: Optional[str] = None):
    where = f" for layer '{layer}'" if layer else ""
    if kind == "pattern":
        if rate not in (None, 0, 0.0):
            raise ValueError(
                f"kind 'pattern' takes no rate{where} (got {rate!r}): its sparsity is fixed by the "
                "library; use 'pattern+kernel' to also remove whole kernels"
            )
        return None
    if rate is None:
        raise ValueError(f"kind {kind!r} needs a rate{where}")
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"rate must be a number in [0, 1){where}, got {rate!r}") from None
    if not (0.0 <= r < 1.0) or math.isnan(r):
        raise ValueError(f"rate must be in [0, 1){where}, got {rate!r}")
    return r


def n_pruned(rate: float, n: int) -> int:
    """Groups to remove out of ``n``: nearest integer, but never all of them."""
    if n <= 0:
        return 0
    return min(int(math.floor(rate * n + 0.5)), n - 1)


def _keep_top(scores: torch.Tensor, rate: float) -> torch.Tensor:
    """Boolean mask (shape of ``scores``) of the ``n - n_pruned`` largest."""
    flat = scores.reshape(-1)
    k = flat.numel() - n_pruned(rate, flat.numel())
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat, k, sorted=False).indices] = True
    return keep.reshape(scores.shape)


def _canon4(weight: torch.Tensor) -> torch.Tensor:
    if weight.dim() == 2:
        return weight.reshape(weight.shape[0], weight.shape[1], 1, 1)
    if weight.dim() != 4:
        raise ValueError(f"expected a 2-D or 4-D weight, got shape {tuple(weight.shape)}")
    return weight


def resolve_library(library: LibraryLike, weight4: torch.Tensor, layer: Optional[str] = None) -> PatternLibrary:
    kshape = tuple(weight4.shape[-2:])
    if library is None:
        # No library given: derive it from this very weight, as PatDNN does
        # per model; callers wanting a model-wide library pass one in.
        return PatternLibrary.from_weights([weight4])
    if not isinstance(library, PatternLibrary):
        try:
            library = PatternLibrary(library, kshape)
        except ValueError as e:
            where = f" for layer '{layer}'" if layer else ""
            raise ValueError(f"bad pattern library{where}: {e}") from None
    library.check(kshape, layer)
    return library


def _scores(w: torch.Tensor) -> torch.Tensor:
    return w.detach().to(torch.promote_types(w.dtype, torch.float32)).pow(2)


def projection_mask(
    weight: torch.Tensor,
    kind: str,
    rate: Optional[float] = None,
    library: LibraryLike = None,
    *,
    layer: Optional[str] = None,
) -> torch.Tensor:
    """Boolean keep-mask of the projection, same shape as ``weight``.

    ``weight`` is canonical ``(out, in, kh, kw)`` or 2-D ``(out, in)``.
    """
    check_kind(kind, layer)
    rate = check_rate(kind, rate, layer)
    w = _canon4(weight)
    sq = _scores(w)
    if kind == "irregular":
        mask = _keep_top(sq, rate)
    elif kind == "filter":
        mask = _keep_top(sq.sum(dim=(1, 2, 3)), rate)[:, None, None, None].expand(w.shape)
    elif kind == "channel":
        mask = _keep_top(sq.sum(dim=(0, 2, 3)), rate)[None, :, None, None].expand(w.shape)
    elif kind == "column":
        mask = _keep_top(sq.sum(dim=0), rate)[None].expand(w.shape)
    elif kind == "kernel":
        mask = _keep_top(sq.sum(dim=(2, 3)), rate)[:, :, None, None].expand(w.shape)
    else:
        lib = resolve_library(library, w, layer)
        pats = lib.masks(w.device, sq.dtype)  # (P, kh*kw)
        energy = sq.reshape(*w.shape[:2], -1) @ pats.t()  # (O, I, P)
        best_energy, best = energy.max(dim=-1)
        mask = pats[best].reshape(w.shape) > 0
        if kind == "pattern+kernel":
            # Joint projection: a kept kernel is worth its best pattern's
            # energy, so keeping the top kernels by that is exact.
            mask = mask & _keep_top(best_energy, rate)[:, :, None, None]
    return mask.reshape(weight.shape).contiguous()


def project(
    weight: torch.Tensor,
    kind: str,
    rate: Optional[float] = None,
    library: LibraryLike = None,
    *,
    module: Optional[nn.Module] = None,
    layer: Optional[str] = None,
) -> torch.Tensor:
    """Nearest tensor (Frobenius norm) to ``weight`` with the given structure.

    ``rate`` is the fraction of groups removed: filters, input channels,
    weight columns ``(c, kh, kw)``, kernels ``(filter, channel)``, or single
    weights for ``irregular``.  ``pattern`` takes no rate (each kernel keeps
    one library pattern); for ``pattern+kernel`` it is the fraction of
    kernels removed on top of the patterns.  ``library`` (pattern kinds):
    a :class:`PatternLibrary` or a list of flat-position tuples; default:
    the 8 most frequent centre-including 4-entry patterns of ``weight``.

    ``weight`` is canonical ``(out, in, kh, kw)`` / ``(out, in)`` unless
    ``module`` is given, in which case it is laid out like
    ``module.weight`` (this matters for ``ConvTranspose2d``).  Pure: the
    input is not modified.
    """
    if module is not None:
        canon = to_canonical(module, weight)
        mask = from_canonical(module, projection_mask(canon, kind, rate, library, layer=layer))
    else:
        mask = projection_mask(weight, kind, rate, library, layer=layer)
    return weight * mask.to(weight.dtype)
