"""Building one GPU kernel (`gpu.func`) per layer with the MLIR Python builders.

Kernels are scalar SIMT code over flat buffers: every work item computes one output element (or a
small register block of them) from index arithmetic on static shapes, so the same `gpu.func` lowers
to Shader-capability SPIR-V for Vulkan and Kernel-capability SPIR-V for OpenCL (see spirv.py).
A kernel declares its arguments (operand buffers, constant parameter arrays, the result buffer)
and its launch shape; the driver (program.py) owns buffers and binds them in declaration order.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, gpu, scf

from ..codegen.builder import KernelBuilder
from .spec import MAX_GROUPS, GpuKernelSpec, KArg, Launch  # noqa: F401  (re-exported)

class _EntryHolder:
    """KernelBuilder only needs `.entry_block` to hoist constants into."""

    def __init__(self, block):
        self.entry_block = block


class GpuBuilder(KernelBuilder):
    """Scalar index/float helpers (inherited) plus the SIMT pieces: ids, guards, selects."""

    def __init__(self, block, block_size):
        super().__init__(_EntryHolder(block), vec=1)
        self.block_size = block_size
        # Loop trips one work item runs, counted while emitting (each loop also costs one test at its
        # exit): Mesa's llvmpipe/lavapipe silently stops a shader after 65535 in total (spec.py).
        self.iterations = 0
        self._enclosing = [1]

    @staticmethod
    def _trip(lb, ub, bound):
        if isinstance(lb, int) and isinstance(ub, int):
            return max(ub - lb, 0)
        if bound is None:
            raise ValueError("a loop with run-time bounds needs bound= (its largest trip count)")
        return bound

    @contextmanager
    def _counted(self, trip: int):
        self.iterations += (trip + 1) * self._enclosing[-1]
        self._enclosing.append(self._enclosing[-1] * trip)
        try:
            yield
        finally:
            self._enclosing.pop()

    @contextmanager
    def loop(self, lb, ub, step=1, bound: int | None = None):
        """scf.for; `bound` caps the trip count where lb/ub are run-time values."""
        trip = -(-self._trip(lb, ub, bound) // step)
        with self._counted(trip):
            op = scf.ForOp(self.idx(lb), self.idx(ub), self.idx(step))
            with ir.InsertionPoint(op.body):
                yield op.induction_variable
                scf.YieldOp([])

    def thread(self, dim: str) -> ir.Value:
        return gpu.ThreadIdOp(getattr(gpu.Dimension, dim)).result

    def group(self, dim: str) -> ir.Value:
        return gpu.BlockIdOp(getattr(gpu.Dimension, dim)).result

    def div(self, a, b: int):
        if isinstance(a, int):
            return a // b
        return a if b == 1 else arith.DivUIOp(a, self.idx(b)).result

    def rem(self, a, b: int):
        if isinstance(a, int):
            return a % b
        return self.idx(0) if b == 1 else arith.RemUIOp(a, self.idx(b)).result

    def unravel(self, i, shape):
        """Row-major coordinates of flat index i in `shape` (Python ints for unit dims)."""
        coords = []
        for d in reversed(shape):
            coords.append(self.rem(i, d) if d != 1 else 0)
            i = self.div(i, d)
        return coords[::-1]

    def cmp(self, pred: str, a, b) -> ir.Value:
        return arith.CmpIOp(getattr(arith.CmpIPredicate, pred), self.idx(a), self.idx(b)).result

    def fcmp(self, pred: str, a, b) -> ir.Value:
        return arith.CmpFOp(getattr(arith.CmpFPredicate, pred), a, b).result

    def and_(self, *conds):
        conds = [c for c in conds if c is not None]
        if not conds:
            return None
        acc = conds[0]
        for c in conds[1:]:
            acc = arith.AndIOp(acc, c).result
        return acc

    def select(self, cond, a, b):
        if cond is None:
            return a
        return arith.SelectOp(cond, self.idx(a) if isinstance(a, int) else a,
                              self.idx(b) if isinstance(b, int) else b).result

    def clamp(self, i, lo: int, hi: int):
        """min(max(i, lo), hi) on a signed index."""
        i = arith.MaxSIOp(self.idx(i), self.idx(lo)).result
        return arith.MinSIOp(i, self.idx(hi)).result

    def iload(self, buf, i) -> ir.Value:
        """An int32 table entry as an index."""
        return arith.IndexCastOp(ir.IndexType.get(), self.load(buf, i)).result

    @contextmanager
    def when(self, cond):
        if cond is None:
            yield
            return
        op = scf.IfOp(cond)
        with ir.InsertionPoint(op.then_block):
            yield
            scf.YieldOp([])

    def reduce_loop(self, lb, ub, inits: list[ir.Value], body, bound: int | None = None):
        """scf.for carrying f32 accumulators: body(i, accs) -> new accs; returns the final accs."""
        with self._counted(self._trip(lb, ub, bound)):
            op = scf.ForOp(self.idx(lb), self.idx(ub), self.idx(1), inits)
            with ir.InsertionPoint(op.body):
                scf.YieldOp(body(op.induction_variable, list(op.inner_iter_args)))
        return list(op.results)


class GpuKernel:
    """Declare arguments and the launch, then `build(body)` emits the `gpu.func`.

    `buffers` maps the layer's operand positions to program buffer ids; binding one buffer twice
    (`x + x`) becomes one argument, since Vulkan forbids aliasing writable bindings and it saves a slot.
    """

    def __init__(self, name: str, operand_buffers: list[int], out_buffer: int, label: str = ""):
        self.name = name
        self.operand_buffers = operand_buffers
        self.out_buffer = out_buffer
        self.label = label
        self.args: list[KArg] = []
        self.types: list[ir.Type] = []
        self._bound: dict[int, int] = {}
        self.launch: Launch | None = None
        self.variant = ""
        self.host = None  # program.py's _Host: scratch buffers and a module to emit each kernel into

    def stage(self, suffix: str, out_buffer: int) -> "GpuKernel":
        """Another kernel of the same layer (reductions in steps), writing `out_buffer`."""
        k = GpuKernel(f"{self.name}_{suffix}", self.operand_buffers, out_buffer, self.label)
        k.host, k.variant = self.host, self.variant
        return k

    def scratch(self, size: int) -> int:
        """A temporary buffer of the program, for values passed between a layer's kernels."""
        return self.host.scratch(size)

    def bind(self, buffer: int, size: int, writes: bool = False) -> int:
        """Bind a program buffer other than the layer's operands and result (scratch)."""
        self.args.append(KArg("buf", buffer=buffer, writes=writes))
        self.types.append(self._type(size, np.float32))
        return len(self.args) - 1

    @staticmethod
    def _type(n: int, dtype) -> ir.MemRefType:
        elem = ir.F32Type.get() if dtype == np.float32 else ir.IntegerType.get_signless(32)
        return ir.MemRefType.get([max(int(n), 1)], elem)

    def inp(self, i: int, size: int) -> int:
        b = self.operand_buffers[i]
        if b not in self._bound:
            self._bound[b] = len(self.args)
            self.args.append(KArg("buf", buffer=b))
            self.types.append(self._type(size, np.float32))
        return self._bound[b]

    def param(self, array) -> int:
        arr = np.ascontiguousarray(array)
        arr = arr.astype(np.int32 if np.issubdtype(arr.dtype, np.integer) else np.float32).reshape(-1)
        if arr.size == 0:
            arr = np.zeros(1, arr.dtype)
        self.args.append(KArg("param", array=arr))
        self.types.append(self._type(arr.size, arr.dtype))
        return len(self.args) - 1

    def out(self, size: int) -> int:
        self.args.append(KArg("buf", buffer=self.out_buffer, writes=True))
        self.types.append(self._type(size, np.float32))
        return len(self.args) - 1

    # --- launches ----------------------------------------------------------------------------
    def linear_launch(self, total: int, block: int = 64) -> None:
        """`total` work items over a 1-D block; groups fold into y past the per-dimension limit."""
        groups = -(-total // block)
        gx = min(groups, MAX_GROUPS)
        gy = -(-groups // gx)
        if gy > MAX_GROUPS:
            raise NotImplementedError(f"{self.label}: {total} work items exceed the GPU grid limits")
        self.launch = Launch((block, 1, 1), (gx, gy, 1))

    def grid_launch(self, work: tuple[int, int, int], block: tuple[int, int, int]) -> None:
        grid = tuple(-(-w // b) for w, b in zip(work, block))
        if max(grid) > MAX_GROUPS:
            raise NotImplementedError(f"{self.label}: launch grid {grid} exceeds the GPU limit {MAX_GROUPS}")
        self.launch = Launch(tuple(block), grid)

    def linear_id(self, kb: GpuBuilder) -> ir.Value:
        bx, by = self.launch.block[0], self.launch.grid[0]
        g = kb.group("x")
        if self.launch.grid[1] > 1:
            g = kb.add(g, kb.mul(kb.group("y"), by))
        return kb.add(kb.mul(g, bx), kb.thread("x"))

    # --- emission ----------------------------------------------------------------------------
    def build(self, body) -> GpuKernelSpec:
        """Emit at the current insertion point (a gpu.module body); body(kb, args) writes the code."""
        assert self.launch is not None, "declare a launch before build()"
        with ir.InsertionPoint(self.host.module_block(self.name)) if self.host else nullcontext():
            ftype = ir.FunctionType.get(self.types, [])
            fn = gpu.GPUFuncOp(ir.TypeAttr.get(ftype), sym_name=self.name, kernel=True)
            fn.attributes["spirv.entry_point_abi"] = ir.Attribute.parse(
                "#spirv.entry_point_abi<workgroup_size = [%d, %d, %d]>" % self.launch.block)
            block = fn.body.blocks.append(*self.types)
            kb = GpuBuilder(block, self.launch.block)
            with ir.InsertionPoint(block):
                body(kb, list(block.arguments))
                gpu.ReturnOp([])
        return GpuKernelSpec(self.name, self.args, self.launch, self.label, self.variant, kb.iterations)

    def build_elementwise(self, total: int, fn, block: int = 64) -> GpuKernelSpec:
        """One work item per output element: fn(kb, args, i) stores element i."""
        self.linear_launch(total, block)

        def body(kb, a):
            i = self.linear_id(kb)
            exact = self.launch.grid[0] * self.launch.grid[1] * block == total
            with kb.when(None if exact else kb.cmp("ult", i, total)):
                fn(kb, a, i)
        return self.build(body)

