"""GPU kernels for the layers that carry weights: conv2d (with fused bias / activation / residual),
transposed conv and linear.

conv2d is the one that matters for speed: a work group is a tile of output pixels (x) by blocks of
output channels (y), each work item keeps KB output channels of one pixel in registers, so an input
value loaded once feeds KB multiply-adds; weights are packed so that the KB values of one tap are
adjacent. Tap bounds are resolved once per work item outside the channel loop.
"""
from __future__ import annotations

import numpy as np

from ..codegen.emit import LayerOp
from .builder import GpuKernel


def _act(a):
    return a.get("act", "none"), tuple(a.get("act_params") or ())


def channel_block(kg: int) -> int:
    return 4 if kg % 4 == 0 else 2 if kg % 2 == 0 else 1


def pack_conv_weights(weight: np.ndarray, kb_: int) -> np.ndarray:
    """[K, Cg, KH, KW] -> [K/KB, Cg, KH*KW, KB]."""
    k, cg, kh, kw = weight.shape
    return np.ascontiguousarray(weight.reshape(k // kb_, kb_, cg, kh * kw).transpose(0, 2, 3, 1))


def _tap_table(kb, y0, x0, h, w, kh, kw, dh, dw, bounded: bool):
    """Per tap: (in-bounds condition or None, clamped offset into one input plane)."""
    taps = []
    for ty in range(kh):
        iy = kb.add(y0, ty * dh)
        rok = kb.and_(kb.cmp("sge", iy, 0), kb.cmp("slt", iy, h)) if bounded else None
        roff = kb.mul(kb.clamp(iy, 0, h - 1) if bounded else iy, w)
        for tx in range(kw):
            ix = kb.add(x0, tx * dw)
            cok = kb.and_(kb.cmp("sge", ix, 0), kb.cmp("slt", ix, w)) if bounded else None
            off = kb.add(roff, kb.clamp(ix, 0, w - 1) if bounded else ix)
            taps.append((kb.and_(rok, cok), off))
    return taps


def emit_conv2d(k: GpuKernel, op: LayerOp):
    from .ops_sparse import choose, emit_sparse_conv2d

    sparse = choose(op)
    if sparse is not None:
        return emit_sparse_conv2d(k, op, sparse)
    n, c, h, w = op.in_shapes[0]
    a = op.attrs
    weight = np.asarray(a["weight"], np.float32)
    kk, cg, kh, kw = weight.shape
    groups = a["groups"]
    kg = kk // groups
    _, _, oh, ow = op.out_shape
    sh, sw = a["stride"]
    pt, pl, pb, pr = a["padding"]
    dh, dw = a["dilation"]
    act, params = _act(a)
    residual = len(op.in_shapes) == 2
    kb_ = channel_block(kg)
    bias = a["bias"] if a["bias"] is not None else np.zeros(kk, np.float32)
    pixels, nblk = oh * ow, kk // kb_
    bounded = max(pt, pl, pb, pr) > 0

    k.inp(0, n * c * h * w)
    k.param(pack_conv_weights(weight, kb_))
    k.param(np.asarray(bias, np.float32))
    if residual:
        k.inp(1, n * kk * pixels)
    k.out(n * kk * pixels)
    by = 1 if nblk == 1 else 2 if nblk < 8 else 4
    bx = 64 // by
    k.grid_launch((pixels, nblk, n), (bx, by, 1))
    k.variant = "dense" + (" (sparsity annotation not used)" if a.get("sparsity") is not None else "")
    taps = kh * kw

    def body(kb, args):
        x, wt, bs = args[0], args[1], args[2]
        res = args[3] if residual and len(args) == 5 else (args[0] if residual else None)
        y = args[-1]
        p = kb.add(kb.mul(kb.group("x"), bx), kb.thread("x"))
        blk = kb.add(kb.mul(kb.group("y"), by), kb.thread("y"))
        b = kb.group("z")
        exact_x = pixels % bx == 0
        exact_y = nblk % by == 0
        guard = kb.and_(None if exact_x else kb.cmp("ult", p, pixels), None if exact_y else kb.cmp("ult", blk, nblk))
        with kb.when(guard):
            k0 = kb.mul(blk, kb_)
            grp = kb.div(k0, kg) if groups > 1 else 0
            cbase = kb.lin((b, c * h * w), (grp, cg * h * w))
            oy, ox = kb.div(p, ow), kb.rem(p, ow)
            tap = _tap_table(kb, kb.add(kb.mul(oy, sh), -pt), kb.add(kb.mul(ox, sw), -pl), h, w, kh, kw, dh, dw,
                             bounded)
            wbase = kb.mul(blk, cg * taps * kb_)
            zero = kb.f(0.0)

            def step(ci, accs):
                xb = kb.add(cbase, kb.mul(ci, h * w))
                wb = kb.add(wbase, kb.mul(ci, taps * kb_))
                for t, (ok, off) in enumerate(tap):
                    v = kb.select(ok, kb.load(x, kb.add(xb, off)), zero)
                    for j in range(kb_):
                        accs[j] = kb.fadd(accs[j], kb.fmul(v, kb.load(wt, kb.add(wb, t * kb_ + j))))
                return accs
            accs = kb.reduce_loop(0, cg, [zero] * kb_, step)
            for j in range(kb_):
                ch = kb.add(k0, j)
                o = kb.lin((b, kk * pixels), (ch, pixels), (p, 1))
                v = kb.fadd(accs[j], kb.load(bs, ch))
                if residual:
                    v = kb.fadd(v, kb.load(res, o))
                kb.store(kb.activation(v, act, params), y, o)
    return k.build(body)


def emit_conv_transpose2d(k: GpuKernel, op: LayerOp):
    """One work item per output element: a tap contributes where (oy + pad - ky*dil) is a
    non-negative multiple of the stride inside the input."""
    n, c, h, w = op.in_shapes[0]
    a = op.attrs
    weight = np.asarray(a["weight"], np.float32)
    _, kg, kh, kw = weight.shape
    groups = a["groups"]
    cg, kk = c // groups, kg * groups
    _, _, oh, ow = op.out_shape
    sh, sw = a["stride"]
    ph, pw = a["padding"]
    dh, dw = a["dilation"]
    act, params = _act(a)
    bias = a["bias"] if a["bias"] is not None else np.zeros(kk, np.float32)
    taps = kh * kw
    # [C, Kg, KH, KW] -> [K, Cg, KH*KW]
    packed = weight.reshape(groups, cg, kg, taps).transpose(0, 2, 1, 3).reshape(kk, cg, taps)
    total = n * kk * oh * ow
    k.inp(0, n * c * h * w)
    k.param(packed)
    k.param(np.asarray(bias, np.float32))
    k.out(total)

    def fn(kb, args, i):
        x, wt, bs, y = args
        b, ch, oy, ox = kb.unravel(i, op.out_shape)
        grp = kb.div(ch, kg) if groups > 1 else 0
        cbase = kb.lin((b, c * h * w), (grp, cg * h * w))

        def axis(o, pad, kdim, dil, s, size):
            out = []
            for t in range(kdim):
                u = kb.add(o, pad - t * dil)
                uc = kb.clamp(u, 0, (size - 1) * s)
                ok = kb.cmp("eq", u, uc)
                if s > 1:
                    ok = kb.and_(ok, kb.cmp("eq", kb.rem(uc, s), 0))
                out.append((ok, kb.div(uc, s)))
            return out
        rows, cols = axis(oy, ph, kh, dh, sh, h), axis(ox, pw, kw, dw, sw, w)
        tap = [(kb.and_(rok, cok), kb.add(kb.mul(iy, w), ix)) for rok, iy in rows for cok, ix in cols]
        zero = kb.f(0.0)
        wbase = kb.mul(ch, cg * taps)

        def step(ci, accs):
            xb = kb.add(cbase, kb.mul(ci, h * w))
            wb = kb.add(wbase, kb.mul(ci, taps))
            acc = accs[0]
            for t, (ok, off) in enumerate(tap):
                v = kb.select(ok, kb.load(x, kb.add(xb, off)), zero)
                acc = kb.fadd(acc, kb.fmul(v, kb.load(wt, kb.add(wb, t))))
            return [acc]
        acc = kb.reduce_loop(0, cg, [zero], step)[0]
        kb.store(kb.activation(kb.fadd(acc, kb.load(bs, ch)), act, params), y, i)
    return k.build_elementwise(total, fn)


def emit_linear(k: GpuKernel, op: LayerOp):
    a = op.attrs
    weight = np.asarray(a["weight"], np.float32)
    out_f, in_f = weight.shape
    m = int(np.prod(op.in_shapes[0][:-1])) if len(op.in_shapes[0]) > 1 else 1
    act, params = _act(a)
    bias = a["bias"] if a["bias"] is not None else np.zeros(out_f, np.float32)
    k.inp(0, m * in_f)
    k.param(weight)
    k.param(np.asarray(bias, np.float32))
    k.out(m * out_f)

    def fn(kb, args, i):
        x, wt, bs, y = args
        row, j = kb.div(i, out_f), kb.rem(i, out_f)
        xb, wb = kb.mul(row, in_f), kb.mul(j, in_f)
        acc = kb.reduce_loop(0, in_f, [kb.f(0.0)], lambda q, acc: [
            kb.fadd(acc[0], kb.fmul(kb.load(x, kb.add(xb, q)), kb.load(wt, kb.add(wb, q))))])[0]
        kb.store(kb.activation(kb.fadd(acc, kb.load(bs, j)), act, params), y, i)
    return k.build_elementwise(m * out_f, fn)
