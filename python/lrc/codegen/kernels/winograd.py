"""Dense 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2016).

Each 2x2 block of outputs ("tile") is computed from the 4x4 input patch under it with 16 products per
input channel instead of 36: the patch d goes to V = B^T d B, the filter g to U = G g G^T (once, at
compile time), the 16 positions xi of the transformed domain are independent matrix products
M[xi] = U[xi] . V[xi] over the input channels, and the output tile is A^T M A. The multiplications,
all in those products, drop 2.25x; the transforms are additions only.

Layout, per band of BT tile rows (so that the transformed input and products stay in L2):

* the input rows the band reads are copied, zero padded and split into even / odd column phases,
  by the dense conv's own prep (a 4x4 stride-2 "conv" over the input has exactly these patches), so
  the patches of V consecutive tiles are contiguous vector loads;
* V[xi][c][t] for the band's tiles t (row-major over the band, unpadded), vectorised over tiles;
* the 16 products are one grouped 1x1 conv (16 groups of C -> K over the band's tiles), run by the
  dense conv's flat GEMM tiles;
* the output transform adds bias, residual, activation and a fused 2x2 max pool (a pool window is
  exactly one tile) and writes the NCHW output, interleaving the tiles' two columns.

The weights are packed as the GEMM's grouped [16 K, C, 1, 1] conv weights. Rounding: the transforms
have coefficients 0, +-1, +-1/2; measured errors stay within 2-4x those of the direct kernel.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, vector

from ._builder import KernelBuilder, Scratch, flat_memref, mark_scratch, scratch_arg_type, scratch_bytes
from .conv import ConvSpec, _ConvEmitter, _Geom, _geom_from_spec, _pack, _plan, vector_registers

# The A/B switch (LRC_WINOGRAD=0 turns it off too).
WINOGRAD = True
# Fewer channels than this leave the GEMM too short a reduction (C) or too few rows (K) to pay for
# the transforms.
MIN_CHANNELS = 16
# Tiles per band (whole tile rows, rounded up): the GEMM's columns. Kernel alone, 16 lanes, against
# bands of 1 / 2 / 4 / 8 tile rows (docs/kernels.md, Round 10): short bands leave the GEMM too few
# columns (512->512 at 7x7 in bands of 4 tiles: 0.33x the direct kernel, 16 tiles 1.08x; 256->256 at
# 14x14, 7 vs 14+ tiles: 0.90x vs 1.42x), and beyond ~100 tiles the speed is flat within noise
# (128->128 at 28x28 1.64-1.68x for 14-112 tiles; 64->64 at 56x56 1.48-1.62x, best at 112).
BAND_TILES = 112

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def supported(spec: ConvSpec) -> bool:
    """Whether this kernel can compute the conv: 3x3, stride 1, no dilation, one group."""
    return ((spec.KH, spec.KW) == (3, 3) and tuple(spec.stride) == (1, 1) and tuple(spec.dilation) == (1, 1)
            and spec.groups == 1 and min(spec.padding) >= 0 and spec.OH >= 1 and spec.OW >= 1
            and spec.vec % 2 == 0)


def use_winograd(spec: ConvSpec) -> bool:
    """Whether a dense conv runs through this kernel rather than the direct one (kernels.conv)."""
    if not WINOGRAD or os.environ.get("LRC_WINOGRAD", "1") == "0" or not supported(spec):
        return False
    return spec.C >= MIN_CHANNELS and spec.K >= MIN_CHANNELS and spec.OH >= 4 and spec.OW >= 4


def lanes(spec: ConvSpec) -> int:
    """16 lanes where the x86 tiles may use 32 registers on AVX-512VL (as kernels.conv.dense_lanes:
    the GEMM runs on whole vectors, and zmm halves its loads per FMA), else the spec's width."""
    from lrc.targets.aot import cpu_flags

    if spec.vec == 8 and vector_registers(8) >= 32 and {"avx512f", "avx512vl"} <= cpu_flags():
        return 16
    return spec.vec


def filter_transform(weight: np.ndarray) -> np.ndarray:
    """[K, C, 3, 3] -> U [16, K, C] (xi = 4 * row + column of G g G^T), in float64 then rounded."""
    w = np.asarray(weight, np.float64)
    u = np.einsum("ai,kcij,bj->abkc", _G, w, _G)
    return u.reshape(16, w.shape[0], w.shape[1]).astype(np.float32)


class _Layout:
    """Tile counts, the band, and the geometries of the prep copy and of the grouped GEMM."""

    def __init__(self, spec: ConvSpec, band_rows: int | None = None):
        g = _geom_from_spec(spec)
        self.g, self.V = g, spec.vec
        V = self.V
        self.TH, self.TW = -(-g.OH // 2), -(-g.OW // 2)
        # The input patches as a 4x4 stride-2 conv: its prep copy is the padded, phase-split band.
        self.gin = _Geom(g.N, g.C, g.H, g.W, 1, 4, 4, self.TH, self.TW, 2, 2, 1, 1, g.pt, g.pl, 1, 1, 1,
                         "none", (), False, V)
        pin = _plan(self.gin)
        assert pin.mode == "prep" and pin.border_zero, pin
        last_tx0 = (self.TW - 1) // V * V
        pin.Wq = max(self.TW + 1, last_tx0 + V + 1)  # the phase-1 loads of the last vector stay in the row
        pin.RS = 2 * pin.Wq
        self.pin = pin
        self.BT = min(band_rows or -(-BAND_TILES // self.TW), self.TH)
        pin.BH, pin.BR = self.BT, 2 * self.BT + 2
        pin.CS = pin.BR * pin.RS
        self.Tb = -(-self.BT * self.TW // V) * V  # GEMM columns of a full band
        # The 16 products: a 1x1 conv with 16 groups of C -> K over the band's Tb tiles.
        self.gg = _Geom(1, 16 * g.C, 1, self.Tb, 16 * g.K, 1, 1, 1, self.Tb, 1, 1, 1, 1, 0, 0, 1, 1, 16,
                        "none", (), False, V)
        pg = _plan(self.gg)
        assert pg.mode == "flat", pg
        pg.PT, pg.c_bounds = 0, None  # the band is the cache block
        self.pg = pg

    def scratch_sizes(self) -> list[int]:
        g = self.g
        return [g.C * self.pin.CS, 16 * g.C * self.Tb + self.V, 16 * g.K * self.Tb + self.V]


def pack_winograd_weights(spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None,
                          layout: _Layout | None = None) -> list[np.ndarray]:
    want = (spec.K, spec.C, 3, 3)
    if tuple(weight.shape) != want:
        raise ValueError(f"weight shape {tuple(weight.shape)} != {want}")
    lay = layout or _Layout(spec)
    u = filter_transform(weight).reshape(16 * spec.K, spec.C, 1, 1)
    out = [_pack(lay.gg, lay.pg, u)]
    if bias is not None:
        out.append(np.ascontiguousarray(np.asarray(bias, np.float32).reshape(spec.K)))
    return out


def emit_winograd_func(spec: ConvSpec, name: str, packed: Sequence[np.ndarray], external_scratch: bool = False,
                       layout: _Layout | None = None) -> func.FuncOp:
    """Private func with emit_conv_func's signature: `(in, weights, [bias], [residual], out,
    [pooled out], [scratch])`."""
    if not supported(spec):
        raise NotImplementedError(f"{name}: Winograd F(2x2, 3x3) needs a 3x3 stride-1 undilated ungrouped conv: {spec}")
    lay = layout or _Layout(spec)
    g = lay.g
    has_bias = len(packed) == 2
    wsize = 16 * lay.pg.nkb * g.C * lay.pg.KB
    if packed[0].size != wsize:
        raise ValueError(f"packed weight size {packed[0].size} != {wsize} (packed for another spec?)")
    in_size = g.N * g.C * g.H * g.W
    out_size = g.N * g.K * (g.OH * g.OW if g.pool_keep or not g.pool else g.PH * g.PW)
    arg_types = [flat_memref(in_size)] + [flat_memref(a.size) for a in packed]
    if g.residual:
        arg_types.append(flat_memref(out_size))
    arg_types.append(flat_memref(out_size))
    if g.pool_keep:
        arg_types.append(flat_memref(g.N * g.K * g.PH * g.PW))
    nscratch = scratch_bytes(lay.scratch_sizes()) if external_scratch else 0
    if nscratch:
        arg_types.append(scratch_arg_type(nscratch))
    fn = func.FuncOp(name, (arg_types, []), visibility="private")
    mark_scratch(fn, nscratch)
    fn.add_entry_block()
    with ir.InsertionPoint(fn.entry_block):
        args = list(fn.arguments)
        scratch = Scratch(args.pop() if nscratch else None)
        pout = args.pop() if g.pool_keep else None
        x, wts = args[0], args[1]
        bias = args[2] if has_bias else None
        res = args[-2] if g.residual else None
        out = args[-1]
        _WinogradEmitter(lay, KernelBuilder(fn, lay.V), scratch, x, wts, bias, res, out, pout).run()
        func.ReturnOp([])
    return fn


class _WinogradEmitter:
    def __init__(self, lay: _Layout, b: KernelBuilder, scratch: Scratch, x, wts, bias, res, out, pout):
        self.lay, self.b, self.g = lay, b, lay.g
        self.scratch = scratch
        self.x, self.bias, self.res, self.out = x, bias, res, out
        g = lay.g
        self.pool_only = bool(g.pool) and not g.pool_keep
        self.pout = out if pout is None else pout
        self.prep_em = _ConvEmitter(lay.gin, lay.pin, x, None, None, None, None, b)
        self.gemm = _ConvEmitter(lay.gg, lay.pg, None, wts, None, None, None, b)

    def run(self):
        lay, g, b = self.lay, self.g, self.b
        sc = self.scratch.alloc(lay.scratch_sizes()[0])
        vb = self.scratch.alloc(lay.scratch_sizes()[1])
        mb = self.scratch.alloc(lay.scratch_sizes()[2])
        self.prep_em.src = sc
        self.gemm.src, self.gemm.out = vb, mb
        self.sc, self.vb, self.mb = sc, vb, mb
        BT, TH = lay.BT, lay.TH
        nfull = (TH - 1) // BT  # the last band is emitted on its own: it may end in a half tile row

        def image(n, _):
            b.loop(0, nfull, 1, lambda bi, _: self.band(n, b.mul(bi, BT), BT, False))
            self.band(n, nfull * BT, TH - nfull * BT, g.OH % 2 == 1)

        b.loop(0, g.N, 1, image)
        for buf in (mb, vb, sc):
            self.scratch.free(buf)

    def band(self, n, ty0, bt: int, half_last: bool):
        lay, g, b, V = self.lay, self.g, self.b, self.lay.V
        self.prep_em.prep(n, 0, ty0, bt)
        self.input_transform(bt)
        cols = -(-bt * lay.TW // V) * V
        C, K, Tb = g.C, g.K, lay.Tb
        b.loop(0, 16, 1, lambda xi, _: self.gemm.group(xi, b.mul(xi, C * Tb), b.mul(xi, K * Tb), 1, cols))
        self.output_transform(n, ty0, bt, half_last)

    def _tile_vectors(self):
        """(tx0, valid tiles) of the vectors across one tile row."""
        TW, V = self.lay.TW, self.lay.V
        return [(tx0, min(V, TW - tx0)) for tx0 in range(0, TW, V)]

    def input_transform(self, bt: int):
        lay, g, b = self.lay, self.g, self.b
        pin, TW, Tb, C = lay.pin, lay.TW, lay.Tb, g.C
        RS, Wq = pin.RS, pin.Wq

        def row(c, r):
            src = b.add(b.mul(c, pin.CS), b.mul(r, 2 * RS))
            dst = b.add(b.mul(c, Tb), b.mul(r, TW))
            for tx0, nt in self._tile_vectors():
                d = [[b.load(self.sc, b.add(src, i * RS + (j % 2) * Wq + j // 2 + tx0)) for j in range(4)]
                     for i in range(4)]
                t = [[arith.subf(d[0][j], d[2][j]) for j in range(4)],
                     [arith.addf(d[1][j], d[2][j]) for j in range(4)],
                     [arith.subf(d[2][j], d[1][j]) for j in range(4)],
                     [arith.subf(d[1][j], d[3][j]) for j in range(4)]]
                for i in range(4):
                    vs = (arith.subf(t[i][0], t[i][2]), arith.addf(t[i][1], t[i][2]),
                          arith.subf(t[i][2], t[i][1]), arith.subf(t[i][1], t[i][3]))
                    for j in range(4):
                        b.store(vs[j], self.vb, b.add(dst, (4 * i + j) * C * Tb + tx0), nt)

        b.loop(0, C, 1, lambda c, _: b.loop(0, bt, 1, lambda r, _: row(c, r)))

    def output_transform(self, n, ty0, bt: int, half_last: bool):
        lay, g, b, V = self.lay, self.g, self.b, self.lay.V
        K, Tb, TW = g.K, lay.Tb, lay.TW
        OHW, PHW = g.OH * g.OW, g.PH * g.PW
        vt2 = ir.VectorType.get([2 * V], b.f32)

        def row(k, r, rows_out: int):
            ty = b.add(ty0, r)
            src = b.add(b.mul(k, Tb), b.mul(r, TW))
            bias = b.bcast(self.bias, k) if self.bias is not None else None
            obase = b.add(b.mul(n, K * OHW), b.mul(k, OHW), b.mul(ty, 2 * g.OW))
            pbase = b.add(b.mul(n, K * PHW), b.mul(k, PHW), b.mul(ty, g.PW))
            for tx0, nt in self._tile_vectors():
                m = [[b.load(self.mb, b.add(src, (4 * i + j) * K * Tb + tx0)) for j in range(4)] for i in range(4)]
                s = [[arith.addf(arith.addf(m[0][j], m[1][j]), m[2][j]) for j in range(4)],
                     [arith.subf(arith.subf(m[1][j], m[2][j]), m[3][j]) for j in range(4)]]
                y = [[arith.addf(arith.addf(s[a][0], s[a][1]), s[a][2]),
                      arith.subf(arith.subf(s[a][1], s[a][2]), s[a][3])] for a in range(rows_out)]
                if bias is not None:
                    y = [[arith.addf(v, bias) for v in ya] for ya in y]
                ncols = min(2 * V, g.OW - 2 * tx0)
                mask = b.mask(ncols, 2 * V) if ncols < 2 * V else None
                idxs = [b.v(b.add(obase, a * g.OW + 2 * tx0)) for a in range(rows_out)]
                if self.res is not None:
                    # Even / odd lanes of the residual's output columns are the tiles' two columns.
                    for a in range(rows_out):
                        if mask is None:
                            r2 = vector.load(vt2, self.res, [idxs[a]])
                        else:
                            r2 = vector.maskedload(vt2, self.res, [idxs[a]], mask, b.splat(0.0, vt2))
                        ev, od = vector.deinterleave(r2)
                        y[a] = [arith.addf(y[a][0], ev), arith.addf(y[a][1], od)]
                y = [[b.activation(v, g.act, g.act_params) for v in ya] for ya in y]
                if not self.pool_only:
                    for a in range(rows_out):
                        val = vector.interleave(y[a][0], y[a][1])
                        if mask is None:
                            vector.store(val, self.out, [idxs[a]])
                        else:
                            vector.maskedstore(self.out, [idxs[a]], mask, val)
                if g.pool and rows_out == 2:
                    pw = min(V, g.PW - tx0)
                    if pw > 0:
                        pm = arith.maximumf(arith.maximumf(y[0][0], y[0][1]), arith.maximumf(y[1][0], y[1][1]))
                        b.store(pm, self.pout, b.add(pbase, tx0), pw)

        full = bt - 1 if half_last else bt
        b.loop(0, K, 1, lambda k, _: b.loop(0, full, 1, lambda r, _: row(k, r, 2)))
        if half_last:
            b.loop(0, K, 1, lambda k, _: row(k, bt - 1, 1))


def layout_for(spec: ConvSpec, **kw) -> _Layout:
    """The band / GEMM layout (tests and benchmarks force band sizes through it)."""
    return _Layout(replace(spec), **kw)
