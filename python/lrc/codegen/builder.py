"""A thin layer over the MLIR Python builders for writing loop kernels on flat f32 buffers.

Kernels index flat `memref<Nxf32>` buffers with index arithmetic they compute themselves, which keeps
every op lowering independent of layouts and lets static shapes fold into constants.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, math, memref, scf, vector

from .act_math import EXTRA_ACTIVATIONS, extra_activation


def f32() -> ir.Type:
    return ir.F32Type.get()


def index() -> ir.Type:
    return ir.IndexType.get()


def flat_type(n: int) -> ir.MemRefType:
    return ir.MemRefType.get([int(n)], f32())


def vtype(lanes: int) -> ir.VectorType:
    return ir.VectorType.get([lanes], f32())


class KernelBuilder:
    """Helpers bound to one function body; index constants are hoisted to its entry block."""

    def __init__(self, fn: func.FuncOp, vec: int = 8):
        self.fn = fn
        self.vec = vec
        self.entry = fn.entry_block
        self._consts: dict = {}

    # --- constants ---------------------------------------------------------------------------
    def idx(self, v):
        if isinstance(v, ir.Value):
            return v
        key = ("i", int(v))
        if key not in self._consts:
            with ir.InsertionPoint.at_block_begin(self.entry):
                self._consts[key] = arith.ConstantOp(index(), int(v)).result
        return self._consts[key]

    def f(self, v: float) -> ir.Value:
        key = ("f", float(v))
        if key not in self._consts:
            with ir.InsertionPoint.at_block_begin(self.entry):
                self._consts[key] = arith.ConstantOp(f32(), float(v)).result
        return self._consts[key]

    def fv(self, v: float, lanes: int | None = None) -> ir.Value:
        lanes = lanes or self.vec
        key = ("fv", float(v), lanes)
        if key not in self._consts:
            with ir.InsertionPoint.at_block_begin(self.entry):
                attr = ir.DenseElementsAttr.get_splat(vtype(lanes), ir.FloatAttr.get(f32(), float(v)))
                self._consts[key] = arith.ConstantOp(vtype(lanes), attr).result
        return self._consts[key]

    # --- index arithmetic (folds Python ints) ------------------------------------------------------
    def add(self, a, b):
        if isinstance(a, int) and isinstance(b, int):
            return a + b
        if isinstance(b, int) and b == 0:
            return a
        if isinstance(a, int) and a == 0:
            return b
        return arith.AddIOp(self.idx(a), self.idx(b)).result

    def mul(self, a, b):
        if isinstance(a, int) and isinstance(b, int):
            return a * b
        if isinstance(b, int) and b == 1:
            return a
        if isinstance(a, int) and a == 1:
            return b
        if (isinstance(a, int) and a == 0) or (isinstance(b, int) and b == 0):
            return 0
        return arith.MulIOp(self.idx(a), self.idx(b)).result

    def lin(self, *terms, const: int = 0):
        """sum(a * b for a, b in terms) + const."""
        acc = const
        for a, b in terms:
            acc = self.add(acc, self.mul(a, b))
        return acc

    # --- loops -------------------------------------------------------------------------------
    @contextmanager
    def loop(self, lb, ub, step=1):
        """`with kb.loop(0, n) as i:` emits scf.for; Python-int bounds become hoisted constants."""
        op = scf.ForOp(self.idx(lb), self.idx(ub), self.idx(step))
        with ir.InsertionPoint(op.body):
            yield op.induction_variable
            scf.YieldOp([])

    # --- memory ------------------------------------------------------------------------------
    def load(self, buf, i):
        return memref.LoadOp(buf, [self.idx(i)]).result

    def store(self, v, buf, i):
        memref.StoreOp(v, buf, [self.idx(i)])

    def vload(self, buf, i, lanes=None):
        return vector.LoadOp(vtype(lanes or self.vec), buf, [self.idx(i)]).result

    def vstore(self, v, buf, i):
        vector.StoreOp(v, buf, [self.idx(i)])

    def alloc(self, n: int) -> ir.Value:
        return memref.AllocOp(flat_type(n), [], []).result

    def dealloc(self, buf: ir.Value) -> None:
        memref.DeallocOp(buf)

    def splat(self, s, lanes=None):
        return vector.BroadcastOp(vtype(lanes or self.vec), s).result

    # --- float math on scalars or vectors (same op names) ------------------------------------------
    def fadd(self, a, b):
        return arith.AddFOp(a, b).result

    def fsub(self, a, b):
        return arith.SubFOp(a, b).result

    def fmul(self, a, b):
        return arith.MulFOp(a, b).result

    def fdiv(self, a, b):
        return arith.DivFOp(a, b).result

    def fmax(self, a, b):
        return arith.MaximumFOp(a, b).result

    def fmin(self, a, b):
        return arith.MinimumFOp(a, b).result

    def const_like(self, like: ir.Value, v: float):
        if isinstance(like.type, ir.VectorType):
            return self.fv(v, like.type.shape[0])
        return self.f(v)

    def activation(self, x: ir.Value, act: str, params=()) -> ir.Value:
        """torch's activation semantics on a scalar or vector value."""
        c = lambda v: self.const_like(x, v)  # noqa: E731
        if act == "none":
            return x
        if act == "relu":
            return self.fmax(x, c(0.0))
        if act == "relu6":
            return self.fmin(self.fmax(x, c(0.0)), c(6.0))
        if act == "clamp":
            return self.fmin(self.fmax(x, c(params[0])), c(params[1]))
        if act == "leaky_relu":
            neg = arith.CmpFOp(arith.CmpFPredicate.OLT, x, c(0.0)).result
            return arith.SelectOp(neg, self.fmul(x, c(params[0])), x).result
        vec = isinstance(x.type, ir.VectorType)
        if act == "sigmoid":
            # Vectors use the inline exp: LLVM would scalarise a vector math.exp into expf calls.
            neg = self.fsub(c(0.0), x)
            e = self._vexp(neg) if vec else math.ExpOp(neg).result
            return self.fdiv(c(1.0), self.fadd(c(1.0), e))
        if act == "tanh":
            if not vec:
                return math.TanhOp(x).result
            # tanh|x| = (1 - e^{-2|x|}) / (1 + e^{-2|x|}), sign restored (same as the conv epilogue).
            t = self._vexp(self.fmul(math.AbsFOp(x).result, c(-2.0)))
            return math.CopySignOp(self.fdiv(self.fsub(c(1.0), t), self.fadd(c(1.0), t)), x).result
        if act == "hardswish":
            r6 = self.fmin(self.fmax(self.fadd(x, c(3.0)), c(0.0)), c(6.0))
            return self.fmul(x, self.fmul(r6, c(1.0 / 6.0)))
        if act in EXTRA_ACTIVATIONS:
            return extra_activation(x, act, params, c, self._vexp if vec else (lambda v: math.ExpOp(v).result))
        raise NotImplementedError(f"activation '{act}' has no lowering")

    def _vexp(self, x: ir.Value) -> ir.Value:
        from .kernels._builder import vector_exp

        return vector_exp(x, lambda v, vt: self.fv(v, vt.shape[0]))

    # --- bulk helpers ------------------------------------------------------------------------
    def map_range(self, n: int, body, lanes=None):
        """Call body(offset, lanes) over [0, n): vectors of `lanes`, then a scalar tail (lanes=1)."""
        lanes = lanes or self.vec
        nv = (n // lanes) * lanes
        if nv:
            with self.loop(0, nv, lanes) as i:
                body(i, lanes)
        if n - nv:
            with self.loop(nv, n) as i:
                body(i, 1)

    def copy(self, src, src_off, dst, dst_off, n: int):
        """Copy n contiguous floats; offsets may be Values or ints."""
        def body(i, lanes):
            s = self.add(src_off, i)
            d = self.add(dst_off, i)
            if lanes == 1:
                self.store(self.load(src, s), dst, d)
            else:
                self.vstore(self.vload(src, s, lanes), dst, d)
        self.map_range(n, body)

    def fill(self, dst, dst_off, n: int, value: float):
        def body(i, lanes):
            d = self.add(dst_off, i)
            if lanes == 1:
                self.store(self.f(value), dst, d)
            else:
                self.vstore(self.fv(value, lanes), dst, d)
        self.map_range(n, body)


def new_func(name: str, arg_sizes: list[int], private: bool = True) -> tuple[func.FuncOp, list[ir.Value]]:
    """A `(memref<n0xf32>, memref<n1xf32>, ...) -> ()` function at the current insertion point."""
    fn = func.FuncOp(name, ([flat_type(n) for n in arg_sizes], []))
    if private:
        fn.attributes["sym_visibility"] = ir.StringAttr.get("private")
    fn.add_entry_block()
    return fn, list(fn.entry_block.arguments)


def finish(fn: func.FuncOp) -> None:
    with ir.InsertionPoint(fn.entry_block):
        func.ReturnOp([])


def global_constant(module_body_ip: ir.InsertionPoint, name: str, data: np.ndarray, dtype=np.float32,
                    alignment: int = 64) -> tuple[str, ir.MemRefType]:
    """A private constant `memref.global` holding `data` flattened; returns (symbol, type)."""
    arr = np.ascontiguousarray(data, dtype=dtype).reshape(-1)
    if dtype == np.float32:
        elem = f32()
    elif dtype == np.int32:
        elem = ir.IntegerType.get_signless(32)
    else:
        raise TypeError(dtype)
    mtype = ir.MemRefType.get([arr.size], elem)
    ttype = ir.RankedTensorType.get([arr.size], elem)
    attr = ir.DenseElementsAttr.get(arr, type=elem, shape=[arr.size])
    del ttype
    with module_body_ip:
        memref.GlobalOp(name, ir.TypeAttr.get(mtype), sym_visibility="private", initial_value=attr, constant=True,
                        alignment=alignment)
    return name, mtype
