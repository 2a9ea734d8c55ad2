"""Small helpers shared by the kernel emitters.

Every shape in a kernel is static, so most index arithmetic is folded in Python: an "index" below is
either a Python int or an MLIR index Value, and the helpers only emit IR when a dynamic value is
involved. Constants are hoisted to the top of the function so that they dominate every use no matter
which loop asked for them first.
"""
from __future__ import annotations

import math as _pymath
from typing import Callable, Sequence, Union

from torch_mlir import ir
from torch_mlir.dialects import arith, func, math as mmath, memref, scf, vector

from ...dialects.lr.spec import ACT_PARAMS, ACTIVATIONS
from ..act_math import extra_activation

Index = Union[int, ir.Value]


def check_act(act: str, act_params: Sequence[float]) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {act!r}")
    need = len(ACT_PARAMS.get(act, ()))
    if len(act_params) < need:
        raise ValueError(f"activation {act} needs {need} parameter(s), got {tuple(act_params)}")


def flat_memref(n: int) -> ir.MemRefType:
    return ir.MemRefType.get([n], ir.F32Type.get())


SCRATCH_ALIGN = 64  # bytes


def scratch_bytes(sizes) -> int:
    """Bytes of the scratch argument that holds buffers of these many floats, one after another."""
    return sum(-(-n * 4 // SCRATCH_ALIGN) * SCRATCH_ALIGN for n in sizes)


class Scratch:
    """Where a kernel's temporary buffers come from: malloc'ed and freed on every call (buf None), or
    views into `buf`, an i8 memref argument the caller passes (`lrc.compile` passes a slice of the
    model's arena that every layer reuses, so the buffers stay in cache from layer to layer instead
    of coming fresh, and cold, from the heap at whatever address it hands out). Buffers are laid out
    in allocation order; `scratch_bytes` of their sizes is the argument's size."""

    def __init__(self, buf=None):
        self.buf, self.top = buf, 0

    def alloc(self, nfloats: int) -> ir.Value:
        if self.buf is None:
            return memref.alloc(flat_memref(nfloats), [], [], alignment=SCRATCH_ALIGN)
        at = arith.ConstantOp(ir.IndexType.get(), self.top).result
        self.top += scratch_bytes([nfloats])
        assert self.top <= ir.MemRefType(self.buf.type).shape[0], "scratch argument too small"
        return memref.ViewOp(flat_memref(nfloats), self.buf, at, []).result

    def free(self, v: ir.Value) -> None:
        if self.buf is None:
            memref.dealloc(v)


def scratch_arg_type(nbytes: int) -> ir.MemRefType:
    return ir.MemRefType.get([nbytes], ir.IntegerType.get_signless(8))


# Attribute of a kernel function that takes a scratch argument (its last): the argument's bytes.
SCRATCH_ATTR = "lrc.scratch_bytes"


def mark_scratch(fn: func.FuncOp, nbytes: int) -> None:
    """Record on `fn` that its last argument is a scratch buffer of `nbytes` (none when 0)."""
    if nbytes:
        fn.attributes[SCRATCH_ATTR] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), nbytes)


class KernelBuilder:
    """Index folding, hoisted constants and vector helpers for one function body."""

    def __init__(self, fn: func.FuncOp, vec: int):
        self.fn = fn
        self.V = vec
        self.f32 = ir.F32Type.get()
        self.index = ir.IndexType.get()
        self.vt = ir.VectorType.get([vec], self.f32)
        self.mask_t = ir.VectorType.get([vec], ir.IntegerType.get_signless(1))
        entry = fn.entry_block
        # Every constant goes in front of this anchor, i.e. at the very top of the entry block.
        with ir.InsertionPoint(entry):
            self._anchor = arith.ConstantOp(self.index, 0)
        self._consts: dict = {0: self._anchor.result}

    # ---- constants -------------------------------------------------------------------------
    def _hoisted(self, key, make):
        v = self._consts.get(key)
        if v is None:
            with ir.InsertionPoint(self._anchor):
                v = make()
            self._consts[key] = v
        return v

    def c(self, n: int) -> ir.Value:
        if n == 0:
            return self._anchor.result
        return self._hoisted(n, lambda: arith.ConstantOp(self.index, n).result)

    def cf(self, x: float) -> ir.Value:
        return self._hoisted(("f", float(x)), lambda: arith.ConstantOp(self.f32, float(x)).result)

    def splat(self, x: float, vt: ir.VectorType | None = None) -> ir.Value:
        vt = vt or self.vt
        return self._hoisted(
            ("v", str(vt), float(x)),
            lambda: arith.ConstantOp(vt, ir.DenseElementsAttr.get_splat(vt, ir.FloatAttr.get(self.f32, float(x)))).result,
        )

    def mask(self, lanes: int, n: int | None = None) -> ir.Value:
        n = n or self.V
        mt = ir.VectorType.get([n], ir.IntegerType.get_signless(1))
        return self._hoisted(("m", n, lanes), lambda: vector.constant_mask(mt, [lanes]))

    # ---- index arithmetic --------------------------------------------------------------------
    def v(self, a: Index) -> ir.Value:
        return self.c(a) if isinstance(a, int) else a

    def add(self, *xs: Index) -> Index:
        const = sum(x for x in xs if isinstance(x, int))
        dyn = [x for x in xs if not isinstance(x, int)]
        if not dyn:
            return const
        acc = dyn[0]
        for d in dyn[1:]:
            acc = arith.addi(acc, d)
        if const:
            acc = arith.addi(acc, self.c(const))
        return acc

    def mul(self, a: Index, b: int) -> Index:
        if isinstance(a, int):
            return a * b
        if b == 0:
            return 0
        if b == 1:
            return a
        return arith.muli(a, self.c(b))

    def min(self, a: Index, b: Index) -> Index:
        if isinstance(a, int) and isinstance(b, int):
            return min(a, b)
        return arith.minsi(self.v(a), self.v(b))

    # ---- loops -------------------------------------------------------------------------------
    def loop(self, lb: Index, ub: Index, step: int, body: Callable, inits: Sequence[ir.Value] = ()):
        """scf.for from lb to ub; `body(iv, iter_args) -> list of yielded values (or None)`.

        Static trip counts of 0 and 1 are resolved in Python: no loop is emitted.
        """
        inits = list(inits)
        if isinstance(lb, int) and isinstance(ub, int):
            trips = max(0, -(-(ub - lb) // step))
            if trips == 0:
                return inits
            if trips == 1:
                res = body(lb, inits)
                return list(res) if res is not None else []
        f = scf.ForOp(self.v(lb), self.v(ub), self.c(step), inits)
        with ir.InsertionPoint(f.body):
            res = body(f.induction_variable, list(f.inner_iter_args))
            scf.YieldOp(list(res) if res is not None else [])
        return list(f.results)

    # ---- vectors -----------------------------------------------------------------------------
    def load(self, mem: ir.Value, idx: Index, lanes: int | None = None, vt: ir.VectorType | None = None) -> ir.Value:
        """A vector load of type `vt` (default V lanes); `lanes` below its width reads only the first
        lanes (the rest are zero)."""
        vt = vt or self.vt
        n = ir.VectorType(vt).shape[0]
        if lanes is None or lanes >= n:
            return vector.load(vt, mem, [self.v(idx)])
        return vector.maskedload(vt, mem, [self.v(idx)], self.mask(lanes, n), self.splat(0.0, vt))

    def store(self, val: ir.Value, mem: ir.Value, idx: Index, lanes: int | None = None) -> None:
        """Store `val` (any width); `lanes` below its width stores only the first lanes."""
        n = ir.VectorType(val.type).shape[0]
        if lanes is None or lanes >= n:
            vector.store(val, mem, [self.v(idx)])
        else:
            vector.maskedstore(mem, [self.v(idx)], self.mask(lanes, n), val)

    def bcast(self, mem: ir.Value, idx: Index) -> ir.Value:
        return vector.broadcast(self.vt, memref.load(mem, [self.v(idx)]))

    def fma(self, a: ir.Value, b: ir.Value, acc: ir.Value) -> ir.Value:
        return vector.fma(a, b, acc)

    def zero_fill(self, mem: ir.Value, size: int, unroll: int = 4) -> None:
        """Zero a flat buffer whose size is a multiple of V."""
        V = self.V
        assert size % V == 0
        z = self.splat(0.0)
        chunk = V * unroll
        nfull = size // chunk

        def body(i, _):
            for u in range(unroll):
                self.store(z, mem, self.add(i, u * V))

        self.loop(0, nfull * chunk, chunk, body)
        for off in range(nfull * chunk, size, V):
            self.store(z, mem, off)

    # ---- activations -------------------------------------------------------------------------
    def activation(self, x: ir.Value, act: str, params: Sequence[float]) -> ir.Value:
        if act == "none":
            return x
        if act == "relu":
            return arith.maximumf(x, self.splat(0.0))
        if act == "relu6":
            return arith.minimumf(arith.maximumf(x, self.splat(0.0)), self.splat(6.0))
        if act == "leaky_relu":
            pos = arith.cmpf(arith.CmpFPredicate.OGT, x, self.splat(0.0))
            return arith.select(pos, x, arith.mulf(x, self.splat(params[0])))
        if act == "clamp":
            lo, hi = params[0], params[1]
            y = x
            if lo is not None and not _pymath.isinf(lo):
                y = arith.maximumf(y, self.splat(lo))
            if hi is not None and not _pymath.isinf(hi):
                y = arith.minimumf(y, self.splat(hi))
            return y
        if act == "sigmoid":
            return arith.divf(self.splat(1.0), arith.addf(self.splat(1.0), self.exp(arith.negf(x))))
        if act == "tanh":
            # tanh|x| = (1 - e^{-2|x|}) / (1 + e^{-2|x|}); the absolute error stays ~1e-7 near 0.
            t = self.exp(arith.mulf(mmath.absf(x), self.splat(-2.0)))
            y = arith.divf(arith.subf(self.splat(1.0), t), arith.addf(self.splat(1.0), t))
            return mmath.copysign(y, x)
        if act == "hardswish":
            r6 = arith.minimumf(arith.maximumf(arith.addf(x, self.splat(3.0)), self.splat(0.0)), self.splat(6.0))
            return arith.divf(arith.mulf(x, r6), self.splat(6.0))
        return extra_activation(x, act, params, self.splat, self.exp)

    def exp(self, x: ir.Value) -> ir.Value:
        """Vector e^x without libm (see `vector_exp`)."""
        return vector_exp(x, lambda c, vt: self.splat(c, vt))


def vector_exp(x: ir.Value, splat: Callable[[float, ir.VectorType], ir.Value]) -> ir.Value:
    """e^x on an f32 vector, inline; `splat(c, vector_type)` makes a constant vector.

    LLVM lowers a vector math.exp to one scalar expf call per lane on x86 (no vector math library
    is linked), ~10x the cost of a conv epilogue. Instead: x = n*ln2 + r with |r| <= ln2/2, e^r by a
    degree-6 Taylor polynomial (relative error < 2e-7), 2^n assembled in the exponent bits. The
    input is clamped to [-87, 88] so that n + 127 stays a normal exponent (e^-87 ~ 1.6e-38).
    """
    vt = x.type
    i32 = ir.IntegerType.get_signless(32)
    i32v = ir.VectorType.get(ir.VectorType(vt).shape, i32)
    x = arith.minimumf(arith.maximumf(x, splat(-87.0, vt)), splat(88.0, vt))
    # t = x*log2(e) + 1.5*2^23 + 127: in [2^23, 2^24) the float's mantissa is an integer, so t is
    # rounded to n + 1.5*2^23 + 127 and its bits shifted left by 23 are 2^n's (the 1.5*2^23 part
    # shifts out). Explicit FMAs: without the contract flag LLVM keeps every mul and add apart.
    magic = splat(12582912.0 + 127.0, vt)
    t = vector.fma(x, splat(1.4426950408889634, vt), magic)
    n = arith.subf(t, magic)
    r = vector.fma(n, splat(-0.693359375, vt), x)
    r = vector.fma(n, splat(2.12194440e-4, vt), r)
    p = splat(1.0 / 720.0, vt)
    for c in (1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0):
        p = vector.fma(p, r, splat(c, vt))
    sh = arith.ConstantOp(i32v, ir.DenseElementsAttr.get_splat(i32v, ir.IntegerAttr.get(i32, 23))).result
    scale = arith.bitcast(vt, arith.shli(arith.bitcast(i32v, t), sh))
    return arith.mulf(p, scale)
