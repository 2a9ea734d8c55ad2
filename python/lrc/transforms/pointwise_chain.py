"""`lr-fuse-pointwise-chain`: mark 1x1 conv -> 1x1 conv pairs whose intermediate can stay in cache.

WDSR's wide-activation block is 1x1 expand (32 -> 192) + ReLU, then a 1x1 reduce (192 -> 26). As two
kernels the 192-channel intermediate (50 MB at 256x256) is written to memory and read back, which
makes both 1x1 layers memory-bound. When the first conv's result has no other user, the lowering
can run both convs per panel of pixels in one kernel (codegen/kernels/pointwise_chain.py), so the
intermediate only ever exists for one panel, in L2.

The pass only marks the producer with the discardable unit attribute `lr.pointwise_chain`; the IR's
meaning is unchanged, so a backend that does not fuse (the GPU targets) simply ignores it. The
lowering re-checks `chain_consumer` and fuses only where its cost model takes the sparse kernels
for both convs (a dense pair keeps the dense GEMM kernels).
"""
from __future__ import annotations

from torch_mlir import ir

from lrc.dialects import lr

from .base import Pass, register
from .fusion import lr_ops, sole_input_user, strip_marks

CHAIN_ATTR = "lr.pointwise_chain"


def _pointwise(op) -> bool:
    """A 1x1, stride-1, unpadded, ungrouped conv (one GEMM over the pixels)."""
    if op is None or op.name != "lr.conv2d":
        return False
    try:
        a = lr.attrs_of(op)
    except lr.ShapeError:
        return False
    return (a["weight"].shape[2:] == (1, 1) and tuple(a["stride"]) == (1, 1) and not any(a["padding"])
            and a["groups"] == 1 and len(op.operands[0].type.shape) == 4)


def chain_consumer(op):
    """The lr.conv2d that `op`'s result can be fused into, or None.

    Legal when `op` is a pointwise conv without a residual whose result has exactly one use: operand
    #0 (the input, not the residual) of another pointwise conv in the same block."""
    op = op.operation if hasattr(op, "operation") else op
    if not _pointwise(op) or len(op.operands) != 1:
        return None
    user = sole_input_user(op)
    return user if _pointwise(user) else None


@register
class FusePointwiseChain(Pass):
    """Mark 1x1 conv pairs (expand + activation, then reduce) for one fused kernel."""

    argument = "lr-fuse-pointwise-chain"
    summary = "mark 1x1 conv -> 1x1 conv pairs whose intermediate has no other user for one fused kernel"

    def run(self, module):
        taken = set()  # ops already in a pair: pairs are disjoint (no three-conv chains)
        strip_marks(module, CHAIN_ATTR)
        for op in lr_ops(module, "lr.conv2d"):
            if op in taken:
                continue
            user = chain_consumer(op)
            if user is None or user in taken:
                continue
            op.attributes[CHAIN_ATTR] = ir.UnitAttr.get()
            taken.update((op, user))
