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
    if name in ("lr.upsample", "lr.adaptive_avg_pool2d", "lr.slice"):
        return same_type
    return False


def _fold_reshape_chains(module) -> None:
    for op in lr_ops(module, "lr.reshape"):
        src = op.operands[0].owner
        if getattr(src, "name", None) == "lr.reshape" or getattr(getattr(src, "operation", None), "name", None) == "lr.reshape":
            op.operands[0] = src.operands[0]


def _fold_slice_chains(module) -> None:
    """x[s1:e1][s2:e2] along one axis is x[s1+s2 : s1+e2] (split pieces sliced again)."""
    for op in lr_ops(module, "lr.slice"):
        src = getattr(op.operands[0].owner, "operation", None)
        if src is None or src.name != "lr.slice":
            continue
        a, b = lr.attrs_of(op), lr.attrs_of(src)
        rank = len(op.operands[0].type.shape)
        if a["axis"] % rank != b["axis"] % rank:
            continue
        lr.set_attr(op, "axis", a["axis"] % rank)  # one spelling, so that CSE merges equal slices
        lr.set_attr(op, "start", b["start"] + a["start"])
        lr.set_attr(op, "end", b["start"] + a["end"])
        op.operands[0] = src.operands[0]


@register
class Canonicalize(Pass):
    argument = "lr-canonicalize"
    summary = "remove identity layers, merge reshape and slice chains, canonicalize + cse"

    def run(self, module):
        _fold_reshape_chains(module)
        _fold_slice_chains(module)
        for op in lr_ops(module):
            if op.name.startswith("lr.") and len(op.operands) >= 1 and _is_identity(op):
                op.results[0].replace_all_uses_with(op.operands[0])
                op.erase()
        PassManager.parse("builtin.module(canonicalize, cse)").run(module.operation)
