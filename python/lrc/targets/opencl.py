"""The OpenCL target: lr -> gpu.func kernels -> Kernel SPIR-V (MLIR) -> pyopencl, as SPIR-V IL on
devices that take it and as SPIR 1.2 bitcode (llvm-spirv-15) on those that take SPIR (PoCL on
CPU-only machines).
Options: `device` picks a device by name substring, `validate` runs spirv-val on the binary."""
from __future__ import annotations

from torch_mlir import ir

OPTIONS: dict = {"device": None, "validate": True}


def build(lr_module: ir.Module, *, opt_level: int = 3, device: str | None = None, validate: bool = True):
    from ..gpu.opencl_runtime import OpenCLRuntime
    from ..gpu.program import build_program
    from ..gpu import spirv

    del opt_level  # the driver's compiler decides
    prog = build_program(lr_module, "opencl")
    il, bitcode = spirv.opencl_binaries(prog.module, validate=validate)
    rt = OpenCLRuntime(prog, bitcode, device=device, il=il)
    prog.module = None
    return rt.run, {"gpu": {"prog": prog, "binaries": [bitcode, il], "binary_kinds": ["spir-bitcode", "spirv-kernel"],
                            "device": device}}
