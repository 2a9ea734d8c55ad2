"""Saved GPU programs: the compiled binaries, the launch plan and the weights, loadable without MLIR.

A `vulkan` / `opencl` artifact directory holds
    model.json   target, inputs/outputs, entry, format, and the plan: every buffer (size, kind) and
                 every kernel (name, layer, variant, launch shape, arguments)
    model.npz    the constant buffers (`c<buffer>`), the per-kernel parameter arrays (`p<kernel>_<arg>`)
                 and the binaries (`bin<i>`: one SPIR-V shader per kernel for Vulkan; for OpenCL the
                 SPIR 1.2 bitcode and, where built, the SPIR-V IL the bitcode came from)
so that a phone, or any machine with numpy and wgpu / pyopencl, runs the model without the compiler
(no torch-mlir, no LLVM tools). Arrays go through numpy's npz without pickle.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .spec import BufferSpec, GpuKernelSpec, GpuProgram, KArg, Launch

GPU_FORMAT = 2  # 2: kernels carry their loop-trip bound (lavapipe guard)


def plan_of(prog: GpuProgram) -> tuple[dict, dict]:
    """(JSON-able plan, arrays) for a program."""
    arrays = {}
    buffers = []
    for i, b in enumerate(prog.buffers):
        buffers.append({"numel": int(b.numel), "kind": b.kind})
        if b.data is not None:
            arrays[f"c{i}"] = np.ascontiguousarray(b.data, np.float32)
    kernels = []
    for k, spec in enumerate(prog.kernels):
        args = []
        for j, a in enumerate(spec.args):
            if a.kind == "buf":
                args.append({"kind": "buf", "buffer": int(a.buffer), "writes": bool(a.writes)})
            else:
                arr = np.ascontiguousarray(a.array)
                arrays[f"p{k}_{j}"] = arr
                args.append({"kind": a.kind, "writes": bool(a.writes)})
        kernels.append({"name": spec.name, "layer": spec.layer, "variant": spec.variant,
                        "iterations": spec.iterations,
                        "block": list(spec.launch.block), "grid": list(spec.launch.grid), "args": args})
    return {"buffers": buffers, "inputs": list(prog.inputs), "outputs": list(prog.outputs),
            "kernels": kernels}, arrays


def write(tmp_dir: str, cm, gpu: dict) -> None:
    """Fill `tmp_dir` (published atomically by the caller) with a GPU artifact of compiled model `cm`."""
    plan, arrays = plan_of(gpu["prog"])
    binaries = gpu["binaries"]
    for i, b in enumerate(binaries):
        arrays[f"bin{i}"] = np.frombuffer(b, np.uint8)
    meta = {"format": 2, "gpu_format": GPU_FORMAT, "target": cm.target, "entry": "forward",
            "inputs": [list(s) for s in cm.input_shapes], "outputs": [list(s) for s in cm.output_shapes],
            "binaries": gpu["binary_kinds"], "options": {"device": gpu.get("device")}, "plan": plan}
    if cm.out_spec:
        meta["out_spec"] = cm.out_spec
    with open(os.path.join(tmp_dir, "model.npz"), "wb") as fh:
        np.savez_compressed(fh, **arrays)  # pruned weights kept dense are mostly zeros
    with open(os.path.join(tmp_dir, "model.json"), "w") as fh:
        json.dump(meta, fh, indent=1)


def read(path: str, meta: dict) -> tuple[GpuProgram, list[bytes]]:
    """The program and binaries of an artifact directory, checked for consistency."""
    if meta.get("gpu_format") != GPU_FORMAT:
        raise ValueError(f"{path}: GPU artifact format {meta.get('gpu_format')} is not supported "
                         f"(expected {GPU_FORMAT})")
    try:
        npz = np.load(os.path.join(path, "model.npz"), allow_pickle=False)
        arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}/model.npz is missing or corrupt ({e})") from None
    plan = meta["plan"]

    def need(key):
        if key not in arrays:
            raise ValueError(f"{path}/model.npz lacks array '{key}' that model.json refers to")
        return arrays[key]

    prog = GpuProgram(inputs=list(plan["inputs"]), outputs=list(plan["outputs"]))
    for i, b in enumerate(plan["buffers"]):
        data = need(f"c{i}") if b["kind"] == "const" else None
        if data is not None and data.size != b["numel"]:
            raise ValueError(f"{path}: constant buffer {i} has {data.size} values, model.json says {b['numel']}")
        prog.buffers.append(BufferSpec(int(b["numel"]), b["kind"], data))
    for k, ks in enumerate(plan["kernels"]):
        args = [KArg("buf", buffer=int(a["buffer"]), writes=a["writes"]) if a["kind"] == "buf"
                else KArg(a["kind"], array=need(f"p{k}_{j}"), writes=a["writes"]) for j, a in enumerate(ks["args"])]
        prog.kernels.append(GpuKernelSpec(ks["name"], args, Launch(tuple(ks["block"]), tuple(ks["grid"])),
                                          ks.get("layer", ""), ks.get("variant", ""),
                                          int(ks["iterations"])))
    binaries = [need(f"bin{i}").tobytes() for i in range(len(meta["binaries"]))]
    return prog, binaries


def load(path: str, meta: dict, device: str | None = None):
    """(runner, runtime) for a saved GPU artifact; `device` overrides the one it was compiled for."""
    prog, binaries = read(path, meta)
    device = device if device is not None else (meta.get("options") or {}).get("device")
    if meta["target"] == "vulkan":
        from .vulkan_runtime import VulkanRuntime

        if meta["binaries"] != ["spirv-shader"] * len(prog.kernels):
            raise ValueError(f"{path}: expected one SPIR-V shader per kernel, got {meta['binaries']}")
        rt = VulkanRuntime(prog, binaries, device=device)
    else:
        from .opencl_runtime import OpenCLRuntime

        kinds = dict(zip(meta["binaries"], binaries))
        if "spir-bitcode" not in kinds and "spirv-kernel" not in kinds:
            raise ValueError(f"{path}: no OpenCL binary (expected spir-bitcode and/or spirv-kernel)")
        rt = OpenCLRuntime(prog, kinds.get("spir-bitcode"), device=device, il=kinds.get("spirv-kernel"))
    return rt.run, rt
