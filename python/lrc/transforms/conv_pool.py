"""`lr-fuse-conv-pool`: mark convs whose only user is a 2x2 / stride-2 max pool.

VGG and U-Net encoders end every stage with conv + ReLU + 2x2 max pool. Unfused, the conv writes a
plane four times the pool's output (3.2 MB at 16x224x224) and the pool reads it back: in a whole
model that plane has usually left the caches, and VGG's first pool took 2-3x its stand-alone time.
The dense conv kernel can instead pool each pair of output rows in registers and write only the
pooled plane (codegen/kernels/conv.py, `ConvSpec.pool`).

The pass only marks the conv with the discardable unit attribute `lr.pool_epilogue`; the IR's
meaning is unchanged, so a backend that does not fuse (the GPU targets) ignores it. The lowering
re-checks `pool_consumer` and fuses only where the conv runs on the dense row-tiled kernel (not the
sparse kernels, the 1x1 GEMM or the channel-vectorised small-plane tiles).
"""
from __future__ import annotations

from torch_mlir import ir

from lrc.dialects import lr

from .base import Pass, register
from .fusion import lr_ops, sole_input_user, strip_marks

POOL_ATTR = "lr.pool_epilogue"


def pool_consumer(op):
    """The lr.max_pool2d that `op`'s result can be fused into, or None.

    Legal when `op` is an lr.conv2d without a residual whose result has exactly one use, the input
    of a max pool with a 2x2 window, stride 2, no padding and no dilation that pools whole windows
    only (floor mode, or even conv output sizes) in the same block."""
    op = op.operation if hasattr(op, "operation") else op
    if op.name != "lr.conv2d" or len(op.operands) != 1 or len(op.operands[0].type.shape) != 4:
        return None
    user = sole_input_user(op)
    if user is None or user.name != "lr.max_pool2d":
        return None
    try:
        a = lr.attrs_of(user)
    except lr.ShapeError:
        return None
    if (tuple(a["kernel"]) != (2, 2) or tuple(a["stride"]) != (2, 2) or any(a["padding"])
            or tuple(a["dilation"]) != (1, 1)):
        return None
    h, w = op.results[0].type.shape[2:]
    if a["ceil_mode"] and (h % 2 or w % 2):
        return None  # a last, partial window
    return user


@register
class FuseConvPool(Pass):
    """Mark convs feeding only a 2x2 / stride-2 max pool, for one kernel that writes the pooled plane."""

    argument = "lr-fuse-conv-pool"
    summary = "mark convs whose only user is a 2x2 / stride-2 max pool, for one kernel writing the pooled plane"

    def run(self, module):
        strip_marks(module, POOL_ATTR)
        for op in lr_ops(module, "lr.conv2d"):
            if pool_consumer(op) is not None:
                op.attributes[POOL_ATTR] = ir.UnitAttr.get()
