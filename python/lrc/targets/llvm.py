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


def llvm_pipeline(threads: int = 1) -> str:
    """LLVM_PIPELINE; with threads > 1 the entry's scf.parallel loops (one per split layer) become
    OpenMP parallel regions of `threads` threads (calls into libomp's __kmpc_* API)."""
    if threads == 1:
        return LLVM_PIPELINE
    return (LLVM_PIPELINE.replace("builtin.module(", f"builtin.module(convert-scf-to-openmp{{num-threads={threads}}},", 1)
            .replace("reconcile-unrealized-casts)", "convert-openmp-to-llvm, reconcile-unrealized-casts)"))


# False leaves mul / add unfused (A/B runs; docs/kernels.md, Round 9).
CONTRACT = True
_CONTRACTIBLE = {"arith.mulf", "arith.addf", "arith.subf"}


def allow_contraction(module: ir.Module) -> None:
    """Mark float mul / add / sub `fastmath<contract>` so that LLVM may fuse a multiply and the add
    that consumes it into one FMA (it never does without the flag); only rounding changes, once
    instead of twice."""
    attr = ir.Attribute.parse("#arith.fastmath<contract>")

    def visit(op):
        if op.name in _CONTRACTIBLE:
            op.attributes["fastmath"] = attr
        return ir.WalkResult.ADVANCE
    module.operation.walk(visit)


def lower_to_llvm(module: ir.Module, threads: int = 1) -> ir.Module:
    """Lower `module` in place to the LLVM dialect and return it."""
    with module.context:
        if CONTRACT:
            allow_contraction(module)
        PassManager.parse(llvm_pipeline(threads)).run(module.operation)
    return module


OPENMP_LIB_DIRS = ("/usr/lib/llvm-22/lib",)


def openmp_library() -> str:
    """Path of LLVM's OpenMP runtime (libomp), which threaded code calls; a clear error without it."""
    import os

    for d in OPENMP_LIB_DIRS:
        path = os.path.join(d, "libomp.so")
        if os.path.exists(path):
            return path
    raise RuntimeError("threads > 1 needs LLVM's OpenMP runtime (libomp.so in "
                       f"{' or '.join(OPENMP_LIB_DIRS)}): install the Debian package libomp-22-dev")


def translate_to_llvm_ir(module: ir.Module) -> str:
    """LLVM IR text of an LLVM-dialect module (for clang: AOT host and cross targets)."""
    from torch_mlir._mlir_libs import _mlirDialectsLLVM

    return str(_mlirDialectsLLVM.translate_module_to_llvmir(module.operation))
