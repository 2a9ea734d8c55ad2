"""The intermediate-tensor arena of a compiled model: its size, and one buffer per calling thread.

`forward` allocates its arena on every call; one above glibc's mmap threshold (32 MiB at most) is
then mapped and page-faulted in every time (~10 % of a 256x256 super-resolution net). So the
runners call `lrc_arena_<entry>` instead, with a buffer each thread keeps across calls.
"""
from __future__ import annotations

import threading

import numpy as np
from torch_mlir import ir

from ..codegen.lower import ARENA_ATTR


def entry_arena_bytes(module: ir.Module, entry: str) -> int:
    """Arena bytes of the entry function `entry` (0: it needs none), in the kernel-level module or
    after lowering to the LLVM dialect (the attribute survives it)."""
    for op in module.body.operations:
        if "sym_name" in op.attributes and ir.StringAttr(op.attributes["sym_name"]).value == entry:
            return ir.IntegerAttr(op.attributes[ARENA_ATTR]).value if ARENA_ATTR in op.attributes else 0
    raise ValueError(f"no entry function '{entry}' in the lowered module")


class ThreadArenas:
    """One 64-byte aligned arena of `nbytes` per calling thread (kernels assume aligned buffers),
    so that concurrent calls from several threads stay safe."""

    def __init__(self, nbytes: int):
        self.nbytes, self._local = nbytes, threading.local()

    def get(self) -> np.ndarray:
        arena = getattr(self._local, "arena", None)
        if arena is None:
            raw = np.empty(self.nbytes + 64, np.uint8)
            off = (-raw.ctypes.data) % 64
            arena = self._local.arena = raw[off:off + self.nbytes]
        return arena
