"""Pattern-sparse conv2d GPU kernel for an `lr.conv2d` carrying `#lr.sparsity`.

Packing (`pack_sparse_gpu`, numpy, at compile time): filters are put in *slots*, per group ordered by
kept-kernel count (most first) and then by their per-pattern kernel counts, so neighbouring slots run
the same loops. Per slot the kept kernels are grouped by pattern; per kept kernel the buffers hold its
input-channel offset and its pattern's weights, densely (4 for a 4-entry pattern). Removed kernels
(id -1) are simply absent. One int32 table carries, per slot, the first kernel of every pattern run,
the weight offset of each run and the output offset; per kernel the channel offset.

Kernel (`emit_sparse_conv2d`): a work item computes one output pixel of one filter slot; a work group
is 16-64 pixels (x) of 1-4 adjacent slots (y), so every work item of a group row runs exactly the same
loop trip counts and pattern sequence, and adjacent rows nearly so (the sort). For every pattern the
layer uses there is one scf.for over the slot's kernels of that pattern, with the pattern's taps
unrolled: their bounds and in-plane offsets come from a tap table computed once per work item. Bias,
residual and activation are fused into the store, which writes the filter's real output channel, so
the reorder costs nothing and the next layer sees torch's channel order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..codegen.emit import LayerOp
from .builder import GpuKernel
from .ops_dense import _act

# Larger than this many distinct tap sets in a layer without a library: every kept kernel is run with
# all its taps (one full pattern), only removed kernels are skipped.
MAX_PATTERNS = 16

# auto mode: run the sparse kernel where it does at least this many times fewer multiply-adds. On
# lavapipe and PoCL (1 thread) it was 1.8-4.4x faster than the dense kernel at 2-4.5x fewer MACs
# (32-64 channels, 64x64; bench/results/gpu.md); below 1.5x the sparse kernel's per-kernel index
# loads and shorter loops are not paid back.
MIN_MAC_REDUCTION = 1.5


def sparse_mode() -> str:
    """LRC_SPARSE, as for the host target: auto (cost model) | always | off (dense kernels)."""
    mode = os.environ.get("LRC_SPARSE", "auto")
    if mode not in ("auto", "always", "off"):
        raise ValueError(f"LRC_SPARSE must be auto, always or off, got {mode!r}")
    return mode


@dataclass
class SparseGpuPack:
    patterns: tuple[tuple[int, ...], ...]  # flat tap positions per pattern id
    weights: np.ndarray  # f32: per slot, per pattern, per kernel: the pattern's taps
    bias: np.ndarray  # f32 in slot order
    table: np.ndarray  # i32: [kstart (K*(P+1)) | wadj (K*P) | ooff (K) | koff (kernels)]
    order: np.ndarray  # slot -> output channel
    kernels: int  # kept kernels
    macs_per_pixel: int  # stored weights = multiply-adds per output pixel
    dense_macs_per_pixel: int
    source: str  # where the tap sets came from: "library" | "weights" | "full"

    @property
    def mac_reduction(self) -> float:
        return self.dense_macs_per_pixel / max(1, self.macs_per_pixel)


def tap_sets(weight: np.ndarray, sparsity: dict) -> tuple[list[tuple[int, ...]], np.ndarray, str]:
    """(patterns, ids[K, Cg], source): the taps stored for every kernel; ids -1 = removed kernel.

    Pattern kinds use the attribute's library and ids (re-derived from the weights when absent, and
    checked: a non-zero outside its kernel's pattern would be silently dropped). Other kinds derive
    the distinct non-zero tap sets of the layer, or fall back to full kernels when there are too many.
    """
    k, cg, kh, kw = weight.shape
    taps = kh * kw
    nz = weight.reshape(k, cg, taps) != 0
    lib = [tuple(int(t) for t in p) for p in (sparsity.get("library") or [])]
    if sparsity["kind"] in ("pattern", "pattern+kernel") and lib:
        from ..importer.sparsity_annotations import kernel_pattern_ids

        derived = kernel_pattern_ids(weight, lib)  # raises ValueError naming a kernel that fits no pattern
        ids = sparsity.get("ids")
        if ids is not None:
            ids = np.asarray(ids, np.int32)
            masks = np.zeros((len(lib) + 1, taps), bool)
            for i, p in enumerate(lib):
                masks[i, list(p)] = True
            # the annotated pattern (masks[-1] is empty: "removed") must cover the kernel's non-zeros
            if (nz & ~masks[ids]).any():
                kk, cc = np.argwhere((nz & ~masks[ids]).any(axis=2))[0]
                raise ValueError(f"kernel ({kk}, {cc}) has non-zeros outside its annotated pattern id {ids[kk, cc]}")
        else:
            ids = derived
        return lib, ids, "library"
    keys = np.packbits(nz, axis=2, bitorder="little").reshape(k * cg, -1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(k, cg)
    pats, ids = [], np.full((k, cg), -1, np.int32)
    for u, row in enumerate(uniq):
        t = tuple(int(i) for i in np.flatnonzero(np.unpackbits(row, bitorder="little")[:taps]))
        if t:
            ids[inv == u] = len(pats)
            pats.append(t)
    if len(pats) <= MAX_PATTERNS:
        return pats, ids, "weights"
    return [tuple(range(taps))], np.where(nz.any(axis=2), 0, -1).astype(np.int32), "full"


def pack_sparse_gpu(weight: np.ndarray, bias: np.ndarray | None, groups: int, sparsity: dict,
                    plane: int, pixels: int) -> SparseGpuPack:
    """`plane` = input H*W (channel stride), `pixels` = output OH*OW (output channel stride)."""
    w = np.asarray(weight, np.float32)
    k, cg, kh, kw = w.shape
    kg = k // groups
    wf = w.reshape(k, cg, kh * kw)
    patterns, ids, source = tap_sets(w, sparsity)
    npat = len(patterns)
    counts = np.stack([(ids == p).sum(axis=1) for p in range(npat)], axis=1)  # [K, P]
    order = []
    for g in range(groups):
        # most kernels first, equal pattern mixes adjacent: balanced work within a work group
        order += sorted(range(g * kg, (g + 1) * kg), key=lambda f: (-int(counts[f].sum()), tuple(-counts[f]), f))
    order = np.asarray(order, np.int64)
    ws, kstart, wstart, koff = [], [], [], []
    j = wpos = 0
    for f in order:
        for p, taps in enumerate(patterns):
            kstart.append(j)
            wstart.append(wpos - j * len(taps))  # weights of kernel j of the run: wstart + j*|p|
            for c in np.flatnonzero(ids[f] == p):
                ws.append(wf[f, c, list(taps)])
                koff.append(int(c) * plane)
                j += 1
                wpos += len(taps)
        kstart.append(j)
    kstart = np.asarray(kstart, np.int64)
    ooff = order * pixels
    table = np.concatenate([kstart, np.asarray(wstart, np.int64), ooff, np.asarray(koff, np.int64)])
    if table.size and table.max() >= 2**31:
        raise NotImplementedError(f"sparse conv of {k} filters: offsets overflow the int32 table")
    b = np.zeros(k, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(k)
    return SparseGpuPack(tuple(patterns), np.concatenate(ws).astype(np.float32) if ws else np.zeros(1, np.float32),
                         np.ascontiguousarray(b[order]), table.astype(np.int32), order, j, wpos,
                         k * cg * kh * kw, source)


def choose(op: LayerOp) -> SparseGpuPack | None:
    """The sparse pack for an annotated conv, or None where the dense kernel should run."""
    a = op.attrs
    sp = a.get("sparsity")
    mode = sparse_mode()
    if sp is None or sp["kind"] == "none" or mode == "off":
        return None
    _, _, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    try:
        pack = pack_sparse_gpu(a["weight"], a["bias"], a["groups"], sp, h * w, oh * ow)
    except ValueError as e:
        where = f"'lr.{op.name}'" + (f" '{op.label}'" if op.label else "")
        raise ValueError(f"{where} at {op.location}: #lr.sparsity does not match the weights: {e}") from None
    return pack if mode == "always" or pack.mac_reduction >= MIN_MAC_REDUCTION else None


def emit_sparse_conv2d(k: GpuKernel, op: LayerOp, pack: SparseGpuPack):
    n, c, h, w = op.in_shapes[0]
    a = op.attrs
    kk, cg, kh, kw = np.asarray(a["weight"]).shape
    groups = a["groups"]
    kg = kk // groups
    _, _, oh, ow = op.out_shape
    sh, sw = a["stride"]
    pt, pl, pb, pr = a["padding"]
    dh, dw = a["dilation"]
    act, params = _act(a)
    residual = len(op.in_shapes) == 2
    pixels = oh * ow
    bounded = max(pt, pl, pb, pr) > 0
    npat = len(pack.patterns)
    ks0, ws0, oo0, ko0 = 0, kk * (npat + 1), kk * (npat + 1) + kk * npat, kk * (npat + 1) + kk * npat + kk
    runs = np.diff(pack.table[ks0:ws0].reshape(kk, npat + 1), axis=1)  # kernels per (filter, pattern)
    used = [p for p in range(npat) if np.any(runs[:, p] > 0)]

    # RB stacked output rows per work item: the kernel loop, its index loads and its weight loads are
    # shared by RB pixels, and so are input loads where the rows' taps overlap (stride 1: 3x3 taps of
    # rows r and r+1 share two input rows).
    rb = 4 if oh >= 8 else 2 if oh >= 2 else 1
    items = -(-oh // rb) * ow
    ragged = oh % rb != 0  # last row block partly outside: its reads are bounds-checked, stores guarded

    k.inp(0, n * c * h * w)
    k.param(pack.weights)
    k.param(pack.bias)
    k.param(pack.table)
    if residual:
        k.inp(1, n * kk * pixels)
    k.out(n * kk * pixels)
    bx = 64 if items > 32 else 32 if items > 16 else 16
    by = min(64 // bx, kk)
    while kk % by:
        by //= 2  # whole work groups of slots: no slot guard
    k.grid_launch((items, kk, n), (bx, by, 1))
    k.variant = (f"sparse-{pack.source}: {npat} pattern(s), {pack.kernels}/{kk * cg} kernels kept, "
                 f"{pack.mac_reduction:.2f}x fewer MACs, {rb} rows per work item")

    def body(kb, args):
        x, wt, bs, tab = args[0], args[1], args[2], args[3]
        res = args[4] if residual and len(args) == 6 else (args[0] if residual else None)
        y = args[-1]
        p = kb.add(kb.mul(kb.group("x"), bx), kb.thread("x"))
        slot = kb.add(kb.mul(kb.group("y"), by), kb.thread("y"))
        b = kb.group("z")
        with kb.when(None if items % bx == 0 else kb.cmp("ult", p, items)):
            grp = kb.div(slot, kg) if groups > 1 else 0
            cbase = kb.lin((b, c * h * w), (grp, cg * h * w))
            oy0, ox = kb.mul(kb.div(p, ow), rb), kb.rem(p, ow)
            y0, x0 = kb.add(kb.mul(oy0, sh), -pt), kb.add(kb.mul(ox, sw), -pl)
            rows, cols, taps = {}, {}, {}

            def tap(dy, tx):
                """(in-bounds condition or None, offset in the input plane) of input row y0+dy, column
                x0+tx*dw; computed once per work item, shared by every kernel and row that uses it."""
                if (dy, tx) not in taps:
                    if dy not in rows:
                        iy = kb.add(y0, dy)
                        chk = bounded or ragged
                        rok = kb.and_(kb.cmp("sge", iy, 0), kb.cmp("slt", iy, h)) if chk else None
                        rows[dy] = (rok, kb.mul(kb.clamp(iy, 0, h - 1) if chk else iy, w))
                    if tx not in cols:
                        ix = kb.add(x0, tx * dw)
                        cok = kb.and_(kb.cmp("sge", ix, 0), kb.cmp("slt", ix, w)) if bounded else None
                        cols[tx] = (cok, kb.clamp(ix, 0, w - 1) if bounded else ix)
                    taps[dy, tx] = (kb.and_(rows[dy][0], cols[tx][0]), kb.add(rows[dy][1], cols[tx][1]))
                return taps[dy, tx]

            zero = kb.f(0.0)
            accs = [zero] * rb
            srow = kb.mul(slot, npat + 1)
            for pi in used:
                pat = pack.patterns[pi]
                lo = kb.iload(tab, kb.add(srow, ks0 + pi))
                hi = kb.iload(tab, kb.add(srow, ks0 + pi + 1))
                wrun = kb.iload(tab, kb.add(kb.mul(slot, npat), ws0 + pi))
                keys = [[(r * sh + (t // kw) * dh, t % kw) for t in pat] for r in range(rb)]
                for r in range(rb):
                    for key in keys[r]:
                        tap(*key)  # the tap table stays outside the kernel loop

                def step(j, acc, pat=pat, wrun=wrun, keys=keys):
                    xb = kb.add(cbase, kb.iload(tab, kb.add(j, ko0)))
                    wb = kb.add(wrun, kb.mul(j, len(pat)))
                    wv = [kb.load(wt, kb.add(wb, ti)) for ti in range(len(pat))]
                    loaded = {}
                    for r in range(rb):
                        for ti, key in enumerate(keys[r]):
                            if key not in loaded:
                                ok, off = taps[key]
                                loaded[key] = kb.select(ok, kb.load(x, kb.add(xb, off)), zero)
                            acc[r] = kb.fadd(acc[r], kb.fmul(loaded[key], wv[ti]))
                    return acc
                accs = kb.reduce_loop(lo, hi, accs, step, bound=int(runs[:, pi].max()))
            obase = kb.add(kb.lin((b, kk * pixels), (oy0, ow), (ox, 1)), kb.iload(tab, kb.add(slot, oo0)))
            bias = kb.load(bs, slot)
            for r in range(rb):
                with kb.when(kb.cmp("slt", kb.add(oy0, r), oh) if ragged and r else None):
                    o = kb.add(obase, r * ow)
                    v = kb.fadd(accs[r], bias)
                    if residual:
                        v = kb.fadd(v, kb.load(res, o))
                    kb.store(kb.activation(v, act, params), y, o)
    return k.build(body)
