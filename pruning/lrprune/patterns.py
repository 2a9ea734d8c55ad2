"""Kernel pattern libraries (PatDNN).

A pattern is the set of positions a kernel keeps, written as flat indices
into the row-major ``kh*kw`` kernel.  Only a handful of patterns is allowed
per model so that the compiler can generate one specialised code path per
pattern; which handful is chosen from the weights themselves.
"""

from __future__ import annotations

import itertools
from typing import Iterable, List, Optional, Sequence, Tuple

import torch

Pattern = Tuple[int, ...]


def _as_pattern(p, kernel_shape: Tuple[int, int]) -> Pattern:
    kh, kw = kernel_shape
    t = torch.as_tensor(p)
    if t.dim() == 2:
        # A 0/1 picture of the kernel: its shape *is* the kernel size, so a
        # mismatch is the classic "3x3 library on a 5x5 layer" mistake.
        if tuple(t.shape) != (kh, kw):
            raise ValueError(
                f"pattern mask of shape {tuple(t.shape)} does not match kernel shape {kh}x{kw}"
            )
        return tuple(int(i) for i in torch.nonzero(t.reshape(-1)).flatten().tolist())
    if t.dim() != 1:
        raise ValueError(f"a pattern is a sequence of flat positions or a {kh}x{kw} 0/1 mask, got {p!r}")
    pos = sorted(int(i) for i in t.tolist())
    if not pos:
        raise ValueError("empty pattern: a pattern must keep at least one position")
    if len(set(pos)) != len(pos):
        raise ValueError(f"pattern {tuple(pos)} repeats a position")
    if pos[0] < 0 or pos[-1] >= kh * kw:
        raise ValueError(
            f"pattern {tuple(pos)} has positions outside a {kh}x{kw} kernel (valid: 0..{kh * kw - 1})"
        )
    return tuple(pos)


class PatternLibrary:
    """An ordered set of kernel patterns for one kernel shape.

    ``patterns`` are sequences of kept flat positions (row-major in
    ``kh*kw``) or ``kh x kw`` 0/1 masks.  The order is the pattern id.
    """

    def __init__(self, patterns: Iterable, kernel_shape: Sequence[int] = (3, 3)):
        if len(kernel_shape) != 2 or min(kernel_shape) < 1:
            raise ValueError(f"kernel_shape must be two positive ints, got {tuple(kernel_shape)}")
        self.kernel_shape: Tuple[int, int] = (int(kernel_shape[0]), int(kernel_shape[1]))
        pats: List[Pattern] = []
        for p in patterns:
            q = _as_pattern(p, self.kernel_shape)
            if q in pats:
                raise ValueError(f"pattern {q} appears twice in the library")
            pats.append(q)
        if not pats:
            raise ValueError("a pattern library needs at least one pattern")
        self.patterns: Tuple[Pattern, ...] = tuple(pats)

    # -- construction -----------------------------------------------------
    @staticmethod
    def centre(kernel_shape: Sequence[int]) -> int:
        kh, kw = kernel_shape
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"a {kh}x{kw} kernel has no centre position")
        return (kh // 2) * kw + kw // 2

    @classmethod
    def candidates(
        cls, kernel_shape: Sequence[int] = (3, 3), entries: int = 4, include_centre: bool = True
    ) -> Iterable[Pattern]:
        """All patterns of ``entries`` positions, lexicographic."""
        kh, kw = kernel_shape
        if not 1 <= entries <= kh * kw:
            raise ValueError(f"entries={entries} impossible in a {kh}x{kw} kernel")
        if not include_centre:
            yield from itertools.combinations(range(kh * kw), entries)
            return
        c = cls.centre(kernel_shape)
        others = [i for i in range(kh * kw) if i != c]
        for rest in itertools.combinations(others, entries - 1):
            yield tuple(sorted(rest + (c,)))

    @classmethod
    def from_weights(
        cls,
        weights: Iterable[torch.Tensor],
        n: int = 8,
        entries: int = 4,
        include_centre: bool = True,
    ) -> "PatternLibrary":
        """The ``n`` most frequent natural patterns of the given weights.

        Following PatDNN, each kernel's natural pattern is its centre plus
        its ``entries - 1`` largest-magnitude other positions; patterns are
        ranked by how many kernels have them (ties: lexicographic, so the
        result is deterministic).  Weights are 4-D ``(..., kh, kw)`` and
        must share one kernel shape; all-zero kernels are ignored because
        they carry no preference.  If fewer than ``n`` distinct patterns
        occur, the library is topped up with the lexicographically first
        unused candidates.
        """
        weights = [w.detach() for w in weights]
        if not weights:
            raise ValueError("from_weights needs at least one weight tensor")
        shapes = {tuple(w.shape[-2:]) for w in weights}
        if len(shapes) != 1 or any(w.dim() != 4 for w in weights):
            raise ValueError(f"from_weights needs 4-D weights of one kernel shape, got {sorted(shapes)}")
        kshape = shapes.pop()
        kh, kw = kshape
        if n < 1:
            raise ValueError(f"library size n must be >= 1, got {n}")
        if not 1 <= entries <= kh * kw:
            raise ValueError(f"entries={entries} impossible in a {kh}x{kw} kernel")
        mags = torch.cat([w.abs().reshape(-1, kh * kw).float().cpu() for w in weights])
        mags = mags[mags.sum(dim=1) > 0]
        counts = {}
        if mags.numel():
            if include_centre:
                c = cls.centre(kshape)
                # The centre is always kept, so rank only the others.
                mags[:, c] = float("inf")
            top = torch.topk(mags, entries, dim=1).indices
            top, _ = torch.sort(top, dim=1)
            uniq, cnt = torch.unique(top, dim=0, return_counts=True)
            counts = {tuple(u.tolist()): int(k) for u, k in zip(uniq, cnt)}
        ranked = sorted(counts, key=lambda p: (-counts[p], p))[:n]
        if len(ranked) < n:
            for p in cls.candidates(kshape, entries, include_centre):
                if len(ranked) >= n:
                    break
                if p not in counts:
                    ranked.append(p)
        return cls(ranked, kshape)

    # -- use ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.patterns)

    def __iter__(self):
        return iter(self.patterns)

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, PatternLibrary)
            and self.kernel_shape == other.kernel_shape
            and self.patterns == other.patterns
        )

    def __hash__(self):
        return hash((self.kernel_shape, self.patterns))

    def __repr__(self) -> str:
        kh, kw = self.kernel_shape
        return f"PatternLibrary({list(self.patterns)!r}, kernel_shape=({kh}, {kw}))"

    def to_list(self) -> List[Pattern]:
        return list(self.patterns)

    def masks(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """``(len(self), kh*kw)`` 0/1 matrix, row ``i`` = pattern ``i``."""
        kh, kw = self.kernel_shape
        m = torch.zeros(len(self.patterns), kh * kw, dtype=dtype, device=device)
        for i, p in enumerate(self.patterns):
            m[i, list(p)] = 1
        return m

    def check(self, kernel_shape: Sequence[int], layer: Optional[str] = None) -> None:
        if tuple(kernel_shape) != self.kernel_shape:
            where = f"layer '{layer}' has" if layer else "weight has"
            kh, kw = self.kernel_shape
            raise ValueError(
                f"pattern library is for {kh}x{kw} kernels but {where} "
                f"{kernel_shape[0]}x{kernel_shape[1]} kernels"
            )

    def energies(self, weight: torch.Tensor) -> torch.Tensor:
        """``(..., len(self))``: squared norm each pattern would keep, per kernel."""
        kh, kw = weight.shape[-2:]
        self.check((kh, kw))
        # float32 at least: half-precision energies tie too often to rank.
        dt = torch.promote_types(weight.dtype, torch.float32)
        sq = weight.detach().to(dt).pow(2).reshape(*weight.shape[:-2], kh * kw)
        return sq @ self.masks(weight.device, sq.dtype).t()

    def assign(self, weight: torch.Tensor) -> torch.Tensor:
        """Best pattern id per kernel (the one keeping the most energy)."""
        return self.energies(weight).argmax(dim=-1)
