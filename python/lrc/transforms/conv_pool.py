"""`lr-fuse-conv-pool`: mark convs that feed a 2x2 / stride-2 max pool.

VGG and U-Net encoders end every stage with conv + ReLU + 2x2 max pool. Unfused, the conv writes a
plane four times the pool's output (3.2 MB at 16x224x224) and the pool reads it back: in a whole
model that plane has usually left the caches, and VGG's first pool took 2-3x its stand-alone time.
The conv kernels can instead pool each pair of output rows in registers and write only the pooled
plane (codegen/kernels/conv.py and sparse_conv.py, `ConvSpec.pool`); where the conv's result has other users too
(a U-Net encoder's skip connection), it writes both planes and the pool never reads its input back.

The pass only marks the conv with the discardable unit attribute `lr.pool_epilogue`; the IR's
meaning is unchanged, so a backend that does not fuse (the GPU targets) ignores it. The lowering
re-checks `pool_consumer` and fuses only where the conv's kernel can (the dense row tiles and the
sparse pattern tiles; not the 1x1 GEMM, the channel-vectorised small-plane tiles or the sparse
column tile: ops_dense.conv_pool_fusable).
"""
from __future__ import annotations

from torch_mlir import ir

from lrc.dialects import lr

from .base import Pass, register
from .fusion import lr_ops, strip_marks

POOL_ATTR = "lr.pool_epilogue"


def _pools_whole_windows(pool, h: int, w: int) -> bool:
    """A max pool with a 2x2 window, stride 2, no padding and no dilation whose windows over an
    h x w input are all whole (floor mode, or even sizes)."""
    try:
        a = lr.attrs_of(pool)
    except lr.ShapeError:
        return False
    if (tuple(a["kernel"]) != (2, 2) or tuple(a["stride"]) != (2, 2) or any(a["padding"])
            or tuple(a["dilation"]) != (1, 1)):
        return False
    return not (a["ceil_mode"] and (h % 2 or w % 2))  # ceil mode: no last, partial window


def pool_consumer(op):
    """The lr.max_pool2d that `op`'s result can be fused into, or None.

    Legal when `op` is an lr.conv2d without a residual whose result is the input of a max pool with
    a 2x2 window, stride 2, no padding and no dilation that pools whole windows only (floor mode, or
    even conv output sizes) in the same block. The result may have other users: the fused kernel then
    writes the conv's plane too (`conv_pool_keeps`)."""
    op = op.operation if hasattr(op, "operation") else op
    if op.name != "lr.conv2d" or len(op.operands) != 1 or len(op.operands[0].type.shape) != 4:
        return None
    h, w = op.results[0].type.shape[2:]
    for use in op.results[0].uses:
        user = use.owner
        user = user.operation if hasattr(user, "operation") else user
        if (use.operand_number == 0 and user.name == "lr.max_pool2d" and user.block == op.block
                and _pools_whole_windows(user, h, w)):
            return user
    return None


def conv_pool_keeps(op) -> bool:
    """Whether the fused kernel of `op` and its pool must store the conv's plane too (other users)."""
    op = op.operation if hasattr(op, "operation") else op
    return len(list(op.results[0].uses)) > 1


@register
class FuseConvPool(Pass):
    """Mark convs feeding a 2x2 / stride-2 max pool, for one kernel that writes the pooled plane."""

    argument = "lr-fuse-conv-pool"
    summary = "mark convs feeding a 2x2 / stride-2 max pool, for one kernel that also writes the pooled plane"

    def run(self, module):
        strip_marks(module, POOL_ATTR)
        for op in lr_ops(module, "lr.conv2d"):
            if pool_consumer(op) is not None:
                op.attributes[POOL_ATTR] = ir.UnitAttr.get()
