"""Dense 3x3 stride-1 convolution by Winograd's minimal filtering F(m x m, 3x3), m = 4 or 2
(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).

Each m x m block of outputs ("tile") is computed from the a x a input patch under it (a = m + 2)
with a*a products per input channel instead of 9*m*m: the patch d goes to V = B^T d B, the filter g
to U = G g G^T (once, at compile time, in float64), the a*a positions xi of the transformed domain
are independent matrix products M[xi] = U[xi] . V[xi] over the input channels, and the output tile
is A^T M A. Multiplications drop 4x for F(4x4) (36 per 16 outputs), 2.25x for F(2x2); the
transforms are additions and a few multiplications by small constants.

Layout, per band of BT tile rows (so that the transformed input and products stay in cache):

* the input rows the band reads are copied, zero padded and split into m column phases, by the
  direct conv's own prep (an a x a stride-m "conv" over the input has exactly these patches), so
  the patches of V consecutive tiles are contiguous vector loads;
* V[xi][c][t] for the band's tiles t (row-major over the band, unpadded), vectorised over tiles;
* the a*a products are one grouped 1x1 conv (a*a groups of C -> K over the band's tiles), run by
  the direct conv's flat GEMM tiles;
* the output transform adds bias, residual, activation and a fused 2x2 max pool (pool windows never
  straddle tiles, m being even) and writes the NCHW output, interleaving the tiles' m columns.

The weights are packed as the GEMM's grouped [a*a K, C, 1, 1] conv weights. Rounding: F(2x2)
errors stay at a few 1e-7 of the output's magnitude, F(4x4) at a few 1e-6 (tests: 1e-4).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, vector

from ._builder import KernelBuilder, Scratch, scratch_bytes
from .conv import ConvSpec, _ConvEmitter, _Geom, _geom_from_spec, _pack, _plan, open_conv_func, vector_registers

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
# F(4x4, 3x3) (4x fewer multiplications instead of 2.25x) on planes of at least this size.
TILE4 = True
TILE4_MIN_PLANE = 8

# Transform matrices (Lavin & Gray 2016), by output tile size m: F(m x m, 3x3) reads an
# (m + 2) x (m + 2) patch. F(4x4) interpolates at 0, +-1, +-2 and infinity.
_MATRICES = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
         [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


def matrices(m: int):
    """(B^T, G, A^T) of F(m x m, 3x3) as float64 arrays."""
    return tuple(np.array(x, np.float64) for x in _MATRICES[m])


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


def tile_size(spec: ConvSpec) -> int:
    """m of F(m x m, 3x3): 4 where the plane holds enough 4x4 tiles, else 2."""
    return 4 if TILE4 and spec.OH >= TILE4_MIN_PLANE and spec.OW >= TILE4_MIN_PLANE else 2


def lanes(spec: ConvSpec) -> int:
    """16 lanes where the x86 tiles may use 32 registers on AVX-512VL (as kernels.conv.dense_lanes:
    the GEMM runs on whole vectors, and zmm halves its loads per FMA), else the spec's width."""
    from lrc.targets.aot import cpu_flags

    if spec.vec == 8 and vector_registers(8) >= 32 and {"avx512f", "avx512vl"} <= cpu_flags():
        return 16
    return spec.vec


def filter_transform(weight: np.ndarray, m: int = 2) -> np.ndarray:
    """[K, C, 3, 3] -> U [a*a, K, C] (xi = a * row + column of G g G^T, a = m + 2), in float64."""
    _, G, _ = matrices(m)
    w = np.asarray(weight, np.float64)
    u = np.einsum("ai,kcij,bj->abkc", G, w, G)
    return u.reshape(-1, w.shape[0], w.shape[1]).astype(np.float32)


class _Layout:
    """Tile size, tile counts, the band, and the geometries of the prep copy and of the grouped GEMM."""

    def __init__(self, spec: ConvSpec, band_rows: int | None = None, m: int | None = None):
        g = _geom_from_spec(spec)
        self.g, self.V = g, spec.vec
        self.m = m = m or tile_size(spec)
        self.a = a = m + 2
        self.P = a * a  # transformed positions: GEMM groups
        V = self.V
        self.TH, self.TW = -(-g.OH // m), -(-g.OW // m)
        # The input patches as an a x a stride-m conv: its prep copy is the padded, phase-split band.
        self.gin = _Geom(g.N, g.C, g.H, g.W, 1, a, a, self.TH, self.TW, m, m, 1, 1, g.pt, g.pl, 1, 1, 1,
                         "none", (), False, V)
        pin = _plan(self.gin)
        assert pin.mode == "prep" and pin.border_zero, pin
        # The transforms run on vectors of VT tiles, narrower than the GEMM's V where a tile row is
        # short (7 tiles: 8 lanes, 4 tiles: 4), so that their lanes are not mostly padding.
        VT = V
        while NARROW_TRANSFORMS and VT > 4 and self.TW <= VT // 2:
            VT //= 2
        self.VT = VT
        last_tx0 = (self.TW - 1) // VT * VT
        reach = (a - 1) // m  # phase columns a patch reaches beyond its tile's first
        pin.Wq = max(self.TW + reach, last_tx0 + VT + reach)  # the last vector's loads stay in the row
        pin.RS = m * pin.Wq
        self.pin = pin
        self.BT = min(band_rows or -(-BAND_TILES // self.TW), self.TH)
        pin.BH, pin.BR = self.BT, m * (self.BT - 1) + a
        pin.CS = pin.BR * pin.RS
        self.Tb = -(-self.BT * self.TW // V) * V  # GEMM columns of a full band
        # The products: a 1x1 conv with P groups of C -> K over the band's Tb tiles.
        self.gg = _Geom(1, self.P * g.C, 1, self.Tb, self.P * g.K, 1, 1, 1, self.Tb, 1, 1, 1, 1, 0, 0, 1, 1,
                        self.P, "none", (), False, V)
        pg = _plan(self.gg)
        assert pg.mode == "flat", pg
        pg.PT, pg.c_bounds = 0, None  # the band is the cache block
        self.pg = pg

    def scratch_sizes(self) -> list[int]:
        g = self.g
        return [g.C * self.pin.CS, self.P * g.C * self.Tb + self.V, self.P * g.K * self.Tb + self.V]


def pack_winograd_weights(spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None,
                          layout: _Layout | None = None) -> list[np.ndarray]:
    want = (spec.K, spec.C, 3, 3)
    if tuple(weight.shape) != want:
        raise ValueError(f"weight shape {tuple(weight.shape)} != {want}")
    lay = layout or _Layout(spec)
    u = filter_transform(weight, lay.m).reshape(lay.P * spec.K, spec.C, 1, 1)
    out = [_pack(lay.gg, lay.pg, u)]
    if bias is not None:
        out.append(np.ascontiguousarray(np.asarray(bias, np.float32).reshape(spec.K)))
    return out


def emit_winograd_func(spec: ConvSpec, name: str, packed: Sequence[np.ndarray], external_scratch: bool = False,
                       layout: _Layout | None = None, rows: tuple[int, int] | None = None) -> func.FuncOp:
    """Private func with emit_conv_func's signature: `(in, weights, [bias], [residual], out,
    [pooled out], [scratch])`. `rows` = [ty0, ty1): only those tile rows (tile_grid(spec)[0] in all),
    a thread's share of the output; the function still takes the whole buffers."""
    if not supported(spec):
        raise NotImplementedError(f"{name}: Winograd F(m x m, 3x3) needs a 3x3 stride-1 undilated ungrouped conv: "
                                  f"{spec}")
    lay = layout or _Layout(spec)
    g = lay.g
    rows = rows or (0, lay.TH)
    if not 0 <= rows[0] < rows[1] <= lay.TH:
        raise ValueError(f"{name}: tile rows {rows} outside [0, {lay.TH})")
    wsize = lay.P * lay.pg.nkb * g.C * lay.pg.KB
    if packed[0].size != wsize:
        raise ValueError(f"packed weight size {packed[0].size} != {wsize} (packed for another spec?)")
    nscratch = scratch_bytes(lay.scratch_sizes()) if external_scratch else 0
    fn, a = open_conv_func(g, name, packed, nscratch)
    with ir.InsertionPoint(fn.entry_block):
        b = KernelBuilder(fn, lay.V)
        bt = KernelBuilder(fn, lay.VT) if lay.VT != lay.V else b
        _WinogradEmitter(lay, b, bt, a.scratch, a.x, a.wts, a.bias, a.res, a.out, a.pout).run(*rows)
        func.ReturnOp([])
    return fn


def _combine(b: KernelBuilder, coeffs, xs):
    """sum_k coeffs[k] * xs[k] with adds / subs for +-1 and FMAs for the other coefficients."""
    acc = None
    for c, x in zip(coeffs, xs):
        c = float(c)
        if c == 0.0:
            continue
        if acc is None:
            acc = x if c == 1.0 else arith.negf(x) if c == -1.0 else arith.mulf(x, b.splat(c))
        elif c == 1.0:
            acc = arith.addf(acc, x)
        elif c == -1.0:
            acc = arith.subf(acc, x)
        else:
            acc = vector.fma(x, b.splat(c), acc)
    return acc if acc is not None else b.splat(0.0)


# Transforms on vectors narrower than the GEMM's where tile rows are short (_Layout.VT); False: the
# GEMM's width everywhere (the A/B switch).
NARROW_TRANSFORMS = True
# Factored F(4x4) transforms (shared partial sums): 13 instead of 22 ops per 1-D input transform,
# 10 instead of 17 per output transform. False: every row as its own _combine (the A/B switch).
FACTORED = True


def _apply_bt(b: KernelBuilder, m: int, BTm, d):
    """B^T d for one column (or row) d of a patch: a vectors."""
    if not (FACTORED and m == 4):
        return [_combine(b, row, d) for row in BTm]
    c = b.splat
    t1 = vector.fma(d[2], c(-4.0), d[4])  # d4 - 4 d2
    t2 = vector.fma(d[1], c(-4.0), d[3])  # d3 - 4 d1
    t3 = arith.subf(d[4], d[2])
    t4 = arith.subf(d[3], d[1])
    return [vector.fma(d[0], c(4.0), vector.fma(d[2], c(-5.0), d[4])),
            arith.addf(t1, t2), arith.subf(t1, t2),
            vector.fma(t4, c(2.0), t3), vector.fma(t4, c(-2.0), t3),
            vector.fma(d[1], c(4.0), vector.fma(d[3], c(-5.0), d[5]))]


def _apply_at(b: KernelBuilder, m: int, ATm, v, rows: int):
    """The first `rows` entries of A^T v for one column (or row) v of a product tile."""
    if not (FACTORED and m == 4):
        return [_combine(b, ATm[p], v) for p in range(rows)]
    c = b.splat
    s1, d1 = arith.addf(v[1], v[2]), arith.subf(v[1], v[2])
    s2, d2 = arith.addf(v[3], v[4]), arith.subf(v[3], v[4])
    ys = [lambda: arith.addf(arith.addf(v[0], s1), s2), lambda: vector.fma(d2, c(2.0), d1),
          lambda: vector.fma(s2, c(4.0), s1), lambda: arith.addf(vector.fma(d2, c(8.0), d1), v[5])]
    return [ys[p]() for p in range(rows)]


def _interleave(vs):
    """Lane j of vector i -> lane len(vs) * j + i (len(vs) = 1, 2 or 4)."""
    if len(vs) == 1:
        return vs[0]
    if len(vs) == 2:
        return vector.interleave(vs[0], vs[1])
    return vector.interleave(vector.interleave(vs[0], vs[2]), vector.interleave(vs[1], vs[3]))


def _deinterleave(v, n: int):
    """The inverse of _interleave for n vectors."""
    if n == 1:
        return [v]
    ev, od = vector.deinterleave(v)
    if n == 2:
        return [ev, od]
    e0, e2 = vector.deinterleave(ev)
    o1, o3 = vector.deinterleave(od)
    return [e0, o1, e2, o3]


class _WinogradEmitter:
    def __init__(self, lay: _Layout, b: KernelBuilder, bt: KernelBuilder, scratch: Scratch, x, wts, bias, res,
                 out, pout):
        """`b`: V lanes (prep copy, GEMM); `bt`: VT lanes (transforms)."""
        self.lay, self.b, self.bt, self.g = lay, b, bt, lay.g
        self.scratch = scratch
        self.bias, self.res, self.out = bias, res, out
        g = lay.g
        self.pool_only = bool(g.pool) and not g.pool_keep
        self.pout = out if pout is None else pout
        self.BT_, _, self.AT_ = matrices(lay.m)
        self.prep_em = _ConvEmitter(lay.gin, lay.pin, x, None, None, None, None, b)
        self.gemm = _ConvEmitter(lay.gg, lay.pg, None, wts, None, None, None, b)

    def run(self, ty_lo: int, ty_hi: int):
        lay, g, b = self.lay, self.g, self.b
        sizes = lay.scratch_sizes()
        sc, vb, mb = (self.scratch.alloc(n) for n in sizes)
        self.prep_em.src = sc
        self.gemm.src, self.gemm.out = vb, mb
        self.sc, self.vb, self.mb = sc, vb, mb
        BT, TH = lay.BT, lay.TH
        nfull = (ty_hi - ty_lo - 1) // BT  # the last band is emitted on its own: its last tile row may be partial
        last = g.OH - lay.m * (TH - 1) if ty_hi == TH else lay.m

        def image(n, _):
            b.loop(0, nfull, 1, lambda bi, _: self.band(n, b.add(ty_lo, b.mul(bi, BT)), BT, lay.m))
            self.band(n, ty_lo + nfull * BT, ty_hi - ty_lo - nfull * BT, last)

        b.loop(0, g.N, 1, image)
        for buf in (mb, vb, sc):
            self.scratch.free(buf)

    def band(self, n, ty0, bt: int, last_rows: int):
        """Tile rows [ty0, ty0 + bt); the last of them has `last_rows` valid output rows."""
        lay, g, b, V = self.lay, self.g, self.b, self.lay.V
        self.prep_em.prep(n, 0, ty0, bt)
        self.input_transform(bt)
        cols = -(-bt * lay.TW // V) * V
        C, K, Tb = g.C, g.K, lay.Tb
        b.loop(0, lay.P, 1, lambda xi, _: self.gemm.group(xi, b.mul(xi, C * Tb), b.mul(xi, K * Tb), 1, cols))
        self.output_transform(n, ty0, bt, last_rows)

    def _tile_vectors(self):
        """(tx0, valid tiles) of the vectors across one tile row."""
        TW, V = self.lay.TW, self.lay.VT
        return [(tx0, min(V, TW - tx0)) for tx0 in range(0, TW, V)]

    def input_transform(self, bt: int):
        lay, g, b = self.lay, self.g, self.bt
        pin, TW, Tb, C, m, a = lay.pin, lay.TW, lay.Tb, g.C, lay.m, lay.a
        RS, Wq, BTm = pin.RS, pin.Wq, self.BT_

        def row(c, r):
            src = b.add(b.mul(c, pin.CS), b.mul(r, m * RS))
            dst = b.add(b.mul(c, Tb), b.mul(r, TW))
            for tx0, nt in self._tile_vectors():
                d = [[b.load(self.sc, b.add(src, i * RS + (j % m) * Wq + j // m + tx0)) for j in range(a)]
                     for i in range(a)]
                cols = [_apply_bt(b, m, BTm, [d[k][j] for k in range(a)]) for j in range(a)]  # cols[j][i]
                for i in range(a):
                    vs = _apply_bt(b, m, BTm, [cols[j][i] for j in range(a)])
                    for j in range(a):
                        b.store(vs[j], self.vb, b.add(dst, (a * i + j) * C * Tb + tx0), nt)

        b.loop(0, C, 1, lambda c, _: b.loop(0, bt, 1, lambda r, _: row(c, r)))

    def output_transform(self, n, ty0, bt: int, last_rows: int):
        lay, g, b, V = self.lay, self.g, self.bt, self.lay.VT
        K, Tb, TW, m, a = g.K, lay.Tb, lay.TW, lay.m, lay.a
        OHW, PHW = g.OH * g.OW, g.PH * g.PW
        ATm = self.AT_
        vtm = ir.VectorType.get([m * V], b.f32)

        def row(k, r, rows_out: int):
            ty = b.add(ty0, r)
            src = b.add(b.mul(k, Tb), b.mul(r, TW))
            bias = b.bcast(self.bias, k) if self.bias is not None else None
            obase = b.add(b.mul(n, K * OHW), b.mul(k, OHW), b.mul(ty, m * g.OW))
            pbase = b.add(b.mul(n, K * PHW), b.mul(k, PHW), b.mul(ty, m // 2 * g.PW))
            for tx0, nt in self._tile_vectors():
                M = [[b.load(self.mb, b.add(src, (a * i + j) * K * Tb + tx0)) for j in range(a)] for i in range(a)]
                cols = [_apply_at(b, m, ATm, [M[i][j] for i in range(a)], rows_out) for j in range(a)]
                y = [_apply_at(b, m, ATm, [cols[j][p] for j in range(a)], m) for p in range(rows_out)]
                if bias is not None:
                    y = [[arith.addf(v, bias) for v in yp] for yp in y]
                ncols = min(m * V, g.OW - m * tx0)  # output pixels of the m interleaved columns
                idxs = [b.add(obase, p * g.OW + m * tx0) for p in range(rows_out)]
                if self.res is not None:
                    for p in range(rows_out):
                        r2 = b.load(self.res, idxs[p], ncols, vtm)
                        y[p] = [arith.addf(v, rv) for v, rv in zip(y[p], _deinterleave(r2, m))]
                y = [[b.activation(v, g.act, g.act_params) for v in yp] for yp in y]
                if not self.pool_only:
                    for p in range(rows_out):
                        b.store(_interleave(y[p]), self.out, idxs[p], ncols)
                if g.pool:
                    # Pool window (pr, pc) of a tile is its outputs [2pr, 2pr+1] x [2pc, 2pc+1]; floor
                    # mode: only windows whose two rows exist.
                    pcols = min(m // 2 * V, g.PW - m // 2 * tx0)
                    for pr in range(m // 2):
                        if 2 * pr + 1 >= rows_out or pcols <= 0:
                            break
                        win = [arith.maximumf(arith.maximumf(y[2 * pr][2 * pc], y[2 * pr][2 * pc + 1]),
                                              arith.maximumf(y[2 * pr + 1][2 * pc], y[2 * pr + 1][2 * pc + 1]))
                               for pc in range(m // 2)]
                        b.store(_interleave(win), self.pout, b.add(pbase, pr * g.PW + m // 2 * tx0), pcols)

        full = bt - 1 if last_rows < m else bt
        b.loop(0, K, 1, lambda k, _: b.loop(0, full, 1, lambda r, _: row(k, r, m)))
        if last_rows < m:
            b.loop(0, K, 1, lambda k, _: row(k, bt - 1, last_rows))


def tile_grid(spec: ConvSpec) -> tuple[int, int]:
    """(tile rows, tiles per row) of the output; thread parts split the rows (emit_winograd_func's
    `rows`)."""
    m = tile_size(spec)
    return -(-spec.OH // m), -(-spec.OW // m)


def layout_for(spec: ConvSpec, **kw) -> _Layout:
    """The band / GEMM layout: made once per conv for packing and emission (tests and benchmarks
    force band sizes and tile sizes through it)."""
    return _Layout(spec, **kw)
