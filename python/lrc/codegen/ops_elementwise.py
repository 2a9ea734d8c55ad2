"""Kernels for element-wise layers: activations, per-channel affine ops, broadcasting arithmetic."""
from __future__ import annotations

import numpy as np
from torch_mlir.dialects import arith

from ..dialects import lr
from .emit import Kernel, LayerOp


def _numel(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


ACTIVATIONS = set(lr.ACTIVATION_OPS)
activation_of = lr.activation_of  # (KernelBuilder.activation kind, its parameters) of an lr activation op


def emit_activation(k: Kernel, op: LayerOp):
    n = _numel(op.out_shape)
    act, params = activation_of(op.name, op.attrs)
    k.inp(0, n)
    k.out(n)

    def body(kb, a):
        x, y = a

        def step(i, lanes):
            if lanes == 1:
                kb.store(kb.activation(kb.load(x, i), act, params), y, i)
            else:
                kb.vstore(kb.activation(kb.vload(x, i, lanes), act, params), y, i)
        kb.map_range(n, step)
    return k.build(body)


def _channel_affine(k: Kernel, op: LayerOp, scale: np.ndarray, shift: np.ndarray, act="none", act_params=()):
    """y[n, c, ...] = act(x * scale[c] + shift[c]); the plane of one channel is contiguous."""
    shape = op.out_shape
    n_, c_ = shape[0], shape[1] if len(shape) > 1 else 1
    plane = _numel(shape[2:])
    total = _numel(shape)
    k.inp(0, total)
    k.param(scale.astype(np.float32))
    k.param(shift.astype(np.float32))
    k.out(total)

    def body(kb, a):
        x, s, b, y = a
        with kb.loop(0, n_ * c_) as nc:
            c = arith.RemUIOp(nc, kb.idx(c_)).result if n_ > 1 else nc
            sc, sh = kb.load(s, c), kb.load(b, c)
            base = kb.mul(nc, plane)
            vs, vb = kb.splat(sc), kb.splat(sh)

            def step(i, lanes):
                j = kb.add(base, i)
                if lanes == 1:
                    v = kb.fadd(kb.fmul(kb.load(x, j), sc), sh)
                    kb.store(kb.activation(v, act, act_params), y, j)
                else:
                    v = kb.fadd(kb.fmul(kb.vload(x, j, lanes), vs), vb)
                    kb.vstore(kb.activation(v, act, act_params), y, j)
            kb.map_range(plane, step)
    return k.build(body)


def emit_batch_norm(k: Kernel, op: LayerOp):
    a = op.attrs
    c = op.out_shape[1]
    gamma = a["weight"] if a["weight"] is not None else np.ones(c, np.float32)
    beta = a["bias"] if a["bias"] is not None else np.zeros(c, np.float32)
    inv = 1.0 / np.sqrt(a["var"].astype(np.float64) + a["eps"])
    scale = gamma * inv
    shift = beta - a["mean"] * scale
    return _channel_affine(k, op, scale, shift)


def emit_prelu(k: Kernel, op: LayerOp):
    shape = op.out_shape
    slope = op.attrs["slope"].astype(np.float32)
    c_ = shape[1] if len(shape) > 1 else 1
    if slope.size == 1:
        slope = np.full(c_, slope[0], np.float32)
    n_ = shape[0]
    plane = _numel(shape[2:])
    total = _numel(shape)
    k.inp(0, total)
    k.param(slope)
    k.out(total)

    def body(kb, a):
        x, s, y = a
        with kb.loop(0, n_ * c_) as nc:
            c = arith.RemUIOp(nc, kb.idx(c_)).result if n_ > 1 else nc
            sc = kb.load(s, c)
            base = kb.mul(nc, plane)

            def step(i, lanes):
                j = kb.add(base, i)
                v = kb.load(x, j) if lanes == 1 else kb.vload(x, j, lanes)
                sl = sc if lanes == 1 else kb.splat(sc, lanes)
                neg = arith.CmpFOp(arith.CmpFPredicate.OLT, v, kb.const_like(v, 0.0)).result
                r = arith.SelectOp(neg, kb.fmul(v, sl), v).result
                if lanes == 1:
                    kb.store(r, y, j)
                else:
                    kb.vstore(r, y, j)
            kb.map_range(plane, step)
    return k.build(body)


# lr binary op -> the builder method (host KernelBuilder and GpuBuilder alike) that combines two values.
BINARY_FNS = {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv", "maximum": "fmax", "minimum": "fmin"}


def _strides(shape, out_shape):
    """Element strides of `shape` broadcast to `out_shape` (0 along broadcast dimensions)."""
    r = len(out_shape)
    shape = (1,) * (r - len(shape)) + tuple(shape)
    st = [0] * r
    acc = 1
    for d in range(r - 1, -1, -1):
        st[d] = 0 if shape[d] == 1 and out_shape[d] != 1 else acc
        acc *= shape[d]
    return st


def _collapse(out_shape, stride_lists):
    """Merge adjacent dimensions that are contiguous for every operand, so loops stay few and long."""
    dims = list(out_shape)
    sts = [list(s) for s in stride_lists]
    d = len(dims) - 1
    while d > 0:
        if all(s[d - 1] == s[d] * dims[d] for s in sts):
            for s in sts:
                del s[d - 1]
            dims[d] *= dims[d - 1]
            del dims[d - 1]
        d -= 1
    return dims, sts


def emit_binary(k: Kernel, op: LayerOp):
    out_shape = op.out_shape or (1,)
    xs = op.in_shapes[0] or (1,)
    ys = op.in_shapes[1] or (1,)
    dims, (sx, sy, so) = _collapse(out_shape, [_strides(xs, out_shape), _strides(ys, out_shape),
                                               _strides(out_shape, out_shape)])
    k.inp(0, _numel(xs))
    k.inp(1, _numel(ys))
    k.out(_numel(out_shape))
    fn = BINARY_FNS[op.name]

    def body(kb, a):
        x, y, o = a
        inner = dims[-1]

        def nest(d, ox, oy, oo):
            if d == len(dims) - 1:
                def step(i, lanes):
                    def operand(buf, base, st):
                        if st == 0:
                            s = kb.load(buf, base)
                            return s if lanes == 1 else kb.splat(s, lanes)
                        j = kb.add(base, i)
                        return kb.load(buf, j) if lanes == 1 else kb.vload(buf, j, lanes)
                    r = getattr(kb, fn)(operand(x, ox, sx[d]), operand(y, oy, sy[d]))
                    j = kb.add(oo, i)
                    if lanes == 1:
                        kb.store(r, o, j)
                    else:
                        kb.vstore(r, o, j)
                kb.map_range(inner, step)
                return
            with kb.loop(0, dims[d]) as i:
                nest(d + 1, kb.add(ox, kb.mul(i, sx[d])), kb.add(oy, kb.mul(i, sy[d])),
                     kb.add(oo, kb.mul(i, so[d])))
        nest(0, 0, 0, 0)
    return k.build(body)
