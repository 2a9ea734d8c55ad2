"""The host target: x86-64 with AVX2/FMA, run through MLIR's ExecutionEngine (JIT)."""
from __future__ import annotations

from torch_mlir import ir

from ..codegen.lower import lower_to_kernels
from ..runtime.jit import JitModule

HOST_VEC = 8  # AVX2: 8 f32 lanes
OPTIONS: dict = {}


def build_host(lr_module: ir.Module, opt_level: int = 3, entry: str = "forward"):
    """JIT-compile; returns (runner(*inputs, *outputs), artifact) where the artifact keeps the
    LLVM-dialect module so that `save()` can emit a shared object later without recompiling."""
    kernels = lower_to_kernels(lr_module, vec=HOST_VEC)
    jit = JitModule(kernels, opt_level=opt_level)

    def run(*arrays):
        jit.call(entry, *arrays)

    artifact = {"llvm_module": kernels, "entry": entry, "jit": jit}
    return run, artifact


def build(lr_module: ir.Module, *, opt_level: int = 3, **options):
    return build_host(lr_module, opt_level=opt_level)
