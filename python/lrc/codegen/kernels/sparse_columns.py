"""Column tile for sparse convs whose filters share their kept (channel, tap) columns.

Column pruning (lrprune `column`, the style checkpoint's ADMM pruning) removes the same columns of
the GEMM's K dimension from every filter, so the layer is a dense GEMM with a shrunk K. The
pattern/one-tap kernel of sparse_conv.py walks one filter at a time: every input vector it loads
feeds one FMA per row (a load per FMA). Here FB filters form a register tile: per kept column one
index load, RB*WB input vectors and FB weight broadcasts feed FB*RB*WB FMAs (4 filters x 4 vectors:
0.5 loads per FMA instead of ~1.06).

Filters are sorted by their column sets, so filters with identical sets (column pruning: all of
them; otherwise groups that happen to share) sit in the same block; a block stores the union of
its filters' columns, with zeros where a filter lacks one. `column_tile_pays` takes this path when
that union adds at most COLUMN_MAX_OVERHEAD of extra stored MACs. Only the input channels some
column reads are copied into the scratch (column-pruned 1x1 layers of the style net keep 14 of 64
channels). Each column's input offset folds in its tap's constant (row, column) offset, so the inner
loop is one scf.for over the block's columns.
"""
from __future__ import annotations

import numpy as np
from torch_mlir.dialects import arith

from .conv import ConvSpec, prefetch_epilogue
from .sparse_conv_tail import HalfTail

# Extra stored MACs (zeros padded into a filter block's column union) the column tile may add.
COLUMN_MAX_OVERHEAD = 1.10


def choose_column_tile(s: ConvSpec):
    """FB filters x RB rows x WB vectors. 32 registers (AVX-512VL, NEON): 4 x 4 vectors (16
    accumulators, 4 inputs, broadcast weights); 16 registers: 4 x 2 (8 accumulators)."""
    from .conv import vector_registers
    from .sparse_conv import SparseTile

    V = s.vec
    flat = (s.KH, s.KW, *s.stride) == (1, 1, 1, 1) and not any(s.padding)
    cols, rows = (s.H * s.W, 1) if flat else (s.OW, s.OH)
    nvec = -(-cols // V)
    want = 4 if vector_registers(V) >= 32 else 2
    # KxK: stacked rows, because the sliding-window copy re-copies KH-1 rows per row block (7x7
    # 3->32 at 256x256: 4x1 vectors 3.7 ms, 2x2 2.7, 1x4 2.3; 3x3 layers: 2x2 5-10 % over 4x1).
    RB = min(rows, 1 if s.KH == 1 else (4 if s.KH >= 5 else 2), want)
    WB = min(max(1, want // RB), nvec)
    while WB * RB < want and RB < rows:
        RB += 1
    return SparseTile(WB, RB, 0, min(4, max(2, s.K)))


def _sorted_filters(nz: np.ndarray) -> list[int]:
    """Filters ordered so that identical column sets are adjacent (most columns first)."""
    keys = np.packbits(nz, axis=1)
    return sorted(range(nz.shape[0]), key=lambda k: (-int(nz[k].sum()), keys[k].tobytes()))


def _blocks(order: list[int], FB: int) -> list[list[int]]:
    return [order[i:i + FB] for i in range(0, len(order), FB)]


def column_tile_pays(spec: ConvSpec, w: np.ndarray) -> bool:
    """True if the filters' kept columns are shared enough (groups == 1) for the column tile."""
    if spec.groups != 1:
        return False
    FB = choose_column_tile(spec).FB
    nz = w.reshape(w.shape[0], -1) != 0
    total = int(nz.sum())
    if total == 0 or spec.K < 2:
        return False
    stored = sum(len(blk) * int(nz[blk].any(0).sum()) for blk in _blocks(_sorted_filters(nz), FB))
    return stored <= COLUMN_MAX_OVERHEAD * total


def pack_columns(spec: ConvSpec, w: np.ndarray, bias, tile=None):
    from .sparse_conv import SparsePack, _geometry, storage_stats

    if spec.groups != 1:
        raise NotImplementedError(f"sparse conv column tile (SparseTile.FB > 1) with groups={spec.groups}")
    tile = tile or choose_column_tile(spec)
    if tile.CB:
        raise ValueError(f"sparse conv {spec}: the column tile (FB={tile.FB}) takes no channel blocks (CB={tile.CB})")
    K, Cg, T = spec.K, spec.C, spec.KH * spec.KW
    FB = tile.FB
    geo = _geometry(spec, tile)
    wf = w.reshape(K, Cg * T)
    nz = wf != 0
    used = np.flatnonzero(nz.reshape(K, Cg, T).any(axis=(0, 2)))
    rank = np.full(Cg, -1, np.int64)
    rank[used] = np.arange(used.size)
    tap_off = []
    for t in range(T):
        kh, kw = divmod(t, spec.KW)
        cw = kw * spec.dilation[1]
        tap_off.append(kh * spec.dilation[0] * geo.RS + (cw % spec.stride[1]) * geo.Wq + cw // spec.stride[1])
    order = _sorted_filters(nz)
    ws, kstart, koff = [], [], []
    for blk in _blocks(order, FB):
        kstart.append(len(koff))
        for col in np.flatnonzero(nz[blk].any(0)):
            c, t = divmod(int(col), T)
            koff.append(int(rank[c]) * geo.CS + tap_off[t])
            wcol = np.zeros(FB, np.float32)
            wcol[:len(blk)] = wf[blk, col]
            ws.append(wcol)
    kstart.append(len(koff))
    i32 = lambda a: np.asarray(a if len(a) else [0], np.int64).astype(np.int32)  # noqa: E731
    if koff and max(koff) >= 2**31:
        raise ValueError(f"sparse conv {spec}: koff overflows int32")
    order = np.asarray(order, np.int64)
    weights = np.concatenate(ws).astype(np.float32) if ws else np.zeros(FB, np.float32)
    b = None if bias is None else np.ascontiguousarray(np.asarray(bias, np.float32).reshape(K)[order])
    stored = sum(len(blk) * (kstart[i + 1] - kstart[i]) for i, blk in enumerate(_blocks(list(order), FB)))
    pack = SparsePack(spec, tuple((t,) for t in range(T)), weights, b, i32(kstart), np.zeros(0, np.int32),
                      i32(koff), i32(order * spec.OH * spec.OW), order, tile, nnz=stored, kernels=len(koff),
                      chans=i32(used))
    pack.stats = storage_stats(pack, w)
    return pack


def emit_column_blocks(em, base, obase, nv: int, last: int, rb: int):
    """Every filter block on one tile of rb rows x nv vectors (em: the sparse_conv emitter)."""
    b, K, FB = em.b, em.s.K, em.fb
    nfull, rem = divmod(K, FB)
    b.loop(0, nfull, 1, lambda blk, _: _block(em, blk, FB, base, obase, nv, last, rb))
    if rem:
        _block(em, nfull, rem, base, obase, nv, last, rb)


def _block(em, blk, fb: int, base, obase, nv: int, last: int, rb: int):
    s, g, b = em.s, em.geo, em.b
    V, FB = s.vec, em.fb
    slot0 = b.mul(blk, FB)
    slots = [b.add(slot0, f) for f in range(fb)]
    if em.bias is not None:
        init = [b.bcast(em.bias, slots[f]) for f in range(fb) for _ in range(rb * nv)]
    else:
        init = [b.splat(0.0)] * (fb * rb * nv)
    half = HalfTail.of(s, nv, last, b)  # 16 lanes, last vector <= 8 lanes used: ymm
    if half is not None:
        init = half.narrow_tile(init, nv)
    j0 = em.idx(em.kstart, blk)
    j1 = em.idx(em.kstart, b.add(blk, 1))
    obs = [b.add(obase, em.idx(em.ooff, slots[f])) for f in range(fb)]
    prefetch_epilogue(b, em.res, em.out, [b.add(ob, i * s.OW) for ob in obs for i in range(rb)], (nv - 1) * V + last)

    def body(j, accs):
        ib = b.add(base, em.idx(em.koff, j))
        xs = [[half.load(em.src, b.add(ib, i * g.SH * g.RS + v * V)) if half and v == nv - 1
               else b.load(em.src, b.add(ib, i * g.SH * g.RS + v * V), None) for v in range(nv)] for i in range(rb)]
        wj = arith.muli(j, b.c(FB))
        for f in range(fb):
            wt = b.bcast(em.wts, b.add(wj, f))
            wh = half.narrow(wt) if half else None
            for i in range(rb):
                for v in range(nv):
                    a = (f * rb + i) * nv + v
                    accs[a] = b.fma(xs[i][v], wh if half and v == nv - 1 else wt, accs[a])
        return accs

    accs = b.loop(j0, j1, 1, body, init)
    if half is not None:
        accs = half.widen_tile(accs, nv)
    for f, ob in enumerate(obs):
        for i in range(rb):
            for v in range(nv):
                lanes = last if v == nv - 1 else V
                at = b.add(ob, i * s.OW + v * V)
                val = accs[(f * rb + i) * nv + v]
                if em.res is not None:
                    val = arith.addf(val, b.load(em.res, at, lanes))
                b.store(b.activation(val, s.act, s.act_params), em.out, at, lanes)
