"""Lowering passes: torch dialect -> lr, lr -> kernels (memref/scf/vector), kernels -> LLVM dialect."""
from __future__ import annotations

# Lowerings import lazily: lr-opt runs that only fuse should not pay for importing torch.
from .base import Option, Pass, register


@register
class RaiseTorch(Pass):
    argument = "lr-raise-torch"
    summary = "torch dialect (aten ops, as imported by torch-mlir) -> lr dialect, one op per layer"

    def run(self, module):
        from lrc.importer.raise_torch import raise_torch_module

        return raise_torch_module(module)


@register
class LowerToKernels(Pass):
    argument = "lr-lower-to-kernels"
    summary = "lr layers -> kernel functions on flat memrefs (scf/vector/arith), one entry point per function"
    options = {"vec": Option(int, 8, "f32 lanes per vector: 8 for AVX2, 4 for NEON")}

    def run(self, module):
        from lrc.codegen.lower import lower_to_kernels

        return lower_to_kernels(module, vec=self.vec)


@register
class LowerToLLVM(Pass):
    argument = "lr-lower-to-llvm"
    summary = "kernel-level IR -> LLVM dialect (the pipeline every LLVM target shares)"

    def run(self, module):
        from lrc.targets.llvm import lower_to_llvm

        lower_to_llvm(module)
