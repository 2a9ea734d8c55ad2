"""gpu.module kernels -> SPIR-V binaries through MLIR's SPIR-V conversion and Debian's tools.

Vulkan: Shader capability, 32-bit indices, kernel arguments become StorageBuffer bindings
(set 0, binding = argument position); one binary per kernel. OpenCL: Kernel capability, 64-bit
indices, arguments stay kernel parameters; one binary for all kernels, translated to SPIR 1.2
bitcode by `llvm-spirv-15 -r` because PoCL takes SPIR bitcode but not SPIR-V IL.
The MLIR bindings have no SPIR-V serializer, so binaries come from `mlir-translate-22`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

from torch_mlir import ir, passmanager

TOOLS = {"mlir-translate-22": "mlir-22-tools", "spirv-val": "spirv-tools", "llvm-spirv-15": "llvm-spirv-15"}

PIPELINES = {
    "vulkan": "builtin.module(gpu.module(convert-math-to-spirv), convert-gpu-to-spirv{use-64bit-index=false}, "
              "spirv.module(spirv-lower-abi-attrs, spirv-update-vce))",
    "opencl": "builtin.module(map-memref-spirv-storage-class{client-api=opencl}, gpu.module(convert-math-to-spirv), "
              "convert-gpu-to-spirv{use-64bit-index=true}, gpu.module(spirv.module(spirv-lower-abi-attrs, "
              "spirv-update-vce)))",
}


class SpirvError(RuntimeError):
    """A kernel that MLIR could not convert, or a binary the SPIR-V tools rejected."""


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"'{name}' not found on PATH; install the Debian package '{TOOLS.get(name, name)}'")
    return path


def lower_to_spirv(module: ir.Module, api: str) -> list:
    """Run the conversion in place; returns the spirv.module ops in kernel order."""
    try:
        passmanager.PassManager.parse(PIPELINES[api], context=module.context).run(module.operation)
    except ir.MLIRError as e:
        diags = "\n".join(str(d) for d in e.error_diagnostics) or str(e)
        raise SpirvError(f"SPIR-V conversion ({api}) failed:\n{diags}") from None
    found = []

    def visit(op):
        if op.name == "spirv.module":
            found.append(op)
            return ir.WalkResult.SKIP
        return ir.WalkResult.ADVANCE
    module.operation.walk(visit)
    return found


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SpirvError(f"{what} failed ({' '.join(cmd[:2])} ...):\n{r.stderr.strip() or r.stdout.strip()}")
    return r


def serialize(spirv_module_text: str, workdir: str, stem: str, env: str, validate: bool = True) -> bytes:
    src, out = os.path.join(workdir, stem + ".mlir"), os.path.join(workdir, stem + ".spv")
    with open(src, "w") as fh:
        fh.write(spirv_module_text)
    _run([tool("mlir-translate-22"), "--no-implicit-module", "--serialize-spirv", src, "-o", out],
         f"serializing {stem}")
    if validate:
        _run([tool("spirv-val"), "--target-env", env, out], f"spirv-val on {stem}")
    with open(out, "rb") as fh:
        return fh.read()


def _module_text(op) -> str:
    # local scope: printing a nested op otherwise walks the whole enclosing module (seconds per kernel)
    return op.get_asm(use_local_scope=True)


def _split_serialize(texts: list[str], workdir: str) -> list[bytes]:
    """Serialize many spirv.modules with one mlir-translate run (--split-input-file): the outputs come
    back joined by a marker, and every piece must be a whole SPIR-V binary."""
    src, out = os.path.join(workdir, "all.mlir"), os.path.join(workdir, "all.bin")
    marker = "LRC-SPIRV-SPLIT-" + os.urandom(12).hex()
    with open(src, "w") as fh:
        fh.write("\n// -----\n".join(texts))
    _run([tool("mlir-translate-22"), "--no-implicit-module", "--split-input-file", "--serialize-spirv",
          f"--output-split-marker={marker}", src, "-o", out], "serializing the kernels")
    with open(out, "rb") as fh:
        parts = fh.read().split(marker.encode())
    parts = [p[1:] if i and p[:1] == b"\n" else p for i, p in enumerate(parts)]
    if len(parts) != len(texts) or any(len(p) % 4 or p[:4] != SPIRV_MAGIC for p in parts):
        raise SpirvError(f"mlir-translate returned {len(parts)} pieces for {len(texts)} SPIR-V modules")
    return parts


SPIRV_MAGIC = (0x07230203).to_bytes(4, "little")


def vulkan_binaries(module: ir.Module, validate: bool = True) -> list[bytes]:
    """One validated SPIR-V binary per kernel, in kernel order."""
    texts = [_module_text(m) for m in lower_to_spirv(module, "vulkan")]
    with tempfile.TemporaryDirectory(prefix="lrc-spv-") as d:
        bins = _split_serialize(texts, d)
        if validate:
            def check(item):
                i, b = item
                path = os.path.join(d, f"k{i}.spv")
                with open(path, "wb") as fh:
                    fh.write(b)
                _run([tool("spirv-val"), "--target-env", "vulkan1.1", path], f"spirv-val on kernel #{i}")
            with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as ex:
                list(ex.map(check, enumerate(bins)))
    return bins


def opencl_binaries(module: ir.Module, validate: bool = True) -> tuple[bytes, bytes]:
    """All kernels as one Kernel-capability SPIR-V module and as the SPIR 1.2 bitcode translated from it
    (drivers with SPIR-V ingestion take the first, PoCL the second)."""
    mods = lower_to_spirv(module, "opencl")
    if len(mods) != 1:
        raise SpirvError(f"expected one SPIR-V module for OpenCL, got {len(mods)}")
    with tempfile.TemporaryDirectory(prefix="lrc-spv-") as d:
        spv = serialize(_module_text(mods[0]), d, "kernels", "opencl1.2", validate)
        bc = os.path.join(d, "kernels.bc")
        _run([tool("llvm-spirv-15"), "-r", "--spirv-target-env=CL1.2", os.path.join(d, "kernels.spv"), "-o", bc],
             "llvm-spirv-15 (SPIR-V -> SPIR 1.2 bitcode)")
        with open(bc, "rb") as fh:
            return spv, fh.read()
