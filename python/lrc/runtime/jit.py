"""Calling JIT-compiled kernels with numpy arrays.

Functions must carry `llvm.emit_c_interface`; every argument is a memref. Arrays are passed by
descriptor (no copy), so outputs are written straight into the numpy arrays the caller owns.
"""
from __future__ import annotations

import ctypes

import numpy as np
from torch_mlir import ir
from torch_mlir.execution_engine import ExecutionEngine
from torch_mlir.runtime import np_to_memref

from ..targets.llvm import lower_to_llvm


class JitModule:
    """An LLVM-lowered module held by an ExecutionEngine."""

    def __init__(self, module: ir.Module, opt_level: int = 3, shared_libs: list[str] | None = None):
        lower_to_llvm(module)
        self.engine = ExecutionEngine(module, opt_level=opt_level, shared_libs=shared_libs or [])

    def call(self, name: str, *arrays: np.ndarray) -> None:
        """Call `name(memref, memref, ...)`; arrays must be C-contiguous and of the declared shape/dtype."""
        ptrs = []
        keep = []
        for a in arrays:
            if not (isinstance(a, np.ndarray) and a.flags["C_CONTIGUOUS"]):
                raise ValueError(f"argument to {name} must be a C-contiguous numpy array")
            desc = np_to_memref.get_ranked_memref_descriptor(a)
            keep.append(desc)
            ptrs.append(ctypes.pointer(ctypes.pointer(desc)))
        self.engine.invoke(name, *ptrs)
