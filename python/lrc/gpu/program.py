"""`lr` function -> a GPU program: buffers, one kernel per layer, and the MLIR module holding them.

Every tensor value gets its own device buffer (reshapes alias their operand; constants become
buffers uploaded once with the weights), so a model's outputs are simply read back from the
buffers of the returned values and kernels never alias a binding. Layers run in program order.
"""
from __future__ import annotations

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import gpu

from lrc.dialects import lr

from ..codegen.emit import LayerOp
from . import ops_dense, ops_simple
from .builder import GpuKernel
from .spec import BufferSpec, GpuProgram  # noqa: F401  (re-exported)

EMITTERS = {
    "conv2d": ops_dense.emit_conv2d, "conv_transpose2d": ops_dense.emit_conv_transpose2d,
    "linear": ops_dense.emit_linear,
    **{name: ops_simple.emit_activation for name in ops_simple.ACT_OPS},
    "prelu": ops_simple.emit_prelu, "batch_norm": ops_simple.emit_batch_norm,
    "instance_norm": ops_simple.emit_instance_norm,
    "add": ops_simple.emit_binary, "sub": ops_simple.emit_binary, "mul": ops_simple.emit_binary,
    "div": ops_simple.emit_binary, "maximum": ops_simple.emit_binary, "minimum": ops_simple.emit_binary,
    "concat": ops_simple.emit_concat, "slice": ops_simple.emit_slice, "softmax": ops_simple.emit_softmax,
    "reduce": ops_simple.emit_reduce, "permute": ops_simple.emit_permute,
    "pad": ops_simple.emit_pad, "max_pool2d": ops_simple.emit_pool, "avg_pool2d": ops_simple.emit_pool,
    "adaptive_avg_pool2d": ops_simple.emit_adaptive_avg_pool, "upsample": ops_simple.emit_upsample,
    "pixel_shuffle": ops_simple.emit_pixel_shuffle,
}


class GpuLoweringError(ValueError):
    def __init__(self, message: str, location=None):
        super().__init__(message)
        self.location = location


class GpuNotImplemented(NotImplementedError):
    def __init__(self, message: str, location=None):
        super().__init__(message)
        self.location = location


def _shape(v) -> tuple[int, ...]:
    return tuple(v.type.shape)


def _numel(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


def target_env(api: str) -> str:
    if api == "vulkan":
        return ("#spirv.target_env<#spirv.vce<v1.0, [Shader], [SPV_KHR_storage_buffer_storage_class]>, "
                "#spirv.resource_limits<>>")
    return "#spirv.target_env<#spirv.vce<v1.0, [Kernel, Addresses, Int64], []>, api=OpenCL, #spirv.resource_limits<>>"


class _Host:
    """What an emitter may ask of the program: scratch buffers, and where each kernel goes (Vulkan:
    a gpu.module per kernel, as each becomes a shader module with bindings 0..n; OpenCL: one)."""

    def __init__(self, prog: GpuProgram, new_module, shared):
        self.prog, self.new_module, self.shared = prog, new_module, shared

    def scratch(self, numel: int) -> int:
        return self.prog.add_buffer(BufferSpec(int(numel), "temp"))

    def module_block(self, kernel_name: str):
        gm = self.shared if self.shared is not None else self.new_module(f"m_{kernel_name}")
        return gm.regions[0].blocks[0]


def build_program(lr_module: ir.Module, api: str, entry: str = "forward") -> GpuProgram:
    """Plan buffers and emit the kernels of every layer of @entry (one, or a few for reductions)."""
    ctx = lr_module.context
    lr.load(ctx)
    f = None
    for op in lr_module.body.operations:
        if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == entry:
            f = op
    if f is None:
        raise GpuLoweringError(f"no function @{entry} in the module")
    prog = GpuProgram()
    block = f.regions[0].blocks[0]
    ops = list(block.operations)
    buf: dict = {}
    for a in block.arguments:
        buf[a] = prog.add_buffer(BufferSpec(_numel(_shape(a)), "input"))
        prog.inputs.append(buf[a])

    with ctx, ir.Location.unknown(ctx):
        prog.module = ir.Module.create()
        prog.module.operation.attributes["gpu.container_module"] = ir.UnitAttr.get()
        env = ir.Attribute.parse(target_env(api))

        def new_gpu_module(name):
            with ir.InsertionPoint(prog.module.body):
                m = gpu.GPUModuleOp(name)
                m.attributes["spirv.target_env"] = env
                m.regions[0].blocks.append()
            return m

        shared = new_gpu_module("lr_kernels") if api != "vulkan" else None
        host = _Host(prog, new_gpu_module, shared)
        t = 0
        for op in ops[:-1]:
            op = op.operation
            name = op.name
            if name == "arith.constant":
                val = op.attributes["value"]
                shape = _shape(op.results[0])
                if isinstance(val, ir.DenseElementsAttr) and val.is_splat:
                    arr = np.full(shape, val.get_splat_value().value, np.float32)
                else:
                    arr = np.array(val).astype(np.float32)
                buf[op.results[0]] = prog.add_buffer(BufferSpec(arr.size, "const", arr.reshape(-1)))
                continue
            if name == "lr.reshape":
                buf[op.results[0]] = buf[op.operands[0]]
                continue
            if not name.startswith("lr."):
                raise GpuLoweringError(f"'{name}' is not an lr op; run lr-raise-torch first", op.location)
            opname = name[3:]
            if opname not in EMITTERS:
                raise GpuNotImplemented(f"'{name}' has no GPU lowering (target {api})", op.location)
            try:
                attrs = lr.attrs_of(op)
            except lr.ShapeError as e:
                raise GpuLoweringError(f"'{name}': {e}", op.location) from None
            label = op.attributes["lr.name"].value if "lr.name" in op.attributes else ""
            layer = LayerOp(opname, attrs, [_shape(v) for v in op.operands], _shape(op.results[0]), op.location,
                            label)
            out = prog.add_buffer(BufferSpec(_numel(_shape(op.results[0])), "temp"))
            buf[op.results[0]] = out
            kname = f"l{t}_{opname}"
            desc = f"{name}" + (f" '{label}'" if label else "")
            k = GpuKernel(kname, [buf[v] for v in op.operands], out, desc)
            k.host = host
            with op.location:
                specs = EMITTERS[opname](k, layer)
            prog.kernels.extend(specs if isinstance(specs, list) else [specs])
            t += 1
        prog.outputs = [buf[v] for v in ops[-1].operands]
    return prog
