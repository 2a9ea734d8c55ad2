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

Column-pruned layers (every filter keeps the same (channel, tap) columns) use sparse_columns.py
instead: FB filters per register tile, a dense GEMM over the kept columns (pack_sparse_conv decides).

1x1 layers and layers whose kernels have irregular tap sets use the same loop with one-tap patterns:
that is a sparse-matrix x dense-matrix product (XNNPACK-style SpMM) over the (channel, tap) columns,
where column/channel pruning simply removes columns. 1x1 stride-1 layers read panels of the input
copied into a scratch (`flat_group`); every other layer reads a padded, column-phase-split copy.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, memref, vector

from ._builder import KernelBuilder, Scratch, check_act, flat_memref, mark_scratch, scratch_arg_type, scratch_bytes
from .conv import ConvSpec, half_index, prefetch_epilogue, store_pooled
from .sparse_conv_tail import HalfTail

# 1x1 layers: pixels per copied panel, in vectors (1024 floats: 4 KiB per channel, 256 KiB for 64
# channels, so a panel stays in L2 while every filter walks it).
PANEL_VECTORS = 128

# Padded copies bigger than this are made per row block, as a sliding window that stays in L1/L2
# (Zen 4, 1 thread: 26->32 at 256x256 7.8 -> 6.2 ms, 64->64 at 224x224 20.4 -> 17.6 ms, 512->512
# at 14x14 (0.5 MB) 2.8 -> 2.4 ms); tiny layers keep one copy (fewer loop trips).
WINDOW_MIN_BYTES = 64 << 10

# Strided 1x1 layers on big planes gather per row block (see _geometry).
SUB_WINDOW = True

# Row-strided KxK layers (stride 2) on big planes copy a phase-split sliding window per row block too
# (not the whole padded copy), and take the short tiles of choose_tile. Switches for A/B runs.
STRIDED_WINDOW = True
STRIDED_TILE = True

# Prefetch, after copying a row block's window, the input rows the next one adds (see prep_window).
WINDOW_PREFETCH = True

# Register tile (WB, RB) of lane-shifted pattern kernels with a fused 2x2 pool (rows in pairs). Whole
# pruned VGG-16 (Table 1), fused / unfused time: 3x4 0.955-0.957, 2x4 0.973, 4x2 1.047 (too few rows
# share each input), 4x4 1.066 (spills, like 4x4 without the pool).
POOL_TILE = (3, 4)

# More distinct tap sets than this in a layer: decompose kernels into single taps instead.
MAX_PATTERNS = 16


@dataclass(frozen=True)
class SparseTile:
    WB: int  # vectors along the output width
    RB: int  # stacked output rows
    CB: int = 0  # input channels per block (0: all of the group's channels in one block)
    FB: int = 1  # filters per register tile (> 1: the column tile, filters sharing their columns)
    PB: int = 0  # 1x1 stride-1 panels: pixels per copied panel (0: PANEL_VECTORS vectors)
    SHIFT: int = -1  # column-shifted inputs by lane shifts of aligned loads: 1 yes, 0 no, -1 model

    def blocks(self, Cg: int) -> int:
        return 1 if self.CB <= 0 or self.CB >= Cg else -(-Cg // self.CB)


@dataclass
class _Geometry:
    """Where the kernel reads its input: panels of the caller's buffer ("flat": 1x1 stride 1), a
    padded, column-phase-split copy ("prep"), or the strided pixels of a 1x1 stride > 1 layer gathered
    into OH x OW rows ("sub": a stride-2 shortcut conv reads a quarter of its input, once)."""

    mode: str
    rows: int
    cols: int
    RS: int  # elements between source rows
    CS: int  # elements between source channels
    Hs: int = 0
    Ws: int = 0
    Wq: int = 0
    PB: int = 0  # flat: pixels per copied panel
    SH: int = 1  # source rows between output rows (the row stride left to the kernel)
    WR: int = 0  # prep: rows of a sliding window copied per row block (0: the whole image at once)


def _geometry(s: ConvSpec, tile: SparseTile) -> _Geometry:
    V = s.vec
    pt, pl, pb, pr = s.padding
    sh, sw = s.stride
    dh, dw = s.dilation
    if (s.KH, s.KW, sh, sw) == (1, 1, 1, 1) and not any(s.padding):
        # Panels of PB pixels of every channel are copied into a scratch with a pitch that is not a
        # multiple of 4 KiB (see _SparseEmitter.flat_group).
        PB = tile.PB or min(-(-(s.H * s.W) // V), PANEL_VECTORS) * V
        if PB % V:
            raise ValueError(f"sparse conv panel of {PB} pixels is not a multiple of {V} lanes")
        return _Geometry("flat", 1, s.H * s.W, 0, PB + V, PB=PB)
    if (s.KH, s.KW) == (1, 1) and not any(s.padding):
        Wq = -(-s.OW // V) * V
        Cg = s.C // s.groups
        if SUB_WINDOW and tile.RB < s.OH and tile.blocks(Cg) == 1 and Cg * s.OH * Wq * 4 > WINDOW_MIN_BYTES:
            # Big planes: gather each row block's pixels just before its filters run (a scratch that
            # stays in L1/L2) instead of the whole subsampled image first (written out, read back).
            return _Geometry("sub", s.OH, s.OW, Wq, tile.RB * Wq, s.OH, s.OW, Wq, WR=tile.RB)
        return _Geometry("sub", s.OH, s.OW, Wq, s.OH * Wq, s.OH, s.OW, Wq)
    Hs = (s.OH - 1) * sh + (s.KH - 1) * dh + 1
    Ws = (s.OW - 1) * sw + (s.KW - 1) * dw + 1
    need = -(-s.OW // V) * V + ((s.KW - 1) * dw) // sw
    Wq = -(-max(-(-Ws // sw), need) // V) * V
    Cg = s.C // s.groups
    WR = (tile.RB - 1) * sh + (s.KH - 1) * dh + 1
    # a fused pool never uses an odd last conv row (unless the conv's plane is kept too)
    rows = s.OH // 2 * 2 if s.pool and not s.pool_keep else s.OH
    if ((sw == 1 or STRIDED_WINDOW) and tile.blocks(Cg) == 1 and WR < Hs
            and Cg * Hs * sw * Wq * 4 > WINDOW_MIN_BYTES and min(s.H, Hs - pt) > 0 and min(s.W, Ws - pl) > 0):
        # Big planes: copy only the RB output rows' input window, per row block, into a scratch
        # that stays in L2, instead of the whole padded image (written to memory, then read back).
        return _Geometry("prep", rows, s.OW, sw * Wq, WR * sw * Wq, Hs, Ws, Wq, SH=sh, WR=WR)
    return _Geometry("prep", rows, s.OW, sw * Wq, Hs * sw * Wq, Hs, Ws, Wq, SH=sh)


def choose_tile(s: ConvSpec) -> SparseTile:
    """Register tile by a model fitted to measurements (docs/sparse.md, Zen 4, 1 thread).

    A tap's weight broadcast is shared by the WB*RB accumulators, and stacked rows share the input
    vectors of taps one row apart, so multi-tap patterns favour tall tiles: 2 vectors x 4 rows
    (8 accumulators hide the 4-cycle FMA latency on 2 pipes) beat 4x2, 3x3, 4x3 and 8x1 by 5-25 %
    on 3x3 layers with 64-128 channels. One-tap kernels (1x1, SpMM) have no row sharing: 8 vectors x
    1 row, as XNNPACK's 32-64 pixel blocks.
    """
    from .conv import vector_registers

    V = s.vec
    flat = (s.KH, s.KW, *s.stride) == (1, 1, 1, 1) and not any(s.padding)
    cols = s.H * s.W if flat else s.OW
    rows = 1 if flat else s.OH
    nvec = -(-cols // V)
    # 32 registers (host JIT on AVX-512VL, NEON): 16 accumulators, 4 vectors x 4 rows, measured
    # +5-15 % over 2x4 on 128-512-channel 3x3 layers (docs/sparse.md); 16 registers: 8 accumulators.
    wide = vector_registers(V) >= 32
    if s.KH * s.KW == 1:
        WB, RB = min(8, nvec), 1
    elif _shift_ok(s) and wide:
        # Lane-shifted inputs (shifted_loads) keep more vectors live per kernel: 12 accumulators
        # (4x3), or 2x4 on planes of two vectors, measured best (+5-25 % over 4x4 / 2x8 without the
        # shifts, 3x3 layers at 6.8x fewer MACs: docs/sparse.md); 4x4 and 2x8 with shifts spilled.
        WB = min(4, nvec)
        if s.pool:  # row pairs: POOL_TILE (docs/kernels.md, Round 8)
            return SparseTile(min(POOL_TILE[0], nvec), POOL_TILE[1])
        return SparseTile(WB, min(3 if WB >= 3 else 4, rows))
    elif wide and s.stride[0] > 1 and STRIDED_TILE:
        # Row stride 2: stacked output rows share almost no input rows (only tap row 2 of one with
        # tap row 0 of the next), so tall tiles only add live vectors and window rows; 8
        # accumulators, 4x2 or 2x4, were best or within noise of it on stride-2 layers, where the
        # old 16-accumulator 2x8 lost 15-30 % (docs/sparse.md).
        WB = min(4, nvec)
        return SparseTile(WB, min(2 if WB >= 3 else 4, rows))
    else:
        WB, RB = min(4 if wide else 2, nvec), 1
    while WB * RB < (16 if wide and s.KH * s.KW > 1 else 8) and RB < 8 and RB < rows:
        RB += 1
    if s.pool and RB % 2:
        RB += 1 if RB < 8 else -1  # a fused pool takes whole row pairs
    # No input-channel blocks by default: with the sliding-window copy (WINDOW_MIN_BYTES) they lost
    # 5-10 % on 256-512-channel layers (partial sums through the output); SparseTile.CB sets them.
    return SparseTile(WB, RB)


def sparse_lanes(s: ConvSpec) -> int:
    """f32 lanes for the sparse kernel of `s`: 16 (zmm) where the x86 tiles may use 32 vector
    registers (vector_registers, i.e. AVX-512VL: the host JIT there, AOT at -march=x86-64-v4) and the
    CPU has AVX-512F/VL, else `s.vec`. The dense kernels stay at 8 lanes (docs/kernels.md).

    Measured on Zen 4 (docs/sparse.md, kernel alone, CPU time): 16 lanes halve the load instructions
    of the load-slot-bound 3x3 loop, +15 % on 64- and 112-wide planes, +2-5 % on 28 and 224, and +6-9 %
    on 1x1 SpMM. A last vector with at most 8 used lanes runs at half width (sparse_conv_tail.HalfTail),
    so 56-wide planes no longer waste 8 of 64 lanes (they lost 8 % at 16 lanes with a full last vector,
    gain 5-6 % with the half one); planes at most 16 wide keep 8 lanes (14 wide: -5 to -7 %).
    """
    from lrc.targets.aot import cpu_flags

    from .conv import vector_registers

    if s.vec != 8 or vector_registers(8) < 32 or not {"avx512f", "avx512vl"} <= cpu_flags():
        return s.vec
    if (s.KH, s.KW, *s.stride) == (1, 1, 1, 1) and not any(s.padding):
        return 16 if s.H * s.W >= 64 else s.vec  # flat SpMM panels: only the plane's last vector is partial
    return 16 if s.OW > 16 else s.vec


def _shift_ok(s: ConvSpec) -> bool:
    """Layers whose multi-tap kernels may shift lanes instead of loading unaligned: 16-lane (AVX-512)
    kernels reading the padded copy with column stride 1 and taps less than a vector apart. (Column
    stride 2, whose third tap column is phase 0 shifted by one, measured 0.84-1.08x on color's
    stride-2 layers: those are not load-bound the same way.)"""
    flat = (s.KH, s.KW) == (1, 1) and not any(s.padding)
    return s.vec == 16 and not flat and s.stride[1] == 1 and (s.KW - 1) * s.dilation[1] < s.vec


def shifted_loads(s: ConvSpec, g: "_Geometry", tile: SparseTile) -> bool:
    """Whether multi-tap kernels build their column-shifted input vectors from aligned loads by lane
    shifts (`_SparseEmitter.shifted_rows`) instead of unaligned loads. `tile.SHIFT` forces it (1) or
    not (0) on 16-lane (AVX-512) kernels, the only ones with a one-instruction lane shift (valignd;
    8-lane AVX2 would need two cross-lane shuffles, NEON's EXT was not measured)."""
    if g.mode != "prep" or not _shift_ok(s):
        return False
    if tile.SHIFT >= 0:
        return bool(tile.SHIFT)
    return s.vec == 16


# Dense MACs / stored sparse MACs above which the sparse kernel is used (lrc.codegen.ops_dense):
# the sparse loops run at ~55-70 % of the dense kernels' FLOP rate (bench/results/table1.md), so
# they win from ~1.6x fewer MACs; one-tap kernels (1x1 SpMM) reuse nothing and need ~2x.
MIN_MAC_REDUCTION = {"pattern": 1.6, "one_tap": 2.0}
# Where the dense alternative is the Winograd kernel (3x3 stride 1, kernels/winograd.py), by its
# tile size m. Kernel alone, 16 lanes (docs/kernels.md, Round 10): 4-of-9 patterns alone (2.25x
# fewer MACs) run 0.90-1.09x the speed of F(2x2) and 0.77-0.91x of F(4x4) (64->64 at 56x56,
# 128->128 at 28x28, 32->32 at 112x112); 2.83-2.84x fewer MACs 0.98-1.08x of F(4x4), 3.2x 1.07x.
MIN_MAC_REDUCTION_VS_WINOGRAD = {2: 2.25, 4: 3.0}


def worth_it(pack: "SparsePack") -> bool:
    from .winograd import tile_size, use_winograd

    s = pack.spec
    dense = s.K * (s.C // s.groups) * s.KH * s.KW
    ratio = dense / max(1, pack.nnz)
    one_tap = all(len(p) == 1 for p in pack.patterns)
    if use_winograd(s) and ratio < MIN_MAC_REDUCTION_VS_WINOGRAD[tile_size(s)]:
        return False
    return ratio >= MIN_MAC_REDUCTION["one_tap" if one_tap else "pattern"]


@dataclass
class SparsePack:
    """The compact form of one sparse conv (all arrays flat, in kernel argument order)."""

    spec: ConvSpec
    patterns: tuple[tuple[int, ...], ...]  # kept flat tap positions per pattern id
    weights: np.ndarray  # f32: per filter slot, per pattern, per kernel: the pattern's taps
    bias: np.ndarray | None  # f32, in filter-slot order
    kstart: np.ndarray  # i32 [G*Kg*NB*(P+1)]: first kernel of (slot, channel block, pattern); [.., P] = end
    wadj: np.ndarray  # i32 [G*Kg*NB*P]: weight offset of kernel j of (slot, block, p) is wadj + j*len(p)
    koff: np.ndarray  # i32 [kernels]: input-channel offset (channel * channel stride) of kernel j
    ooff: np.ndarray  # i32 [G*Kg]: output offset (channel * OH*OW) of filter slot
    order: np.ndarray  # filter slot -> output channel
    tile: SparseTile
    nblocks: int = 1  # input-channel blocks (NB): every slot's kernels are ordered by block first
    nnz: int = 0  # stored weights (incl. zeros inside a kept pattern)
    kernels: int = 0
    stats: dict = field(default_factory=dict)
    # Column tile (tile.FB > 1, sparse_columns.py): kstart[b]..kstart[b+1] are filter block b's
    # columns, weights[j*FB + f] filter f's weight in column j, chans the input channels read.
    chans: np.ndarray | None = None

    def arrays(self) -> list[np.ndarray]:
        out = [self.weights]
        if self.bias is not None:
            out.append(self.bias)
        if self.tile.FB > 1:
            return out + [self.kstart, self.koff, self.ooff, self.chans]
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
    from .sparse_columns import column_tile_pays, pack_columns

    # Filters sharing their (channel, tap) columns run the multi-filter column tile; a library
    # (pattern kinds) means every filter keeps its own channels, so those keep the pattern kernel.
    if tile.FB > 1 if tile is not None else not library and column_tile_pays(spec, w):
        if library:
            kernel_tap_sets(w, library)  # still refuses kernels that no library pattern covers
        return pack_columns(spec, w, bias, tile)
    tile = tile or choose_tile(spec)
    geo = _geometry(spec, tile)
    wf = w.reshape(K, Cg, T)
    patterns, ids = kernel_tap_sets(w, library)
    if patterns is None:  # one-tap patterns: kernel (k, c, tap) for every non-zero weight
        patterns = [(t,) for t in range(T)]
    P = len(patterns)
    # Channel blocks only for the padded-copy path (the 1x1 panel path already keeps its panel in L2).
    NB = tile.blocks(Cg) if geo.mode != "flat" else 1
    CBk = -(-Cg // NB)
    if NB > 1 and tile.CB != CBk:
        tile = dataclasses.replace(tile, CB=CBk)
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
            for cb in range(NB):
                lo, hi = cb * CBk, min(Cg, (cb + 1) * CBk)
                for p, taps in enumerate(patterns):
                    kstart.append(j)
                    wadj.append(wpos - j * len(taps))
                    if ids is not None:
                        chans = np.flatnonzero(ids[k, lo:hi] == p) + lo
                    else:
                        chans = np.flatnonzero(wf[k, lo:hi, taps[0]] != 0) + lo
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
                      i32(ooff), order, tile, nblocks=NB, nnz=wpos, kernels=j)
    pack.stats = storage_stats(pack, w, library)
    return pack


def storage_stats(pack: SparsePack, weight: np.ndarray, library=None) -> dict:
    """Bytes of the compact forms vs dense vs CSR (f32 values, int32 indices) vs the non-zeros alone.

    `fkw_bytes` is the serialised FKW form (fkw_format.encode, with the #lr.sparsity library if
    any): the stored weights with no per-weight index, each filter's kept kernels as a ranked
    subset of its input channels plus a pattern id per kernel (or, irregular, its non-zero
    positions as a ranked subset), the library and a header. `runtime_bytes` is what the generated
    code reads: int32 tables with precomputed offsets (kernel start and weight offset per filter
    and pattern, one input offset per kernel, one output offset per filter), traded for fewer
    index operations in the loop.
    """
    from .fkw_format import encoded_size

    nnz_true = int(np.count_nonzero(weight))
    K = weight.shape[0]
    fkw = encoded_size(weight, library)
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


def packed_kernel_func(name: str, in_size: int, arrays, out_size: int, residual: bool,
                       scratch_nbytes: int = 0, pooled_size: int = 0) -> func.FuncOp:
    """Private func `(in, <arrays: i32 or f32 memrefs>, [residual], out, [pooled out], [scratch])`
    over flat buffers, with its entry block: the signature every packed sparse kernel shares (a
    scratch argument is recorded in SCRATCH_ATTR, see conv.emit_conv_func)."""
    i32 = ir.IntegerType.get_signless(32)
    types = [flat_memref(in_size)]
    for a in arrays:
        types.append(ir.MemRefType.get([a.size], i32 if a.dtype == np.int32 else ir.F32Type.get()))
    if residual:
        types.append(flat_memref(out_size))
    types.append(flat_memref(out_size))
    if pooled_size:
        types.append(flat_memref(pooled_size))
    if scratch_nbytes:
        types.append(scratch_arg_type(scratch_nbytes))
    fn = func.FuncOp(name, (types, []), visibility="private")
    mark_scratch(fn, scratch_nbytes)
    fn.add_entry_block()
    return fn


def pool_supported(pack: SparsePack) -> bool:
    """Whether the sparse kernel of `pack` can fuse its spec's 2x2 max pool (writing the pooled plane,
    and with pool_keep the conv's too): the pattern tile over a padded copy (not 1x1 panels or
    gathers, not the column tile), one channel block, row pairs."""
    s, t = pack.spec, pack.tile
    return (s.pool == 2 and not s.residual and t.FB == 1 and pack.nblocks == 1 and t.RB % 2 == 0
            and _geometry(s, t).mode == "prep")


def pixel_units(pack: SparsePack) -> int:
    """How many pieces of the output a thread can take whole with no work repeated: panels (1x1
    stride 1) or row blocks (sliding-window layers); 0 where the kernel copies the whole padded
    input first (each part would repeat that copy)."""
    s, t = pack.spec, pack.tile
    g = _geometry(s, t)
    if s.N != 1 or s.groups != 1:
        return 0
    if g.mode == "flat":
        return -(-g.cols // g.PB)
    if g.mode in ("prep", "sub") and g.WR:
        return -(-g.rows // t.RB)
    return 0


def scratch_floats(pack: SparsePack) -> int:
    """Floats of the input copy (padded rows, sliding window or pixel panels) the kernel works from."""
    s = pack.spec
    nch = int(pack.chans.size) if pack.tile.FB > 1 else s.C // s.groups
    return -(-(max(1, nch) * _geometry(s, pack.tile).CS) // s.vec) * s.vec


def emit_sparse_conv_func(pack: SparsePack, name: str, units: tuple[int, int] | None = None,
                          external_scratch: bool = False) -> func.FuncOp:
    """Private func `(in, weights, [bias], kstart, wadj, koff, ooff, [residual], out)`. `units` =
    [u0, u1): only those panels / row blocks (pixel_units) of the output, a thread's share. With
    `external_scratch` the input copy is a last i8 argument of fn.attributes[SCRATCH_ATTR] bytes
    (conv.emit_conv_func) instead of a buffer malloc'ed per call."""
    s = pack.spec
    if units is not None and not 0 <= units[0] < units[1] <= pixel_units(pack):
        raise ValueError(f"{name}: pixel units {units} outside the {pixel_units(pack)} of this sparse conv ({s})")
    if s.pool and not pool_supported(pack):
        raise NotImplementedError(f"{name}: a 2x2 max pool fused into this sparse conv ({s}, tile {pack.tile}, "
                                  f"{pack.nblocks} channel blocks)")
    arrays = pack.arrays()
    nscratch = scratch_bytes([scratch_floats(pack)]) if external_scratch else 0
    ph, pw = s.out_hw
    pooled = s.N * s.K * s.pooled_hw[0] * s.pooled_hw[1] if s.pool_keep else 0
    fn = packed_kernel_func(name, s.N * s.C * s.H * s.W, arrays, s.N * s.K * ph * pw, s.residual, nscratch, pooled)
    with ir.InsertionPoint(fn.entry_block):
        args = list(fn.arguments)
        scratch = Scratch(args.pop() if nscratch else None)
        pout = args.pop() if pooled else None
        has_bias = pack.bias is not None
        x, wts = args[0], args[1]
        bias = args[2] if has_bias else None
        tabs = args[2 + has_bias: 6 + has_bias]
        res = args[-2] if s.residual else None
        em = _SparseEmitter(pack, x, wts, bias, tabs, res, args[-1], KernelBuilder(fn, s.vec))
        em.units, em.scratch = units, scratch
        em.pout = pout if pout is not None else args[-1]
        em.run()
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
        self.units = None  # [u0, u1) of pixel_units(pack): a part's panels / row blocks
        self.scratch = Scratch()  # malloc per call unless emit_sparse_conv_func is given one
        self.x, self.wts, self.bias, self.res, self.out = x, wts, bias, res, out
        self.geo = _geometry(self.s, pack.tile)
        self.OHW = self.s.OH * self.s.OW
        self.PW = self.s.pooled_hw[1]
        self.POHW = self.s.pooled_hw[0] * self.PW
        self.pool_only = bool(self.s.pool) and not self.s.pool_keep  # only the pooled plane is written
        self.pout = out  # the pooled plane (pool_keep: its own buffer, set by emit_sparse_conv_func)
        self.fb = pack.tile.FB
        if self.fb > 1:  # column tile: only the channels some column reads are copied
            self.kstart, self.koff, self.ooff, self.chans = tabs
            self.nch = int(pack.chans.size)
            return
        self.kstart, self.wadj, self.koff, self.ooff = tabs
        self.chans, self.nch = None, self.s.C // self.s.groups
        # patterns with no kernel anywhere in the layer get no loop at all
        P = len(pack.patterns)
        ks = pack.kstart.reshape(-1, P + 1)
        self.live = [p for p in range(P) if (ks[:, p + 1] - ks[:, p]).any()]
        self.shifted_loads = shifted_loads(self.s, self.geo, pack.tile)

    def chan_loop(self, body):
        """body(c, src_c) for every copied channel: scratch channel c holds the group's input channel
        src_c (all of them, or in the column tile only those some column reads)."""
        if self.chans is None:
            self.b.loop(0, self.nch, 1, lambda c, _: body(c, c))
        else:
            self.b.loop(0, self.nch, 1, lambda c, _: body(c, self.idx(self.chans, c)))

    def filter_tiles(self, gi, base, obase, nv, last, rb, pbase=None):
        """Every filter of group gi on one tile of rb rows x nv vectors (`pbase`: the tile's place in
        the pooled plane when the conv's plane is written too)."""
        b, Kg = self.b, self.s.K // self.s.groups
        if self.fb > 1:
            from .sparse_columns import emit_column_blocks

            return emit_column_blocks(self, base, obase, nv, last, rb)
        b.loop(b.mul(gi, Kg), b.add(b.mul(gi, Kg), Kg), 1,
               lambda slot, _: self.tile(slot, base, obase, nv, last, rb, pbase))

    def idx(self, mem, i):
        b = self.b
        return arith.index_cast(b.index, memref.load(mem, [b.v(i)]))

    def run(self):
        s, g, b = self.s, self.geo, self.b
        G = s.groups
        scratch = None
        size = scratch_floats(self.pk)
        scratch = self.scratch.alloc(size)
        # Column stride 1: prep() writes every row whole (left padding, data, right padding and slack)
        # and zeroes the padding rows, so the scratch is written once. A whole-buffer zero fill first
        # was a second pass over it: 13 MB per call on a 64-channel 224x224 layer, ~10 % of its time.
        # Column stride 2 likewise writes every column-phase row whole (and can then use the window).
        self.borders = (g.mode == "prep" and s.stride[1] in (1, 2) and min(s.H, g.Hs - s.padding[0]) > 0
                        and min(s.W, g.Ws - s.padding[1]) > 0)
        if g.mode == "prep" and not self.borders:
            b.zero_fill(scratch, size)  # padding; the copies below only overwrite the interior
        self.src = scratch

        def per_image(n, _):
            def per_group(gi, _):
                if g.mode == "prep" and not g.WR:
                    self.prep(n, gi)
                elif g.mode == "sub" and not g.WR:
                    self.gather(n, gi)
                self.group(n, gi, 0)

            b.loop(0, G, 1, per_group)

        b.loop(0, s.N, 1, per_image)
        self.scratch.free(scratch)

    def group(self, n, gi, in_base):
        s, g, b, t = self.s, self.geo, self.b, self.pk.tile
        V, RB = s.vec, t.RB
        Kg = s.K // s.groups
        out_img = b.mul(n, s.K * (self.POHW if self.pool_only else self.OHW))
        pool_img = b.mul(n, s.K * self.POHW)
        if g.mode == "flat":
            return self.flat_group(n, gi, out_img)
        segs = _segments(g.cols, V, t.WB)

        def rows(oh, rb):
            if g.WR and g.mode == "sub":
                self.gather(n, gi, oh, rb)
                row_in = in_base
            elif g.WR:
                self.prep_window(n, gi, oh)
                row_in = in_base
            else:
                row_in = b.add(in_base, b.mul(oh, g.SH * g.RS))
            # pooled row oh/2, column ow0/2 (rows and tiles start even)
            prow = b.add(pool_img, b.mul(half_index(b, oh), self.PW)) if s.pool else None
            row_out = prow if self.pool_only else b.add(out_img, b.mul(oh, s.OW))

            def filters(ow0, nv, last):
                col = half_index(b, ow0) if self.pool_only else ow0
                pbase = b.add(prow, half_index(b, ow0)) if s.pool_keep else None
                self.filter_tiles(gi, b.add(row_in, ow0), b.add(row_out, col), nv, last, rb, pbase)

            start = 0
            for count, nv, last in segs:
                span = nv * V
                if count == 1:
                    filters(start, nv, last)
                else:
                    b.loop(0, count, 1, lambda wi, _, st=start, nv=nv, span=span: filters(b.add(st, b.mul(wi, span)), nv, V))
                start += count * span

        def all_rows(cb):
            self.cb = cb
            nfull = g.rows // RB
            u0, u1 = self.units or (0, nfull + bool(g.rows % RB))
            if min(u1, nfull) > u0:
                b.loop(u0 * RB, min(u1, nfull) * RB, RB, lambda oh, _: rows(oh, RB))
            if g.rows % RB and u1 > nfull:
                rows(nfull * RB, g.rows % RB)

        # Channel blocks outermost: a block's weights (K x CB/P-kept kernels) stay in L2 and a width
        # tile's input window (CB channels x RB+KH-1 rows) in L1 while every row and filter walks them;
        # partial sums go through the output (one extra load/store of a tile per block).
        b.loop(0, self.pk.nblocks, 1, lambda cb, _: all_rows(cb))

    def tile(self, slot, base, obase, nv, last, rb, pbase=None):
        """Filter `slot`: rb output rows x nv vectors starting at input `base` / output `obase` (and
        `pbase` in the pooled plane when both planes are written)."""
        s, g, b, pk = self.s, self.geo, self.b, self.pk
        V = s.vec
        P, NB = len(pk.patterns), pk.nblocks
        cb = self.cb if NB > 1 else 0
        oc = self.idx(self.ooff, slot)
        if s.pool:  # ooff holds channel * OH*OW: the same channel's offset in the pooled plane
            poc = b.mul(arith.divui(oc, b.c(self.OHW)), self.POHW)
            pb = b.add(pbase, poc) if s.pool_keep else b.add(obase, poc)
        ob = pb if self.pool_only else b.add(obase, oc)
        lanes_of = lambda v: last if v == nv - 1 else V  # noqa: E731
        if self.bias is not None:
            init = [b.bcast(self.bias, slot)] * (rb * nv)
        else:
            init = [b.splat(0.0)] * (rb * nv)
        if self.res is not None and NB > 1:  # residual joins in the first block (out may alias it)
            init = [arith.addf(init[i * nv + v], b.load(self.res, b.add(ob, i * s.OW + v * V), lanes_of(v)))
                    for i in range(rb) for v in range(nv)]
        if NB > 1:  # later blocks continue from the partial sums in the output
            first = arith.cmpi(arith.CmpIPredicate.eq, b.v(cb), b.c(0))
            init = [arith.select(first, init[i * nv + v], b.load(self.out, b.add(ob, i * s.OW + v * V), lanes_of(v)))
                    for i in range(rb) for v in range(nv)]
        # A last vector with at most half its lanes used runs at half width (16-lane tiles on 56-wide
        # planes: 3.5 zmm per row instead of 4); on Zen 4 a ymm FMA costs half a zmm one.
        half = HalfTail.of(s, nv, last, b) if NB == 1 else None
        if self.pool_only:
            prefetch_epilogue(b, None, self.out, [b.add(ob, i * self.PW) for i in range(rb // 2)],
                              ((nv - 1) * V + last) // 2)
        elif NB == 1:
            prefetch_epilogue(b, self.res, self.out, [b.add(ob, i * s.OW) for i in range(rb)], (nv - 1) * V + last)
        accs = init if half is None else half.narrow_tile(init, nv)
        blk = b.add(b.mul(slot, NB), cb)
        krow = b.mul(blk, P + 1)
        for p in self.live:
            taps = pk.patterns[p]
            L = len(taps)
            j0 = self.idx(self.kstart, b.add(krow, p))
            j1 = self.idx(self.kstart, b.add(krow, p + 1))
            wa = self.idx(self.wadj, b.add(b.mul(blk, P), p))
            offs = []  # (tap number, row within tile, source row offset, column offset) per FMA
            for ti, t in enumerate(taps):
                kh, kw = divmod(t, s.KW)
                cw = kw * s.dilation[1]
                phase, col = (cw % s.stride[1]) * g.Wq, cw // s.stride[1]  # column-phase row, offset in it
                for i in range(rb):
                    offs.append((ti, i, (i * g.SH + kh * s.dilation[0]) * g.RS + phase, col))
            shifted = self.shifted_loads and any(col for *_, col in offs)

            def kbody(j, accs, taps=taps, L=L, wa=wa, offs=offs, shifted=shifted):
                ib = b.add(base, self.idx(self.koff, j))
                wb = b.add(wa, arith.muli(j, b.c(L)) if L > 1 else j)
                ws = [b.bcast(self.wts, b.add(wb, ti)) for ti in range(L)]
                wh = [half.narrow(w) for w in ws] if half else None
                if shifted:
                    xs_of = self.shifted_rows(ib, offs, nv, half)
                else:
                    loads: dict[int, list] = {}

                    def xs_of(row, col):
                        off = row + col
                        if off not in loads:
                            loads[off] = [half.load(self.src, b.add(ib, off + v * V)) if half and v == nv - 1
                                          else b.load(self.src, b.add(ib, off + v * V), None) for v in range(nv)]
                        return loads[off]
                for ti, i, row, col in offs:
                    xs = xs_of(row, col)
                    for v in range(nv):
                        a = i * nv + v
                        accs[a] = b.fma(xs[v], wh[ti] if half and v == nv - 1 else ws[ti], accs[a])
                return accs

            accs = b.loop(j0, j1, 1, kbody, accs)
        if half is not None:
            accs = half.widen_tile(accs, nv)
        if s.pool and rb >= 2:  # row pairs, then column pairs (one channel block, no residual)
            acts = [b.activation(a, s.act, s.act_params) for a in accs]
            if s.pool_keep:  # every row, also an odd last one the pool does not use
                for r in range(rb):
                    for v in range(nv):
                        b.store(acts[r * nv + v], self.out, b.add(ob, r * s.OW + v * V), lanes_of(v))
            for i in range(0, rb - 1, 2):
                m = [arith.maximumf(acts[i * nv + v], acts[(i + 1) * nv + v]) for v in range(nv)]
                store_pooled(b, self.pout, m, b.add(pb, (i // 2) * self.PW), nv, last)
            return
        is_last = arith.cmpi(arith.CmpIPredicate.eq, b.v(cb), b.c(NB - 1)) if NB > 1 else None
        for i in range(rb):
            for v in range(nv):
                lanes = lanes_of(v)
                at = b.add(ob, i * s.OW + v * V)
                val = accs[i * nv + v]
                if self.res is not None and NB == 1:
                    val = arith.addf(val, b.load(self.res, at, lanes))
                if is_last is not None and s.act != "none":
                    val = arith.select(is_last, b.activation(val, s.act, s.act_params), val)
                else:
                    val = b.activation(val, s.act, s.act_params)
                b.store(val, self.out, at, lanes)

    def shifted_rows(self, ib, offs, nv, half):
        """Input vectors of one kernel's taps with fewer split loads. The scratch rows start on vector
        boundaries and the tiles on vector multiples, so column offset 0 loads are aligned, while a
        16-lane load at +4/+8 bytes spans two cache lines on Zen 4 and takes two load slots: that made
        the 3x3 loop load-bound (docs/sparse.md). On a source row that some tap reads at offset 0,
        the aligned vectors are loaded once (plus the one after the tile) and the vectors at offsets
        1..V-1 are lane shifts of two neighbours (one valignd each). A row read only at non-zero
        offsets keeps its unaligned loads (shifting there would add shuffles and a load per row; it
        measured slower, as did shifting every row: the extra vectors spilled the tile).
        Returns xs_of(row, col) -> the nv vectors (the last one half-width with `half`)."""
        b, V = self.b, self.s.vec
        cols: dict[int, set] = {}
        for _, _, row, col in offs:
            cols.setdefault(row, set()).add(col)
        got: dict[tuple[int, int], list] = {}
        for row in sorted(cols):
            need = cols[row]
            if 0 not in need:
                for col in need:
                    got[(row, col)] = [half.load(self.src, b.add(ib, row + col + v * V)) if half and v == nv - 1
                                       else b.load(self.src, b.add(ib, row + col + v * V), None) for v in range(nv)]
                continue
            wide = max(need) > 0
            # The scratch row holds at least one vector past the last tile (_geometry: need), so the
            # extra aligned load stays inside it.
            al = []
            for v in range(nv + (1 if wide and not half else 0)):
                if half and v == nv - 1 and not wide:
                    al.append(half.load(self.src, b.add(ib, row + v * V)))
                else:
                    al.append(b.load(self.src, b.add(ib, row + v * V), None))
            for col in need:
                xs = []
                for v in range(nv):
                    if col == 0 and not (half and v == nv - 1 and wide):
                        xs.append(al[v])
                    elif half and v == nv - 1 and col + V // 2 > V:
                        # lanes past this vector (taps more than V/2 columns apart, e.g. 7x7 with
                        # dilation 2): the neighbour is not loaded for a half tail; load unaligned
                        xs.append(half.load(self.src, b.add(ib, row + col + v * V)))
                    elif half and v == nv - 1:  # lanes col..col+V/2-1 of one vector (col + V/2 <= V)
                        xs.append(self.lane_shift(al[v], al[v], col, V // 2))
                    else:
                        xs.append(self.lane_shift(al[v], al[v + 1], col, V))
                got[(row, col)] = xs
        return lambda row, col: got[(row, col)]

    def lane_shift(self, lo, hi, col: int, lanes: int):
        """Lanes col..col+lanes-1 of lo:hi (16-lane vectors), as one valignd. Written as inline asm:
        as a vector.shuffle (f32 or i32) LLVM's shuffle combiner picks vpermt2ps/pd, which needs an
        index vector per shift in a register and spilled the 16-accumulator tile."""
        from torch_mlir.dialects import llvm

        b = self.b
        vt = ir.VectorType.get([16], b.f32)
        r = llvm.inline_asm(vt, [lo, hi], f"valignd $${col}, $1, $2, $0", "=v,v,v") if col else lo
        if lanes == 16:
            return r
        return vector.extract_strided_slice(ir.VectorType.get([lanes], b.f32), r, [0], [lanes], [1])

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
                    self.filter_tiles(gi, ow0, b.add(ob, ow0), nv, last, 1)

                if count == 1:
                    filters(start)
                else:
                    b.loop(0, count, 1, lambda wi, _, st=start, span=span, f=filters: f(b.add(st, b.mul(wi, span))))
                start += count * span

        u0, u1 = self.units or (0, npan + bool(rem))
        if min(u1, npan) > u0:
            b.loop(u0, min(u1, npan), 1, lambda i, _: panel(b.mul(i, g.PB), g.PB))
        if rem and u1 > npan:
            panel(npan * g.PB, rem)

    def copy_panel(self, n, gi, p0, plen: int):
        s, g, b = self.s, self.geo, self.b
        V, Cg = s.vec, s.C // s.groups
        xb = b.add(b.mul(n, s.C * s.H * s.W), b.mul(gi, Cg * s.H * s.W), p0)
        nfull, r = divmod(plen, V)

        def chan(c, sc):
            src = b.add(xb, b.mul(sc, s.H * s.W))
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

        self.chan_loop(chan)

    # ---- 1x1 stride > 1: the used pixels of one group's channels, gathered -------------------------
    def gather(self, n, gi, oh0=None, nrows: int | None = None):
        """S[c][oh][ow] = x[n, gi*Cg + c, oh*sh, ow*sw]; the row slack past OW is zeroed. With oh0:
        only output rows [oh0, oh0 + nrows), into window rows 0..nrows-1 (geometry WR)."""
        s, g, b = self.s, self.geo, self.b
        V = s.vec
        sh, sw = s.stride
        Cg = s.C // s.groups
        src0 = b.add(b.mul(n, s.C * s.H * s.W), b.mul(gi, Cg * s.H * s.W))
        # Column stride 2: two vector loads and one even-lane shuffle per output vector, where the
        # second load stays inside the source row; the rest one element at a time.
        nvec = 0
        if sw == 2:
            while (nvec + 1) * 2 * V <= s.W and (nvec + 1) * V <= s.OW:
                nvec += 1
        evens = [2 * i for i in range(V)]

        def chan(c, sc):
            def row(r, _):
                oh = r if oh0 is None else b.add(oh0, r)
                xr = b.add(src0, b.mul(sc, s.H * s.W), b.mul(oh, sh * s.W))
                sr = b.add(b.mul(c, g.CS), b.mul(r, g.RS))
                if sw == 1:
                    nfull = s.OW // V
                    b.loop(0, nfull * V, V, lambda o, _: b.store(b.load(self.x, b.add(xr, o)), self.src, b.add(sr, o)))
                    if s.OW % V:
                        b.store(b.load(self.x, b.add(xr, nfull * V), s.OW % V), self.src, b.add(sr, nfull * V),
                                s.OW % V)
                    done = s.OW
                else:
                    def vbody(i, _):
                        lo = b.load(self.x, b.add(xr, b.mul(i, 2 * V)))
                        hi = b.load(self.x, b.add(xr, b.mul(i, 2 * V), V))
                        b.store(vector.shuffle(lo, hi, evens), self.src, b.add(sr, b.mul(i, V)))

                    b.loop(0, nvec, 1, vbody)
                    done = nvec * V

                    def sbody(t, _):
                        val = memref.load(self.x, [b.v(b.add(xr, b.mul(t, sw)))])
                        memref.store(val, self.src, [b.v(b.add(sr, t))])

                    b.loop(done, s.OW, 1, sbody)
                    done = s.OW
                self.zero_range(b.add(sr, done), g.RS - done)

            b.loop(0, s.OH if oh0 is None else nrows, 1, row)

        self.chan_loop(chan)

    # ---- padded / column-phase-split copy of one group's input channels ------------------------
    def copy_row(self, xr, sr, iw_hi: int):
        """Column stride 1: scratch row at `sr` = [pl zeros | iw_hi source floats from `xr` | zeros]."""
        s, g, b = self.s, self.geo, self.b
        V, pl = s.vec, s.padding[1]
        if self.borders:
            self.zero_range(sr, pl)
            self.zero_range(b.add(sr, pl + iw_hi), g.RS - pl - iw_hi)
        nfull = iw_hi // V

        def vbody(i, _):
            o = b.mul(i, V)
            b.store(b.load(self.x, b.add(xr, o)), self.src, b.add(sr, pl, o))

        b.loop(0, nfull, 1, vbody)
        if iw_hi % V:
            r = iw_hi % V
            b.store(b.load(self.x, b.add(xr, nfull * V), r), self.src, b.add(sr, pl + nfull * V), r)

    def copy_any_row(self, xr, sr, iw_hi: int):
        """Scratch row at `sr` from the source row at `xr`: padded, split into column phases when the
        column stride is > 1 (phase ph holds padded columns ph, ph + sw, ...)."""
        s, g, b = self.s, self.geo, self.b
        V, pl, sw = s.vec, s.padding[1], s.stride[1]
        if sw == 1:
            return self.copy_row(xr, sr, iw_hi)
        for ph in range(sw):
            # source columns landing in phase ph: (pl + iw) % sw == ph
            iw0 = (ph - pl) % sw
            cnt = max(0, len(range(iw0, iw_hi, sw)))
            dst0 = ph * g.Wq + (pl + iw0) // sw
            if self.borders:  # this phase row whole: zeros, data, zeros up to the next phase
                if cnt <= 0:
                    self.zero_range(b.add(sr, ph * g.Wq), g.Wq)
                    continue
                self.zero_range(b.add(sr, ph * g.Wq), dst0 - ph * g.Wq)
                self.zero_range(b.add(sr, dst0 + cnt), (ph + 1) * g.Wq - dst0 - cnt)
            if cnt <= 0:
                continue
            nvec = 0
            if sw == 2:
                # Column stride 2: two vector loads and one even-lane shuffle per phase vector
                # (as `gather`) instead of a scalar load and store per float. Loads stay inside
                # the source row, stores inside the phase's data (its padding stays zero).
                nvec = min(cnt // V, (s.W - iw0) // (2 * V))
                evens = [2 * i for i in range(V)]

                def vbody(i, _, iw0=iw0, dst0=dst0):
                    at = b.add(xr, iw0, b.mul(i, 2 * V))
                    lo, hi = b.load(self.x, at), b.load(self.x, b.add(at, V))
                    b.store(vector.shuffle(lo, hi, evens), self.src, b.add(sr, dst0, b.mul(i, V)))

                b.loop(0, nvec, 1, vbody)

            def sbody(t, _, iw0=iw0, dst0=dst0):
                val = memref.load(self.x, [b.v(b.add(xr, iw0, b.mul(t, sw)))])
                memref.store(val, self.src, [b.v(b.add(sr, dst0, t))])

            b.loop(nvec * V, cnt, 1, sbody)

    def prep_window(self, n, gi, oh):
        """Window rows w of the row block starting at output row `oh`: padded row oh*SH + w, i.e.
        input row oh*SH + w - pt where that exists, else zeros (the padding rows)."""
        s, g, b = self.s, self.geo, self.b
        pt = s.padding[0]
        Cg = s.C // s.groups
        ih_hi = min(s.H, g.Hs - pt)
        iw_hi = min(s.W, g.Ws - s.padding[1])
        r0 = b.mul(oh, g.SH)
        if isinstance(r0, int):
            lo = max(0, pt - r0)
            hi = max(lo, min(g.WR, pt + ih_hi - r0))
        else:
            mx = lambda a, c: arith.maxsi(b.v(a), b.v(c))  # noqa: E731
            lo = mx(0, arith.subi(b.c(pt), r0))
            hi = mx(lo, b.min(g.WR, arith.subi(b.c(pt + ih_hi), r0)))
        src0 = b.add(b.mul(n, s.C * s.H * s.W), b.mul(gi, Cg * s.H * s.W))

        def chan(c, sc):
            dst = b.mul(c, g.CS)
            b.loop(0, lo, 1, lambda w, _: self.zero_range(b.add(dst, b.mul(w, g.RS)), g.RS))
            b.loop(hi, g.WR, 1, lambda w, _: self.zero_range(b.add(dst, b.mul(w, g.RS)), g.RS))

            def row(w, _):
                ih = b.add(r0, w, -pt)
                xr = b.add(src0, b.mul(sc, s.H * s.W), b.mul(ih, s.W))
                self.copy_any_row(xr, b.add(dst, b.mul(w, g.RS)), iw_hi)

            b.loop(lo, hi, 1, row)
            if WINDOW_PREFETCH:
                # The input rows the next row block adds to its window (past the image: harmless).
                nxt = b.add(src0, b.mul(sc, s.H * s.W), b.mul(b.add(r0, g.WR - pt), s.W))
                def touch(i, _):
                    memref.prefetch(self.x, [b.v(b.add(nxt, i))], False, 3, True)

                b.loop(0, self.pk.tile.RB * g.SH * s.W, 16, touch)

        self.chan_loop(chan)

    def zero_range(self, start, n: int):
        """Zero scratch[start : start + n] with vector stores (the last one masked)."""
        b, V = self.b, self.s.vec
        if n <= 0:
            return
        z = b.splat(0.0)
        nfull = n // V
        if nfull > 4:
            b.loop(0, nfull * V, V, lambda i, _: b.store(z, self.src, b.add(start, i)))
        else:
            for k in range(nfull):
                b.store(z, self.src, b.add(start, k * V))
        if n % V:
            b.store(z, self.src, b.add(start, nfull * V), n % V)

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

        def chan(c, sc):
            if self.borders:  # the padding rows above and below the copied ones
                self.zero_range(b.mul(c, g.CS), pt * g.RS)
                self.zero_range(b.add(b.mul(c, g.CS), (pt + ih_hi) * g.RS), (g.Hs - pt - ih_hi) * g.RS)

            def row(ih, _):
                xr = b.add(src0, b.mul(sc, s.H * s.W), b.mul(ih, s.W))
                sr = b.add(b.mul(c, g.CS), b.mul(ih, g.RS), pt * g.RS)
                self.copy_any_row(xr, sr, iw_hi)

            b.loop(0, ih_hi, 1, row)

        self.chan_loop(chan)
