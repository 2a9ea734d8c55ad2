"""Pattern-specialised sparse 2-D convolution kernels (PatDNN-style), emitted as scf/vector/memref IR.

Compact storage (`pack_sparse_conv`, FKW-like): filters are grouped, per filter the kept kernels are
grouped by pattern, and only the pattern's taps of each kept kernel are stored, densely, in that
order. Per kept kernel there is one int32 (its input-channel offset), per (filter, pattern) two
int32 (first kernel, weight offset); there is no index per weight. Removed kernels (connectivity
pruning), removed filters and removed channels cost nothing; a removed filter only stores act(bias).

Kernel (`emit_sparse_conv_func`), NCHW, vectors along the output width like conv.py:

    n -> group -> [padded copy] -> RB output rows -> width tile of WB vectors -> filter (scf.for)
      -> one scf.for per pattern over the filter's kernels of that pattern
         -> the pattern's taps unrolled with their (row, column) offsets as constants

A register tile is 1 filter x RB rows x WB vectors; the accumulators are the iter_args of the pattern
loops. Inside a kernel the only index load is the kernel's channel offset, the taps' offsets are
compile-time constants, and loads shared between stacked rows are issued once. Bias initialises the
accumulators; residual and activation are applied before the store, which writes the filter's real
output channel (the filter order is a permutation chosen at pack time, undone by the store: no copy).

1x1 layers and layers whose kernels have irregular tap sets use the same loop with one-tap patterns:
that is a sparse-matrix x dense-matrix product (XNNPACK-style SpMM) over the (channel, tap) columns,
where column/channel pruning simply removes columns. 1x1 stride-1 layers read panels of the input
copied into a scratch (`flat_group`); every other layer reads a padded, column-phase-split copy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, memref

from ._builder import KernelBuilder, check_act, flat_memref
from .conv import ConvSpec

# 1x1 layers: pixels per copied panel, in vectors (1024 floats: 4 KiB per channel, 256 KiB for 64
# channels, so a panel stays in L2 while every filter walks it).
PANEL_VECTORS = 128

# More distinct tap sets than this in a layer: decompose kernels into single taps instead.
MAX_PATTERNS = 16


@dataclass(frozen=True)
class SparseTile:
    WB: int  # vectors along the output width
    RB: int  # stacked output rows


@dataclass
class _Geometry:
    """Where the kernel reads its input: the caller's buffer ("flat" 1x1) or a padded copy ("prep")."""

    mode: str
    rows: int
    cols: int
    RS: int  # elements between source rows
    CS: int  # elements between source channels
    Hs: int = 0
    Ws: int = 0
    Wq: int = 0
    PB: int = 0  # flat: pixels per copied panel


def _geometry(s: ConvSpec, WB: int) -> _Geometry:
    V = s.vec
    pt, pl, pb, pr = s.padding
    sh, sw = s.stride
    dh, dw = s.dilation
    if (s.KH, s.KW, sh, sw) == (1, 1, 1, 1) and not any(s.padding):
        # Panels of PB pixels of every channel are copied into a scratch with a pitch that is not a
        # multiple of 4 KiB (see _SparseEmitter.flat_group).
        PB = min(-(-(s.H * s.W) // V), PANEL_VECTORS) * V
        return _Geometry("flat", 1, s.H * s.W, 0, PB + V, PB=PB)
    Hs = (s.OH - 1) * sh + (s.KH - 1) * dh + 1
    Ws = (s.OW - 1) * sw + (s.KW - 1) * dw + 1
    need = -(-s.OW // V) * V + ((s.KW - 1) * dw) // sw
    Wq = -(-max(-(-Ws // sw), need) // V) * V
    return _Geometry("prep", s.OH, s.OW, sw * Wq, Hs * sw * Wq, Hs, Ws, Wq)


def choose_tile(s: ConvSpec) -> SparseTile:
    """Register tile by a model fitted to measurements (docs/sparse.md, Zen 4, 1 thread).

    A tap's weight broadcast is shared by the WB*RB accumulators, and stacked rows share the input
    vectors of taps one row apart, so multi-tap patterns favour tall tiles: 2 vectors x 4 rows
    (8 accumulators hide the 4-cycle FMA latency on 2 pipes) beat 4x2, 3x3, 4x3 and 8x1 by 5-25 %
    on 3x3 layers with 64-128 channels. One-tap kernels (1x1, SpMM) have no row sharing: 8 vectors x
    1 row, as XNNPACK's 32-64 pixel blocks.
    """
    V = s.vec
    flat = (s.KH, s.KW, *s.stride) == (1, 1, 1, 1) and not any(s.padding)
    cols = s.H * s.W if flat else s.OW
    rows = 1 if flat else s.OH
    nvec = -(-cols // V)
    if s.KH * s.KW == 1:
        WB, RB = min(8, nvec), 1
    else:
        WB, RB = min(2, nvec), 1
    while WB * RB < 8 and RB < 8 and RB < rows:
        RB += 1
    return SparseTile(WB, RB)


# Dense MACs / stored sparse MACs above which the sparse kernel is used (lrc.codegen.ops_dense):
# the sparse loops run at ~55-70 % of the dense kernels' FLOP rate (bench/results/table1.md), so
# they win from ~1.6x fewer MACs; one-tap kernels (1x1 SpMM) reuse nothing and need ~2x.
MIN_MAC_REDUCTION = {"pattern": 1.6, "one_tap": 2.0}


def worth_it(pack: "SparsePack") -> bool:
    s = pack.spec
    dense = s.K * (s.C // s.groups) * s.KH * s.KW
    ratio = dense / max(1, pack.nnz)
    one_tap = all(len(p) == 1 for p in pack.patterns)
    return ratio >= MIN_MAC_REDUCTION["one_tap" if one_tap else "pattern"]


@dataclass
class SparsePack:
    """The compact form of one sparse conv (all arrays flat, in kernel argument order)."""

    spec: ConvSpec
    patterns: tuple[tuple[int, ...], ...]  # kept flat tap positions per pattern id
    weights: np.ndarray  # f32: per filter slot, per pattern, per kernel: the pattern's taps
    bias: np.ndarray | None  # f32, in filter-slot order
    kstart: np.ndarray  # i32 [G*Kg*(P+1)]: first kernel of (slot, pattern); [.., P] = end
    wadj: np.ndarray  # i32 [G*Kg*P]: weight offset of kernel j of (slot, p) is wadj + j*len(p)
    koff: np.ndarray  # i32 [kernels]: input-channel offset (channel * channel stride) of kernel j
    ooff: np.ndarray  # i32 [G*Kg]: output offset (channel * OH*OW) of filter slot
    order: np.ndarray  # filter slot -> output channel
    tile: SparseTile
    nnz: int = 0  # stored weights (incl. zeros inside a kept pattern)
    kernels: int = 0
    stats: dict = field(default_factory=dict)

    def arrays(self) -> list[np.ndarray]:
        out = [self.weights]
        if self.bias is not None:
            out.append(self.bias)
        return out + [self.kstart, self.wadj, self.koff, self.ooff]


def kernel_tap_sets(weight: np.ndarray, library: Sequence[Sequence[int]] | None = None):
    """(patterns, ids[K, Cg]) describing which taps of every kernel are stored.

    With a library, each non-empty kernel gets the library pattern covering its non-zeros. Without
    one, the distinct non-zero tap sets of the layer become the patterns if there are at most
    MAX_PATTERNS of them; otherwise (irregular sparsity, column pruning) every tap is its own
    one-tap pattern and a kernel is split into its non-zero taps (patterns = None is returned then).
    """
    K, Cg = weight.shape[:2]
    nz = weight.reshape(K, Cg, -1) != 0
    T = nz.shape[2]
    if library:
        from lrc.importer.sparsity_annotations import kernel_pattern_ids

        return [tuple(int(t) for t in p) for p in library], kernel_pattern_ids(weight, library)
    keys = np.packbits(nz, axis=2, bitorder="little")
    flat = keys.reshape(K * Cg, -1)
    uniq, inv = np.unique(flat, axis=0, return_inverse=True)
    inv = inv.reshape(K, Cg)
    pats, ids = [], np.full((K, Cg), -1, np.int32)
    for u, row in enumerate(uniq):
        taps = tuple(int(t) for t in np.flatnonzero(np.unpackbits(row, bitorder="little")[:T]))
        if taps:
            ids[inv == u] = len(pats)
            pats.append(taps)
    if len(pats) > MAX_PATTERNS:
        return None, None
    return pats, ids


def pack_sparse_conv(spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None,
                     library: Sequence[Sequence[int]] | None = None, tile: SparseTile | None = None) -> SparsePack:
    """Compact form of `weight` [K, Cg, KH, KW]; `library` (from #lr.sparsity) fixes the patterns."""
    check_act(spec.act, spec.act_params)
    if min(spec.padding) < 0 or spec.C % spec.groups or spec.K % spec.groups or spec.OH < 1 or spec.OW < 1:
        raise ValueError(f"invalid sparse conv {spec}")
    G, K = spec.groups, spec.K
    Kg, Cg, T = K // G, spec.C // G, spec.KH * spec.KW
    w = np.asarray(weight, np.float32)
    if w.shape != (K, Cg, spec.KH, spec.KW):
        raise ValueError(f"weight shape {w.shape} != {(K, Cg, spec.KH, spec.KW)}")
    tile = tile or choose_tile(spec)
    geo = _geometry(spec, tile.WB)
    wf = w.reshape(K, Cg, T)
    patterns, ids = kernel_tap_sets(w, library)
    if patterns is None:  # one-tap patterns: kernel (k, c, tap) for every non-zero weight
        patterns = [(t,) for t in range(T)]
    P = len(patterns)
    ws, kstart, wadj, koff, ooff = [], [], [], [], []
    order = np.zeros(K, np.int64)
    j = wpos = 0
    for gi in range(G):
        # Filter order: most kernels first, filters with the same pattern mix next to each other
        # (balanced, regular loops; the permutation is undone by the output store).
        def signature(k):
            if ids is not None:
                counts = np.bincount(ids[k][ids[k] >= 0], minlength=P)
            else:
                counts = np.count_nonzero(wf[k], axis=0)
            return (-int(counts.sum()), tuple(-counts))

        filt = sorted(range(gi * Kg, (gi + 1) * Kg), key=signature)
        for slot, k in enumerate(filt):
            order[gi * Kg + slot] = k
            ooff.append(k * spec.OH * spec.OW)
            for p, taps in enumerate(patterns):
                kstart.append(j)
                wadj.append(wpos - j * len(taps))
                if ids is not None:
                    chans = np.flatnonzero(ids[k] == p)
                else:
                    chans = np.flatnonzero(wf[k, :, taps[0]] != 0)
                for c in chans:
                    ws.append(wf[k, c, list(taps)])
                    koff.append(c * geo.CS)
                    j += 1
                    wpos += len(taps)
            kstart.append(j)
    weights = np.concatenate(ws).astype(np.float32) if ws else np.zeros(1, np.float32)
    b = None if bias is None else np.ascontiguousarray(np.asarray(bias, np.float32).reshape(K)[order])
    i32 = lambda a: np.asarray(a if len(a) else [0], np.int64).astype(np.int32)  # noqa: E731
    for name, arr in (("koff", koff), ("wadj", wadj), ("kstart", kstart)):
        if arr and (max(arr) >= 2**31 or min(arr) < -2**31):
            raise ValueError(f"sparse conv {spec}: {name} overflows int32")
    pack = SparsePack(spec, tuple(tuple(p) for p in patterns), weights, b, i32(kstart), i32(wadj), i32(koff),
                      i32(ooff), order, tile, nnz=wpos, kernels=j)
    pack.stats = storage_stats(pack, w)
    return pack


def storage_stats(pack: SparsePack, weight: np.ndarray) -> dict:
    """Bytes of the compact forms vs dense vs CSR (f32 values, int32 indices) vs the non-zeros alone.

    `fkw_bytes` is the serialised FKW-style form: the stored weights, one uint16 per kept kernel
    (channel in 12 bits, pattern id in 4), one uint16 kernel count and one uint16 output channel per
    filter, and the pattern library (one byte per tap). `runtime_bytes` is what the generated code
    reads: int32 tables with precomputed offsets (kernel start and weight offset per filter and
    pattern, one input offset per kernel, one output offset per filter), traded for fewer index
    operations in the loop.
    """
    nnz_true = int(np.count_nonzero(weight))
    K = weight.shape[0]
    fits16 = weight.shape[1] < 4096 and len(pack.patterns) <= 16
    per_kernel = 2 if fits16 else 4
    fkw = 4 * pack.nnz + per_kernel * pack.kernels + 4 * K + sum(len(p) for p in pack.patterns)
    runtime = 4 * (pack.nnz + pack.kernels) + 4 * (pack.kstart.size + pack.wadj.size) + 4 * pack.ooff.size
    vals = max(1, 4 * nnz_true)
    return {
        "dense_bytes": 4 * weight.size,
        "csr_bytes": 4 * (2 * nnz_true + K + 1),
        "fkw_bytes": fkw,
        "runtime_bytes": runtime,
        "nonzero_value_bytes": 4 * nnz_true,
        "fkw_over_values": fkw / vals,
        "csr_over_values": 4 * (2 * nnz_true + K + 1) / vals,
        "runtime_over_values": runtime / vals,
        "nnz": nnz_true,
        "stored_weights": pack.nnz,
        "kernels": pack.kernels,
        "patterns": len(pack.patterns),
    }


# --------------------------------------------------------------------------------------------------
# Emission


def emit_sparse_conv_func(pack: SparsePack, name: str) -> func.FuncOp:
    """Private func `(in, weights, [bias], kstart, wadj, koff, ooff, [residual], out)`."""
    s = pack.spec
    arrays = pack.arrays()
    i32 = ir.IntegerType.get_signless(32)
    types = [flat_memref(s.N * s.C * s.H * s.W)]
    for a in arrays:
        types.append(ir.MemRefType.get([a.size], i32 if a.dtype == np.int32 else ir.F32Type.get()))
    out_size = s.N * s.K * s.OH * s.OW
    if s.residual:
        types.append(flat_memref(out_size))
    types.append(flat_memref(out_size))
    fn = func.FuncOp(name, (types, []), visibility="private")
    fn.add_entry_block()
    with ir.InsertionPoint(fn.entry_block):
        args = list(fn.arguments)
        has_bias = pack.bias is not None
        x, wts = args[0], args[1]
        bias = args[2] if has_bias else None
        tabs = args[2 + has_bias: 6 + has_bias]
        res = args[-2] if s.residual else None
        _SparseEmitter(pack, x, wts, bias, tabs, res, args[-1], KernelBuilder(fn, s.vec)).run()
        func.ReturnOp([])
    return fn


def _segments(cols: int, V: int, WB: int) -> list[tuple[int, int, int]]:
    """[(count, vectors per tile, lanes of its last vector)]: full tiles, then one tile with the
    leftover full vectors and the partial vector (at most WB vectors)."""
    full = cols // V
    part = cols - full * V
    n, r = divmod(full, WB)
    out = [(n, WB, V)] if n else []
    if r or part:
        out.append((1, r + (part > 0), part if part else V))
    return out


class _SparseEmitter:
    def __init__(self, pack: SparsePack, x, wts, bias, tabs, res, out, b: KernelBuilder):
        self.pk, self.s, self.b = pack, pack.spec, b
        self.x, self.wts, self.bias, self.res, self.out = x, wts, bias, res, out
        self.kstart, self.wadj, self.koff, self.ooff = tabs
        self.geo = _geometry(self.s, pack.tile.WB)
        self.OHW = self.s.OH * self.s.OW
        # patterns with no kernel anywhere in the layer get no loop at all
        P = len(pack.patterns)
        ks = pack.kstart.reshape(-1, P + 1)
        self.live = [p for p in range(P) if (ks[:, p + 1] - ks[:, p]).any()]

    def idx(self, mem, i):
        b = self.b
        return arith.index_cast(b.index, memref.load(mem, [b.v(i)]))

    def run(self):
        s, g, b = self.s, self.geo, self.b
        G = s.groups
        scratch = None
        size = -(-((s.C // G) * g.CS) // s.vec) * s.vec
        scratch = memref.alloc(flat_memref(size), [], [], alignment=64)
        if g.mode == "prep":
            b.zero_fill(scratch, size)  # padding; the copies below only overwrite the interior
        self.src = scratch

        def per_image(n, _):
            def per_group(gi, _):
                if g.mode == "prep":
                    self.prep(n, gi)
                self.group(n, gi, 0)

            b.loop(0, G, 1, per_group)

        b.loop(0, s.N, 1, per_image)
        memref.dealloc(scratch)

    def group(self, n, gi, in_base):
        s, g, b, t = self.s, self.geo, self.b, self.pk.tile
        V, RB = s.vec, t.RB
        Kg = s.K // s.groups
        out_img = b.mul(n, s.K * self.OHW)
        if g.mode == "flat":
            return self.flat_group(n, gi, out_img)
        segs = _segments(g.cols, V, t.WB)

        def rows(oh, rb):
            row_in = b.add(in_base, b.mul(oh, s.stride[0] * g.RS))
            row_out = b.add(out_img, b.mul(oh, s.OW))

            def filters(ow0, nv, last):
                b.loop(b.mul(gi, Kg), b.add(b.mul(gi, Kg), Kg), 1,
                       lambda slot, _: self.tile(slot, b.add(row_in, ow0), b.add(row_out, ow0), nv, last, rb))

            start = 0
            for count, nv, last in segs:
                span = nv * V
                if count == 1:
                    filters(start, nv, last)
                else:
                    b.loop(0, count, 1, lambda wi, _, st=start, nv=nv, span=span: filters(b.add(st, b.mul(wi, span)), nv, V))
                start += count * span

        main = (g.rows // RB) * RB
        b.loop(0, main, RB, lambda oh, _: rows(oh, RB))
        if g.rows % RB:
            rows(main, g.rows % RB)

    def tile(self, slot, base, obase, nv, last, rb):
        """Filter `slot`: rb output rows x nv vectors starting at input `base` / output `obase`."""
        s, g, b, pk = self.s, self.geo, self.b, self.pk
        V = s.vec
        P = len(pk.patterns)
        if self.bias is not None:
            init = [b.bcast(self.bias, slot)] * (rb * nv)
        else:
            init = [b.splat(0.0)] * (rb * nv)
        accs = init
        krow = b.mul(slot, P + 1)
        for p in self.live:
            taps = pk.patterns[p]
            L = len(taps)
            j0 = self.idx(self.kstart, b.add(krow, p))
            j1 = self.idx(self.kstart, b.add(krow, p + 1))
            wa = self.idx(self.wadj, b.add(b.mul(slot, P), p))
            offs = []  # (tap number, row within tile, source offset) per FMA
            for ti, t in enumerate(taps):
                kh, kw = divmod(t, s.KW)
                cw = kw * s.dilation[1]
                col = (cw % s.stride[1]) * g.Wq + cw // s.stride[1]
                for i in range(rb):
                    offs.append((ti, i, (i * s.stride[0] + kh * s.dilation[0]) * g.RS + col))

            def kbody(j, accs, taps=taps, L=L, wa=wa, offs=offs):
                ib = b.add(base, self.idx(self.koff, j))
                wb = b.add(wa, arith.muli(j, b.c(L)) if L > 1 else j)
                loads: dict[int, list] = {}
                ws = [b.bcast(self.wts, b.add(wb, ti)) for ti in range(L)]
                for ti, i, off in offs:
                    if off not in loads:
                        loads[off] = [b.load(self.src, b.add(ib, off + v * V),
                                             None) for v in range(nv)]
                    xs = loads[off]
                    for v in range(nv):
                        a = i * nv + v
                        accs[a] = b.fma(xs[v], ws[ti], accs[a])
                return accs

            accs = b.loop(j0, j1, 1, kbody, accs)
        oc = self.idx(self.ooff, slot)
        ob = b.add(obase, oc)
        for i in range(rb):
            for v in range(nv):
                lanes = last if v == nv - 1 else V
                at = b.add(ob, i * s.OW + v * V)
                val = accs[i * nv + v]
                if self.res is not None:
                    val = arith.addf(val, b.load(self.res, at, lanes))
                val = b.activation(val, s.act, s.act_params)
                b.store(val, self.out, at, lanes)

    def flat_group(self, n, gi, out_img):
        """1x1 stride 1 (SpMM): panels of PB pixels of the group's channels are copied side by side.

        Reading a pixel block of every channel straight from a big plane touches one stream per
        channel, with rows a multiple of 4 KiB apart (same L1 sets, more streams than the prefetcher
        follows): 5.7 GFLOP/s measured on 32->192 at 256x256. The panel copy is read once, has a
        pitch of PB + V floats, and every filter then walks it from L2/L1.
        """
        s, g, b, t = self.s, self.geo, self.b, self.pk.tile
        V, Kg = s.vec, s.K // s.groups
        npan, rem = divmod(g.cols, g.PB)

        def panel(p0, plen):
            self.copy_panel(n, gi, p0, plen)
            ob = b.add(out_img, p0)
            start = 0
            for count, nv, last in _segments(plen, V, t.WB):
                span = nv * V

                def filters(ow0, nv=nv, last=last):
                    b.loop(b.mul(gi, Kg), b.add(b.mul(gi, Kg), Kg), 1,
                           lambda slot, _: self.tile(slot, ow0, b.add(ob, ow0), nv, last, 1))

                if count == 1:
                    filters(start)
                else:
                    b.loop(0, count, 1, lambda wi, _, st=start, span=span, f=filters: f(b.add(st, b.mul(wi, span))))
                start += count * span

        b.loop(0, npan, 1, lambda i, _: panel(b.mul(i, g.PB), g.PB))
        if rem:
            panel(npan * g.PB, rem)

    def copy_panel(self, n, gi, p0, plen: int):
        s, g, b = self.s, self.geo, self.b
        V, Cg = s.vec, s.C // s.groups
        xb = b.add(b.mul(n, s.C * s.H * s.W), b.mul(gi, Cg * s.H * s.W), p0)
        nfull, r = divmod(plen, V)

        def chan(c, _):
            src = b.add(xb, b.mul(c, s.H * s.W))
            dst = b.mul(c, g.CS)
            U = 4 if nfull >= 4 else 1
            main = nfull // U * U

            def body(i, _):  # i counts vectors
                for u in range(U):
                    o = b.add(b.mul(i, V), u * V)
                    b.store(b.load(self.x, b.add(src, o)), self.src, b.add(dst, o))

            b.loop(0, main, U, body)
            for k in range(main, nfull):
                b.store(b.load(self.x, b.add(src, k * V)), self.src, b.add(dst, k * V))
            if r:  # zeros in the lanes past the plane: the scratch row has room for them
                b.store(b.load(self.x, b.add(src, nfull * V), r), self.src, b.add(dst, nfull * V))

        b.loop(0, Cg, 1, chan)

    # ---- padded / column-phase-split copy of one group's input channels ------------------------
    def prep(self, n, gi):
        """S[c][pt + ih][(pl + iw) % sw][(pl + iw) // sw] = x[n, gi*Cg + c, ih, iw] (inside the window)."""
        s, g, b = self.s, self.geo, self.b
        V = s.vec
        pt, pl = s.padding[0], s.padding[1]
        sw = s.stride[1]
        Cg = s.C // s.groups
        ih_hi = min(s.H, g.Hs - pt)
        iw_hi = min(s.W, g.Ws - pl)
        if ih_hi <= 0 or iw_hi <= 0:
            return
        src0 = b.add(b.mul(n, s.C * s.H * s.W), b.mul(gi, Cg * s.H * s.W))

        def chan(c, _):
            def row(ih, _):
                xr = b.add(src0, b.mul(c, s.H * s.W), b.mul(ih, s.W))
                sr = b.add(b.mul(c, g.CS), b.mul(ih, g.RS), pt * g.RS)
                if sw == 1:
                    nfull = iw_hi // V

                    def vbody(i, _):
                        o = b.mul(i, V)
                        b.store(b.load(self.x, b.add(xr, o)), self.src, b.add(sr, pl, o))

                    b.loop(0, nfull, 1, vbody)
                    if iw_hi % V:
                        r = iw_hi % V
                        b.store(b.load(self.x, b.add(xr, nfull * V), r), self.src, b.add(sr, pl + nfull * V), r)
                else:
                    for ph in range(sw):
                        # source columns landing in phase ph: (pl + iw) % sw == ph
                        iw0 = (ph - pl) % sw
                        cnt = len(range(iw0, iw_hi, sw))
                        if cnt <= 0:
                            continue
                        dst0 = ph * g.Wq + (pl + iw0) // sw

                        def sbody(t, _, iw0=iw0, dst0=dst0):
                            val = memref.load(self.x, [b.v(b.add(xr, iw0, b.mul(t, sw)))])
                            memref.store(val, self.src, [b.v(b.add(sr, dst0, t))])

                        b.loop(0, cnt, 1, sbody)

            b.loop(0, ih_hi, 1, row)

        b.loop(0, Cg, 1, chan)
