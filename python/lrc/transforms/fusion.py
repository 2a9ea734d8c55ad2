"""Layer fusion on the lr dialect: BN folding, activation fusion, bias and residual fusion.

Mobile inference is memory-bound between layers: each fused op saves a full read and write of an
activation tensor. Folding rewrites the weights held by the conv op itself.
"""
from __future__ import annotations

import numpy as np
from torch_mlir import ir

from lrc.dialects import lr

from .base import Option, Pass, register

ACT_OPS = set(lr.ACTIVATION_OPS)
FUSABLE_PRODUCERS = {"lr.conv2d", "lr.linear", "lr.conv_transpose2d"}


def lr_ops(module: ir.Module, name: str | None = None):
    """All ops of the module's functions (a snapshot, safe to mutate while iterating)."""
    out = []
    for f in module.body.operations:
        for region in f.operation.regions:
            for block in region.blocks:
                for op in block.operations:
                    if name is None or op.operation.name == name:
                        out.append(op.operation)
    return out


def single_use(v: ir.Value) -> bool:
    return len(list(v.uses)) == 1


def sole_input_user(op):
    """The op that reads `op`'s result as its operand #0, when that is the result's only use and both
    are in one block; else None (the marking fusions' shared legality core)."""
    uses = list(op.results[0].uses)
    if len(uses) != 1 or uses[0].operand_number != 0:
        return None
    user = uses[0].owner
    user = user.operation if hasattr(user, "operation") else user
    return user if user.block == op.block else None


def strip_marks(module: ir.Module, attr: str) -> None:
    """Remove a discardable fusion mark from every conv: marking passes re-derive them, since an
    earlier mark may no longer be legal."""
    for op in lr_ops(module, "lr.conv2d"):
        if attr in op.attributes:
            del op.attributes[attr]


def producer(v: ir.Value):
    owner = v.owner
    return owner.operation if isinstance(owner, (ir.Operation, ir.OpView)) else None


def _act_of(op: ir.Operation) -> str:
    return ir.StringAttr(op.attributes["act"]).value if "act" in op.attributes else "none"


def fold_batch_norm(module: ir.Module) -> int:
    n = 0
    for bn in lr_ops(module, "lr.batch_norm"):
        prod = producer(bn.operands[0])
        if prod is None or prod.name not in ("lr.conv2d", "lr.linear") or not single_use(bn.operands[0]):
            continue
        if _act_of(prod) != "none" or len(prod.operands) != 1:
            continue
        if prod.name == "lr.linear" and len(bn.operands[0].type.shape) != 2:
            continue  # BN1d over [N, C, L] normalizes dim 1, not the linear's output features
        a = lr.attrs_of(bn)
        p = lr.attrs_of(prod)
        c = a["mean"].shape[0]
        gamma = a["weight"] if a["weight"] is not None else np.ones(c, np.float32)
        beta = a["bias"] if a["bias"] is not None else np.zeros(c, np.float32)
        scale = gamma.astype(np.float64) / np.sqrt(a["var"].astype(np.float64) + a["eps"])
        w = p["weight"].astype(np.float64)
        b = p["bias"].astype(np.float64) if p["bias"] is not None else np.zeros(w.shape[0])
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        b = (b - a["mean"]) * scale + beta
        lr.set_attr(prod, "weight", w.astype(np.float32))
        lr.set_attr(prod, "bias", b.astype(np.float32))
        bn.results[0].replace_all_uses_with(prod.results[0])
        bn.erase()
        n += 1
    return n


def fuse_activations(module: ir.Module) -> int:
    n = 0
    for op in lr_ops(module):
        kind = op.name[3:] if op.name.startswith("lr.") else ""
        if kind not in ACT_OPS:
            continue
        prod = producer(op.operands[0])
        if prod is None or prod.name not in FUSABLE_PRODUCERS or not single_use(op.operands[0]):
            continue
        if _act_of(prod) != "none":
            continue
        act, params = lr.activation_of(kind, lr.attrs_of(op))
        lr.set_attr(prod, "act", act)
        if params:
            lr.set_attr(prod, "act_params", params)
        op.results[0].replace_all_uses_with(prod.results[0])
        op.erase()
        n += 1
    return n


def _per_channel_constant(v: ir.Value, channels: int, rank: int):
    """The per-channel vector of a constant that broadcasts along dim 1 only, else None."""
    prod = producer(v)
    if prod is None or prod.name != "arith.constant":
        return None
    shape = tuple(v.type.shape)
    attr = prod.attributes["value"]
    arr = (np.full(shape, attr.get_splat_value().value, np.float32) if attr.is_splat
           else np.array(attr).astype(np.float32))
    full = (1,) * (rank - len(shape)) + shape
    if len(full) != rank:
        return None
    if all(d == 1 for d in full):
        return np.full(channels, arr.reshape(-1)[0], np.float32)
    if rank >= 2 and full[1] == channels and all(d == 1 for i, d in enumerate(full) if i != 1):
        return arr.reshape(-1)
    return None


def fuse_bias_and_residual(module: ir.Module) -> int:
    n = 0
    for add in lr_ops(module, "lr.add"):
        x, y = add.operands[0], add.operands[1]
        for conv_v, other in ((x, y), (y, x)):
            conv = producer(conv_v)
            if conv is None or conv.name != "lr.conv2d" or not single_use(conv_v):
                continue
            if _act_of(conv) != "none" or len(conv.operands) != 1:
                continue
            out_shape = tuple(conv_v.type.shape)
            if tuple(add.results[0].type.shape) != out_shape:
                continue
            bias_add = _per_channel_constant(other, out_shape[1], len(out_shape))
            if bias_add is not None:
                b = lr.attrs_of(conv)["bias"]
                b = bias_add if b is None else b + bias_add
                lr.set_attr(conv, "bias", b.astype(np.float32))
                add.results[0].replace_all_uses_with(conv_v)
                add.erase()
                n += 1
                break
            if tuple(other.type.shape) != out_shape:
                continue
            # Rebuild the conv at the add (after both operands) with the residual as operand #1.
            with ir.InsertionPoint(add), add.location:
                new = ir.Operation.create("lr.conv2d", results=[conv_v.type], operands=[conv.operands[0], other],
                                          attributes=dict(conv.attributes.items()))
            add.results[0].replace_all_uses_with(new.results[0])
            add.erase()
            conv.erase()
            n += 1
            break
    return n


@register
class FoldBatchNorm(Pass):
    """Fold inference batch norm into the weights and bias of the conv / linear that feeds it."""

    argument = "lr-fold-batch-norm"
    summary = "fold lr.batch_norm into the producing lr.conv2d / lr.linear"

    def run(self, module):
        fold_batch_norm(module)


@register
class FuseConvBnAct(Pass):
    """Fold batch norm into conv, then fuse the following activation into the conv's `act`."""

    argument = "lr-fuse-conv-bn-act"
    summary = "conv + batch_norm + activation -> one lr.conv2d"
    options = {"fold-bn": Option(bool, True, "also fold batch norm (else activations only)")}

    def run(self, module):
        if self.fold_bn:
            fold_batch_norm(module)
        fuse_activations(module)


@register
class FuseElementwise(Pass):
    """Fuse a per-channel constant add into the conv bias, a same-shape add into the conv as its
    residual operand, then the activation that follows (ResNet's conv + add + relu is one op)."""

    argument = "lr-fuse-elementwise"
    summary = "bias / residual add (+ activation) into the producing lr.conv2d"

    def run(self, module):
        fuse_bias_and_residual(module)
        fuse_activations(module)
