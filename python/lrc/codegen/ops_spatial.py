"""Kernels for spatial layers: padding, pooling, resizing, pixel shuffle, instance norm, concat, permute.

Shapes are static, so index maps that torch computes with floating point (resize source rows,
adaptive-pool bins, pooling divisors) are computed here once in numpy and stored as small integer or
float tables: the kernels stay simple gathers and match torch's rounding exactly.
"""
from __future__ import annotations

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, math, scf, vector

from .emit import Kernel, LayerOp


def _numel(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


def _i(kb, buf, i):
    """Load an i32 table entry as an index."""
    v = kb.load(buf, i)
    return arith.IndexCastOp(ir.IndexType.get(), v).result


def emit_pad(k: Kernel, op: LayerOp):
    n, c, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    pt, pl, pb, pr = op.attrs["pads"]
    mode, value = op.attrs["mode"], op.attrs["value"]
    k.inp(0, n * c * h * w)
    # source row per output row (-1: constant fill), source column per output column
    rows = np.arange(oh) - pt
    cols = np.arange(ow) - pl
    if mode == "constant":
        rsrc = np.where((rows >= 0) & (rows < h), rows, -1)
        csrc = np.where((cols >= 0) & (cols < w), cols, -1)
    else:
        rsrc = _map(rows, h, mode)
        csrc = _map(cols, w, mode)
    # columns [c0, c1) of the output copy a contiguous run of the input
    inner = [j for j in range(ow) if csrc[j] >= 0 and csrc[j] == j - pl]
    c0, c1 = (inner[0], inner[-1] + 1) if inner else (0, 0)
    edges = [j for j in range(ow) if not (c0 <= j < c1)]
    k.param(rsrc.astype(np.int32))
    k.out(n * c * oh * ow)

    def body(kb, a):
        x, rt, y = a
        with kb.loop(0, n * c) as nc:
            ibase = kb.mul(nc, h * w)
            obase = kb.mul(nc, oh * ow)
            with kb.loop(0, oh) as r:
                orow = kb.add(obase, kb.mul(r, ow))
                src = kb.load(rt, r)
                is_fill = arith.CmpIOp(arith.CmpIPredicate.slt, src, arith.ConstantOp(src.type, 0).result).result
                ifop = scf.IfOp(is_fill, has_else=True)
                with ir.InsertionPoint(ifop.then_block):
                    kb.fill(y, orow, ow, value)
                    scf.YieldOp([])
                with ir.InsertionPoint(ifop.else_block):
                    irow = kb.add(ibase, kb.mul(arith.IndexCastOp(ir.IndexType.get(), src).result, w))
                    if c1 > c0:
                        kb.copy(x, kb.add(irow, c0 - pl), y, kb.add(orow, c0), c1 - c0)
                    for j in edges:  # pads are a few pixels wide: unroll
                        if csrc[j] < 0:
                            kb.store(kb.f(value), y, kb.add(orow, j))
                        else:
                            kb.store(kb.load(x, kb.add(irow, int(csrc[j]))), y, kb.add(orow, j))
                    scf.YieldOp([])
    return k.build(body)


def _map(idx, size, mode):
    if mode == "reflect":
        j = np.abs(idx)
        return np.where(j >= size, 2 * (size - 1) - j, j)
    return np.clip(idx, 0, size - 1)


# Unpadded pools read their input in place (switch for A/B runs; see emit_pool).
POOL_IN_PLACE = True
PADDED_POOL_IN_PLACE = True  # A/B switch of the padded in-place route (docs/kernels.md, Round 7)


def emit_pool(k: Kernel, op: LayerOp):
    """Max / average pooling, reading the input in place where the row is vectorised: unpadded pools
    whose windows lie inside the input mask only loads that would leave a row at its end; padded ones
    leave rows in the padding out of a window and fill edge columns (_pool_padded_in_place). The rest
    (unpadded ceil-mode overhang, column strides above 2, left padding of a vector or more) copy the input into a padded scratch plane
    per (n, c) so that window loads need no bounds checks. Avg divisors are
    per-row x per-column tables (torch's divisor is separable in both count_include_pad modes).

    Column strides 1 and 2 are vectorised along the output row (stride 2 splits 2V-lane loads into
    even and odd lanes); other strides run one output pixel at a time."""
    n, c, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    kh, kw = op.attrs["kernel"]
    sh, sw = op.attrs["stride"]
    ph, pw = op.attrs["padding"]
    dh, dw = op.attrs.get("dilation") or (1, 1)
    is_max = op.name == "max_pool2d"
    V = k.vec
    vectorized = sw in (1, 2)
    owv = -(-ow // V) * V  # output columns rounded up to whole vectors
    # scratch plane must cover every window, including ceil_mode overhang and, when vectorised, the
    # lanes of the last (partly masked) output vector
    hp = max(h + 2 * ph, (oh - 1) * sh + dh * (kh - 1) + 1)
    wp = max(w + 2 * pw, (ow - 1) * sw + dw * (kw - 1) + 1)
    if vectorized:
        wp = max(wp, (owv - V) * sw + dw * (kw - 1) + sw * V)
    fillv = -3.4028234663852886e38 if is_max else 0.0
    k.inp(0, n * c * h * w)
    if not is_max:
        def divisors(size, out, kk, ss, pp):
            st = np.arange(out) * ss - pp
            if op.attrs["count_include_pad"]:
                en = np.minimum(st + kk, size + pp)
                return en - st
            return np.minimum(st + kk, size) - np.maximum(st, 0)
        rdiv = divisors(h, oh, kh, sh, ph).astype(np.float64)
        cdiv = divisors(w, ow, kw, sw, pw).astype(np.float64)
        k.param((1.0 / rdiv).astype(np.float32))
        k.param(np.concatenate([1.0 / cdiv, np.ones(owv - ow)]).astype(np.float32))
    k.out(n * c * oh * ow)

    # Unpadded windows that all lie inside the input (VGG's 2x2 / 2 pools) read the input in place:
    # the padded copy was a second pass over a plane that is several times the output (2x2 pools
    # in VGG ran at half ORT's speed with it). Only the row tail's loads are masked then.
    direct = (POOL_IN_PLACE and vectorized and not (ph or pw) and (oh - 1) * sh + (kh - 1) * dh < h
              and (ow - 1) * sw + (kw - 1) * dw < w)
    # Padded pools (the ResNet stem's 3x3 / 2 / pad 1) read the input in place too: rows in the padding
    # are left out of a window, columns in it filled with the padding value (see _pool_row_padded).
    padded_direct = POOL_IN_PLACE and PADDED_POOL_IN_PLACE and vectorized and bool(ph or pw) and pw < V

    def body(kb, a):
        if is_max:
            x, y = a
        else:
            x, rdv, cdv, y = a
        if padded_direct:
            _pool_padded_in_place(kb, x, y, None if is_max else (rdv, cdv), n * c, h, w, oh, ow, V, kh, kw, sh, sw,
                                  dh, dw, ph, pw, kb.fmax if is_max else kb.fadd, fillv)
            return
        scratch = None
        if not direct:
            scratch = kb.alloc(hp * wp)
            # The border is never overwritten: fill once, then copy only the interior per plane.
            kb.fill(scratch, 0, hp * wp, fillv)
        combine = kb.fmax if is_max else kb.fadd
        with kb.loop(0, n * c) as nc:
            ibase = kb.mul(nc, h * w)
            obase = kb.mul(nc, oh * ow)
            if not direct:
                with kb.loop(0, h) as r:
                    kb.copy(x, kb.add(ibase, kb.mul(r, w)), scratch, kb.add(kb.mul(r, wp), ph * wp + pw), w)
            with kb.loop(0, oh) as r:
                rd = None if is_max else kb.load(rdv, r)
                orow = kb.add(obase, kb.mul(r, ow))
                # windows' source: the input itself (row pitch w) or the padded scratch plane (wp)
                src, pitch = (x, w) if direct else (scratch, wp)
                rbase = kb.add(ibase, kb.mul(r, sh * w)) if direct else kb.mul(r, sh * wp)
                if vectorized:
                    _pool_row_vec(kb, src, rbase, orow, y, ow, V, kh, kw, sw, dh, dw, pitch, combine,
                                  None if is_max else (rd, cdv), masked_tail=direct)
                else:
                    with kb.loop(0, ow) as q:
                        base = kb.add(rbase, kb.mul(q, sw))
                        acc = None
                        for i in range(kh):
                            for j in range(kw):
                                v = kb.load(scratch, kb.add(base, i * dh * wp + j * dw))
                                acc = v if acc is None else combine(acc, v)
                        if not is_max:
                            acc = kb.fmul(acc, kb.fmul(rd, kb.load(cdv, q)))
                        kb.store(acc, y, kb.add(orow, q))
        if scratch is not None:
            kb.dealloc(scratch)
    return k.build(body)


def _pool_row_vec(kb, scratch, rbase, orow, y, ow, V, kh, kw, sw, dh, dw, wp, combine, avg, masked_tail=False):
    """One output row of a pooling window, V output columns per step (column stride 1 or 2).
    `masked_tail`: the source has no slack after a row (the caller's input read in place), so the
    last partial vector loads only the columns its lanes use."""
    nfull = ow // V
    vt2 = ir.VectorType.get([2 * V], ir.F32Type.get())

    def load(vt, at, used):
        if used >= vt.shape[0]:
            return vector.LoadOp(vt, scratch, [kb.idx(at)]).result
        mt = ir.VectorType.get(vt.shape, ir.IntegerType.get_signless(1))
        pad = arith.ConstantOp(vt, ir.DenseElementsAttr.get_splat(vt, ir.FloatAttr.get(ir.F32Type.get(), 0.0))).result
        return vector.maskedload(vt, scratch, [kb.idx(at)], vector.constant_mask(mt, [used]), pad)

    vt1 = ir.VectorType.get([V], ir.F32Type.get())

    def step(q, lanes, masked=False):
        base = kb.add(rbase, kb.mul(q, sw))
        acc = None
        for i in range(kh):
            for j in range(kw):
                off = i * dh * wp + j * dw
                if sw == 1:
                    v = load(vt1, kb.add(base, off), lanes if masked else V)
                else:  # lanes of output q+l read column 2(q+l) + j*dw: even/odd lanes of a 2V load
                    par = (j * dw) % 2
                    v2 = load(vt2, kb.add(base, off - par), 2 * lanes - 1 + par if masked else 2 * V)
                    v = vector.deinterleave(v2)[par]
                acc = v if acc is None else combine(acc, v)
        _store_pooled(kb, acc, avg, y, orow, q, lanes, V)

    # In place, a row's last full vector at column stride 2 may load one column past the row (the
    # odd lane after its last even one): mask it too.
    last_masked = (masked_tail and sw == 2 and nfull and not ow % V
                   and any(2 * (nfull - 1) * V + j * dw - (j * dw) % 2 + 2 * V > wp for j in range(kw)))
    loop_n = nfull - 1 if last_masked else nfull
    if loop_n:
        with kb.loop(0, loop_n * V, V) as q:
            step(q, V)
    if last_masked:
        step(loop_n * V, V, masked=True)
    if ow % V:
        step(nfull * V, ow % V, masked=masked_tail)


def _store_pooled(kb, acc, avg, y, orow, q, lanes, V):
    """Output vector q of a pooled row: averages scaled by their row x column divisors, stored
    (masked to `lanes`)."""
    if avg is not None:
        rd, cdv = avg
        acc = kb.fmul(acc, kb.fmul(kb.splat(rd), kb.vload(cdv, q)))
    dst = kb.add(orow, q)
    if lanes == V:
        kb.vstore(acc, y, dst)
    else:
        mt = ir.VectorType.get([V], ir.IntegerType.get_signless(1))
        vector.maskedstore(y, [kb.idx(dst)], vector.constant_mask(mt, [lanes]), acc)


def _pool_padded_in_place(kb, x, y, avg, planes, h, w, oh, ow, V, kh, kw, sh, sw, dh, dw, ph, pw, combine, fill):
    """A padded pool read straight from the input. Output rows whose windows reach into the top or
    bottom padding are emitted on their own, without those rows (their terms are the padding value:
    -max or 0, which max / a padded-count average ignore); the rows in between loop. Along a row see
    _pool_row_padded."""
    r_lo = min(oh, -(-ph // sh))  # first output row whose window starts inside the input
    r_hi = max(r_lo, min(oh, (h - 1 + ph - (kh - 1) * dh) // sh + 1))  # first row past the bottom

    def row(nc, r, taps):
        ibase = kb.mul(nc, h * w)
        orow = kb.add(kb.mul(nc, oh * ow), kb.mul(r, ow))
        rbase = kb.add(ibase, kb.mul(kb.add(kb.mul(r, sh), -ph), w))  # input row of tap i = 0
        rd = None if avg is None else kb.load(avg[0], r)
        _pool_row_padded(kb, x, rbase, taps, orow, y, ow, w, V, kw, sw, dw, pw, combine, fill,
                         None if avg is None else (rd, avg[1]))

    with kb.loop(0, planes) as nc:
        for r in list(range(r_lo)) + list(range(r_hi, oh)):
            taps = [i * dh * w for i in range(kh) if 0 <= r * sh - ph + i * dh < h]
            row(nc, r, taps)
        if r_hi > r_lo:
            with kb.loop(r_lo, r_hi) as r:
                row(nc, r, [i * dh * w for i in range(kh)])


def _pool_row_padded(kb, x, rbase, taps, orow, y, ow, w, V, kw, sw, dw, pw, combine, fill, avg):
    """One output row of a padded pool, V outputs per vector (column stride 1 or 2), from the input row
    at `rbase` (+ each of `taps`, the window rows inside the input). Lane l of output vector q reads
    input column (q+l)*sw - pw + j*dw for window column j. Vectors whose every load stays inside the
    row loop with plain loads; the others are emitted one by one: a load that would start left of the
    row loads from column 0 and moves its lanes right (the padding value shifted in), one that would
    end right of it is masked with the padding value as pass-through. No load leaves the row."""
    f32t = ir.F32Type.get()
    vt1, vt2 = ir.VectorType.get([V], f32t), ir.VectorType.get([2 * V], f32t)
    nvec = -(-ow // V)
    fill1, fill2 = kb.fv(fill, V), kb.fv(fill, 2 * V)

    def span(q0):  # (first, last) input column any load of output vector q0 touches (interior form)
        lo = q0 * sw - pw
        par = [((j * dw - pw) % 2) if sw == 2 else 0 for j in range(kw)]
        first = min(q0 * sw - pw + j * dw - par[j] for j in range(kw))
        last = max(q0 * sw - pw + j * dw - par[j] + (2 * V if sw == 2 else V) - 1 for j in range(kw))
        return min(first, lo), last

    interior = [q for q in range(nvec) if span(q * V)[0] >= 0 and span(q * V)[1] <= w - 1 and q * V + V <= ow]
    lo_v = interior[0] if interior else nvec
    hi_v = interior[-1] + 1 if interior else nvec

    def masked(vt, at, used, passthru):
        mt = ir.VectorType.get(vt.shape, ir.IntegerType.get_signless(1))
        return vector.maskedload(vt, x, [kb.idx(at)], vector.constant_mask(mt, [used]), passthru)

    def cols(row, q, j, static):
        """Lanes l = input column (q+l)*sw - pw + j*dw of the row starting at `row`."""
        e = j * dw - pw  # column of lane 0 relative to q*sw
        if not static:  # interior: every column inside the row
            if sw == 1:
                return vector.LoadOp(vt1, x, [kb.idx(kb.add(row, kb.add(q, e)))]).result
            par = e % 2
            v2 = vector.LoadOp(vt2, x, [kb.idx(kb.add(row, kb.add(kb.mul(q, 2), e - par)))]).result
            return vector.deinterleave(v2)[par]
        c0 = q * sw + e
        if sw == 1:
            shift = max(0, -c0)
            start = c0 + shift
            used = max(0, min(V, w - start))
            v = masked(vt1, kb.add(row, start), used, fill1) if used < V else \
                vector.LoadOp(vt1, x, [kb.idx(kb.add(row, start))]).result
        else:
            shift = max(0, -(-(-c0) // 2))  # lanes whose column is left of the row
            first = c0 + 2 * shift  # column of the first lane inside (0 or 1 when shifted)
            par = first % 2
            start = first - par
            used = max(0, min(2 * V, w - start))
            v2 = masked(vt2, kb.add(row, start), used, fill2) if used < 2 * V else \
                vector.LoadOp(vt2, x, [kb.idx(kb.add(row, start))]).result
            v = vector.deinterleave(v2)[par]
        if shift:
            v = vector.shuffle(fill1, v, [0] * shift + [V + l for l in range(V - shift)])
        return v

    def out_vec(q, lanes, static):
        acc = None
        for t in taps:
            row = kb.add(rbase, t)
            for j in range(kw):
                v = cols(row, q, j, static)
                acc = v if acc is None else combine(acc, v)
        if acc is None:  # the whole window in the padding (ceil mode)
            acc = fill1
        _store_pooled(kb, acc, avg, y, orow, q, lanes, V)

    for qv in range(lo_v):
        out_vec(qv * V, min(V, ow - qv * V), True)
    if hi_v > lo_v:
        with kb.loop(lo_v * V, hi_v * V, V) as q:
            out_vec(q, V, False)
    for qv in range(hi_v, nvec):
        out_vec(qv * V, min(V, ow - qv * V), True)


def emit_adaptive_avg_pool(k: Kernel, op: LayerOp):
    n, c, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape

    def bins(size, out):
        st = np.array([(i * size) // out for i in range(out)])
        en = np.array([-(-((i + 1) * size) // out) for i in range(out)])
        return st, en
    rs, re_ = bins(h, oh)
    cs, ce = bins(w, ow)
    k.inp(0, n * c * h * w)
    k.out(n * c * oh * ow)

    def body(kb, a):
        x, y = a
        with kb.loop(0, n * c) as nc:
            ibase = kb.mul(nc, h * w)
            obase = kb.mul(nc, oh * ow)
            if (oh, ow) == (1, 1):  # global average pooling: one contiguous vector reduction
                acc = _sum_range(kb, x, ibase, h * w)
                kb.store(kb.fmul(acc, kb.f(1.0 / (h * w))), y, obase)
                return
            for i in range(oh):  # output grids are tiny (1x1 .. 7x7): unroll
                for j in range(ow):
                    acc = None
                    for r in range(rs[i], re_[i]):
                        s = _sum_range(kb, x, kb.add(ibase, r * w + int(cs[j])), int(ce[j] - cs[j]))
                        acc = s if acc is None else kb.fadd(acc, s)
                    cnt = (re_[i] - rs[i]) * (ce[j] - cs[j])
                    kb.store(kb.fmul(acc, kb.f(1.0 / cnt)), y, kb.add(obase, i * ow + j))
    return k.build(body)


def _f64v(lanes):
    return ir.VectorType.get([lanes], ir.F64Type.get())


def _reduce_range(kb, buf, off, n, term):
    """sum(term(x)) over n contiguous floats, accumulated in f64 lanes (returned as f32).

    Planes of 64K pixels summed in f32 lose ~4 digits; f64 accumulators keep instance norm within
    torch's own error. Four independent accumulators: with one, every step waits for the previous
    f64 add (a latency chain ~4x slower than the loads of an L2-resident plane).
    """
    lanes = kb.vec
    unroll = _REDUCE_UNROLL
    f64 = ir.F64Type.get()
    vt = _f64v(lanes)
    zero = arith.ConstantOp(vt, ir.DenseElementsAttr.get_splat(vt, ir.FloatAttr.get(f64, 0.0))).result

    def ext(i):
        return arith.ExtFOp(vt, term(kb.vload(buf, kb.add(off, i)))).result

    accs = []
    nu = (n // (lanes * unroll)) * lanes * unroll
    if nu:
        loop = scf.ForOp(kb.idx(0), kb.idx(nu), kb.idx(lanes * unroll), [zero] * unroll)
        with ir.InsertionPoint(loop.body):
            i = loop.induction_variable
            scf.YieldOp([arith.AddFOp(loop.inner_iter_args[u], ext(kb.add(i, u * lanes))).result
                         for u in range(unroll)])
        accs = list(loop.results)
    nv = (n // lanes) * lanes
    if nv > nu:
        loop = scf.ForOp(kb.idx(nu), kb.idx(nv), kb.idx(lanes), [zero])
        with ir.InsertionPoint(loop.body):
            scf.YieldOp([arith.AddFOp(loop.inner_iter_args[0], ext(loop.induction_variable)).result])
        accs.append(loop.results[0])
    total = arith.ConstantOp(f64, 0.0).result
    if accs:
        while len(accs) > 1:  # pairwise: (a0 + a1) + (a2 + a3)
            accs = [arith.AddFOp(accs[j], accs[j + 1]).result if j + 1 < len(accs) else accs[j]
                    for j in range(0, len(accs), 2)]
        total = vector.ReductionOp(f64, vector.CombiningKind.ADD, accs[0]).result
    if n - nv:
        loop = scf.ForOp(kb.idx(nv), kb.idx(n), kb.idx(1), [total])
        with ir.InsertionPoint(loop.body):
            v = arith.ExtFOp(f64, term(kb.load(buf, kb.add(off, loop.induction_variable)))).result
            scf.YieldOp([arith.AddFOp(loop.inner_iter_args[0], v).result])
        total = loop.results[0]
    return arith.TruncFOp(ir.F32Type.get(), total).result


_REDUCE_UNROLL = 4


def _sum_range(kb, buf, off, n):
    return _reduce_range(kb, buf, off, n, lambda v: v)


def _sum_sq_dev(kb, buf, off, n, mean_s):
    mv = {1: mean_s, kb.vec: kb.splat(mean_s)}  # made here: every loop of the reduction uses them

    def term(v):
        d = kb.fsub(v, mv[v.type.shape[0] if isinstance(v.type, ir.VectorType) else 1])
        return kb.fmul(d, d)
    return _reduce_range(kb, buf, off, n, term)


def emit_instance_norm(k: Kernel, op: LayerOp):
    """Two passes per plane (mean, then centred variance) for torch-level accuracy, then one
    fused scale/shift pass, which also applies the following activation when the lowering fused
    it (attrs "act"/"act_params": style-transfer nets follow every norm with a ReLU, and a separate
    pass over the tensor cost ~1/3 of the norm)."""
    act, act_params = op.attrs.get("act", "none"), tuple(op.attrs.get("act_params", ()))
    n, c = op.out_shape[:2]
    plane = _numel(op.out_shape[2:])
    gamma = op.attrs["weight"] if op.attrs["weight"] is not None else np.ones(c, np.float32)
    beta = op.attrs["bias"] if op.attrs["bias"] is not None else np.zeros(c, np.float32)
    eps = op.attrs["eps"]
    k.inp(0, n * c * plane)
    k.param(gamma.astype(np.float32))
    k.param(beta.astype(np.float32))
    k.out(n * c * plane)

    def body(kb, a):
        x, g, b, y = a
        with kb.loop(0, n * c) as nc:
            ch = arith.RemUIOp(nc, kb.idx(c)).result if n > 1 else nc
            base = kb.mul(nc, plane)
            mean = kb.fmul(_sum_range(kb, x, base, plane), kb.f(1.0 / plane))
            var = kb.fmul(_sum_sq_dev(kb, x, base, plane, mean), kb.f(1.0 / plane))
            inv = math.RsqrtOp(kb.fadd(var, kb.f(eps))).result
            sc = kb.fmul(kb.load(g, ch), inv)
            sh = kb.fsub(kb.load(b, ch), kb.fmul(mean, sc))
            vs, vb = kb.splat(sc), kb.splat(sh)

            def step(i, lanes):
                j = kb.add(base, i)
                if lanes == 1:
                    kb.store(kb.activation(kb.fadd(kb.fmul(kb.load(x, j), sc), sh), act, act_params), y, j)
                else:
                    kb.vstore(kb.activation(kb.fadd(kb.fmul(kb.vload(x, j, lanes), vs), vb), act, act_params), y, j)
            kb.map_range(plane, step)
    return k.build(body)


def _nearest_table(out, inp, scale):
    # torch: src = floor(dst * (1/scale)) when a scale was given, else floor(dst * in/out)
    r = (1.0 / scale) if scale else inp / out
    idx = np.floor(np.arange(out, dtype=np.float64) * np.float32(r)).astype(np.int64)
    return np.minimum(idx, inp - 1)


def _bilinear_table(out, inp, align, scale):
    if align:
        r = (inp - 1) / (out - 1) if out > 1 else 0.0
        src = np.arange(out, dtype=np.float64) * r
    else:
        r = (1.0 / scale) if scale else inp / out
        src = np.maximum((np.arange(out, dtype=np.float64) + 0.5) * r - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), inp - 1)
    i1 = np.minimum(i0 + 1, inp - 1)
    lam = (src - i0).astype(np.float32)
    return i0, i1, lam


def emit_upsample(k: Kernel, op: LayerOp):
    """Nearest / bilinear resize. Source rows and columns come from integer tables (torch's float
    rounding, computed once in numpy). Each output row gathers V columns at a time
    (`vector.gather` with the column table as indices); bilinear first blends its two source rows
    into a row buffer with contiguous vector ops, so only the horizontal step gathers."""
    n, c, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    scales = op.attrs.get("scales") or ()
    sh_, sw_ = (scales[0], scales[1]) if len(scales) == 2 else (None, None)
    V = k.vec
    owv = -(-ow // V) * V

    def padded(t, fill=0):  # tables read V entries at a time
        return np.concatenate([t, np.full(owv - ow, fill, t.dtype)])

    k.inp(0, n * c * h * w)
    if op.attrs["mode"] == "nearest":
        rows = _nearest_table(oh, h, sh_)
        cols = _nearest_table(ow, w, sw_)
        fh, fw = _integer_factor(rows, h), _integer_factor(cols, w)
        if _NEAREST_FAST and fh and fw and fw <= 4:
            return _upsample_nearest_int(k, op, fh, fw)
        k.param(rows.astype(np.int32))
        k.param(padded(cols.astype(np.int32)))
        k.out(n * c * oh * ow)

        def body(kb, a):
            x, rt, ct, y = a
            with kb.loop(0, n * c) as nc:
                ibase, obase = kb.mul(nc, h * w), kb.mul(nc, oh * ow)
                with kb.loop(0, oh) as r:
                    irow = kb.add(ibase, kb.mul(_i(kb, rt, r), w))
                    orow = kb.add(obase, kb.mul(r, ow))
                    _row_vec(kb, ow, V, lambda q: _gather(kb, x, irow, ct, q, V),
                             lambda q, v, lanes: _vstore(kb, v, y, kb.add(orow, q), lanes))
        return k.build(body)

    align = op.attrs["align_corners"]
    if op.attrs["mode"] == "bicubic":
        return _upsample_bicubic(k, op, padded, _bicubic_table(oh, h, align, sh_), _bicubic_table(ow, w, align, sw_))
    r0, r1, rl = _bilinear_table(oh, h, align, sh_)
    c0, c1, cl = _bilinear_table(ow, w, align, sw_)
    x2 = _bilinear_x2_span(c0, c1, cl, w) if _BILINEAR_FAST else None
    for t in (r0, r1):
        k.param(t.astype(np.int32))
    k.param(rl)
    for t in (c0, c1):
        k.param(padded(t.astype(np.int32)))
    k.param(padded(cl))
    k.out(n * c * oh * ow)

    def body(kb, a):
        x, tr0, tr1, trl, tc0, tc1, tcl, y = a
        blend = kb.alloc(w)
        one_s = kb.f(1.0)
        with kb.loop(0, n * c) as nc:
            ibase, obase = kb.mul(nc, h * w), kb.mul(nc, oh * ow)
            with kb.loop(0, oh) as r:
                a0 = kb.add(ibase, kb.mul(_i(kb, tr0, r), w))
                a1 = kb.add(ibase, kb.mul(_i(kb, tr1, r), w))
                lr_ = kb.load(trl, r)
                orow = kb.add(obase, kb.mul(r, ow))
                # torch: h0lambda * (w0lambda * v00 + w1lambda * v01) + h1lambda * (...): blending the
                # rows first changes the order of the sums only within float rounding (~1 ulp).
                hl0 = kb.fsub(one_s, lr_)

                def rowmix(i, lanes):
                    if lanes == 1:
                        t = kb.fadd(kb.fmul(hl0, kb.load(x, kb.add(a0, i))), kb.fmul(lr_, kb.load(x, kb.add(a1, i))))
                        kb.store(t, blend, i)
                    else:
                        t = kb.fadd(kb.fmul(kb.splat(hl0, lanes), kb.vload(x, kb.add(a0, i), lanes)),
                                    kb.fmul(kb.splat(lr_, lanes), kb.vload(x, kb.add(a1, i), lanes)))
                        kb.vstore(t, blend, i)
                kb.map_range(w, rowmix)

                def col(q):
                    lc = kb.vload(tcl, q)
                    g0 = _gather(kb, blend, 0, tc0, q, V)
                    g1 = _gather(kb, blend, 0, tc1, q, V)
                    return kb.fadd(kb.fmul(kb.fsub(kb.fv(1.0), lc), g0), kb.fmul(lc, g1))

                if x2:
                    _bilinear_x2_cols(kb, blend, y, orow, w, V, x2, (tc0, tc1, tcl))
                else:
                    _row_vec(kb, ow, V, col, lambda q, v, lanes: _vstore(kb, v, y, kb.add(orow, q), lanes))
        kb.dealloc(blend)
    return k.build(body)


_CUBIC_A = -0.75  # torch's upsample_bicubic2d


def _bicubic_table(out, inp, align, scale):
    """(4 x out source indices clamped to the input, 4 x out weights), as torch computes them in
    float32: source = scale * (dst + 0.5) - 0.5 (not clamped at 0 for cubic), taps floor - 1 .. + 2."""
    f = np.float32
    if align:
        r = f((inp - 1) / (out - 1)) if out > 1 else f(0)
        src = np.arange(out, dtype=f) * r
    else:
        r = f(1.0 / scale) if scale else f(inp / out)
        src = r * (np.arange(out, dtype=f) + f(0.5)) - f(0.5)
    i0 = np.floor(src)
    t = (src - i0).astype(f)
    A = f(_CUBIC_A)

    def near(x):  # |x| <= 1
        return ((A + f(2)) * x - (A + f(3))) * x * x + f(1)

    def far(x):  # 1 < |x| < 2
        return ((A * x - f(5) * A) * x + f(8) * A) * x - f(4) * A
    w = np.stack([far(t + f(1)), near(t), near(f(1) - t), far(f(2) - t)]).astype(f)
    idx = np.stack([np.clip(i0.astype(np.int64) + d, 0, inp - 1) for d in (-1, 0, 1, 2)])
    return idx, w


def _upsample_bicubic(k: Kernel, op: LayerOp, padded, rows, cols):
    """Each output row blends its 4 source rows (weights from the row table) into a row buffer with
    contiguous vector ops, then every V output columns gather 4 taps from it."""
    n, c, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    V = k.vec
    (ri, rw), (ci, cw) = rows, cols
    for t in ri:
        k.param(t.astype(np.int32))
    for t in rw:
        k.param(t)
    for t in ci:
        k.param(padded(t.astype(np.int32)))
    for t in cw:
        k.param(padded(t))
    k.out(n * c * oh * ow)

    def body(kb, a):
        x, y = a[0], a[-1]
        tri, trw, tci, tcw = a[1:5], a[5:9], a[9:13], a[13:17]
        blend = kb.alloc(w)
        with kb.loop(0, n * c) as nc:
            ibase, obase = kb.mul(nc, h * w), kb.mul(nc, oh * ow)
            with kb.loop(0, oh) as r:
                srcs = [kb.add(ibase, kb.mul(_i(kb, t, r), w)) for t in tri]
                wts = [kb.load(t, r) for t in trw]
                orow = kb.add(obase, kb.mul(r, ow))

                def rowmix(i, lanes):
                    if lanes == 1:
                        terms = [kb.fmul(wt, kb.load(x, kb.add(s, i))) for wt, s in zip(wts, srcs)]
                        kb.store(kb.fadd(kb.fadd(terms[0], terms[1]), kb.fadd(terms[2], terms[3])), blend, i)
                    else:
                        terms = [kb.fmul(kb.splat(wt, lanes), kb.vload(x, kb.add(s, i), lanes))
                                 for wt, s in zip(wts, srcs)]
                        kb.vstore(kb.fadd(kb.fadd(terms[0], terms[1]), kb.fadd(terms[2], terms[3])), blend, i)
                kb.map_range(w, rowmix)

                def col(q):
                    terms = [kb.fmul(kb.vload(tw, q), _gather(kb, blend, 0, ti, q, V)) for ti, tw in zip(tci, tcw)]
                    return kb.fadd(kb.fadd(terms[0], terms[1]), kb.fadd(terms[2], terms[3]))
                _row_vec(kb, ow, V, col, lambda q, v, lanes: _vstore(kb, v, y, kb.add(orow, q), lanes))
        kb.dealloc(blend)
    return k.build(body)


_NEAREST_FAST = True
_BILINEAR_FAST = True


def _bilinear_x2_span(c0, c1, lam, w):
    """(j0, j1) when output columns 2j, 2j+1 for j in [j0, j1) blend source columns (j-1, j) with
    weight 3/4 and (j, j+1) with 1/4 (align_corners=False, factor 2), with j1 - j0 a whole number of
    vectors' worth; None when the table is not that pattern."""
    if len(c0) != 2 * w or w < 3:
        return None
    j = np.arange(1, w - 1)
    ok = (np.array_equal(c0[2 * j], j - 1) and np.array_equal(c1[2 * j], j) and np.all(lam[2 * j] == 0.75)
          and np.array_equal(c0[2 * j + 1], j) and np.array_equal(c1[2 * j + 1], j + 1)
          and np.all(lam[2 * j + 1] == 0.25))
    return (1, w - 1) if ok else None


def _bilinear_x2_cols(kb, blend, y, orow, w, V, span, tables):
    """Columns of one bilinear x2 output row from its blended source row: V source columns give 2V
    outputs from three shifted contiguous loads (no gathers), interleaved even/odd. Same products
    and sum as the table path ((1 - l) * a + l * b with l = 3/4 or 1/4, both exact), so the results
    are bit-identical; the edge columns and the remainder use the tables."""
    tc0, tc1, tcl = tables
    j0, j1 = span
    nvec = (j1 - j0) // V
    one = kb.f(1.0)

    def scalar(d):
        lc = kb.load(tcl, d)
        g0 = kb.load(blend, _i(kb, tc0, d))
        g1 = kb.load(blend, _i(kb, tc1, d))
        kb.store(kb.fadd(kb.fmul(kb.fsub(one, lc), g0), kb.fmul(lc, g1)), y, kb.add(orow, d))

    with kb.loop(0, 2 * j0) as d:
        scalar(d)
    if nvec:
        quarter, three_q = kb.fv(0.25), kb.fv(0.75)
        with kb.loop(j0, j0 + nvec * V, V) as j:
            bm = kb.vload(blend, kb.add(j, -1))
            b0 = kb.vload(blend, j)
            bp = kb.vload(blend, kb.add(j, 1))
            even = kb.fadd(kb.fmul(quarter, bm), kb.fmul(three_q, b0))
            odd = kb.fadd(kb.fmul(three_q, b0), kb.fmul(quarter, bp))
            kb.vstore(vector.interleave(even, odd), y, kb.add(orow, kb.mul(j, 2)))
    with kb.loop(2 * (j0 + nvec * V), 2 * w) as d:
        scalar(d)


def _integer_factor(table, inp):
    """f when the resize table is source = output // f (every source repeated f times), else 0."""
    f = len(table) // inp
    if f < 1 or len(table) != f * inp or not np.array_equal(table, np.arange(len(table)) // f):
        return 0
    return f


def _upsample_nearest_int(k: Kernel, op: LayerOp, fh: int, fw: int):
    """Nearest resize by integer factors (the x2 of decoders): V input pixels become f*V output
    lanes with one shuffle, stored to each of the fh output rows; no gathers, no tables."""
    n, c, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    V = k.vec
    k.out(n * c * oh * ow)
    mask = [j // fw for j in range(fw * V)]

    def body(kb, a):
        x, y = a
        with kb.loop(0, n * c * h) as r:  # input rows of all planes: output rows are fh * r ...
            irow = kb.mul(r, w)
            orow = kb.mul(r, fh * ow)

            def step(q, lanes):
                if lanes == 1:
                    v = kb.load(x, kb.add(irow, q))
                    for i in range(fh):
                        for j in range(fw):
                            kb.store(v, y, kb.lin((orow, 1), (q, fw), const=i * ow + j))
                    return
                v = kb.vload(x, kb.add(irow, q))
                wide = vector.shuffle(v, v, mask) if fw > 1 else v
                for i in range(fh):
                    kb.vstore(wide, y, kb.lin((orow, 1), (q, fw), const=i * ow))
            kb.map_range(w, step)
    return k.build(body)


def _gather(kb, buf, base, table, q, V):
    """buf[base + table[q + l]] for l < V (table entries are in range, padding included)."""
    i32v = ir.VectorType.get([V], ir.IntegerType.get_signless(32))
    idx = vector.LoadOp(i32v, table, [kb.idx(q)]).result
    mt = ir.VectorType.get([V], ir.IntegerType.get_signless(1))
    return vector.gather(ir.VectorType.get([V], ir.F32Type.get()), buf, [kb.idx(base)], idx,
                         vector.constant_mask(mt, [V]), kb.fv(0.0, V))


def _vstore(kb, v, buf, i, lanes):
    if lanes == kb.vec:
        kb.vstore(v, buf, i)
    else:
        mt = ir.VectorType.get([kb.vec], ir.IntegerType.get_signless(1))
        vector.maskedstore(buf, [kb.idx(i)], vector.constant_mask(mt, [lanes]), v)


def _row_vec(kb, n, V, make, put):
    """put(q, make(q), lanes) for q = 0, V, 2V, ... < n; the last vector may be partial."""
    nfull = n // V
    if nfull:
        with kb.loop(0, nfull * V, V) as q:
            put(q, make(q), V)
    if n % V:
        put(nfull * V, make(nfull * V), n % V)


def emit_pixel_shuffle(k: Kernel, op: LayerOp):
    n, c, h, w = op.in_shapes[0]
    f = op.attrs["factor"]
    co = c // (f * f)
    k.inp(0, n * c * h * w)
    k.out(n * c * h * w)

    def body(kb, a):
        x, y = a
        with kb.loop(0, n * co) as nc:
            for i in range(f):
                for j in range(f):
                    # input channel nc*f*f + i*f + j feeds output pixels (h*f + i, w*f + j)
                    ib = kb.mul(kb.add(kb.mul(nc, f * f), i * f + j), h * w)
                    ob = kb.add(kb.mul(nc, h * f * w * f), i * w * f + j)
                    with kb.loop(0, h) as r:
                        irow = kb.add(ib, kb.mul(r, w))
                        orow = kb.add(ob, kb.mul(r, f * w * f))
                        with kb.loop(0, w) as q:
                            kb.store(kb.load(x, kb.add(irow, q)), y, kb.add(orow, kb.mul(q, f)))
    return k.build(body)


def emit_concat(k: Kernel, op: LayerOp):
    rank = len(op.out_shape)
    axis = op.attrs["axis"] % rank
    outer = _numel(op.out_shape[:axis])
    inner = _numel(op.out_shape[axis + 1:])
    for i, s in enumerate(op.in_shapes):
        k.inp(i, _numel(s))
    k.out(_numel(op.out_shape))
    total_row = op.out_shape[axis] * inner

    def body(kb, a):
        y = a[-1]
        off = 0
        for i, s in enumerate(op.in_shapes):
            seg = s[axis] * inner
            if outer == 1:
                kb.copy(a[i], 0, y, off, seg)
            else:
                with kb.loop(0, outer) as o:
                    kb.copy(a[i], kb.mul(o, seg), y, kb.add(kb.mul(o, total_row), off), seg)
            off += seg
    return k.build(body)


def _extreme_range(kb, buf, off, n: int, kind: str):
    """max / min of n contiguous floats: V lanes at a time, then across the lanes, then a scalar tail."""
    f = kb.fmax if kind == "max" else kb.fmin
    lanes = kb.vec
    nv = (n // lanes) * lanes
    acc = None
    if nv:
        loop = scf.ForOp(kb.idx(lanes), kb.idx(nv), kb.idx(lanes), [kb.vload(buf, off, lanes)])
        with ir.InsertionPoint(loop.body):
            scf.YieldOp([f(loop.inner_iter_args[0], kb.vload(buf, kb.add(off, loop.induction_variable), lanes))])
        ck = vector.CombiningKind.MAXIMUMF if kind == "max" else vector.CombiningKind.MINIMUMF
        acc = vector.ReductionOp(ir.F32Type.get(), ck, loop.results[0]).result
    start = nv
    if acc is None:
        acc, start = kb.load(buf, off), 1
    if n > start:
        loop = scf.ForOp(kb.idx(start), kb.idx(n), kb.idx(1), [acc])
        with ir.InsertionPoint(loop.body):
            scf.YieldOp([f(loop.inner_iter_args[0], kb.load(buf, kb.add(off, loop.induction_variable)))])
        acc = loop.results[0]
    return acc


def emit_reduce(k: Kernel, op: LayerOp):
    """The input as [outer, R, inner] (R: the reduced block). inner = 1 (trailing axes): each run of
    R floats is reduced with vector lanes (sums in f64, as instance norm's); otherwise V positions of
    inner at a time fold over R."""
    from ..dialects.lr.spec import reduce_block

    shape = op.in_shapes[0]
    lo, hi = reduce_block(op.attrs["axes"], len(shape))
    outer, red, inner = _numel(shape[:lo]), _numel(shape[lo:hi + 1]), _numel(shape[hi + 1:])
    kind = op.attrs["kind"]
    k.inp(0, _numel(shape))
    k.out(outer * inner)

    def body(kb, a):
        x, y = a
        comb = kb.fadd if kind in ("sum", "mean") else kb.fmax if kind == "max" else kb.fmin
        with kb.loop(0, outer) as o:
            base = kb.mul(o, red * inner)
            if inner == 1:
                s = _sum_range(kb, x, base, red) if kind in ("sum", "mean") else _extreme_range(kb, x, base, red, kind)
                kb.store(kb.fmul(s, kb.f(1.0 / red)) if kind == "mean" else s, y, o)
            else:
                def step(i, lanes):
                    ld = (lambda j: kb.vload(x, j, lanes)) if lanes > 1 else (lambda j: kb.load(x, j))
                    at = kb.add(base, i)
                    loop = scf.ForOp(kb.idx(1), kb.idx(red), kb.idx(1), [ld(at)])
                    with ir.InsertionPoint(loop.body):
                        nxt = ld(kb.add(at, kb.mul(loop.induction_variable, inner)))
                        scf.YieldOp([comb(loop.inner_iter_args[0], nxt)])
                    v = loop.results[0]
                    if kind == "mean":
                        v = kb.fmul(v, kb.const_like(v, 1.0 / red))
                    j = kb.add(kb.mul(o, inner), i)
                    if lanes > 1:
                        kb.vstore(v, y, j)
                    else:
                        kb.store(v, y, j)
                kb.map_range(inner, step)
    return k.build(body)


def emit_softmax(k: Kernel, op: LayerOp):
    """Three passes along the axis per position (max, sum of exp(x - max), normalise), vectorised
    over the positions after the axis (a channel softmax of NCHW runs V pixels at a time; a
    classifier's last-axis softmax is scalar, a few microseconds for 1000 classes)."""
    shape = op.in_shapes[0]
    axis = op.attrs["axis"] % len(shape)
    outer, d, inner = _numel(shape[:axis]), shape[axis], _numel(shape[axis + 1:])
    log = bool(op.attrs.get("log", False))
    k.inp(0, _numel(shape))
    k.out(_numel(shape))

    def body(kb, a):
        x, y = a

        def step(i, lanes):
            vec = lanes > 1
            ld = (lambda j: kb.vload(x, j, lanes)) if vec else (lambda j: kb.load(x, j))
            st = (lambda v, j: kb.vstore(v, y, j)) if vec else (lambda v, j: kb.store(v, y, j))
            exp = kb._vexp if vec else (lambda v: math.ExpOp(v).result)
            at = lambda c: kb.add(i, kb.mul(c, inner))  # noqa: E731

            def fold(init, f):
                loop = scf.ForOp(kb.idx(0), kb.idx(d), kb.idx(1), [init])
                with ir.InsertionPoint(loop.body):
                    scf.YieldOp([f(loop.induction_variable, loop.inner_iter_args[0])])
                return loop.results[0]

            m = fold(ld(at(0)), lambda c, acc: kb.fmax(acc, ld(at(c))))

            def add_exp(c, acc):
                e = exp(kb.fsub(ld(at(c)), m))
                if not log:
                    st(e, at(c))
                return kb.fadd(acc, e)
            s = fold(kb.const_like(m, 0.0), add_exp)
            if log:
                lse = kb.fadd(m, math.LogOp(s).result)
                with kb.loop(0, d) as c:
                    st(kb.fsub(ld(at(c)), lse), at(c))
            else:
                r = kb.fdiv(kb.const_like(s, 1.0), s)
                with kb.loop(0, d) as c:
                    v = kb.vload(y, at(c), lanes) if vec else kb.load(y, at(c))
                    st(kb.fmul(v, r), at(c))

        with kb.loop(0, outer) as o:
            base = kb.mul(o, d * inner)
            kb.map_range(inner, lambda i, lanes: step(kb.add(base, i), lanes))
    return k.build(body)


def emit_slice(k: Kernel, op: LayerOp):
    """One contiguous run of (end - start) * inner floats per outer index (a channel slice of an
    NCHW tensor is one run per image)."""
    ishape = op.in_shapes[0]
    axis = op.attrs["axis"] % len(ishape)
    outer, inner = _numel(ishape[:axis]), _numel(ishape[axis + 1:])
    start, end = op.attrs["start"], op.attrs["end"]
    seg, row = (end - start) * inner, ishape[axis] * inner
    k.inp(0, _numel(ishape))
    k.out(_numel(op.out_shape))

    def body(kb, a):
        x, y = a
        if outer == 1:
            kb.copy(x, start * inner, y, 0, seg)
        else:
            with kb.loop(0, outer) as o:
                kb.copy(x, kb.add(kb.mul(o, row), start * inner), y, kb.mul(o, seg), seg)
    return k.build(body)


def emit_permute(k: Kernel, op: LayerOp):
    ishape = op.in_shapes[0]
    dims = op.attrs["dims"]
    oshape = op.out_shape
    istr = [_numel(ishape[d + 1:]) for d in range(len(ishape))]
    src_str = [istr[d] for d in dims]  # stride in the input of each output dimension
    k.inp(0, _numel(ishape))
    k.out(_numel(oshape))

    def body(kb, a):
        x, y = a

        def nest(d, ioff, ooff):
            if d == len(oshape):
                kb.store(kb.load(x, ioff), y, ooff)
                return
            with kb.loop(0, oshape[d]) as i:
                nest(d + 1, kb.add(ioff, kb.mul(i, src_str[d])), kb.add(ooff, kb.mul(i, _numel(oshape[d + 1:]))))
        nest(0, 0, 0)
    return k.build(body)

