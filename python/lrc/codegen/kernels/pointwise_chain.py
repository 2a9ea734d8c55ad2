"""Two sparse 1x1 convs in one kernel: the intermediate exists only for one panel of pixels, in L2.

    y = act2(W2 · act1(W1 · x + b1) + b2 [+ residual])      x: [N, C, H, W], W1: [M, C], W2: [K, M]

WDSR's wide-activation block (1x1 32 -> 192 + ReLU, then 1x1 192 -> 26) run as two kernels writes
the 192-channel intermediate (50 MB at 256x256) to memory and reads it back; that traffic, not the
FMAs, set the speed of both layers (the expand ran at ~20 GFLOP/s on non-zero MACs). Here, per
panel of PB pixels:

    copy the panel of x (C channels, pitch PB + V)           -> scratch xs   (as sparse_conv's flat path)
    every filter of W1 over the panel's tiles, act1, store    -> scratch hs   [M][PB + V]
    every filter of W2 over the panel's tiles (reading hs), residual, act2 -> out

Both stages are the flat-panel SpMM tiles of sparse_conv.py (one-tap kernels, or the column tile of
sparse_columns.py when a layer's filters share their columns), pointed at the two scratches:
stage 1's output offsets are rows of hs (`ooff = m * (PB + V)`), stage 2's input offsets are the
same rows (`koff`, built with the same panel pitch). PB is chosen so that xs and hs together stay
within CHAIN_PANEL_BYTES.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import func

from ._builder import KernelBuilder, Scratch, flat_memref, scratch_bytes
from .conv import ConvSpec
from .sparse_conv import SparsePack, _segments, _SparseEmitter, choose_tile, pack_sparse_conv, packed_kernel_func

# Both panel scratches (input panel and intermediate) fit this many bytes: a share of Zen 4's 1 MiB
# L2 that leaves room for the weights and the output stream.
CHAIN_PANEL_BYTES = 256 << 10


@dataclass
class ChainPack:
    """The two stages of a fused 1x1 pair: SparsePacks, or dense_chain.DenseStages for the dense pair
    kernel (dense_chain.pack_dense_chain)."""

    first: SparsePack  # C -> M, its act; writes the intermediate panel
    second: SparsePack  # M -> K, residual and act; reads the intermediate panel
    PB: int  # pixels per panel

    def arrays(self) -> list[np.ndarray]:
        return self.first.arrays() + self.second.arrays()


def _is_pointwise(s: ConvSpec) -> bool:
    return (s.KH, s.KW, *s.stride) == (1, 1, 1, 1) and not any(s.padding) and s.groups == 1


def check_chain(s1: ConvSpec, s2: ConvSpec) -> None:
    """ValueError naming the mismatch unless s1 -> s2 is a fusable pair of 1x1 convs."""
    for name, s in (("first", s1), ("second", s2)):
        if not _is_pointwise(s):
            raise ValueError(f"pointwise chain: the {name} conv must be 1x1, stride 1, unpadded, groups 1: {s}")
    if s1.residual:
        raise ValueError("pointwise chain: the first conv cannot take a residual (its output is not stored)")
    if (s1.N, s1.K, s1.H, s1.W) != (s2.N, s2.C, s2.H, s2.W):
        raise ValueError(f"pointwise chain: the first conv's output {(s1.N, s1.K, s1.H, s1.W)} is not the "
                         f"second's input {(s2.N, s2.C, s2.H, s2.W)}")
    if s1.vec != s2.vec:
        raise ValueError(f"pointwise chain: both convs need the same lane width, got {s1.vec} and {s2.vec}")


def chain_panel_pixels(s1: ConvSpec, s2: ConvSpec, budget: int = CHAIN_PANEL_BYTES) -> int:
    """PB: the most pixels (a multiple of V, at most the plane) whose two panels fit `budget`."""
    V = s1.vec
    rows = s1.C + s1.K  # channels of xs and hs
    pb = (budget // (4 * rows) - V) // V * V
    return max(V, min(pb, -(-(s1.H * s1.W) // V) * V))


def pack_pointwise_chain(s1: ConvSpec, w1, b1, s2: ConvSpec, w2, b2,
                         library1: Sequence[Sequence[int]] | None = None,
                         library2: Sequence[Sequence[int]] | None = None,
                         tiles: tuple | None = None, panel: int | None = None) -> ChainPack:
    """Compact forms of both convs laid out for the shared panels. `tiles` (SparseTile, SparseTile)
    and `panel` (pixels, a multiple of V) override the model's choices (tests, tuning)."""
    from .sparse_columns import choose_column_tile, column_tile_pays

    check_chain(s1, s2)
    PB = panel or chain_panel_pixels(s1, s2)
    packs = []
    for i, (s, w, b, lib) in enumerate(((s1, w1, b1, library1), (s2, w2, b2, library2))):
        w = np.asarray(w, np.float32)
        if tiles is not None:
            tile = tiles[i]
        elif not lib and column_tile_pays(s, w):
            tile = choose_column_tile(s)
        else:
            tile = choose_tile(s)
        packs.append(pack_sparse_conv(s, w, b, library=lib, tile=dataclasses.replace(tile, PB=PB)))
    first, second = packs
    HP = PB + s1.vec
    plane = s1.H * s1.W
    # Stage 1 stores filter m to row m of the intermediate panel, not to output channel m.
    first.ooff = (first.ooff.astype(np.int64) // plane * HP).astype(np.int32)
    if second.tile.FB > 1:
        # The column tile addresses a scratch holding only the channels some column reads; the
        # intermediate panel holds all M rows.
        second.koff = (second.chans[second.koff // HP].astype(np.int64) * HP).astype(np.int32)
    return ChainPack(first, second, PB)


def chain_panels(chain: ChainPack) -> int:
    """Panels per image (the last one may be partial)."""
    return -(-(chain.first.spec.H * chain.first.spec.W) // chain.PB)


def emit_pointwise_chain_func(chain: ChainPack, name: str, panels: tuple[int, int] | None = None,
                              external_scratch: bool = False) -> func.FuncOp:
    """Private func `(x, <first's arrays>, <second's arrays>, [residual], out, [scratch])`. `panels` =
    [q0, q1): only those panels of every image (a thread's share; each part has its own scratch
    panels). With `external_scratch` the two panels are a last i8 argument of
    fn.attributes[SCRATCH_ATTR] bytes (conv.emit_conv_func) instead of buffers malloc'ed per call."""
    p1, p2 = chain.first, chain.second
    s1, s2 = p1.spec, p2.spec
    a1, a2 = p1.arrays(), p2.arrays()
    out_size = s2.N * s2.K * s2.H * s2.W
    V, PB = s1.vec, chain.PB
    HP = PB + V
    nch1 = int(p1.chans.size) if p1.tile.FB > 1 else s1.C
    sizes = [max(1, nch1) * HP, s1.K * HP]  # the input panel, the intermediate panel
    nscratch = scratch_bytes(sizes) if external_scratch else 0
    fn = packed_kernel_func(name, s1.N * s1.C * s1.H * s1.W, a1 + a2, out_size, s2.residual, nscratch)
    with ir.InsertionPoint(fn.entry_block):
        args = list(fn.arguments)
        scratch = Scratch(args.pop() if nscratch else None)
        b = KernelBuilder(fn, s1.vec)
        xs, hs = (scratch.alloc(n) for n in sizes)
        # Lanes past the plane in the last panel are computed but never stored by stage 2; zero
        # them once so that they hold no stale NaNs or denormals.
        b.zero_fill(hs, s1.K * HP)

        def stage(pack, base, inp, res, out):
            has_bias = pack.bias is not None
            tabs = args[base + 1 + has_bias: base + 5 + has_bias]
            em = _SparseEmitter(pack, inp, args[base], args[base + 1] if has_bias else None, tabs, res, out, b)
            em.cb = 0
            return em

        e1 = stage(p1, 1, args[0], None, hs)
        e1.src = xs
        e2 = stage(p2, 1 + len(a1), hs, args[-2] if s2.residual else None, args[-1])
        e2.src = hs

        def image(n, _):
            out_img = b.mul(n, s2.K * s2.H * s2.W)

            def panel(p0, plen: int):
                e1.copy_panel(n, 0, p0, plen)
                for em, obase in ((e1, 0), (e2, b.add(out_img, p0))):
                    start = 0
                    for count, nv, last in _segments(plen, V, em.pk.tile.WB):
                        span = nv * V

                        def tiles(ow0, em=em, obase=obase, nv=nv, last=last):
                            em.filter_tiles(0, ow0, b.add(obase, ow0), nv, last, 1)

                        if count == 1:
                            tiles(start)
                        else:
                            b.loop(0, count, 1, lambda wi, _, st=start, span=span, f=tiles: f(b.add(st, b.mul(wi, span))))
                        start += count * span

            for_panels(b, s1.H * s1.W, PB, panels, panel)

        b.loop(0, s1.N, 1, image)
        scratch.free(xs)
        scratch.free(hs)
        func.ReturnOp([])
    return fn


def for_panels(b: KernelBuilder, plane: int, PB: int, panels: tuple[int, int] | None, panel) -> None:
    """`panel(p0, plen)` for panels [q0, q1) of a plane (all when `panels` is None): full panels in
    a loop, a partial last one on its own."""
    npan, rem = divmod(plane, PB)
    q0, q1 = panels or (0, npan + bool(rem))
    full = min(q1, npan)
    if full - q0 == 1:
        panel(q0 * PB, PB)
    elif full > q0:
        b.loop(q0, full, 1, lambda i, _: panel(b.mul(i, PB), PB))
    if rem and q1 > npan:
        panel(npan * PB, rem)
