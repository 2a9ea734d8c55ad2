"""The Vulkan target: lr -> gpu.func kernels -> Shader SPIR-V (MLIR) -> wgpu on any Vulkan device
(Mesa lavapipe on CPU-only machines). Options: `device` picks an adapter by name substring,
`validate` runs spirv-val on every binary.
`CompiledModel.save` writes the shaders and the launch plan (lrc/gpu/artifact.py)."""
from __future__ import annotations

from torch_mlir import ir

OPTIONS: dict = {"device": None, "validate": True}


def build(lr_module: ir.Module, *, opt_level: int = 3, device: str | None = None, validate: bool = True):
    from ..gpu.program import build_program
    from ..gpu.spirv import vulkan_binaries
    from ..gpu.vulkan_runtime import VulkanRuntime

    del opt_level  # the driver's shader compiler decides
    prog = build_program(lr_module, "vulkan")
    binaries = vulkan_binaries(prog.module, validate=validate)
    rt = VulkanRuntime(prog, binaries, device=device)
    prog.module = None  # the MLIR module is not needed to run or save; free it
    return rt.run, {"gpu": {"prog": prog, "binaries": binaries, "binary_kinds": ["spirv-shader"] * len(binaries),
                            "device": device}}
