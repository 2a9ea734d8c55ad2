"""Two dense 1x1 convs in one kernel: the intermediate exists only for one panel of pixels, in L2.

    y = act2(W2 · act1(W1 · x + b1) + b2 [+ residual])      x: [N, C, H, W], W1: [M, C], W2: [K, M]

The dense counterpart of pointwise_chain.py (same marks, same panels, same signature). WDSR's
wide-activation block at 256x256 (1x1 32 -> 192 + ReLU, then 1x1 192 -> 26) as two kernels writes
the 192-channel intermediate (50 MB) and reads it back through 192 plane streams: the reduce ran at
~57 GFLOP/s in the model against ORT's ~88 (its NCHWc layout reads 12 block streams). Per panel of
PB pixels:

    copy the panel of x (C channels, pitch PB)              -> scratch xs
    W1 over the panel with the dense flat GEMM tiles, act1  -> scratch hs [M][PB]
    W2 over hs, residual, act2                               -> out (channel stride H*W)

Both stages are kernels.conv's flat GEMM tiles (`_ConvEmitter.group`) on flat geometries whose
input channel stride is the panel pitch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import func

from ._builder import KernelBuilder, Scratch, scratch_bytes
from .conv import ConvSpec, _ConvEmitter, _Geom, _pack, _plan, dense_lanes
from .pointwise_chain import ChainPack, chain_panel_pixels, check_chain, for_panels
from .sparse_conv import packed_kernel_func


@dataclass
class DenseStage:
    """One conv of the pair: its spec, flat geometry and plan, packed weights and bias."""

    spec: ConvSpec
    g: _Geom
    p: object
    weights: np.ndarray
    bias: np.ndarray | None

    def arrays(self) -> list[np.ndarray]:
        return [self.weights] + ([self.bias] if self.bias is not None else [])


def chain_lanes(s1: ConvSpec, s2: ConvSpec) -> int:
    """One lane width for both stages: 16 where the dense kernels would use it for both."""
    return min(dense_lanes(s1), dense_lanes(s2))


def _stage(s: ConvSpec, w, b, PB: int, out_stride: int) -> DenseStage:
    # A flat 1x1 geometry over a panel: H*W = out_stride makes the tiles' output channel stride the
    # plane's; the input channel stride is set to the panel pitch below.
    g = _Geom(1, s.C, 1, out_stride, s.K, 1, 1, 1, out_stride, 1, 1, 1, 1, 0, 0, 1, 1, 1, s.act,
              tuple(s.act_params), s.residual, s.vec)
    p = _plan(g)
    assert p.mode == "flat", p
    p.PT, p.c_bounds, p.k_outer, p.CS = 0, None, False, PB
    wp = _pack(g, p, np.asarray(w, np.float32).reshape(s.K, s.C, 1, 1))
    bias = np.ascontiguousarray(np.asarray(b, np.float32).reshape(s.K)) if b is not None else None
    return DenseStage(s, g, p, wp, bias)


def pack_dense_chain(s1: ConvSpec, w1, b1, s2: ConvSpec, w2, b2, panel: int | None = None) -> ChainPack:
    """Both convs packed for the shared panels (a ChainPack of two DenseStages); `panel` (pixels, a
    multiple of V) overrides PB."""
    check_chain(s1, s2)
    PB = panel or chain_panel_pixels(s1, s2)
    return ChainPack(_stage(s1, w1, b1, PB, PB), _stage(s2, w2, b2, PB, s2.H * s2.W), PB)


def emit_dense_chain_func(chain: ChainPack, name: str, panels: tuple[int, int] | None = None,
                          external_scratch: bool = False) -> func.FuncOp:
    """Private func `(x, w1, [b1], w2, [b2], [residual], out, [scratch])`, as
    pointwise_chain.emit_pointwise_chain_func: `panels` = [q0, q1) of every image (a thread's share),
    with `external_scratch` the two panels come as a last i8 argument."""
    st1, st2 = chain.first, chain.second
    s1, s2 = st1.spec, st2.spec
    a1, a2 = st1.arrays(), st2.arrays()
    V, PB = s1.vec, chain.PB
    HW = s1.H * s1.W
    sizes = [s1.C * PB, s1.K * PB]  # the input panel, the intermediate panel
    nscratch = scratch_bytes(sizes) if external_scratch else 0
    fn = packed_kernel_func(name, s1.N * s1.C * HW, a1 + a2, s2.N * s2.K * HW, s2.residual, nscratch)
    with ir.InsertionPoint(fn.entry_block):
        args = list(fn.arguments)
        scratch = Scratch(args.pop() if nscratch else None)
        b = KernelBuilder(fn, V)
        xs, hs = (scratch.alloc(n) for n in sizes)
        x = args[0]
        w1, bias1 = args[1], (args[2] if st1.bias is not None else None)
        o = 1 + len(a1)
        w2, bias2 = args[o], (args[o + 1] if st2.bias is not None else None)
        res = args[-2] if s2.residual else None
        e1 = _ConvEmitter(st1.g, st1.p, x, w1, bias1, None, hs, b)
        e1.src = xs
        e2 = _ConvEmitter(st2.g, st2.p, hs, w2, bias2, res, args[-1], b)
        e2.src = hs

        def image(n, _):
            x_img = b.mul(n, s1.C * HW)
            out_img = b.mul(n, s2.K * HW)

            def panel(p0, plen: int):
                b.loop(0, s1.C, 1, lambda c, _: e1._copy_run(b.add(x_img, b.mul(c, HW), p0), b.mul(c, PB), plen))
                e1.group(0, 0, 0, 1, plen)
                e2.group(0, 0, b.add(out_img, p0), 1, plen)

            for_panels(b, HW, PB, panels, panel)

        b.loop(0, s1.N, 1, image)
        scratch.free(xs)
        scratch.free(hs)
        func.ReturnOp([])
    return fn
