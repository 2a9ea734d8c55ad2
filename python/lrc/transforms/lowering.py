"""Lowering passes: torch dialect -> lr, lr -> kernels (memref/scf/vector), kernels -> LLVM dialect."""
from __future__ import annotations

# Lowerings import lazily: lr-opt runs that only fuse should not pay for importing torch.
from .base import Option, Pass, PassError, register


@register
class RaiseTorch(Pass):
    argument = "lr-raise-torch"
    summary = "torch dialect (aten ops, as imported by torch-mlir) -> lr dialect, one op per layer"

    def run(self, module):
        from lrc.importer.raise_torch import ImportError_, UnsupportedOpError, raise_torch_module

        try:
            return raise_torch_module(module)
        except (ImportError_, UnsupportedOpError) as e:
            loc = getattr(e, "location", None)
            if loc is None:
                raise
            loc.emit_error(str(e))
            raise PassError(str(e), reported=True) from None


@register
class LowerToKernels(Pass):
    argument = "lr-lower-to-kernels"
    summary = "lr layers -> kernel functions on flat memrefs (scf/vector/arith), one entry point per function"
    options = {"vec": Option(int, 8, "f32 lanes per vector: 8 for AVX2, 4 for NEON")}

    def run(self, module):
        from lrc.codegen.lower import LoweringError, LoweringNotImplemented, lower_to_kernels

        try:
            return lower_to_kernels(module, vec=self.vec)
        except (LoweringError, LoweringNotImplemented) as e:
            if e.location is None:
                raise
            e.location.emit_error(str(e))
            raise PassError(str(e), reported=True) from None


@register
class LowerToLLVM(Pass):
    argument = "lr-lower-to-llvm"
    summary = "kernel-level IR -> LLVM dialect (the pipeline every LLVM target shares)"

    def run(self, module):
        from lrc.targets.llvm import lower_to_llvm

        lower_to_llvm(module)
