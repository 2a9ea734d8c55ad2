"""GPU kernels for the element-wise, normalization and data-movement lr ops: one work item per
output element, source indices from static-shape index arithmetic or small per-row/per-column
tables computed in numpy with torch's rounding (shared with the CPU lowering)."""
from __future__ import annotations

import numpy as np
from torch_mlir.dialects import math

from ..codegen.emit import LayerOp
from ..codegen.ops_elementwise import BINARY_FNS
from ..codegen.ops_spatial import _bicubic_table, _bilinear_table, _map, _nearest_table
from ..dialects import lr
from .builder import GpuKernel

F32_LOWEST = -3.4028234663852886e38


def _numel(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


def _strides(shape):
    st, acc = [], 1
    for d in reversed(shape):
        st.append(acc)
        acc *= d
    return st[::-1]


ACT_OPS = set(lr.ACTIVATION_OPS)


def emit_activation(k: GpuKernel, op: LayerOp):
    total = _numel(op.out_shape)
    act, params = lr.activation_of(op.name, op.attrs)
    k.inp(0, total)
    k.out(total)

    def fn(kb, a, i):
        x, y = a
        kb.store(kb.activation(kb.load(x, i), act, params), y, i)
    return k.build_elementwise(total, fn)


def _channel_of(kb, i, shape):
    if len(shape) < 2 or shape[1] == 1:
        return 0
    return kb.rem(kb.div(i, _numel(shape[2:])), shape[1])


def _channel_affine(k: GpuKernel, op: LayerOp, scale, shift):
    shape, total = op.out_shape, _numel(op.out_shape)
    k.inp(0, total)
    k.param(np.asarray(scale, np.float32))
    k.param(np.asarray(shift, np.float32))
    k.out(total)

    def fn(kb, a, i):
        x, s, b, y = a
        c = _channel_of(kb, i, shape)
        kb.store(kb.fadd(kb.fmul(kb.load(x, i), kb.load(s, c)), kb.load(b, c)), y, i)
    return k.build_elementwise(total, fn)


def emit_batch_norm(k: GpuKernel, op: LayerOp):
    a, c = op.attrs, op.out_shape[1]
    gamma = a["weight"] if a["weight"] is not None else np.ones(c, np.float32)
    beta = a["bias"] if a["bias"] is not None else np.zeros(c, np.float32)
    scale = gamma / np.sqrt(a["var"].astype(np.float64) + a["eps"])
    return _channel_affine(k, op, scale, beta - a["mean"] * scale)


def emit_prelu(k: GpuKernel, op: LayerOp):
    shape, total = op.out_shape, _numel(op.out_shape)
    slope = np.asarray(op.attrs["slope"], np.float32).reshape(-1)
    k.inp(0, total)
    k.param(slope)
    k.out(total)

    def fn(kb, a, i):
        x, s, y = a
        v = kb.load(x, i)
        sl = kb.load(s, 0 if slope.size == 1 else _channel_of(kb, i, shape))
        kb.store(kb.select(kb.fcmp("OLT", v, kb.f(0.0)), kb.fmul(v, sl), v), y, i)
    return k.build_elementwise(total, fn)


def emit_binary(k: GpuKernel, op: LayerOp):
    out, total = op.out_shape, _numel(op.out_shape)
    r = len(out)
    k.inp(0, _numel(op.in_shapes[0]))
    k.inp(1, _numel(op.in_shapes[1]))
    k.out(total)
    # each operand's element strides in the output's coordinates (0 along broadcast dimensions);
    # None when the operand has the output's shape and reads element i directly
    strides = []
    for s in op.in_shapes:
        s = (1,) * (r - len(s)) + tuple(s)
        strides.append(None if s == tuple(out) else [st if d != 1 else 0 for d, st in zip(s, _strides(s))])
    fop = BINARY_FNS[op.name]

    def fn(kb, a, i):
        xs = [a[0], a[0]] if len(a) == 2 else a[:2]  # x + x binds one buffer
        coords = kb.unravel(i, out) if any(st is not None for st in strides) else None
        vals = [kb.load(x, i if st is None else kb.lin(*[(c, s) for c, s in zip(coords, st) if s]))
                for x, st in zip(xs, strides)]
        kb.store(getattr(kb, fop)(*vals), a[-1], i)
    return k.build_elementwise(total, fn)


def emit_concat(k: GpuKernel, op: LayerOp):
    out, total = op.out_shape, _numel(op.out_shape)
    axis = op.attrs["axis"] % len(out)
    inner = _numel(out[axis + 1:])
    d0, d1, dd = op.in_shapes[0][axis], op.in_shapes[1][axis], out[axis]
    k.inp(0, _numel(op.in_shapes[0]))
    k.inp(1, _numel(op.in_shapes[1]))
    k.out(total)

    def fn(kb, a, i):
        x0, x1, y = (a[0], a[0], a[1]) if len(a) == 2 else a
        outer, mid, inn = kb.div(i, dd * inner), kb.rem(kb.div(i, inner), dd), kb.rem(i, inner)
        first = kb.cmp("ult", mid, d0)
        m0 = kb.select(first, mid, d0 - 1)
        m1 = kb.select(first, 0, kb.add(mid, -d0))
        v0 = kb.load(x0, kb.lin((outer, d0 * inner), (m0, inner), (inn, 1)))
        v1 = kb.load(x1, kb.lin((outer, d1 * inner), (m1, inner), (inn, 1)))
        kb.store(kb.select(first, v0, v1), y, i)
    return k.build_elementwise(total, fn)


def emit_reduce(k: GpuKernel, op: LayerOp):
    """One work item per output element, a loop over the reduced block ([outer, R, inner] view)."""
    from ..dialects.lr.spec import reduce_block

    shape = op.in_shapes[0]
    lo, hi = reduce_block(op.attrs["axes"], len(shape))
    red, inner = _numel(shape[lo:hi + 1]), _numel(shape[hi + 1:])
    total = _numel(shape) // red
    kind = op.attrs["kind"]
    k.inp(0, _numel(shape))
    k.out(total)

    def fn(kb, a, p):
        x, y = a
        base = kb.add(kb.mul(kb.div(p, inner), red * inner), kb.rem(p, inner))
        comb = kb.fadd if kind in ("sum", "mean") else kb.fmax if kind == "max" else kb.fmin
        v = kb.reduce_loop(1, red, [kb.load(x, base)],
                           lambda c, acc: [comb(acc[0], kb.load(x, kb.add(base, kb.mul(c, inner))))], bound=red)[0]
        kb.store(kb.fmul(v, kb.f(1.0 / red)) if kind == "mean" else v, y, p)
    return k.build_elementwise(total, fn)


def emit_softmax(k: GpuKernel, op: LayerOp):
    """One work item per position off the axis, three loops along it (max, sum of exp, normalise)."""
    shape = op.in_shapes[0]
    axis = op.attrs["axis"] % len(shape)
    d, inner = shape[axis], _numel(shape[axis + 1:])
    positions = _numel(shape) // d
    log = bool(op.attrs.get("log", False))
    k.inp(0, _numel(shape))
    k.out(_numel(shape))

    def fn(kb, a, p):
        x, y = a
        base = kb.add(kb.mul(kb.div(p, inner), d * inner), kb.rem(p, inner))

        def at(c):
            return kb.add(base, kb.mul(c, inner))
        m = kb.reduce_loop(0, d, [kb.load(x, base)], lambda c, acc: [kb.fmax(acc[0], kb.load(x, at(c)))], bound=d)[0]
        s = kb.reduce_loop(0, d, [kb.f(0.0)], lambda c, acc: [
            kb.fadd(acc[0], math.ExpOp(kb.fsub(kb.load(x, at(c)), m)).result)], bound=d)[0]
        lse = kb.fadd(m, math.LogOp(s).result) if log else None
        r = None if log else kb.fdiv(kb.f(1.0), s)
        with kb.loop(0, d) as c:
            v = kb.fsub(kb.load(x, at(c)), lse if log else m)
            kb.store(v if log else kb.fmul(math.ExpOp(v).result, r), y, at(c))
    return k.build_elementwise(positions, fn)


def emit_slice(k: GpuKernel, op: LayerOp):
    ishape, total = op.in_shapes[0], _numel(op.out_shape)
    axis = op.attrs["axis"] % len(ishape)
    inner, d = _numel(ishape[axis + 1:]), op.out_shape[axis]
    start, full = op.attrs["start"], ishape[axis]
    k.inp(0, _numel(ishape))
    k.out(total)

    def fn(kb, a, i):
        outer, mid, inn = kb.div(i, d * inner), kb.rem(kb.div(i, inner), d), kb.rem(i, inner)
        kb.store(kb.load(a[0], kb.lin((outer, full * inner), (kb.add(mid, start), inner), (inn, 1))), a[1], i)
    return k.build_elementwise(total, fn)


def emit_permute(k: GpuKernel, op: LayerOp):
    out, total = op.out_shape, _numel(op.out_shape)
    in_st = _strides(op.in_shapes[0])
    dims = op.attrs["dims"]
    k.inp(0, total)
    k.out(total)

    def fn(kb, a, i):
        coords = kb.unravel(i, out)
        kb.store(kb.load(a[0], kb.lin(*[(c, in_st[d]) for c, d in zip(coords, dims)])), a[1], i)
    return k.build_elementwise(total, fn)


def emit_pixel_shuffle(k: GpuKernel, op: LayerOp):
    n, c, h, w = op.in_shapes[0]
    out, total = op.out_shape, _numel(op.out_shape)
    r = op.attrs["factor"]
    k.inp(0, total)
    k.out(total)

    def fn(kb, a, i):
        b, ch, oy, ox = kb.unravel(i, out)
        ic = kb.lin((ch, r * r), (kb.rem(oy, r), r), (kb.rem(ox, r), 1))
        src = kb.lin((b, c * h * w), (ic, h * w), (kb.div(oy, r), w), (kb.div(ox, r), 1))
        kb.store(kb.load(a[0], src), a[1], i)
    return k.build_elementwise(total, fn)


def _plane_gather(k: GpuKernel, op: LayerOp, rows, cols, fill=None):
    """out[b, c, y, x] = in[b, c, rows[y], cols[x]]; a -1 entry reads `fill`."""
    n, c, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    total = _numel(op.out_shape)
    k.inp(0, n * c * h * w)
    k.param(np.asarray(rows, np.int32))
    k.param(np.asarray(cols, np.int32))
    k.out(total)

    def fn(kb, a, i):
        x, rt, ct, y = a
        plane, oy, ox = kb.div(i, oh * ow), kb.rem(kb.div(i, ow), oh), kb.rem(i, ow)
        r, q = kb.iload(rt, oy), kb.iload(ct, ox)
        if fill is None:
            kb.store(kb.load(x, kb.lin((plane, h * w), (r, w), (q, 1))), y, i)
            return
        ok = kb.and_(kb.cmp("sge", r, 0), kb.cmp("sge", q, 0))
        src = kb.lin((plane, h * w), (kb.clamp(r, 0, h - 1), w), (kb.clamp(q, 0, w - 1), 1))
        kb.store(kb.select(ok, kb.load(x, src), kb.f(fill)), y, i)
    return k.build_elementwise(total, fn)


def emit_pad(k: GpuKernel, op: LayerOp):
    _, _, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    pt, pl, _, _ = op.attrs["pads"]
    mode = op.attrs["mode"]
    rows, cols = np.arange(oh) - pt, np.arange(ow) - pl
    if mode == "constant":
        rows = np.where((rows >= 0) & (rows < h), rows, -1)
        cols = np.where((cols >= 0) & (cols < w), cols, -1)
        return _plane_gather(k, op, rows, cols, fill=float(op.attrs["value"]))
    return _plane_gather(k, op, _map(rows, h, mode), _map(cols, w, mode))


def emit_upsample(k: GpuKernel, op: LayerOp):
    n, c, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    scales = op.attrs.get("scales") or ()
    sh, sw = (scales[0], scales[1]) if len(scales) == 2 else (None, None)
    if op.attrs["mode"] == "nearest":
        return _plane_gather(k, op, _nearest_table(oh, h, sh), _nearest_table(ow, w, sw))
    align = op.attrs["align_corners"]
    if op.attrs["mode"] == "bicubic":
        return _upsample_bicubic(k, op, _bicubic_table(oh, h, align, sh), _bicubic_table(ow, w, align, sw))
    tables = _bilinear_table(oh, h, align, sh) + _bilinear_table(ow, w, align, sw)
    total = _numel(op.out_shape)
    k.inp(0, n * c * h * w)
    for t in tables:
        k.param(t)
    k.out(total)

    def fn(kb, a, i):
        x, r0t, r1t, rlt, c0t, c1t, clt, y = a
        plane, oy, ox = kb.div(i, oh * ow), kb.rem(kb.div(i, ow), oh), kb.rem(i, ow)
        base = kb.mul(plane, h * w)
        a0, a1 = kb.add(base, kb.mul(kb.iload(r0t, oy), w)), kb.add(base, kb.mul(kb.iload(r1t, oy), w))
        j0, j1 = kb.iload(c0t, ox), kb.iload(c1t, ox)
        lr_, lc = kb.load(rlt, oy), kb.load(clt, ox)
        one = kb.f(1.0)
        top = kb.fadd(kb.fmul(kb.fsub(one, lc), kb.load(x, kb.add(a0, j0))), kb.fmul(lc, kb.load(x, kb.add(a0, j1))))
        bot = kb.fadd(kb.fmul(kb.fsub(one, lc), kb.load(x, kb.add(a1, j0))), kb.fmul(lc, kb.load(x, kb.add(a1, j1))))
        kb.store(kb.fadd(kb.fmul(kb.fsub(one, lr_), top), kb.fmul(lr_, bot)), y, i)
    return k.build_elementwise(total, fn)


def _upsample_bicubic(k: GpuKernel, op: LayerOp, rows, cols):
    """One work item per output: 4 x 4 taps with the row and column weights of the host's tables."""
    n, c, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    total = _numel(op.out_shape)
    k.inp(0, n * c * h * w)
    for t in (*rows[0], *rows[1], *cols[0], *cols[1]):
        k.param(t.astype(np.int32) if t.dtype.kind in "iu" else t)
    k.out(total)

    def fn(kb, a, i):
        x, y = a[0], a[-1]
        tri, trw, tci, tcw = a[1:5], a[5:9], a[9:13], a[13:17]
        plane, oy, ox = kb.div(i, oh * ow), kb.rem(kb.div(i, ow), oh), kb.rem(i, ow)
        base = kb.mul(plane, h * w)
        cols_ = [kb.iload(t, ox) for t in tci]
        cw = [kb.load(t, ox) for t in tcw]
        acc = None
        for ti, tw in zip(tri, trw):
            row = kb.add(base, kb.mul(kb.iload(ti, oy), w))
            terms = [kb.fmul(wc, kb.load(x, kb.add(row, j))) for wc, j in zip(cw, cols_)]
            v = kb.fmul(kb.load(tw, oy), kb.fadd(kb.fadd(terms[0], terms[1]), kb.fadd(terms[2], terms[3])))
            acc = v if acc is None else kb.fadd(acc, v)
        kb.store(acc, y, i)
    return k.build_elementwise(total, fn)


def emit_pool(k: GpuKernel, op: LayerOp):
    n, c, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    kh, kw = op.attrs["kernel"]
    sh, sw = op.attrs["stride"]
    ph, pw = op.attrs["padding"]
    dh, dw = op.attrs.get("dilation") or (1, 1)
    is_max = op.name == "max_pool2d"
    total = _numel(op.out_shape)
    k.inp(0, n * c * h * w)
    if not is_max:
        def divisors(size, out, kk, ss, pp):  # torch's divisor is separable in rows x columns
            st = np.arange(out) * ss - pp
            if op.attrs["count_include_pad"]:
                return np.minimum(st + kk, size + pp) - st
            return np.minimum(st + kk, size) - np.maximum(st, 0)
        k.param((1.0 / divisors(h, oh, kh, sh, ph).astype(np.float64)).astype(np.float32))
        k.param((1.0 / divisors(w, ow, kw, sw, pw).astype(np.float64)).astype(np.float32))
    k.out(total)

    def fn(kb, a, i):
        x, y = a[0], a[-1]
        plane, oy, ox = kb.div(i, oh * ow), kb.rem(kb.div(i, ow), oh), kb.rem(i, ow)
        y0, x0 = kb.add(kb.mul(oy, sh), -ph), kb.add(kb.mul(ox, sw), -pw)
        base = kb.mul(plane, h * w)
        fill = kb.f(F32_LOWEST if is_max else 0.0)
        rows = [(kb.add(y0, t * dh)) for t in range(kh)]
        cols = [(kb.add(x0, t * dw)) for t in range(kw)]
        rok = [kb.and_(kb.cmp("sge", r, 0), kb.cmp("slt", r, h)) for r in rows]
        cok = [kb.and_(kb.cmp("sge", q, 0), kb.cmp("slt", q, w)) for q in cols]
        roff = [kb.mul(kb.clamp(r, 0, h - 1), w) for r in rows]
        coff = [kb.clamp(q, 0, w - 1) for q in cols]
        acc = None
        for ti in range(kh):
            for tj in range(kw):
                v = kb.load(x, kb.add(base, kb.add(roff[ti], coff[tj])))
                v = kb.select(kb.and_(rok[ti], cok[tj]), v, fill)
                acc = v if acc is None else (kb.fmax(acc, v) if is_max else kb.fadd(acc, v))
        if not is_max:
            acc = kb.fmul(acc, kb.fmul(kb.load(a[1], oy), kb.load(a[2], ox)))
        kb.store(acc, y, i)
    return k.build_elementwise(total, fn)


def emit_adaptive_avg_pool(k: GpuKernel, op: LayerOp):
    """One work item per output element over its window; a global pool (1x1 output) over a plane
    larger than NORM_CHUNK in two kernels (chunk sums, then per plane), like instance norm."""
    n, c, h, w = op.in_shapes[0]
    _, _, oh, ow = op.out_shape
    total = _numel(op.out_shape)
    if (oh, ow) == (1, 1) and h * w > NORM_CHUNK:
        return _global_avg_pool(k, n * c, h * w)

    def bins(size, out):  # torch: [floor(i*size/out), ceil((i+1)*size/out))
        st = np.array([(i * size) // out for i in range(out)])
        en = np.array([-(-((i + 1) * size) // out) for i in range(out)])
        return st, en
    rs, re_ = bins(h, oh)
    cs, ce = bins(w, ow)
    k.inp(0, n * c * h * w)
    for t in (rs, re_, cs, ce):
        k.param(t.astype(np.int32))
    k.param((1.0 / (re_ - rs).astype(np.float64)).astype(np.float32))
    k.param((1.0 / (ce - cs).astype(np.float64)).astype(np.float32))
    k.out(total)

    def fn(kb, a, i):
        x, rst, ret, cst, cet, rinv, cinv, y = a
        plane, oy, ox = kb.div(i, oh * ow), kb.rem(kb.div(i, ow), oh), kb.rem(i, ow)
        base = kb.mul(plane, h * w)
        c0, c1 = kb.iload(cst, ox), kb.iload(cet, ox)

        def row(r, accs):
            rb = kb.add(base, kb.mul(r, w))
            return kb.reduce_loop(c0, c1, accs, lambda q, acc: [kb.fadd(acc[0], kb.load(x, kb.add(rb, q)))],
                                  bound=int((ce - cs).max()))
        s = kb.reduce_loop(kb.iload(rst, oy), kb.iload(ret, oy), [kb.f(0.0)], row, bound=int((re_ - rs).max()))[0]
        kb.store(kb.fmul(s, kb.fmul(kb.load(rinv, oy), kb.load(cinv, ox))), y, i)
    return k.build_elementwise(total, fn)


NORM_CHUNK = 2048  # elements one work item reduces: keeps loops short (parallelism, llvmpipe's trip limit)


def _chunks(hw: int) -> tuple[int, np.ndarray]:
    """Chunks of NORM_CHUNK elements per plane of hw: their number and element counts (the last short)."""
    nch = -(-hw // NORM_CHUNK)
    starts = np.arange(nch) * NORM_CHUNK
    return nch, np.minimum(starts + NORM_CHUNK, hw) - starts


def _chunk_at(kb, i, nch: int, hw: int):
    """Work item i of a per-chunk kernel: (plane, chunk, offset of the chunk's first element)."""
    p, j = kb.div(i, nch), kb.rem(i, nch)
    return p, j, kb.add(kb.mul(p, hw), kb.mul(j, NORM_CHUNK))


def emit_instance_norm(k: GpuKernel, op: LayerOp):
    """Small planes: one work item per (n, c) plane, two passes (mean, then squared deviations).
    Large planes: three kernels, so no work item walks a whole plane: per chunk of NORM_CHUNK
    elements its mean and squared deviations (two passes), per plane those chunks combined
    (Chan et al.'s pairwise update, as accurate as two passes) into scale and shift, then per element."""
    n, c, *sp = op.in_shapes[0]
    hw = _numel(sp)
    a = op.attrs
    gamma = np.asarray(a["weight"] if a["weight"] is not None else np.ones(c), np.float32)
    beta = np.asarray(a["bias"] if a["bias"] is not None else np.zeros(c), np.float32)
    eps = float(a["eps"])
    if hw <= NORM_CHUNK:
        return _instance_norm_whole(k, n * c, c, hw, gamma, beta, eps)
    planes = n * c
    nch, counts = _chunks(hw)

    parts = k.scratch(planes * nch * 2)
    ka = k.stage("chunks", parts)
    ka.inp(0, planes * hw)
    ka.param(counts.astype(np.int32))
    ka.param((1.0 / counts).astype(np.float32))
    ka.out(planes * nch * 2)

    def chunk(kb, args, i):
        x, cnt, rcnt, part = args
        _, j, base = _chunk_at(kb, i, nch, hw)
        m = kb.iload(cnt, j)
        s = kb.reduce_loop(0, m, [kb.f(0.0)], lambda q, acc: [kb.fadd(acc[0], kb.load(x, kb.add(base, q)))],
                           bound=NORM_CHUNK)[0]
        mean = kb.fmul(s, kb.load(rcnt, j))

        def sq(q, acc):
            d = kb.fsub(kb.load(x, kb.add(base, q)), mean)
            return [kb.fadd(acc[0], kb.fmul(d, d))]
        m2 = kb.reduce_loop(0, m, [kb.f(0.0)], sq, bound=NORM_CHUNK)[0]
        kb.store(mean, part, kb.mul(i, 2))
        kb.store(m2, part, kb.add(kb.mul(i, 2), 1))

    stats = k.scratch(planes * 2)
    kb_ = k.stage("stats", stats)
    kb_.bind(parts, planes * nch * 2)
    kb_.param(counts.astype(np.float32))
    kb_.param(gamma)
    kb_.param(beta)
    kb_.out(planes * 2)

    def combine(kb, args, p):
        part, cnt, g, b, st = args
        base = kb.mul(p, nch * 2)
        s = kb.reduce_loop(0, nch, [kb.f(0.0)], lambda j, acc: [
            kb.fadd(acc[0], kb.fmul(kb.load(part, kb.add(base, kb.mul(j, 2))), kb.load(cnt, j)))])[0]
        mean = kb.fmul(s, kb.f(1.0 / hw))

        def m2(j, acc):
            d = kb.fsub(kb.load(part, kb.add(base, kb.mul(j, 2))), mean)
            within = kb.load(part, kb.add(base, kb.add(kb.mul(j, 2), 1)))
            return [kb.fadd(acc[0], kb.fadd(within, kb.fmul(kb.load(cnt, j), kb.fmul(d, d))))]
        var = kb.fmul(kb.reduce_loop(0, nch, [kb.f(0.0)], m2)[0], kb.f(1.0 / hw))
        inv = math.RsqrtOp(kb.fadd(var, kb.f(eps))).result
        ch = kb.rem(p, c)
        scale = kb.fmul(inv, kb.load(g, ch))
        kb.store(scale, st, kb.mul(p, 2))
        kb.store(kb.fsub(kb.load(b, ch), kb.fmul(mean, scale)), st, kb.add(kb.mul(p, 2), 1))

    k.inp(0, planes * hw)
    k.bind(stats, planes * 2)
    k.out(planes * hw)

    def norm(kb, args, i):
        x, st, y = args
        p = kb.div(i, hw)
        kb.store(kb.fadd(kb.fmul(kb.load(x, i), kb.load(st, kb.mul(p, 2))), kb.load(st, kb.add(kb.mul(p, 2), 1))),
                 y, i)
    return [ka.build_elementwise(planes * nch, chunk), kb_.build_elementwise(planes, combine, block=min(64, planes)),
            k.build_elementwise(planes * hw, norm)]


def _global_avg_pool(k: GpuKernel, planes: int, hw: int):
    nch, counts = _chunks(hw)
    parts = k.scratch(planes * nch)
    ka = k.stage("chunks", parts)
    ka.inp(0, planes * hw)
    ka.param(counts.astype(np.int32))
    ka.out(planes * nch)

    def chunk(kb, args, i):
        x, cnt, part = args
        _, j, base = _chunk_at(kb, i, nch, hw)
        s = kb.reduce_loop(0, kb.iload(cnt, j), [kb.f(0.0)],
                           lambda q, acc: [kb.fadd(acc[0], kb.load(x, kb.add(base, q)))], bound=NORM_CHUNK)[0]
        kb.store(s, part, i)

    k.bind(parts, planes * nch)
    k.out(planes)

    def plane(kb, args, p):
        part, y = args
        base = kb.mul(p, nch)
        s = kb.reduce_loop(0, nch, [kb.f(0.0)], lambda j, acc: [kb.fadd(acc[0], kb.load(part, kb.add(base, j)))])[0]
        kb.store(kb.fmul(s, kb.f(1.0 / hw)), y, p)
    return [ka.build_elementwise(planes * nch, chunk), k.build_elementwise(planes, plane, block=min(64, planes))]


def _instance_norm_whole(k: GpuKernel, planes: int, c: int, hw: int, gamma, beta, eps: float):
    k.inp(0, planes * hw)
    k.param(gamma)
    k.param(beta)
    k.out(planes * hw)

    def fn(kb, args, p):
        x, g, b, y = args
        base = kb.mul(p, hw)
        s = kb.reduce_loop(0, hw, [kb.f(0.0)], lambda j, acc: [kb.fadd(acc[0], kb.load(x, kb.add(base, j)))])[0]
        mean = kb.fmul(s, kb.f(1.0 / hw))

        def sq(j, acc):
            d = kb.fsub(kb.load(x, kb.add(base, j)), mean)
            return [kb.fadd(acc[0], kb.fmul(d, d))]
        var = kb.fmul(kb.reduce_loop(0, hw, [kb.f(0.0)], sq)[0], kb.f(1.0 / hw))
        inv = math.RsqrtOp(kb.fadd(var, kb.f(eps))).result
        ch = kb.rem(p, c)
        scale = kb.fmul(inv, kb.load(g, ch))
        shift = kb.fsub(kb.load(b, ch), kb.fmul(mean, scale))
        with kb.loop(0, hw) as j:
            kb.store(kb.fadd(kb.fmul(kb.load(x, kb.add(base, j)), scale), shift), y, kb.add(base, j))
    return k.build_elementwise(planes, fn, block=min(64, max(1, planes)))
