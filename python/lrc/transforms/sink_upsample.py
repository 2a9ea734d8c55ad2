"""`lr-sink-upsample`: move integer nearest upsampling below the per-pixel layers that follow it.

Nearest upsampling by an integer factor only replicates pixels. A layer that works on each pixel
on its own (a 1x1 stride-1 conv, an activation, prelu, batch norm), or on per-plane statistics that
replication leaves unchanged (instance norm: every value appears k*k times, so mean and variance
are the same), gives the same result before or after it:

    conv1x1(up(x)) = up(conv1x1(x))       relu(up(x)) = up(relu(x))       IN(up(x)) = up(IN(x))

so running it before the upsample does the same work on 1/(k*k) of the pixels. Style-transfer
decoders (MSG-Net's upsample bottlenecks) upsample and then apply 1x1 convs: at 256x256 those convs
and the activation traffic around them were a quarter of the pruned model's time.

A conv that carries a fused residual becomes conv (no residual) -> upsample -> lr.add; run
lr-fuse-elementwise afterwards to fuse that add into the residual's producer where it can
(the default pipeline does). Bilinear upsampling is left alone: it mixes neighbouring pixels, so
it commutes with a 1x1 conv but not with activations or instance norm.
"""
from __future__ import annotations

from torch_mlir import ir

from lrc.dialects import lr

from .base import Pass, register
from .fusion import ACT_OPS, lr_ops

PER_PIXEL = {f"lr.{a}" for a in ACT_OPS} | {"lr.prelu", "lr.batch_norm", "lr.instance_norm"}


def replication_factor(up) -> tuple[int, int] | None:
    """(kh, kw) when `up` is nearest upsampling that copies each pixel into a kh x kw block, else None."""
    try:
        a = lr.attrs_of(up)
    except lr.ShapeError:
        return None
    if a["mode"] != "nearest":
        return None
    _, _, h, w = up.operands[0].type.shape
    oh, ow = a["size"]
    if oh % h or ow % w:
        return None
    k = (oh // h, ow // w)
    if a["scales"] and tuple(float(s) for s in a["scales"]) != (float(k[0]), float(k[1])):
        return None  # torch maps rows with the given scale, which is not the size ratio: not a pure copy
    return k


def _pointwise_conv(op) -> bool:
    try:
        a = lr.attrs_of(op)
    except lr.ShapeError:
        return False
    return a["weight"].shape[2:] == (1, 1) and tuple(a["stride"]) == (1, 1) and not any(a["padding"])


def _movable(user, up) -> bool:
    """Whether `user`, the only user of `up` (as its operand #0), can run before the upsample."""
    if user.name in PER_PIXEL:
        return len(user.operands) == 1
    if user.name == "lr.conv2d" and _pointwise_conv(user):
        if len(user.operands) == 1:
            return True
        # a fused residual: only without a fused activation (act(conv + r) would need its own op)
        return "act" not in user.attributes or ir.StringAttr(user.attributes["act"]).value == "none"
    return False


def sink_once(up) -> bool:
    uses = list(up.results[0].uses)
    if len(uses) != 1 or uses[0].operand_number != 0 or replication_factor(up) is None:
        return False
    user = uses[0].owner
    user = user.operation if hasattr(user, "operation") else user
    if user.block != up.block or not _movable(user, up):
        return False
    x = up.operands[0]
    n, _, h, w = x.type.shape
    out = user.results[0].type
    with user.location:
        small = ir.RankedTensorType.get([n, out.shape[1], h, w], out.element_type)
    residual = user.operands[1] if len(user.operands) == 2 else None
    with ir.InsertionPoint(user):
        with user.location:
            moved = ir.Operation.create(user.name, results=[small], operands=[x],
                                        attributes=dict(user.attributes.items()))
        with up.location:
            new_up = ir.Operation.create("lr.upsample", results=[out], operands=[moved.results[0]],
                                         attributes=dict(up.attributes.items()))
        result = new_up.results[0]
        if residual is not None:
            with user.location:
                result = ir.Operation.create("lr.add", results=[out], operands=[result, residual]).results[0]
    user.results[0].replace_all_uses_with(result)
    user.erase()
    up.erase()
    return True


@register
class SinkUpsample(Pass):
    """Run 1x1 convs, activations and norms before the integer nearest upsample that feeds them."""

    argument = "lr-sink-upsample"
    summary = "move integer nearest lr.upsample below the per-pixel layers that follow it (less work, exact)"

    def run(self, module):
        moved = True
        while moved:  # a sunk upsample may meet the next per-pixel layer
            moved = False
            for up in lr_ops(module, "lr.upsample"):
                moved |= sink_once(up)
