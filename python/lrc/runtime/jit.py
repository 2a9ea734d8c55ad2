"""Calling JIT-compiled kernels with numpy arrays.

Functions must carry `llvm.emit_c_interface`; every argument is a memref. Arrays are passed by
descriptor (no copy), so outputs are written straight into the numpy arrays the caller owns.
"""
from __future__ import annotations

import ctypes

import numpy as np
from torch_mlir import ir
from torch_mlir.execution_engine import ExecutionEngine

from ..targets.llvm import lower_to_llvm

_DESC_TYPES: dict[int, type] = {}


def _descriptor_type(rank: int) -> type:
    """MLIR's ranked memref descriptor; one ctypes class per rank (building a class costs ~20 us)."""
    t = _DESC_TYPES.get(rank)
    if t is None:
        fields = [("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p), ("offset", ctypes.c_int64)]
        if rank:
            fields += [("shape", ctypes.c_int64 * rank), ("strides", ctypes.c_int64 * rank)]
        t = type(f"MemRef{rank}d", (ctypes.Structure,), {"_fields_": fields})
        _DESC_TYPES[rank] = t
    return t


class _Prepared:
    """Descriptors and the packed `void**` argument array of one call signature, built once; a call
    only rewrites the data pointers."""

    def __init__(self, fn, arrays):
        self.fn = fn
        n = len(arrays)
        self.descs = []
        self.ptrs = []  # the C interface takes a pointer to a pointer to each descriptor
        self.packed = (ctypes.c_void_p * n)()
        for i, a in enumerate(arrays):
            d = _descriptor_type(a.ndim)()
            d.offset = 0
            if a.ndim:
                d.shape[:] = list(a.shape)
                d.strides[:] = [s // a.itemsize for s in a.strides]
            p = ctypes.pointer(d)
            pp = ctypes.pointer(p)
            self.descs.append(d)
            self.ptrs.append((p, pp))
            self.packed[i] = ctypes.cast(pp, ctypes.c_void_p)

    def __call__(self, arrays):
        for d, a in zip(self.descs, arrays):
            addr = a.ctypes.data
            d.allocated = addr
            d.aligned = addr
        self.fn(self.packed)


class JitModule:
    """An LLVM-lowered module held by an ExecutionEngine."""

    def __init__(self, module: ir.Module, opt_level: int = 3, shared_libs: list[str] | None = None,
                 threads: int = 1):
        lower_to_llvm(module, threads=threads)
        self.engine = ExecutionEngine(module, opt_level=opt_level, shared_libs=shared_libs or [])
        self._prepared: dict = {}

    def call(self, name: str, *arrays: np.ndarray) -> None:
        """Call `name(memref, memref, ...)`; arrays must be C-contiguous and of the declared shape/dtype.

        Descriptors are cached per (name, shapes, dtypes): rebuilding them with ctypes cost ~0.2 ms
        per call, which is a visible share of a small model's run time.
        """
        for a in arrays:
            if not (isinstance(a, np.ndarray) and a.flags["C_CONTIGUOUS"]):
                raise ValueError(f"argument to {name} must be a C-contiguous numpy array")
        key = (name,) + tuple((a.shape, a.dtype.str) for a in arrays)
        prep = self._prepared.get(key)
        if prep is None:
            prep = _Prepared(self.engine.lookup(name), arrays)
            self._prepared[key] = prep
        prep(arrays)
