"""`lr-canonicalize`: drop layers that do nothing, then upstream canonicalize + CSE (which also
removes dead lr ops: they are all Pure)."""
from __future__ import annotations

from torch_mlir.passmanager import PassManager

from lrc.dialects import lr

from .base import Pass, register
from .fusion import lr_ops


def _is_identity(op) -> bool:
    name = op.name
    same_type = op.operands[0].type == op.results[0].type
    if name == "lr.reshape":
        return same_type
    if name == "lr.permute":
        return list(lr.attrs_of(op)["dims"]) == list(range(len(op.operands[0].type.shape)))
    if name == "lr.pad":
        return same_type and all(p == 0 for p in lr.attrs_of(op)["pads"])
    if name == "lr.concat":
        return len(op.operands) == 1
    if name in ("lr.upsample", "lr.adaptive_avg_pool2d"):
        return same_type
    return False


def _fold_reshape_chains(module) -> None:
    for op in lr_ops(module, "lr.reshape"):
        src = op.operands[0].owner
        if getattr(src, "name", None) == "lr.reshape" or getattr(getattr(src, "operation", None), "name", None) == "lr.reshape":
            op.operands[0] = src.operands[0]


@register
class Canonicalize(Pass):
    argument = "lr-canonicalize"
    summary = "remove identity layers, merge reshape chains, canonicalize + cse"

    def run(self, module):
        _fold_reshape_chains(module)
        for op in lr_ops(module):
            if op.name.startswith("lr.") and len(op.operands) >= 1 and _is_identity(op):
                op.results[0].replace_all_uses_with(op.operands[0])
                op.erase()
        PassManager.parse("builtin.module(canonicalize, cse)").run(module.operation)
