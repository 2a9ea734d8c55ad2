"""Dense 2-D convolution kernels emitted directly as scf/vector/memref IR.

Design (details and measurements in docs/kernels.md):

* Activations stay NCHW; the vector dimension is the output width. A register tile holds KB output
  channels x WB vectors of V output columns of one output row. The reduction loop (scf.for over the
  input channels of the group) carries the KB*WB accumulators; all KH*KW taps are unrolled inside it.
  Per tap: WB contiguous input loads, KB broadcast weights, KB*WB FMAs.
* Weights are packed per group into blocks of KB output channels, [g][kblock][c][kh][kw][KB], so the
  KB broadcasts of one tap are adjacent and a tile walks its weights sequentially.
* The input is read in one of three ways:
    - "flat": 1x1, stride 1, no padding: the H*W plane is one long row (a GEMM over pixels);
    - "direct": no padding and unit column stride: rows of the input are read in place;
    - "prep": otherwise the input channels of one group are copied into a zeroed scratch buffer with
      the padding applied and, for a column stride s > 1, every row split into s column phases so that
      the input of s-strided output columns is contiguous again. Scratch rows are wide enough that
      every vector load of every tile stays inside the buffer, so the kernel needs no bounds checks.
  A strided 1x1 conv without padding first gathers the pixels it uses into a dense panel and then
  runs as a stride-1 1x1 conv over it (_subsample_geom).
* Widths that are not a multiple of WB*V end in one tail tile with fewer vectors whose last vector is
  stored (and, when reading the caller's input in place, loaded) with a mask. Output channels that are
  not a multiple of KB get a second loop nest with a narrower channel block.
* Bias initialises the accumulators; residual add and the activation are applied before the store.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, memref, vector

from ._builder import (SCRATCH_ATTR, KernelBuilder, Scratch, check_act, flat_memref, mark_scratch,  # noqa: F401
                       scratch_arg_type, scratch_bytes)

# Weight bytes of one group above which the output channels are processed in chunks, so that the
# weights a row of tiles touches stay in L2 (Zen 1: 512 KiB per core).
_WEIGHT_CHUNK_BYTES = 192 * 1024


@dataclass(frozen=True)
class ConvSpec:
    N: int
    C: int
    H: int
    W: int
    K: int
    KH: int
    KW: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    act: str = "none"
    act_params: tuple[float, ...] = ()
    residual: bool = False
    vec: int = 8
    # 2: the kernel also applies a 2x2 / stride-2 max pool (floor mode) to its activated output and
    # writes only the pooled plane (lr-fuse-conv-pool); 0: none. With pool_keep it writes both the
    # conv's plane (its output) and the pooled one (a last, extra output argument).
    pool: int = 0
    pool_keep: bool = False

    @property
    def OH(self) -> int:
        pt, _, pb, _ = self.padding
        return (self.H + pt + pb - self.dilation[0] * (self.KH - 1) - 1) // self.stride[0] + 1

    @property
    def OW(self) -> int:
        _, pl, _, pr = self.padding
        return (self.W + pl + pr - self.dilation[1] * (self.KW - 1) - 1) // self.stride[1] + 1

    @property
    def out_hw(self) -> tuple[int, int]:
        """The output plane: the conv's, or the pooled one when only that is written."""
        if self.pool and not self.pool_keep:
            return self.pooled_hw
        return self.OH, self.OW

    @property
    def pooled_hw(self) -> tuple[int, int]:
        return (self.OH // self.pool, self.OW // self.pool) if self.pool else (self.OH, self.OW)

    @property
    def flops(self) -> int:
        return 2 * self.N * self.K * self.OH * self.OW * (self.C // self.groups) * self.KH * self.KW


@dataclass(frozen=True)
class _Geom:
    """A stride/dilation/padding conv over an optionally zero-stuffed input (shared with conv_transpose).

    Scratch coordinates of input pixel (ih, iw) are (pt + ih*lh, pl + iw*lw); pt/pl may be negative
    (cropping). Output (oh, ow) reads scratch (oh*sh + kh*dh, ow*sw + kw*dw).
    """

    N: int
    C: int
    H: int
    W: int
    K: int
    KH: int
    KW: int
    OH: int
    OW: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pl: int
    lh: int
    lw: int
    groups: int
    act: str
    act_params: tuple
    residual: bool
    V: int
    tile: tuple | None = None  # (KB, WB) override, for benchmarks
    k_outer: bool | None = None
    cunroll: int | None = None
    rows_per_tile: int | None = None
    block_bytes: int | None = None  # scratch budget of pixel blocks / row bands (tests force small ones)
    cchunk: int | None = None  # most input channels per reduction chunk (pixel blocks only)
    cvec: bool | None = None  # force the channel-vectorised small-plane kernel on / off
    subsample: bool | None = None  # force the strided-1x1 "subsample, then plain 1x1" route on / off
    pool: int = 0  # ConvSpec.pool
    pool_keep: bool = False  # ConvSpec.pool_keep

    @property
    def PH(self) -> int:
        return self.OH // self.pool if self.pool else self.OH

    @property
    def PW(self) -> int:
        return self.OW // self.pool if self.pool else self.OW

    @property
    def Cg(self) -> int:
        return self.C // self.groups

    @property
    def Kg(self) -> int:
        return self.K // self.groups


def _geom_from_spec(s: ConvSpec) -> _Geom:
    pt, pl, pb, pr = s.padding
    if min(s.padding) < 0:
        raise ValueError("negative padding")
    if s.C % s.groups or s.K % s.groups:
        raise ValueError("channels not divisible by groups")
    if s.OH < 1 or s.OW < 1:
        raise ValueError(f"empty output for {s}")
    check_act(s.act, s.act_params)
    if s.pool not in (0, 2):
        raise ValueError(f"fused pool factor {s.pool} (only 2x2 / stride 2 is fused)")
    if s.pool and (s.residual or s.OH < 2 or s.OW < 2):
        raise ValueError(f"a fused pool needs no residual and a conv output of at least 2x2: {s}")
    if s.pool_keep and not s.pool:
        raise ValueError(f"pool_keep without a fused pool: {s}")
    return _Geom(s.N, s.C, s.H, s.W, s.K, s.KH, s.KW, s.OH, s.OW, s.stride[0], s.stride[1], s.dilation[0],
                 s.dilation[1], pt, pl, 1, 1, s.groups, s.act, tuple(s.act_params), s.residual, s.vec, pool=s.pool,
                 pool_keep=s.pool_keep)


# --------------------------------------------------------------------------------------------------
# Planning


@dataclass
class _Plan:
    mode: str  # flat | direct | prep
    KB: int
    WB: int
    rows: int  # output rows iterated (1 in flat mode)
    cols: int  # output columns per iterated row
    RS: int = 0  # source elements between consecutive scratch/input rows
    CS: int = 0  # source elements between input channels
    Hs: int = 0
    Ws: int = 0
    Wq: int = 0
    k_outer: bool = False
    chunk_blocks: int = 0  # full KB-blocks per weight chunk
    nkb: int = 0  # KB-blocks per group including a partial one
    cunroll: int = 1
    RB: int = 1  # output rows per register tile
    # The copy writes every scratch element except a border that it zeroes itself (one pass over the
    # scratch per image); zero-stuffed inputs instead zero the whole scratch once per call.
    border_zero: bool = False
    # Cache blocking of large planes (0: off). flat: PT pixels of every input channel are packed into
    # a contiguous scratch block, then all output channels are computed from it. prep: the padded
    # scratch holds a band of BH output rows (plus halo) instead of the whole image.
    PT: int = 0
    BH: int = 0
    BR: int = 0  # scratch rows of one band
    # Reduction split (pixel blocks with many input channels): input-channel chunk boundaries; the
    # tile's Cg x WB*V input strip must stay in L1 while all channel blocks reuse it.
    c_bounds: list | None = None
    # Small planes: vectors run along output channels (KB = KV*V channels x WB pixels per tile).
    cvec: bool = False


# Vector registers a register tile may fill; None: 32 for NEON (vec 4), else 16. See vector_registers.
VECTOR_REGISTERS: int | None = None


def vector_registers(vec: int) -> int:
    """Registers the tile may use: LRC_VECTOR_REGISTERS, else VECTOR_REGISTERS, else 32 for NEON
    (vec = 4) and 16 for x86.

    x86 stays at 16 even on AVX-512 hosts: the same IR is also compiled ahead of time for
    -march=x86-64-v3 (targets/aot.py), where a 21-register tile spills badly (4x4: 29 instead of
    102 GFLOP/s). Set 32 only when the code will run on AVX-512VL / the host JIT (+0-10 %).
    """
    env = os.environ.get("LRC_VECTOR_REGISTERS")
    if env:
        return int(env)
    if VECTOR_REGISTERS:
        return VECTOR_REGISTERS
    return 32 if vec == 4 else 16


# Dense convs may run on 16-lane (zmm) vectors where dense_lanes says so; False keeps every dense
# conv at its spec's width (the A/B switch of docs/kernels.md, Round 7).
WIDE_DENSE = True


def dense_lanes(s: ConvSpec) -> int:
    """f32 lanes for the dense kernel of `s`: 16 (zmm) where the x86 tiles may use 32 vector
    registers (AVX-512VL: the host JIT there, AOT at -march=x86-64-v4) and the row tiles waste no
    lanes, else `s.vec`.

    Zen 4 executes a zmm FMA as two 256-bit halves, so 16 lanes do not add FLOPs; they double what
    32 registers hold, halving the loads and instructions per FMA. Kernel alone, CPU time, 16 vs 8
    lanes (docs/kernels.md, Round 7): rows of 64-256 pixels that are a multiple of 16 1-5 % faster
    (3x3), the 7x7 stride-2 stem 5-11 %; flat 1x1 convs 3-10 %; rows of 56 (3.5 zmm) 9-12 % slower
    and depthwise up to 18 % slower, so those keep 8. Flat 1x1 convs over pixel blocks that reduce
    many input channels to few outputs (192->26 at 256x256: -5 %) keep 8 too, as do the small planes
    of the channel-vectorised tiles, whose in-register transpose is written for 8 lanes.
    """
    from lrc.targets.aot import cpu_flags

    if (not WIDE_DENSE or s.vec != 8 or vector_registers(8) < 32 or s.groups != 1
            or not {"avx512f", "avx512vl"} <= cpu_flags()):
        return s.vec
    g = _geom_from_spec(s)
    if _as_linear(s) is not None:
        return s.vec
    p8 = _plan(_subsample_geom(g) or g)
    if p8.cvec:
        return s.vec
    if p8.mode == "flat":
        if p8.cols % 16 or (p8.PT and g.Cg >= 4 * g.Kg):
            return s.vec
    elif s.OW % 16 or s.OW < 64:
        return s.vec
    g16 = replace(g, V=16)
    return 16 if not _plan(_subsample_geom(g16) or g16).cvec else s.vec


DW_TALL_ROWS = 7


def _choose_tile(g: _Geom, cols: int, rows: int) -> tuple[int, int, int]:
    """(KB, WB, RB): output channels x vectors x rows per register tile.

    Registers needed: KB*WB*RB accumulators + WB input vectors + 1 broadcast. With 16 registers the
    candidates are 6x2 / 4x3, with 32 6x3 / 4x4; the one with fewer channel blocks (then the wider
    leftover block) wins. Measured on Zen 4 (docs/kernels.md): the four are within a few percent of each
    other on 64-channel layers; bigger tiles win when a layer's data only fit in L2 (512->512 3x3 at
    32x32: 4x3 102, 4x4 112 GFLOP/s); 8-channel blocks were 15 % slower everywhere.
    """
    V = g.V
    nvec = -(-cols // V)
    Kg = g.Kg
    R = vector_registers(V)
    cands = [(6, 3), (4, 4)] if R >= 32 else [(6, 2), (4, 3)]
    cands = [t for t in cands if t[0] <= Kg]
    if Kg < 8:
        wb = max(1, min(4, (R - 2) // (Kg + 1)))
        if Kg * wb >= 8:
            cands.append((Kg, wb))  # one block for all channels (e.g. 5 -> 5x2, not 4x3 + 1x3)
    if nvec == 1:
        # One vector per row (7x7, 8x8 planes): 6 channels x 2 stacked rows, which share their input
        # loads, beat 8 x 1 (3x3 256->256 at 7x7: 78 vs 70 GFLOP/s on Zen 4).
        KB, WB = min(Kg, 6), 1
    elif cands:
        # With 32 registers a leftover block of 1-2 channels is a poor tile (2 x 4: 8 FMAs per 4 loads
        # and 2 broadcasts), so 4 x 4 beats 6 x 3 where Kg % 6 is 1 or 2 (Kg = 32: 3x3 96->32 at
        # 128x128 100 -> 103, 32->32 at 256x256 94 -> 99 GFLOP/s; equal for Kg = 128).
        thin = (lambda t: 0 < Kg % t[0] < 3) if R >= 32 else (lambda t: False)
        KB, WB = min(cands, key=lambda t: (thin(t), -(-Kg // t[0]), -(Kg % t[0] or t[0])))
    else:
        KB = Kg
        WB = max(1, min(4, (R - 2) // (KB + 1)))
    WB = min(WB, nvec)
    # Too few accumulators to hide FMA latency (depthwise, tiny K): stack output rows, which also
    # lets them share input loads.
    RB = 1
    while (KB * WB * RB < 8 or (nvec == 1 and RB < 2)) and RB < 4 and RB < rows:
        RB += 1
    if DW_TALL_ROWS and Kg == 1 and g.KH >= 5 and nvec <= 2:
        # Depthwise 5x5 / 7x7 on rows of one or two vectors: stacked output rows share KH - 1 of each
        # other's input rows, so up to 7 of them cut the loads per FMA (kernel alone, 7 rows against
        # 4: 5x5 at 7x7 / 14x14 1.06x / 1.19x, 7x7 at 14x14 1.08x; 3x3 no gain; wider rows, whose
        # tiles already hold 4 vectors, 0.93-1.03x).
        RB = max(RB, min(rows, DW_TALL_ROWS, (R - 1 - WB) // (KB * WB)))
    if g.tile:
        KB, WB = g.tile[:2]
        RB = g.tile[2] if len(g.tile) > 2 else 1
    return KB, WB, RB


def _plan(g: _Geom) -> _Plan:
    V = g.V
    no_pad = g.pt == 0 and g.pl == 0 and g.lh == 1 and g.lw == 1
    # Both "in place" modes need the whole input width to be read (no right-side cropping).
    fits_w = (g.OW - 1) * g.sw + (g.KW - 1) * g.dw + 1 == g.W
    fits_h = (g.OH - 1) * g.sh + (g.KH - 1) * g.dh + 1 <= g.H
    if g.KH == 1 and g.KW == 1 and g.sh == 1 and g.sw == 1 and no_pad and g.OH == g.H and g.OW == g.W:
        p = _Plan("flat", 0, 0, rows=1, cols=g.H * g.W, RS=0, CS=g.H * g.W)
    elif no_pad and g.sw == 1 and fits_w and fits_h and not _band_worthy(g, g.Cg * g.H * g.W * 4):
        # (A large input goes through banded prep instead: reading Cg*KH rows in place per tile is
        # the same many-stream pattern that pixel blocks fix for 1x1; 7x7 64->3 at 262x262 30 ->
        # 52 GFLOP/s, 3x3 128->128 at 66x66 +15 %.)
        p = _Plan("direct", 0, 0, rows=g.OH, cols=g.OW, RS=g.W, CS=g.H * g.W)
    else:
        Hs = (g.OH - 1) * g.sh + (g.KH - 1) * g.dh + 1
        Ws = (g.OW - 1) * g.sw + (g.KW - 1) * g.dw + 1
        need = -(-g.OW // V) * V + ((g.KW - 1) * g.dw) // g.sw
        Wq = max(-(-Ws // g.sw), need)
        Wq = -(-Wq // V) * V
        p = _Plan("prep", 0, 0, rows=g.OH, cols=g.OW, RS=g.sw * Wq, CS=Hs * g.sw * Wq, Hs=Hs, Ws=Ws, Wq=Wq)
        p.border_zero = g.lh == 1 and g.lw == 1
    p.KB, p.WB, p.RB = _choose_tile(g, p.cols, p.rows)
    if g.pool:
        # Pairs of output rows are pooled in registers: every tile holds two rows, and an odd last
        # conv row (floor mode) is computed only when the conv's plane is kept too.
        p.rows = g.OH if g.pool_keep else g.OH // 2 * 2
        p.KB, p.WB, p.RB = _pool_tile(g, p.cols)
    elif _use_cvec(g, p):
        p.cvec = True
        if p.mode == "flat":  # read in place, one "row" per output row
            p.mode, p.rows, p.cols, p.RS = "direct", g.OH, g.OW, g.W
        kv, npix = _cvec_tile(g)
        p.KB, p.WB, p.RB = kv * V, npix, 1
    p.nkb = -(-g.Kg // p.KB)
    wbytes = g.Cg * g.KH * g.KW * g.Kg * 4
    nfull = g.Kg // p.KB
    p.chunk_blocks = nfull
    if wbytes > _WEIGHT_CHUNK_BYTES and nfull > 1:
        per_block = g.Cg * g.KH * g.KW * p.KB * 4
        p.chunk_blocks = max(1, _WEIGHT_CHUNK_BYTES // per_block)
    # Walk channel blocks innermost when one row of output tiles re-reads a small input strip.
    if g.k_outer is not None:
        p.k_outer = g.k_outer
    else:
        strip = g.Cg * g.KH * (p.RS or p.cols) * 4
        # A fused pool that keeps the conv's plane writes three rows per channel (two conv rows, one
        # pooled); walking every channel block per width tile keeps 3*Kg store streams open (48 for
        # U-Net's 16->16 at 256x256), channel blocks outermost only 3*KB: 16->16 + pool at 256x256
        # 1.15x, 32->32 at 128x128 1.07x faster, 64->64 at 64 / 128->128 at 32 equal (L2-sized).
        p.k_outer = p.mode != "flat" and (strip <= 24 * 1024 or g.pool_keep)
    if not p.cvec:
        _plan_blocking(g, p)
    else:
        p.chunk_blocks, p.k_outer = nfull, True
    T = g.KH * g.KW
    p.cunroll = 4 if T == 1 else 2 if T <= 4 else 1
    if g.cunroll:
        p.cunroll = g.cunroll
    if g.rows_per_tile and not g.pool:
        p.RB = min(g.rows_per_tile, p.rows)
    return p


def _pool_tile(g: _Geom, cols: int) -> tuple[int, int, int]:
    """(KB, WB, 2): the register tile of a conv with a fused 2x2 pool, two output rows high.

    4 channels x 2 vectors x 2 rows with 32 registers, 2x2x2 with 16. Bigger tiles lose: the two rows
    use the same broadcast weights, and LLVM, keeping them live for both, spills a 4x3x2 tile at 16
    lanes (16->16 at 224x224 6 % slower than the unfused conv alone). 4x2x2 was within -1.2..+0.3 % of
    the unfused conv's own 6x3x1 on every VGG / U-Net layer tried (docs/kernels.md, Round 8)."""
    if g.tile:
        return g.tile[0], g.tile[1], 2
    kb = min(g.Kg, 4 if vector_registers(g.V) >= 32 else 2)
    return kb, min(2, -(-cols // g.V)), 2


def pool_supported(s: ConvSpec) -> bool:
    """Whether the dense kernel can fuse a 2x2 / stride-2 max pool into this conv: its row-tiled
    modes (padded copy or in place) can, the flat 1x1 GEMM, the strided-1x1 panel route and the
    channel-vectorised small-plane tiles cannot, nor a conv with a residual."""
    if s.residual or s.OH < 2 or s.OW < 2 or s.vec % 2:
        return False
    g0 = _geom_from_spec(replace(s, pool=0, pool_keep=False))
    if _subsample_geom(g0) is not None or _as_linear(s) is not None or _plan(g0).cvec:
        return False
    return _plan(replace(g0, pool=2, pool_keep=s.pool_keep)).mode in ("direct", "prep")


def _subsample_geom(g: _Geom) -> _Geom | None:
    """A strided 1x1 conv without padding (ResNet shortcuts) reads only every sh-th row and sw-th
    column. The prep route copied every row and both column phases; instead the used pixels are
    gathered into a dense [N][C][OH][OW] panel once and a plain stride-1 1x1 conv (flat GEMM or
    channel-vectorised tiles) runs over it. Returns that stride-1 geometry, or None."""
    if g.subsample is False or g.KH != 1 or g.KW != 1 or (g.sh == 1 and g.sw == 1):
        return None
    if g.pt or g.pl or g.lh != 1 or g.lw != 1:
        return None
    if (g.OH - 1) * g.sh >= g.H or (g.OW - 1) * g.sw >= g.W:  # bottom/right padding is read
        return None
    gs = replace(g, H=g.OH, W=g.OW, sh=1, sw=1, dh=1, dw=1, subsample=None)
    if g.subsample is None and _plan(gs).cvec:
        # Small output planes (7x7) go to the channel-vectorised tiles either way; there the strided
        # read from the prep scratch was 2-4 % faster (1x1 s2 512->1024 at 14x14: 103 vs 99-101
        # GFLOP/s), and the copies are small.
        return None
    return gs


# A tile's epilogue reads the residual and writes the output: rows of other layers' planes that are
# usually not in L1/L2 any more, and with nothing left to overlap the misses with, the tile waits for
# them (1x1 32->128 at 56x56 with a residual ran at 73 GFLOP/s, 94 without it). Prefetching those
# lines when the tile starts hides them behind its reduction: docs/kernels.md, Round 6.
EPILOGUE_PREFETCH = True


def prefetch_epilogue(b, res, out, rows, span: int, line_floats: int = 16) -> None:
    """Prefetch `span` floats from each start in `rows`: from `res` for reading (when there is one) and
    from `out` for writing, one prefetch per cache line (prefetches never fault, so a row's end
    needs no bounds). Every dense and sparse tile calls this; EPILOGUE_PREFETCH turns it off for all."""
    if not EPILOGUE_PREFETCH:
        return
    offs = sorted(set(range(0, span, line_floats)) | {span - 1})
    for r in rows:
        for o in offs:
            at = [b.v(b.add(r, o))]
            if res is not None:
                memref.prefetch(res, at, False, 3, True)
            memref.prefetch(out, at, True, 3, True)


# Scratch budgets for cache blocking of large planes (see _plan_blocking). Zen 4 has 1 MiB of L2 per
# core and 32 KiB of L1d.
_PIXEL_BLOCK_BYTES = 32 * 1024
# 1x1 inputs larger than _PIXEL_BLOCK_MIN_INPUT are packed into pixel blocks, except up to 2 MiB
# when there are few output channels (<= _PIXEL_BLOCK_FEW_K) to amortise the packing pass over:
# unpacked, 1x1 128->32 at 56x56 (1.6 MiB) 67-93 -> 73-99, 32->32 at 56x56 +2-9, 256->64 at 28x28
# +3 % (GFLOP/s, both orders of an A/B); with 128 output channels packing stays ahead.
_PIXEL_BLOCK_MIN_INPUT = 256 * 1024
_PIXEL_BLOCK_FEW_K = 64
# (Cg, Kg) at or below which a 1x1 conv is never packed: 16 input rows are few enough streams for the
# prefetchers, and 4 or fewer outputs give the packing pass nothing to amortise over. U-Net's 16->2
# head at 256x256: 0.86 of the packed time warm, 0.61 with its input evicted; unet 1.004x faster
# (docs/kernels.md, Round 8). 32->2 and 64->3 stay packed (1.16 / 1.47 slower unpacked).
_PIXEL_BLOCK_THIN = (16, 4)
# Row bands: a band re-copies its (KH-1)-row halo, so short bands cost copies. With 192 KiB a 3x3
# 48->16 conv at 256x256 (50 KiB per scratch row) got 1-row bands (3 rows copied per output row):
# 85 GFLOP/s against 97 with 768 KiB (13-row bands); 96->32 at 128x128 93 -> 101, and no layer
# tried got slower (docs/kernels.md). 768 KiB of band + weights still fits Zen 4's 1 MiB L2.
_BAND_BYTES = 768 * 1024
_CHUNK_CHANNELS = 256


def _use_cvec(g: _Geom, p: _Plan) -> bool:
    """Small planes (28x28 and below) with many channels: rows of 28 / 14 / 7 pixels fill only 87.5 %
    of the width vectors, and a 7-pixel row leaves a tile one vector wide. Vectorising over output
    channels instead uses every lane and reuses each broadcast input pixel for KV weight vectors."""
    if g.cvec is not None:
        return g.cvec and g.groups == 1 and g.lh == 1 and g.lw == 1
    if g.tile or g.groups != 1 or g.lh != 1 or g.lw != 1:
        return False
    V = g.V
    cols = g.OH * g.OW if p.mode == "flat" else g.OW
    row_eff = cols / (-(-cols // V) * V)
    ch_eff = g.Kg / (-(-g.Kg // V) * V)
    fits = ch_eff >= 0.95 and g.Kg >= 2 * V and g.Cg * g.KH * g.KW >= 64
    if (p.mode == "flat" and V == 8 and g.OH * g.OW <= _CVEC_FLAT_PIXELS and not g.tile
            and g.Cg * p.WB * V * 4 > _CVEC_FLAT_STRIP):
        # 1x1 on 14x14 planes with long reductions: a flat tile's input strip (Cg channels x WB*V
        # pixels) overflows half of L1 and is re-read from L2 for every channel block, while the
        # channel-vectorised tile broadcasts single pixels (1x1 at 14x14, 8 lanes: 512->128 /
        # 576->96 / 384->96 / 256->256 / 1024->256 0.94 / 0.91 / 0.92 / 0.96 / 0.93 of the flat
        # kernel's time; 128->512, a 16 KiB strip, 1.00; at 28x28 it loses: 256->128 1.06). With
        # 16 registers (AVX2 artifacts) 512->128 / 1024->256 0.96 / 0.99.
        return fits
    return g.OH * g.OW <= 1024 and row_eff < 0.95 and fits


# The flat 1x1 planes (pixels) and input-strip bytes above which _use_cvec prefers the channel-
# vectorised tiles (docs/kernels.md, Round 8).
_CVEC_FLAT_PIXELS = 256
_CVEC_FLAT_STRIP = 16 * 1024
# Channel-vectorised tiles on planes of at most CVEC_WPREFETCH_PIXELS prefetch the next channel
# block's weights (same input channel and tap) while they use this block's, into L2 (locality 2);
# 0 turns it off. In a whole model the big weights of the last stages (1 MiB for a 1x1 1024->256)
# are not in cache when their layer starts, and with few pixel tiles per channel block a block's
# first tile waited for them (docs/kernels.md, Round 8). Every pixel tile repeats the prefetches,
# so larger planes (more tiles per block) skip them.
CVEC_WPREFETCH = 2
CVEC_WPREFETCH_PIXELS = 100


def _cvec_tile(g: _Geom) -> tuple[int, int]:
    """(channel vectors KV, pixels P) of a channel-vectorised tile: KV*P accumulators + KV weight
    vectors + 1 broadcast. Measured on Zen 4 (32 registers), GFLOP/s at 7x7 / 14x14 / 28x28 for
    3x3 256->256 / 128->128 / 128->128: 4x6 96/103/110, 3x7 99/106/109, 4x5 98/102/112,
    3x8 89/100/108, 2x12 81/84/110. Among the good ones, the least padding of the last pixel tile
    and of the last channel block wins."""
    if g.tile:
        return g.tile[0], g.tile[1]
    if vector_registers(g.V) < 32:
        return 2, 6
    ohw, kg, V = g.OH * g.OW, g.Kg, g.V

    def waste(t):
        kv, npix = t
        pix = (-(-ohw // npix) * npix - ohw) / ohw
        nb = kg / (kv * V)
        return pix + 0.5 * (1 - nb / -(-kg // (kv * V)))

    return min([(4, 6), (3, 7), (4, 5)], key=waste)


def _band_worthy(g: _Geom, scratch_bytes: int) -> bool:
    """Whether a whole-image scratch of this size should be processed in row bands."""
    if g.lh != 1 or g.lw != 1:
        return False
    if g.block_bytes:
        return scratch_bytes > g.block_bytes
    return scratch_bytes > 2 * _BAND_BYTES


def _plan_blocking(g: _Geom, p: _Plan) -> None:
    """Cache blocking for planes whose input does not fit in L2.

    A 1x1 conv over a 256x256 plane with 192 input channels reads, per register tile, one vector from
    each of 192 channel rows 256 KiB apart: every load is a fresh cache line in a different page and
    no prefetcher follows 192 streams (14-20 GFLOP/s). Packing PT pixels of every channel into one
    contiguous block first (one sequential pass per row) makes the tiles read from L1/L2.
    Likewise a padded scratch copy of a whole 256x256 image (7 MiB for 26 channels) is written, then
    read back from DRAM; a band of output rows with its halo stays in L2.
    """
    budget = g.block_bytes or None
    if p.mode == "flat":
        bb = budget or _PIXEL_BLOCK_BYTES
        hw = g.H * g.W
        unit = p.WB * g.V
        big = (g.Cg * hw * 4 > _PIXEL_BLOCK_MIN_INPUT and (g.Kg > _PIXEL_BLOCK_FEW_K or g.Cg * hw * 4 > 2 << 20)
               and not (g.Cg <= _PIXEL_BLOCK_THIN[0] and g.Kg <= _PIXEL_BLOCK_THIN[1]))
        if big or (budget and g.Cg * hw * 4 > bb):
            pt = bb // (g.Cg * 4)
            if not budget:  # measured: blocks under 128 pixels lose to loop overhead, over 512 to L1 misses
                pt = min(max(pt, 128), 512)
            pt = max(unit, pt // unit * unit)
            if pt < hw:
                p.PT = pt
                p.CS = pt
                # Sweep a block per channel block: the tile's weights stay in registers/L1 and the
                # output is written as KB sequential streams instead of Kg scattered ones.
                p.k_outer = True if g.k_outer is None else g.k_outer
                cmax = g.cchunk or _CHUNK_CHANNELS
                if g.Cg > cmax:
                    nck = -(-g.Cg // cmax)
                    step = -(-(-(-g.Cg // nck)) // 4) * 4  # a multiple of the channel unroll
                    p.c_bounds = list(range(0, g.Cg, step)) + [g.Cg]
    elif p.mode == "prep" and p.border_zero:
        bb = budget or _BAND_BYTES
        if _band_worthy(g, g.Cg * p.CS * 4):
            halo = (g.KH - 1) * g.dh + 1
            fit = bb // (g.Cg * p.RS * 4)
            bh = max(1, (fit - halo) // g.sh + 1) if fit > halo else 1
            bh = max(p.RB, bh // p.RB * p.RB)
            if bh < p.rows:
                p.BH = bh
                p.BR = (bh - 1) * g.sh + halo
                p.CS = p.BR * p.RS


def _width_segments(cols: int, V: int, WB: int) -> list[tuple[int, int, int]]:
    """Split a row of `cols` outputs into tiles: [(count, vectors per tile, lanes of the last vector)].

    Rows rarely hold a multiple of WB vectors (56 = 7 x 8). Rather than ending with a thin tile that has
    too few FMAs per load, the row is split as evenly as possible into tiles of at most WB vectors
    (7 -> 2+2+3 for WB = 3), so no tile needs more registers than a full one. A partial last vector is
    always in a tile of its own (count 1) so that only it carries a mask.
    """
    nvec = -(-cols // V)
    last = cols - (nvec - 1) * V
    q = -(-nvec // WB)
    base, extra = divmod(nvec, q)
    sizes = [base] * (q - extra) + [base + 1] * extra
    segs: list[list[int]] = []
    for sz in sizes:
        if segs and segs[-1][1] == sz:
            segs[-1][0] += 1
        else:
            segs.append([1, sz])
    out = [(c, sz, V) for c, sz in segs]
    if last < V:
        c, sz, _ = out[-1]
        out[-1:] = ([(c - 1, sz, V)] if c > 1 else []) + [(1, sz, last)]
    return out


# --------------------------------------------------------------------------------------------------
# Weight packing


def _pack(g: _Geom, p: _Plan, weight: np.ndarray) -> np.ndarray:
    """[K, Cg, KH, KW] -> [groups][nkb][Cg][KH][KW][KB], zero-filled past Kg."""
    G, Kg, Cg, KB, nkb = g.groups, g.Kg, g.Cg, p.KB, p.nkb
    w = np.asarray(weight, dtype=np.float32).reshape(G, Kg, Cg, g.KH, g.KW)
    wp = np.zeros((G, nkb * KB, Cg, g.KH, g.KW), np.float32)
    wp[:, :Kg] = w
    wp = wp.reshape(G, nkb, KB, Cg, g.KH, g.KW).transpose(0, 1, 3, 4, 5, 2)
    return np.ascontiguousarray(wp).reshape(-1)


def _as_linear(spec: ConvSpec):
    """A 1x1 conv on 1x1 images (squeeze-excitation, conv classifiers) is a matrix-vector product over
    the batch. The conv tile would vectorise over a single pixel (1 useful lane in V); the linear
    kernel vectorises over output channels and streams the weights once."""
    from .linear import LinearSpec

    if (spec.KH, spec.KW, spec.H, spec.W, spec.groups) == (1, 1, 1, 1, 1) and not any(spec.padding):
        return LinearSpec(spec.N, spec.C, spec.K, spec.act, tuple(spec.act_params), spec.vec)
    return None


def pack_conv_weights(spec: ConvSpec, weight: np.ndarray, bias: np.ndarray | None) -> list[np.ndarray]:
    g = _geom_from_spec(spec)
    want = (spec.K, spec.C // spec.groups, spec.KH, spec.KW)
    if tuple(weight.shape) != want:
        raise ValueError(f"weight shape {tuple(weight.shape)} != {want}")
    lin = _as_linear(spec)
    if lin is not None:
        from .linear import pack_linear_weights

        return pack_linear_weights(lin, np.asarray(weight).reshape(spec.K, spec.C), bias)
    g = _subsample_geom(g) or g
    out = [_pack(g, _plan(g), weight)]
    if bias is not None:
        out.append(np.ascontiguousarray(np.asarray(bias, np.float32).reshape(spec.K)))
    return out


# --------------------------------------------------------------------------------------------------
# Emission


def emit_conv_func(spec: ConvSpec, name: str, packed: Sequence[np.ndarray],
                   external_scratch: bool = False) -> func.FuncOp:
    """Private func `(in, weights, [bias], [residual], out, [pooled out])` (the pooled plane with
    `spec.pool_keep`; with `spec.pool` alone `out` is the pooled plane). With `external_scratch`, a kernel that
    needs temporary buffers (padded input, pixel blocks, strided-1x1 panel) takes them as one more,
    last argument, an i8 memref of fn.attributes[SCRATCH_ATTR] bytes, instead of malloc'ing them."""
    g = _geom_from_spec(spec)
    lin = _as_linear(spec)
    if lin is not None:
        from .linear import _emit_linear

        return _emit_linear(lin, name, packed, residual=spec.residual)
    return _emit(g, name, packed, external_scratch)


def _scratch_sizes(g: _Geom, gs: _Geom | None, p: _Plan) -> list[int]:
    """Floats of each temporary buffer the kernel allocates, in allocation order."""
    sizes = [g.N * g.C * g.OH * g.OW] if gs is not None else []  # the strided-1x1 panel
    e = gs or g
    if p.mode == "prep" or p.PT:
        sizes.append(e.Cg * p.CS)
    return sizes


def _emit(g: _Geom, name: str, packed: Sequence[np.ndarray], external_scratch: bool = False) -> func.FuncOp:
    gs = _subsample_geom(g)
    p = _plan(gs or g)
    wsize = g.groups * p.nkb * g.Cg * g.KH * g.KW * p.KB
    if packed[0].size != wsize:
        raise ValueError(f"packed weight size {packed[0].size} != {wsize} (packed for another spec?)")
    if g.pool and (gs is not None or p.mode not in ("direct", "prep") or p.cvec):
        kind = "strided-1x1 panel" if gs is not None else "channel-vectorised" if p.cvec else p.mode
        raise NotImplementedError(f"{name}: a 2x2 max pool fused into a conv that runs as a {kind} kernel "
                                  f"(only the row tiles pool): {g}")
    nscratch = scratch_bytes(_scratch_sizes(g, gs, p)) if external_scratch else 0
    fn, a = open_conv_func(g, name, packed, nscratch)
    with ir.InsertionPoint(fn.entry_block):
        b = KernelBuilder(fn, g.V)
        if gs is None:
            _ConvEmitter(g, p, a.x, a.wts, a.bias, a.res, a.out, b, a.scratch, a.pout).run()
        else:
            sub = a.scratch.alloc(g.N * g.C * g.OH * g.OW)
            _subsample(b, g, a.x, sub)
            _ConvEmitter(gs, p, sub, a.wts, a.bias, a.res, a.out, b, a.scratch).run()
            a.scratch.free(sub)
        func.ReturnOp([])
    return fn


@dataclass
class ConvArgs:
    """The arguments of a conv kernel function, by role (None where the kernel has none)."""

    x: ir.Value
    wts: ir.Value
    bias: ir.Value | None
    res: ir.Value | None
    out: ir.Value
    pout: ir.Value | None  # the pooled plane, with pool_keep
    scratch: Scratch


def open_conv_func(g: _Geom, name: str, packed: Sequence[np.ndarray], nscratch: int) -> tuple[func.FuncOp, ConvArgs]:
    """A private func with the dense conv signature `(in, weights, [bias], [residual], out,
    [pooled out], [scratch])` for geometry g and these packed arrays (shared by the direct and the
    Winograd kernels), its entry block, and its arguments by role."""
    in_size = g.N * g.C * g.H * g.W
    out_size = g.N * g.K * (g.OH * g.OW if g.pool_keep or not g.pool else g.PH * g.PW)
    arg_types = [flat_memref(in_size)] + [flat_memref(a.size) for a in packed]
    if g.residual:
        arg_types.append(flat_memref(out_size))
    arg_types.append(flat_memref(out_size))
    if g.pool_keep:
        arg_types.append(flat_memref(g.N * g.K * g.PH * g.PW))
    if nscratch:
        arg_types.append(scratch_arg_type(nscratch))
    fn = func.FuncOp(name, (arg_types, []), visibility="private")
    mark_scratch(fn, nscratch)
    fn.add_entry_block()
    args = list(fn.arguments)
    scratch = Scratch(args.pop() if nscratch else None)
    pout = args.pop() if g.pool_keep else None
    return fn, ConvArgs(args[0], args[1], args[2] if len(packed) == 2 else None,
                        args[-2] if g.residual else None, args[-1], pout, scratch)


class _ConvEmitter:
    def __init__(self, g: _Geom, p: _Plan, x, wts, bias, res, out, b: KernelBuilder, scratch: Scratch | None = None,
                 pout=None):
        self.g, self.p, self.b = g, p, b
        self.scratch = scratch or Scratch()
        self.x, self.wts, self.bias, self.res, self.out = x, wts, bias, res, out
        self.T = g.KH * g.KW
        self.pool_only = bool(g.pool) and not g.pool_keep  # only the pooled plane is written
        self.OHW = g.PH * g.PW if self.pool_only else g.OH * g.OW  # the output plane
        self.POHW = g.PH * g.PW
        self.pout = out if pout is None else pout  # the pooled plane's buffer (its own with pool_keep)
        self._prow0 = None  # pool_keep: the pooled plane's origin for the current image and group

    # ---- top level ---------------------------------------------------------------------------
    def run(self):
        g, p, b = self.g, self.p, self.b
        scratch = None
        if p.mode == "prep" or p.PT:
            size = g.Cg * p.CS
            scratch = self.scratch.alloc(size)
            if p.mode == "prep" and not p.border_zero:
                b.zero_fill(scratch, size)
        self.src = scratch if scratch is not None else self.x

        def per_image(n, _):
            def per_group(gi, _):
                out_img = b.add(b.mul(n, g.K * self.OHW), b.mul(gi, g.Kg * self.OHW))
                if g.pool_keep:
                    self._prow0 = b.add(b.mul(n, g.K * self.POHW), b.mul(gi, g.Kg * self.POHW))
                if p.PT:
                    self.pixel_blocks(n, gi, out_img)
                elif p.BH:
                    self.row_bands(n, gi, out_img)
                elif scratch is not None:
                    self.prep(n, gi)
                    (self.cvec_group if p.cvec else self.group)(gi, 0, out_img, p.rows, p.cols)
                else:
                    in_base = b.add(b.mul(n, g.C * g.H * g.W), b.mul(gi, g.Cg * g.H * g.W))
                    (self.cvec_group if p.cvec else self.group)(gi, in_base, out_img, p.rows, p.cols)

            b.loop(0, g.groups, 1, per_group)

        b.loop(0, g.N, 1, per_image)
        if scratch is not None:
            self.scratch.free(scratch)

    def pixel_blocks(self, n, gi, out_img):
        """Flat 1x1 conv, one packed block of PT pixels x Cg channels at a time."""
        g, p, b = self.g, self.p, self.b
        hw = g.H * g.W
        nfull = hw // p.PT
        tail = hw - nfull * p.PT
        src = b.add(b.mul(n, g.C * hw), b.mul(gi, g.Cg * hw))

        def block(p0, cols):
            def chan(c, _):
                self._copy_run(b.add(src, b.mul(c, hw), p0), b.mul(c, p.PT), cols)

            b.loop(0, g.Cg, 1, chan)
            self.group(gi, 0, b.add(out_img, p0), 1, cols)

        b.loop(0, nfull, 1, lambda bi, _: block(b.mul(bi, p.PT), p.PT))
        if tail:
            block(nfull * p.PT, tail)

    def row_bands(self, n, gi, out_img):
        """Padded conv, one scratch band of BH output rows (plus halo) at a time."""
        g, p, b = self.g, self.p, self.b
        nfull = p.rows // p.BH
        tail = p.rows - nfull * p.BH

        img0 = self._prow0

        def band(oh0, rows):
            self.prep(n, gi, oh0, rows)
            if g.pool_keep:
                self._prow0 = b.add(img0, self.pooled_row(oh0))
            self.group(gi, 0, b.add(out_img, self.out_row(oh0)), rows, g.OW)

        b.loop(0, nfull, 1, lambda bi, _: band(b.mul(bi, p.BH), p.BH))
        if tail:
            band(nfull * p.BH, tail)

    # ---- channel-vectorised tiles (small planes) ---------------------------------------------
    def cvec_group(self, gi, in_base, out_img, nrows, cols):
        """Tiles of KB = KV*V output channels x WB output pixels, pixels taken in flattened (oh, ow)
        order so that rows of any width fill the tile; vectors hold channels, so every lane is useful
        and each broadcast input pixel feeds KV FMAs."""
        g, p, b = self.g, self.p, self.b
        KB, P, OHW = p.KB, p.WB, self.OHW
        full = g.Kg // KB
        tailk = g.Kg - full * KB
        npt = OHW // P
        tailp = OHW - npt * P

        def bases(p0, count):
            out = []
            for j in range(count):
                pj = b.add(p0, j)
                if isinstance(pj, int):
                    oh, ow = divmod(pj, g.OW)
                    out.append(oh * g.sh * p.RS + ow)
                else:
                    oh = arith.divui(pj, b.c(g.OW))
                    ow = arith.subi(pj, arith.muli(oh, b.c(g.OW)))
                    out.append(b.add(b.mul(oh, g.sh * p.RS), ow))
            return out

        def ktile(kblk, kvalid):
            def ptile(p0, count):
                self.cvec_tile(gi, kblk, kvalid, in_base, out_img, p0, count, bases(p0, count))

            b.loop(0, npt * P, P, lambda p0, _: ptile(p0, P))
            if tailp:
                ptile(npt * P, tailp)

        b.loop(0, full, 1, lambda kblk, _: ktile(kblk, KB))
        if tailk:
            ktile(full, tailk)

    def cvec_tile(self, gi, kblk, kvalid, in_base, out_img, p0, count, pix):
        g, p, b = self.g, self.p, self.b
        V, T, KB, OHW = g.V, self.T, p.KB, self.OHW
        KV = -(-kvalid // V)
        lanes = [min(V, kvalid - kv * V) for kv in range(KV)]
        k0 = b.add(b.mul(gi, g.Kg), b.mul(kblk, KB))
        wblk = b.add(b.mul(gi, p.nkb * g.Cg * T * KB), b.mul(kblk, g.Cg * T * KB))
        colofs = [((kw * g.dw) % g.sw) * p.Wq + (kw * g.dw) // g.sw for kw in range(g.KW)]
        init = []
        for kv in range(KV):
            v0 = b.load(self.bias, b.add(k0, kv * V), lanes[kv]) if self.bias is not None else b.splat(0.0)
            init += [v0] * count

        def cbody(c, accs):
            ib = b.add(in_base, b.mul(c, p.CS))
            wb = b.add(wblk, b.mul(c, T * KB))
            for kh in range(g.KH):
                for kw in range(g.KW):
                    t = kh * g.KW + kw
                    off = kh * g.dh * p.RS + colofs[kw]
                    ws = [b.load(self.wts, b.add(wb, t * KB + kv * V)) for kv in range(KV)]
                    if CVEC_WPREFETCH and g.OH * g.OW <= CVEC_WPREFETCH_PIXELS:
                        for o in range(0, KB, 16):
                            memref.prefetch(self.wts, [b.v(b.add(wb, g.Cg * T * KB + t * KB + o))], False,
                                            CVEC_WPREFETCH, True)
                    for j in range(count):
                        xv = b.bcast(self.src, b.add(ib, pix[j], off))
                        for kv in range(KV):
                            accs[kv * count + j] = b.fma(ws[kv], xv, accs[kv * count + j])
            return accs

        accs = b.loop(0, g.Cg, 1, cbody, init)
        # Lane l of accumulator (kv, j) is output channel k0 + kv*V + l at pixel p0 + j.
        ob = b.add(out_img, b.mul(kblk, KB * OHW), p0)
        if V == 8 and count <= 8 and _CVEC_TRANSPOSE:
            # Transpose each 8-channel x count-pixel block in registers (24 shuffles) and store one
            # contiguous run of `count` pixels per channel: the strided scatters cost 5-10 % of a
            # tile with few input channels (3x3 s2 32->64 from 56x56, see docs/kernels.md).
            pad = accs[0]
            for kv in range(KV):
                rows = _transpose8(accs[kv * count:(kv + 1) * count] + [pad] * (8 - count))
                for l in range(lanes[kv]):
                    idx = b.add(ob, (kv * V + l) * OHW)
                    val = rows[l]
                    if self.res is not None:
                        val = arith.addf(val, b.load(self.res, idx, count))
                    val = b.activation(val, g.act, g.act_params)
                    b.store(val, self.out, idx, count)
            return
        # Otherwise a strided scatter per accumulator.
        i32 = ir.IntegerType.get_signless(32)
        ivt = ir.VectorType.get([V], i32)
        stride = arith.ConstantOp(ivt, ir.DenseElementsAttr.get(np.arange(V, dtype=np.int32) * OHW, type=ivt)).result
        for kv in range(KV):
            mask = b.mask(lanes[kv])
            for j in range(count):
                idx = b.v(b.add(ob, kv * V * OHW + j))
                val = accs[kv * count + j]
                if self.res is not None:
                    val = arith.addf(val, vector.gather(b.vt, self.res, [idx], stride, mask, b.splat(0.0)))
                val = b.activation(val, g.act, g.act_params)
                vector.scatter(None, self.out, [idx], stride, mask, val)

    def group(self, gi, in_row0, out_row0, nrows, cols):
        g, p, b = self.g, self.p, self.b
        nfull = g.Kg // p.KB
        tail = g.Kg - nfull * p.KB
        if nfull:
            if p.chunk_blocks >= nfull:
                self.nest(gi, in_row0, out_row0, nrows, cols, 0, nfull, p.KB)
            else:
                cb = p.chunk_blocks
                nchunks = -(-nfull // cb)

                def chunk(ci, _):
                    lo = b.mul(ci, cb)
                    hi = b.min(b.add(lo, cb), nfull)
                    self.nest(gi, in_row0, out_row0, nrows, cols, lo, hi, p.KB)

                b.loop(0, nchunks, 1, chunk)
        if tail:
            self.nest(gi, in_row0, out_row0, nrows, cols, nfull, nfull + 1, tail)

    def nest(self, gi, in_row0, out_row0, nrows, cols, kblk_lo, kblk_hi, kb):
        """Output rows [0, nrows) x columns [0, cols) (relative to in_row0 / out_row0) for channel
        blocks [kblk_lo, kblk_hi) of width kb."""
        g, p, b = self.g, self.p, self.b
        V, RB = g.V, p.RB
        wb = p.WB
        if kb < p.KB and not g.tile:
            # Leftover channel block (26 = 4 x 6 + 2): widen it so it still has enough independent
            # accumulators to hide the FMA latency.
            wb = max(wb, min(4, (vector_registers(V) - 1) // (kb * RB + 1)))
        segs = _width_segments(cols, V, wb)
        bounds = p.c_bounds or [0, g.Cg]
        chunks = [(lo, hi, j == 0, j == len(bounds) - 2) for j, (lo, hi) in enumerate(zip(bounds, bounds[1:]))]

        def rows(oh, rb):
            row_in = b.add(in_row0, b.mul(oh, g.sh * p.RS))
            row_out = b.add(out_row0, self.out_row(oh))
            prow = b.add(self._prow0, self.pooled_row(oh)) if g.pool_keep else row_out

            def walk_width(each):
                start = 0
                for count, nv, last in segs:
                    span = nv * V
                    if count == 1:
                        each(start, nv, last)
                    else:
                        b.loop(0, count, 1, lambda wi, _, st=start, nv=nv, span=span: each(b.add(st, b.mul(wi, span)), nv, V))
                    start += count * span

            for cr in chunks:
                def tile(kblk, ow0, nv, last, cr=cr):
                    self.tile(gi, kblk, kb, row_in, row_out, ow0, nv, last, rb, cr, prow)

                if p.k_outer:
                    b.loop(kblk_lo, kblk_hi, 1, lambda kblk, _: walk_width(lambda ow0, nv, last: tile(kblk, ow0, nv, last)))
                else:
                    walk_width(lambda ow0, nv, last: b.loop(kblk_lo, kblk_hi, 1, lambda kblk, _: tile(kblk, ow0, nv, last)))

        main = (nrows // RB) * RB
        b.loop(0, main, RB, lambda oh, _: rows(oh, RB))
        if nrows % RB:
            rows(main, nrows % RB)

    def out_row(self, oh):
        """Offset of conv output row `oh` in the output plane (the pooled one, for an even `oh`, when
        only that is written)."""
        return self.pooled_row(oh) if self.pool_only else self.b.mul(oh, self.g.OW)

    def pooled_row(self, oh):
        """Offset of the pooled row of (even) conv output row `oh` in the pooled plane."""
        return self.b.mul(half_index(self.b, oh), self.g.PW)

    # ---- register tile -----------------------------------------------------------------------
    def tile(self, gi, kblk, kb, row_in, row_out, ow0, nv, last, rb, cr=None, prow=None):
        """kb output channels x rb output rows x nv vectors; the last vector has `last` valid lanes.

        cr = (c_lo, c_hi, first, final): reduce over input channels [c_lo, c_hi) only; a chunk that is
        not the first adds to the partial sums already in the output, only the final one applies the
        residual and the activation."""
        c_lo, c_hi, first, final = cr or (0, self.g.Cg, True, True)
        g, p, b = self.g, self.p, self.b
        V, T, KB = g.V, self.T, p.KB
        masked_loads = p.mode != "prep" and not p.PT and last < V  # scratch rows are padded
        k0 = b.add(b.mul(gi, g.Kg), b.mul(kblk, KB))  # first output channel
        wblk = b.add(b.mul(gi, p.nkb * g.Cg * T * KB), b.mul(kblk, g.Cg * T * KB))
        # Output row i, tap (kh, kw) reads input row offset i*sh + kh*dh; rows of a multi-row tile
        # share those input vectors, so loads are grouped by input row.
        by_row: dict[int, list[tuple[int, int]]] = {}
        for i in range(rb):
            for kh in range(g.KH):
                by_row.setdefault(i * g.sh + kh * g.dh, []).append((i, kh))
        colofs = []
        for kw in range(g.KW):
            cw = kw * g.dw
            colofs.append((cw % g.sw) * p.Wq + cw // g.sw)
        pooled = g.pool and rb == 2  # (pool_keep: an odd last conv row is a tile of its own, unpooled)
        if g.pool:
            assert (rb == 2 or g.pool_keep) and first and final and self.res is None, "row pairs, whole reductions"
        if pooled:
            pcol = half_index(b, ow0)
            pb = b.add(prow, pcol, b.mul(kblk, KB * self.POHW))
        ob = pb if self.pool_only else b.add(row_out, ow0, b.mul(kblk, KB * self.OHW))

        def out_idx(k, i, v):
            return b.add(ob, k * self.OHW + i * g.OW + v * V)

        if not first:
            init = [b.load(self.out, out_idx(k, i, v), last if v == nv - 1 else V)
                    for k in range(kb) for i in range(rb) for v in range(nv)]
        elif self.bias is not None:
            init = [b.bcast(self.bias, b.add(k0, k)) for k in range(kb) for _ in range(rb * nv)]
        else:
            init = [b.splat(0.0)] * (kb * rb * nv)
        base = b.add(row_in, ow0)
        if self.pool_only:
            prefetch_epilogue(b, None, self.out, [b.add(ob, k * self.OHW) for k in range(kb)],
                              ((nv - 1) * V + last) // 2)
        elif final:
            prefetch_epilogue(b, self.res, self.out, [out_idx(k, i, 0) for k in range(kb) for i in range(rb)],
                              (nv - 1) * V + last)

        def acc_i(k, i, v):
            return (k * rb + i) * nv + v

        def cbody(c, accs):
            ib = b.add(base, b.mul(c, p.CS))
            wb = b.add(wblk, b.mul(c, T * KB))
            for ro in sorted(by_row):
                for kw in range(g.KW):
                    off = ro * p.RS + colofs[kw]
                    xs = [b.load(self.src, b.add(ib, off + v * V), last if (masked_loads and v == nv - 1) else None)
                          for v in range(nv)]
                    for i, kh in by_row[ro]:
                        t = kh * g.KW + kw
                        for k in range(kb):
                            w = b.bcast(self.wts, b.add(wb, t * KB + k))
                            for v in range(nv):
                                accs[acc_i(k, i, v)] = b.fma(xs[v], w, accs[acc_i(k, i, v)])
            return accs

        # Few taps leave little work per reduction step: unroll the channel loop to amortise it.
        U = p.cunroll
        cmain = c_lo + ((c_hi - c_lo) // U) * U

        def cbody_unrolled(c, accs):
            for u in range(U):
                accs = cbody(b.add(c, u), accs)
            return accs

        accs = b.loop(c_lo, cmain, U, cbody_unrolled, init)
        for c in range(cmain, c_hi):
            accs = cbody(c, accs)
        if pooled:
            for k in range(kb):
                rows_v = [[b.activation(accs[acc_i(k, i, v)], g.act, g.act_params) for v in range(nv)]
                          for i in range(rb)]
                if g.pool_keep:
                    for i in range(rb):
                        for v in range(nv):
                            b.store(rows_v[i][v], self.out, out_idx(k, i, v), last if v == nv - 1 else V)
                store_pooled(b, self.pout, [arith.maximumf(x, y) for x, y in zip(*rows_v)],
                             b.add(pb, k * self.POHW), nv, last)
            return
        for k in range(kb):
            for i in range(rb):
                for v in range(nv):
                    lanes = last if v == nv - 1 else V
                    idx = out_idx(k, i, v)
                    val = accs[acc_i(k, i, v)]
                    if final:
                        if self.res is not None:
                            val = arith.addf(val, b.load(self.res, idx, lanes))
                        val = b.activation(val, g.act, g.act_params)
                    b.store(val, self.out, idx, lanes)

    # ---- padded / phase-split input copy -------------------------------------------------------
    def prep(self, n, gi, oh0=None, nrows=None):
        """Copy the input of group gi into the scratch with padding applied: the whole image, or
        (row bands, lh = 1) the rows that output rows [oh0, oh0 + nrows) read."""
        g, p, b = self.g, self.p, self.b
        ih_lo = max(0, -(-(-g.pt) // g.lh))
        ih_hi = min(g.H, (p.Hs - 1 - g.pt) // g.lh + 1) if p.Hs - 1 - g.pt >= 0 else 0
        iw_lo = max(0, -(-(-g.pl) // g.lw))
        iw_hi = min(g.W, (p.Ws - 1 - g.pl) // g.lw + 1) if p.Ws - 1 - g.pl >= 0 else 0
        L = iw_hi - iw_lo
        if ih_hi <= ih_lo or L <= 0:
            if p.border_zero:
                self._zero_span(0, 0, g.Cg * p.CS)
            return
        src_base = b.add(b.mul(n, g.C * g.H * g.W), b.mul(gi, g.Cg * g.H * g.W))
        wp0 = g.pl + iw_lo * g.lw

        # Zero only what the copy does not overwrite (see _Plan.border_zero): rows above and below
        # the data, and per data row and column phase the columns left and right of the data.
        spans = []  # (phase, first data column, end of data columns)
        for ph in range(g.sw):
            first = next((w for w in range(wp0, wp0 + L) if w % g.sw == ph), None)
            if first is None:
                spans.append((ph, 0, 0))
            else:
                cnt = len(range(first, wp0 + L, g.sw))
                spans.append((ph, first // g.sw, first // g.sw + cnt))

        if oh0 is None:
            # Scratch row of input row ih: pt + ih*lh; data rows [pt+ih_lo, pt+ih_hi) of Hs.
            nr, shift = p.Hs, g.pt
            r_lo, r_hi = g.pt + ih_lo, g.pt + ih_hi
        else:
            # Band scratch row r holds padded row oh0*sh + r, i.e. input row r + a (lh = 1).
            nr = (nrows - 1) * g.sh + (g.KH - 1) * g.dh + 1
            a = b.add(b.mul(oh0, g.sh), -g.pt)
            shift = None
            r_lo = _smin(b, nr, _smax(b, 0, _neg(b, a)))  # a band may lie wholly in the padding
            r_hi = _smax(b, r_lo, _smin(b, nr, b.add(_neg(b, a), g.H)))

        def chan(c, _):
            xc = b.add(src_base, b.mul(c, g.H * g.W))
            sc = b.mul(c, p.CS)
            if p.border_zero:
                self._zero_rows(sc, 0, r_lo)
                self._zero_rows(sc, r_hi, nr)

            def row(r, _):
                if shift is not None:  # whole image: r counts input rows
                    ih, sr = r, b.add(sc, b.mul(r, g.lh * p.RS), shift * p.RS)
                else:
                    ih, sr = b.add(r, a), b.add(sc, b.mul(r, p.RS))
                xr = b.add(xc, b.mul(ih, g.W), iw_lo)
                if p.border_zero:
                    for ph, j0, j1 in spans:
                        self._zero_span(b.add(sr, ph * p.Wq), 0, j0)
                        self._zero_span(b.add(sr, ph * p.Wq), j1, p.Wq)
                if g.sw == 1 and g.lw == 1:
                    self._copy_run(xr, b.add(sr, wp0), L)
                elif g.sw == 2 and g.lw == 1:
                    self._copy_deinterleave(xr, sr, wp0, L)
                elif g.sw == 4 and g.lw == 1:
                    self._copy_phases(xr, sr, wp0, L)
                else:
                    self._copy_scalar(xr, sr, L)

            if shift is not None:
                b.loop(ih_lo, ih_hi, 1, row)
            else:
                b.loop(r_lo, r_hi, 1, row)

        b.loop(0, g.Cg, 1, chan)

    def _zero_rows(self, sc, r0, r1):
        """Zero scratch rows [r0, r1) of the channel at sc (bounds may be dynamic)."""
        b, RS = self.b, self.p.RS
        if isinstance(r0, int) and isinstance(r1, int):
            if r1 > r0:
                self._zero_span(sc, r0 * RS, r1 * RS)
            return
        b.loop(r0, r1, 1, lambda r, _: self._zero_span(b.add(sc, b.mul(r, RS)), 0, RS))

    def _zero_span(self, base, start: int, end: int):
        """Zero S[base+start : base+end] with vector stores (the last one masked)."""
        b, V = self.b, self.g.V
        n = end - start
        if n <= 0:
            return
        z = b.splat(0.0)
        nfull = n // V
        if nfull > 4:
            U = 4
            main = (nfull // U) * U

            def body(i, _):
                for u in range(U):
                    b.store(z, self.src, b.add(base, start + u * V, b.mul(i, V)))

            b.loop(0, main, U, body)
        else:
            main = 0
        for k in range(main, nfull):
            b.store(z, self.src, b.add(base, start + k * V))
        if n % V:
            b.store(z, self.src, b.add(base, start + nfull * V), n % V)

    def _copy_run(self, xr, sr, L):
        b, V = self.b, self.g.V
        S = self.src
        nfull = L // V

        def body(i, _):
            off = b.mul(i, V)
            b.store(b.load(self.x, b.add(xr, off)), S, b.add(sr, off))

        b.loop(0, nfull, 1, body)
        if L % V:
            r = L % V
            b.store(b.load(self.x, b.add(xr, nfull * V), r), S, b.add(sr, nfull * V), r)

    def _copy_deinterleave(self, xr, sr, wp0, L):
        # Source element iw_lo+2t lands in phase wp0%2 at column wp0//2+t; iw_lo+2t+1 in the other
        # phase at column (wp0+1)//2+t.
        b, V = self.b, self.g.V
        S, Wq = self.src, self.p.Wq
        vt2 = ir.VectorType.get([2 * V], b.f32)
        ev_base = b.add(sr, (wp0 % 2) * Wq + wp0 // 2)
        od_base = b.add(sr, ((wp0 + 1) % 2) * Wq + (wp0 + 1) // 2)
        nfull = L // (2 * V)

        def split(idx, lanes):
            if lanes is None:
                v2 = vector.load(vt2, self.x, [b.v(idx)])
            else:
                v2 = vector.maskedload(vt2, self.x, [b.v(idx)], b.mask(lanes, 2 * V), b.splat(0.0, vt2))
            ev, od = vector.deinterleave(v2)
            return ev, od

        def body(i, _):
            ev, od = split(b.add(xr, b.mul(i, 2 * V)), None)
            b.store(ev, S, b.add(ev_base, b.mul(i, V)))
            b.store(od, S, b.add(od_base, b.mul(i, V)))

        b.loop(0, nfull, 1, body)
        r = L - nfull * 2 * V
        if r:
            ev, od = split(b.add(xr, nfull * 2 * V), r)
            b.store(ev, S, b.add(ev_base, nfull * V), (r + 1) // 2)
            if r // 2:
                b.store(od, S, b.add(od_base, nfull * V), r // 2)

    def _copy_phases(self, xr, sr, wp0, L):
        """Column stride s = 4 (Winograd F(4x4, 3x3) patches): a run of s*V source elements is
        split into its s column phases by one lane shuffle each. Source element t lands in phase
        (wp0 + t) % s at column (wp0 + t) // s."""
        b, V, s = self.b, self.g.V, self.g.sw
        S, Wq = self.src, self.p.Wq
        vts = ir.VectorType.get([s * V], b.f32)
        nfull = L // (s * V)

        def split(i, idx, lanes):
            if lanes is None:
                vv = vector.load(vts, self.x, [b.v(idx)])
            else:
                vv = vector.maskedload(vts, self.x, [b.v(idx)], b.mask(lanes, s * V), b.splat(0.0, vts))
            n = lanes if lanes is not None else s * V
            for ph in range(s):
                u0 = (ph - wp0) % s
                cnt = len(range(u0, n, s))
                if not cnt:
                    continue
                part = vector.shuffle(vv, vv, [min(u0 + s * q, s * V - 1) for q in range(V)])
                b.store(part, S, b.add(sr, ph * Wq + (wp0 + u0) // s, b.mul(i, V)), cnt if cnt < V else None)

        b.loop(0, nfull, 1, lambda i, _: split(i, b.add(xr, b.mul(i, s * V)), None))
        if L - nfull * s * V:
            split(nfull, b.add(xr, nfull * s * V), L - nfull * s * V)

    def _copy_scalar(self, xr, sr, L):
        g, p, b = self.g, self.p, self.b
        S = self.src

        def body(i, _):
            val = memref.load(self.x, [b.v(b.add(xr, i))])
            wp = b.add(b.mul(i, g.lw), g.pl + (_first_input_col(g) * g.lw))
            if g.sw == 1:
                col = wp
            else:
                col = arith.addi(arith.muli(arith.remui(b.v(wp), b.c(g.sw)), b.c(p.Wq)),
                                 arith.divui(b.v(wp), b.c(g.sw)))
            memref.store(val, S, [b.v(b.add(sr, col))])

        b.loop(0, L, 1, body)


def store_pooled(b: KernelBuilder, out, m, at, nv: int, last: int) -> None:
    """Store at out[at...] the column-pair maxima of one row of vectors `m` (each already the
    maximum of two conv rows; the last vector has `last` valid lanes): vectors 2j and 2j+1 give V
    pooled columns (even lanes against odd lanes of the pair), an unpaired last vector V/2. A pair
    ending in an odd column drops it (floor mode). Shared by the dense and sparse fused pools."""
    V = b.V
    ev = list(range(0, 2 * V, 2))
    od = list(range(1, 2 * V, 2))
    for j in range(0, nv, 2):
        if j + 1 < nv:
            lo, hi = m[j], m[j + 1]
            valid = V + (last if j + 1 == nv - 1 else V)
            pooled = arith.maximumf(vector.shuffle(lo, hi, ev), vector.shuffle(lo, hi, od))
        else:
            valid = last if j == nv - 1 else V
            x = m[j]
            half = V // 2
            pooled = arith.maximumf(vector.shuffle(x, x, ev[:half] + [0] * half),
                                    vector.shuffle(x, x, od[:half] + [1] * half))
        if valid // 2:
            b.store(pooled, out, b.add(at, j * V // 2), valid // 2)


def half_index(b: KernelBuilder, i):
    """i // 2 of a non-negative index (static or dynamic)."""
    return i // 2 if isinstance(i, int) else arith.shrui(i, b.c(1))


def _subsample(b: KernelBuilder, g: _Geom, x, dst) -> None:
    """dst[n][c][oh][ow] = x[n][c][oh*sh][ow*sw] (every image and channel)."""
    V, OW, sw = g.V, g.OW, g.sw
    L = (OW - 1) * sw + 1  # input elements spanned by one output row
    nvec = -(-OW // V)
    if sw == 2:
        vt2 = ir.VectorType.get([2 * V], b.f32)
        plain = min(OW // V, L // (2 * V))
    else:
        plain = OW // V
        if sw > 2:
            i32 = ir.IntegerType.get_signless(32)
            ivt = ir.VectorType.get([V], i32)
            stride = arith.ConstantOp(ivt, ir.DenseElementsAttr.get(np.arange(V, dtype=np.int32) * sw,
                                                                    type=ivt)).result

    def chunk(xr, dr, i, masked):
        """Output vector i of a row; `masked`: it may end the row (mask loads and stores)."""
        lanes = min(V, OW - i * V) if masked else V
        if sw == 1:
            val = b.load(x, b.add(xr, b.mul(i, V)), lanes)
        elif sw == 2:
            # Even lanes of a 2V-wide load, masked to the L elements the row spans.
            n = min(2 * V, L - 2 * V * i) if masked else 2 * V
            idx = [b.v(b.add(xr, b.mul(i, 2 * V)))]
            if n == 2 * V:
                v2 = vector.load(vt2, x, idx)
            else:
                v2 = vector.maskedload(vt2, x, idx, b.mask(n, 2 * V), b.splat(0.0, vt2))
            val, _ = vector.deinterleave(v2)
        else:
            val = vector.gather(b.vt, x, [b.v(b.add(xr, b.mul(i, V * sw)))], stride, b.mask(lanes), b.splat(0.0))
        b.store(val, dst, b.add(dr, b.mul(i, V)), lanes)

    def chan(nc, _):
        def row(oh, _):
            xr = b.add(b.mul(nc, g.H * g.W), b.mul(oh, g.sh * g.W))
            dr = b.add(b.mul(nc, g.OH * OW), b.mul(oh, OW))
            if plain > 4:
                b.loop(0, plain, 1, lambda i, _: chunk(xr, dr, i, False))
            else:
                for i in range(plain):
                    chunk(xr, dr, i, False)
            for i in range(plain, nvec):
                chunk(xr, dr, i, True)

        b.loop(0, g.OH, 1, row)

    b.loop(0, g.N * g.C, 1, chan)


# Channel-vectorised tiles store through an in-register transpose (V = 8) instead of scatters.
_CVEC_TRANSPOSE = True


def _transpose8(r: list) -> list:
    """8 vectors of 8 lanes -> their transpose (out[l][j] = r[j][l]): the unpack / shuffle /
    128-bit-lane-swap sequence, which LLVM matches to vunpck*ps, vshufps and vperm2f128."""
    lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
    t = []
    for i in range(4):
        t += [vector.shuffle(r[2 * i], r[2 * i + 1], lo), vector.shuffle(r[2 * i], r[2 * i + 1], hi)]
    A, B = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    u = []
    for x, y in ((0, 2), (1, 3), (4, 6), (5, 7)):
        u += [vector.shuffle(t[x], t[y], A), vector.shuffle(t[x], t[y], B)]
    L, H = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
    o = [None] * 8
    for i in range(4):
        o[i], o[i + 4] = vector.shuffle(u[i], u[i + 4], L), vector.shuffle(u[i], u[i + 4], H)
    return o


def _neg(b: KernelBuilder, a):
    return -a if isinstance(a, int) else arith.subi(b.c(0), a)


def _smax(b: KernelBuilder, x, y):
    if isinstance(x, int) and isinstance(y, int):
        return max(x, y)
    return arith.maxsi(b.v(x), b.v(y))


def _smin(b: KernelBuilder, x, y):
    if isinstance(x, int) and isinstance(y, int):
        return min(x, y)
    return arith.minsi(b.v(x), b.v(y))


def _first_input_col(g: _Geom) -> int:
    """First input column that lands inside the scratch (left padding may be negative: cropping)."""
    return max(0, -(-(-g.pl) // g.lw))
