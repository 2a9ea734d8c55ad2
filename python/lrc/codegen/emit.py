"""The interface between the lowering driver and per-op kernel emitters.

An emitter turns one lr op into a private kernel function over flat buffers and says how to call it:
a list of argument sources (an operand buffer, a constant parameter array, or the result buffer).
The driver owns buffers and constants; emitters own loop nests.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import func

from .builder import KernelBuilder


@dataclass
class Arg:
    kind: str  # "in" | "param" | "out" | "scratch"
    index: int = 0  # in: operand position; scratch: bytes (a view of the arena's scratch region)
    array: np.ndarray | None = None  # for params (float32 or int32)


@dataclass
class LayerOp:
    """What an emitter sees of an lr op: its name, attributes, operand and result shapes."""

    name: str
    attrs: dict
    in_shapes: list[tuple[int, ...]]
    out_shape: tuple[int, ...]
    location: ir.Location
    label: str = ""  # user-facing layer name for messages
    # derived data several emitters want (sparse_conv_pack: the split decision and the parts'
    # lowering), computed once per layer
    memo: dict = field(default_factory=dict, compare=False, repr=False, init=False)  # not copied by replace()


@dataclass
class KernelSig:
    """Arguments of a kernel in call order; built while the emitter declares them."""

    args: list[Arg] = field(default_factory=list)
    types: list[ir.Type] = field(default_factory=list)


def _memref_type(size: int, dtype) -> ir.MemRefType:
    elem = ir.F32Type.get() if dtype == np.float32 else ir.IntegerType.get_signless(32)
    return ir.MemRefType.get([int(size)], elem)


class Kernel:
    """Declare arguments, then `body()` gives the values and a KernelBuilder to emit into."""

    def __init__(self, name: str, vec: int):
        self.name = name
        self.vec = vec
        self.sig = KernelSig()

    def inp(self, i: int, size: int) -> int:
        self.sig.args.append(Arg("in", i))
        self.sig.types.append(_memref_type(size, np.float32))
        return len(self.sig.args) - 1

    def param(self, array: np.ndarray) -> int:
        arr = np.ascontiguousarray(array)
        if arr.dtype not in (np.float32, np.int32):
            arr = arr.astype(np.int32 if np.issubdtype(arr.dtype, np.integer) else np.float32)
        arr = arr.reshape(-1)
        if arr.size == 0:  # memrefs of size 0 are legal but globals are not: keep one dummy element
            arr = np.zeros(1, arr.dtype)
        self.sig.args.append(Arg("param", array=arr))
        self.sig.types.append(_memref_type(arr.size, arr.dtype))
        return len(self.sig.args) - 1

    def out(self, size: int) -> int:
        self.sig.args.append(Arg("out"))
        self.sig.types.append(_memref_type(size, np.float32))
        return len(self.sig.args) - 1

    def build(self, body) -> KernelSig:
        """Create the function at the current insertion point; body(kb, args) emits its code."""
        fn = func.FuncOp(self.name, (self.sig.types, []))
        fn.attributes["sym_visibility"] = ir.StringAttr.get("private")
        fn.add_entry_block()
        kb = KernelBuilder(fn, self.vec)
        with ir.InsertionPoint(fn.entry_block):
            body(kb, list(fn.entry_block.arguments))
            func.ReturnOp([])
        return self.sig


def external_kernel(fn: func.FuncOp, args: list[Arg]) -> KernelSig:
    """Wrap a function someone else emitted (the conv/linear emitters) with its call order."""
    sig = KernelSig(args=args, types=list(fn.type.inputs))
    return sig
