"""The host target: x86-64 (AVX2/FMA code; see HOST_VEC), run through MLIR's ExecutionEngine (JIT)."""
from __future__ import annotations

from torch_mlir import ir

from ..codegen.lower import arena_entry, lower_to_kernels
from ..runtime.arena import ThreadArenas, entry_arena_bytes
from ..runtime.jit import JitModule
from .llvm import openmp_library

# 8 f32 lanes (ymm) by default; on AVX-512 hosts dense_lanes / sparse_lanes give 16 to the convs that
# gain from them (docs/kernels.md, Round 7; docs/sparse.md).
HOST_VEC = 8
OPTIONS: dict = {"threads": 1}  # threads > 1: big convs split over output channels, run by libomp


def host_vector_registers() -> int:
    """Vector registers the conv tiles may use in host JIT code: 32 on AVX-512VL CPUs (ymm0-31;
    the JIT compiles for the host CPU), else 16. +2-5 % per layer on Zen 4 (bench/results/dense.md).
    Code built this way needs -march=x86-64-v4 (or native) when compiled ahead of time; with
    -march=x86-64-v3 the larger tiles spill (see docs/kernels.md)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return 32 if "avx512vl" in line.split() else 16
    except OSError:
        pass
    return 16


def check_threads(threads) -> int:
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"compile option threads must be an int >= 1, got {threads!r}")
    return threads


def build_host(lr_module: ir.Module, opt_level: int = 3, entry: str = "forward", threads: int = 1):
    """JIT-compile; returns (runner(*inputs, *outputs), artifact) where the artifact keeps the
    LLVM-dialect module so that `save()` can emit a shared object later without recompiling.

    The runner passes a per-thread arena buffer to `lrc_arena_<entry>`, kept across calls: a fresh
    arena per call (what `<entry>` itself does) is page-faulted in every time once it is larger
    than glibc's mmap threshold. Per thread, so concurrent calls from several threads stay safe.
    """
    from ..codegen.kernels import conv as convk

    regs = host_vector_registers()
    saved = convk.VECTOR_REGISTERS
    if not saved:  # an explicit setting (tests, benchmarks) wins
        convk.VECTOR_REGISTERS = regs
    try:
        kernels = lower_to_kernels(lr_module, vec=HOST_VEC, threads=threads)
        used_regs = convk.vector_registers(HOST_VEC)
    finally:
        convk.VECTOR_REGISTERS = saved
    arena_bytes = entry_arena_bytes(kernels, entry)
    libs = [openmp_library()] if threads > 1 else []
    jit = JitModule(kernels, opt_level=opt_level, shared_libs=libs, threads=threads)
    arenas = ThreadArenas(arena_bytes)

    def run(*arrays):
        if not arena_bytes:
            jit.call(entry, *arrays)
            return
        jit.call(arena_entry(entry), *arrays, arenas.get())

    # vector_registers: 32 means the tiles assume AVX-512VL (ahead of time: -march=x86-64-v4).
    artifact = {"llvm_module": kernels, "entry": entry, "jit": jit,
                "vector_registers": used_regs, "threads": threads}
    return run, artifact


def build(lr_module: ir.Module, *, opt_level: int = 3, threads: int = 1):
    return build_host(lr_module, opt_level=opt_level, threads=check_threads(threads))
