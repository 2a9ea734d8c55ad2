"""Half-width last vector of 16-lane sparse tiles (sparse_conv.py, sparse_columns.py).

A 56-wide plane is 3.5 zmm vectors per row; a tile of 4 full vectors does 64 lanes of work for 56
pixels. Running the last vector as vector<8xf32> removes that waste: on Zen 4 a 256-bit FMA or load
costs half a 512-bit one (3x3 256ch 56x56, 6.8x fewer MACs: 8 lanes 8.1 ms, 16 lanes + half tail
7.6 ms, kernel alone, CPU time).
"""
from __future__ import annotations

from torch_mlir import ir
from torch_mlir.dialects import vector

from ._builder import KernelBuilder
from .conv import ConvSpec


class HalfTail:
    """The last vector of a 16-lane tile whose used lanes fit 8: loaded, multiplied and accumulated
    as vector<8xf32>; widened again (upper lanes zero) for the epilogue, whose store is masked."""

    def __init__(self, b: KernelBuilder):
        self.b = b
        self.vt = ir.VectorType.get([b.V // 2], b.f32)

    @staticmethod
    def of(s: ConvSpec, nv: int, last: int, b: KernelBuilder):
        """A HalfTail for a tile of nv vectors whose last one has `last` lanes used, or None."""
        return HalfTail(b) if s.vec == 16 and last <= 8 and nv >= 1 else None

    def narrow(self, x):
        return vector.extract_strided_slice(self.vt, x, [0], [self.b.V // 2], [1])

    def load(self, mem, idx):
        return vector.load(self.vt, mem, [self.b.v(idx)])

    def narrow_tile(self, accs, nv: int):
        return [self.narrow(a) if k % nv == nv - 1 else a for k, a in enumerate(accs)]

    def widen_tile(self, accs, nv: int):
        z = self.b.splat(0.0)
        return [vector.insert_strided_slice(a, z, [0], [1]) if k % nv == nv - 1 else a for k, a in enumerate(accs)]
