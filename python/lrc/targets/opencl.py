"""The OpenCL target: lr -> gpu.func kernels -> Kernel SPIR-V (MLIR) -> SPIR 1.2 bitcode
(llvm-spirv-15) -> pyopencl on any OpenCL device that takes SPIR (PoCL on CPU-only machines).
Options: `device` picks a device by name substring, `validate` runs spirv-val on the binary."""
from __future__ import annotations

from torch_mlir import ir

OPTIONS: dict = {"device": None, "validate": True}


def build(lr_module: ir.Module, *, opt_level: int = 3, device: str | None = None, validate: bool = True):
    from ..gpu.opencl_runtime import OpenCLRuntime
    from ..gpu.program import build_program
    from ..gpu.spirv import opencl_spir_bitcode

    del opt_level  # the driver's compiler decides
    prog = build_program(lr_module, "opencl")
    rt = OpenCLRuntime(prog, opencl_spir_bitcode(prog.module, validate=validate), device=device)
    return rt.run, None
