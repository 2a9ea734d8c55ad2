"""Lowering of kernel-level IR (func/scf/vector/memref/arith/math) to the LLVM dialect.

Every target that goes through LLVM (host JIT, host AOT, arm64) shares this one pipeline so that a
kernel tested under the JIT is the same code that ships in a shared object.
"""
from __future__ import annotations

from torch_mlir import ir
from torch_mlir.passmanager import PassManager

# math-expand-ops rewrites tanh and friends into exp, which LLVM lowers to libm expf calls (the
# polynomial-approximation pass is not registered in these bindings).
LLVM_PIPELINE = (
    "builtin.module("
    "func.func(math-expand-ops),"
    "convert-vector-to-scf, convert-linalg-to-loops, lower-affine, convert-scf-to-cf,"
    "expand-strided-metadata, convert-vector-to-llvm{enable-x86=false},"
    "finalize-memref-to-llvm, convert-math-to-llvm, convert-arith-to-llvm, convert-index-to-llvm,"
    "convert-ub-to-llvm, convert-cf-to-llvm, convert-func-to-llvm, reconcile-unrealized-casts)"
)


def lower_to_llvm(module: ir.Module) -> ir.Module:
    """Lower `module` in place to the LLVM dialect and return it."""
    with module.context:
        PassManager.parse(LLVM_PIPELINE).run(module.operation)
    return module


def translate_to_llvm_ir(module: ir.Module) -> str:
    """LLVM IR text of an LLVM-dialect module (for clang: AOT host and cross targets)."""
    from torch_mlir._mlir_libs import _mlirDialectsLLVM

    return str(_mlirDialectsLLVM.translate_module_to_llvmir(module.operation))
