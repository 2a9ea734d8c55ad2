"""What a runtime needs to run a compiled GPU program, free of MLIR: buffers, kernel specs, launch shapes.

Kept apart from the builders (which need the MLIR bindings) so that a saved artifact loads and runs
on a machine that has only numpy and a Vulkan / OpenCL binding (see artifact.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_GROUPS = 65535  # per grid dimension: Vulkan's guaranteed minimum, also PoCL's limit
# Mesa's llvmpipe (lavapipe) ends every loop of a shader invocation once 65535 loop trips have run in
# total (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS guard against hangs): past it a kernel returns wrong
# numbers without any error. Kernels stay well under it; the Vulkan runtime refuses one that does not.
LLVMPIPE_LOOP_LIMIT = 65535


@dataclass
class KArg:
    kind: str  # "buf" (an activation buffer of the program) | "param" (a constant array)
    buffer: int = -1
    array: np.ndarray | None = None
    writes: bool = False


@dataclass
class Launch:
    block: tuple[int, int, int]
    grid: tuple[int, int, int]


@dataclass
class GpuKernelSpec:
    """What the runtime needs to run one compiled kernel."""

    name: str
    args: list[KArg]
    launch: Launch
    layer: str = ""  # lr op name (+ user label) for messages and per-layer reports
    variant: str = ""  # which kernel the layer got, where there is a choice (conv2d: dense / sparse-...)
    iterations: int = 0  # loop trips (plus exit tests) of one work item, an upper bound


@dataclass
class BufferSpec:
    numel: int
    kind: str  # "input" | "temp" | "const"
    data: np.ndarray | None = None  # constants
    dtype: type = np.float32


@dataclass
class GpuProgram:
    """Everything a runtime needs besides the compiled binaries (which follow `kernels` order)."""

    buffers: list[BufferSpec] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)  # buffer id per model input
    outputs: list[int] = field(default_factory=list)  # buffer id per model output
    kernels: list[GpuKernelSpec] = field(default_factory=list)
    module: ir.Module | None = None  # gpu.module(s) with the kernels, before SPIR-V conversion

    def kernel_report(self) -> list[tuple[str, str]]:
        """(layer, kernel variant) per kernel: which conv kernel each layer got (dense / sparse-...)."""
        return [(k.layer, k.variant or "generic") for k in self.kernels]

    def add_buffer(self, spec: BufferSpec) -> int:
        self.buffers.append(spec)
        return len(self.buffers) - 1
