"""`lr-shrink-pruned-channels`: filter and channel pruning make the convs smaller, not just sparse.

A conv whose filter k is all zeros outputs a constant plane act(bias_k) on channel k; a conv whose
weights for input channel k are all zeros never reads it. Either way the channel k between them
is dead weight, and removing it shrinks *both* convs: the producer loses filter k, every consumer
loses input channel k, and they then run the dense kernels at their full rate on smaller shapes
(the sparse kernels skip zero filters too, but at the sparse loop's lower rate, and the consumer
would still read the channel). This is what a filter-pruned checkpoint (torch.nn.utils.prune's
ln_structured, Torch-Pruning before it removes anything, lrprune "filter" / "channel") needs to
get the speed its MAC count promises.

Channel k of conv A (groups 1, no fused residual) is removed when every user of A's result is a
groups-1 conv B reading it as its input, possibly through single-use channel-wise layers (pools,
upsample, pad, activations), and for each B
  * B's weights for channel k are all zero (B never reads it), or
  * A's filter k is dead, so channel k is the constant act(bias_k), carried through the layers in
    between (an activation maps it, a max pool or upsample keeps it; zero padding or a border-
    counting average pool keep only a 0), and it reaches B as 0 (nothing to add, B's own zero
    padding included), or as a constant c and B has no padding: then it adds c * sum(W_B[:, k]) to
    every output of B, which goes into B's bias. With padding, border pixels see fewer taps of c,
    so a bias cannot hold it; instead all such channels but one (the carrier) go and their
    weights, scaled by c_k / c_carrier, are added to the carrier's (see _carrier: exact, since a
    conv is linear in each input channel and they all are the same plane times a constant).
Sparsity annotations are sliced with the weights; "filter" / "channel" ones are recomputed from
the weights that remain. At least one channel always stays, so no tensor becomes empty.
"""
from __future__ import annotations

import math

import numpy as np
from torch_mlir import ir

from lrc.dialects import lr

from .base import Pass, register
from .fusion import lr_ops

# Channel-wise layers a removed channel may pass through on its way to the consumer conv.
PASS_THROUGH = {"lr.max_pool2d", "lr.avg_pool2d", "lr.upsample", "lr.pad"} | {f"lr.{a}" for a in lr.ACTIVATION_OPS}


_MATH = {"abs": np.abs, "neg": np.negative, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
         "rsqrt": lambda v: 1 / np.sqrt(v), "reciprocal": lambda v: 1 / v, "square": np.square}


def _act(kind: str, params, x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    if kind == "none":
        return x
    if kind == "relu":
        return np.maximum(x, 0)
    if kind == "relu6":
        return np.clip(x, 0, 6)
    if kind == "leaky_relu":
        return np.where(x > 0, x, params[0] * x)
    if kind == "clamp":
        return np.clip(x, params[0], params[1])
    if kind == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if kind == "tanh":
        return np.tanh(x)
    if kind == "hardswish":
        return x * np.clip(x + 3, 0, 6) / 6
    if kind == "hardsigmoid":
        return np.clip(x + 3, 0, 6) / 6
    if kind == "silu":
        return x / (1 + np.exp(-x))
    if kind == "gelu":
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    if kind == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if kind in _MATH:
        with np.errstate(all="ignore"):  # a NaN / inf result counts as "varies": nothing is shrunk
            return _MATH[kind](x)
    if kind == "mish":
        return x * np.tanh(np.logaddexp(0, x))
    if kind == "softplus":
        beta, threshold = params
        return np.where(x * beta > threshold, x, np.logaddexp(0, x * beta) / beta)
    if kind == "elu":
        alpha, scale, input_scale = params
        return scale * np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0) * input_scale) - 1))
    raise ValueError(f"unknown activation '{kind}'")


def _through(op, v: np.ndarray) -> np.ndarray:
    """What a constant plane of value v[k] (per channel) becomes after `op`: a constant again, or NaN
    where the op makes it vary over the plane (zero padding of a non-zero constant, an average
    pool that counts padding or has partial windows)."""
    name = op.name[3:]
    a = lr.attrs_of(op)
    if name in lr.ACTIVATION_OPS:
        return _act(*lr.activation_of(name, a), v)
    if name == "pad" and a["mode"] == "constant":
        return np.where(v == a["value"], v, np.nan)  # the border is `value`: constant only if v is it
    if name == "avg_pool2d" and ((any(a["padding"]) and a["count_include_pad"]) or a["ceil_mode"]):
        return np.where(v == 0, v, np.nan)  # windows over the border average in zeros: only 0 stays
    return v  # max pool (its padding is never picked over a real value), upsample, reflect/replicate pad


def _owner(use):
    return use.owner.operation if hasattr(use.owner, "operation") else use.owner


def _consumers(value: ir.Value):
    """[(conv B, [channel-wise layers between], B's attributes)] for every use of `value`, or None
    when some use is anything else (a returned value, a residual operand, a concat, a grouped conv,
    ...). The attributes are decoded here once (the weights are copied out of the IR each time)."""
    out = []
    for use in value.uses:
        op, path = _owner(use), []
        while op.name in PASS_THROUGH and use.operand_number == 0 and len(list(op.results[0].uses)) == 1:
            path.append(op)
            use = next(iter(op.results[0].uses))
            op = _owner(use)
        if op.name != "lr.conv2d" or use.operand_number != 0:
            return None
        attrs = lr.attrs_of(op)
        if attrs["groups"] != 1:
            return None
        out.append((op, path, attrs))
    return out


def _sliced_sparsity(sp, weight: np.ndarray, rows=None, cols=None):
    if sp is None:
        return None
    if sp["kind"] in ("filter", "channel"):
        from .sparse import detect_structure

        return detect_structure(weight)  # what is left may be dense, or still have zero filters
    ids = sp["ids"]
    if ids is not None:
        ids = ids[rows] if rows is not None else ids[:, cols]
    return {"kind": sp["kind"], "library": sp["library"], "ids": ids}


def _set_sparsity(op, sp):
    if sp is None:
        if "sparsity" in op.attributes:
            del op.attributes["sparsity"]
    else:
        op.attributes["sparsity"] = lr.sparsity_attr(sp["kind"], sp["library"], sp["ids"])


def _rebuild(op, channels: int) -> ir.Operation:
    """`op` again with `channels` output channels (same operands and attributes), in its place."""
    t = ir.RankedTensorType(op.results[0].type)
    shape = list(t.shape)
    shape[1] = channels
    with ir.InsertionPoint(op), op.location:
        new = ir.Operation.create(op.name, results=[ir.RankedTensorType.get(shape, t.element_type)],
                                  operands=list(op.operands), attributes=dict(op.attributes.items()))
    op.results[0].replace_all_uses_with(new.results[0])
    op.erase()
    return new


MERGE_OK = (None, "filter", "channel", "irregular")  # consumer annotations that survive a changed column


def _carrier(users, seen, unread, candidates):
    """(the dead channel that carries the others to padded consumers, the channels it can carry),
    or (None, None).

    A dead channel reaches a consumer B as a constant v_k inside the image and 0 in B's padding, i.e.
    v_k * P for the same plane P. Convolution is linear in each input channel, so the sum of their
    contributions is conv(v_c * P, sum_k (v_k / v_c) W_B[:, k]) for any one of them, c: one channel
    carries them all, exactly, and the others go. Needs every such channel to arrive as a constant at
    every consumer that reads it, the carrier as a non-zero one at every consumer, and consumers
    whose weights change to carry no pattern annotation (a changed column could leave its patterns).
    """
    ok = candidates.copy()
    for v, skip in zip(seen, unread):
        ok &= skip | np.isfinite(v)
    if ok.sum() < 2:
        return None, None
    if any(ba["sparsity"] is not None and ba["sparsity"]["kind"] not in MERGE_OK for _, _, ba in users):
        return None, None
    for k in np.flatnonzero(ok):
        if all(np.isfinite(v[k]) and v[k] != 0 for v in seen):
            return int(k), ok
    return None, None


def shrink_once(conv) -> bool:
    a = lr.attrs_of(conv)
    if a["groups"] != 1 or len(conv.operands) != 1:
        return False
    users = _consumers(conv.results[0])
    if not users:
        return False
    w = a["weight"]
    K = w.shape[0]
    bias = a["bias"] if a["bias"] is not None else np.zeros(K, np.float32)
    dead = ~w.reshape(K, -1).any(axis=1)
    const = _act(a["act"], a["act_params"], bias)  # a dead filter's output value
    unread = [~ba["weight"].any(axis=(0, 2, 3)) for _, _, ba in users]
    seen = []  # per user: the constant each dead channel arrives as (NaN: not constant any more)
    removable = np.ones(K, bool)
    for (_, path, ba), skip in zip(users, unread):
        v = np.where(dead, const, np.nan)
        for p in path:
            v = _through(p, v)
        seen.append(v)
        unpadded = not any(ba["padding"])
        removable &= skip | (dead & ((v == 0) | (np.isfinite(v) & unpadded)))
    carrier, mergeable = _carrier(users, seen, unread, dead & ~removable)
    if carrier is not None:
        mergeable[carrier] = False
        removable |= mergeable
    if removable.all():
        removable[0] = False  # keep one channel: no empty tensors
    if not removable.any():
        return False  # (returning True here would make the pass loop forever)
    keep = np.flatnonzero(~removable)
    gone = np.flatnonzero(removable)
    for (b, path, ba), v, skip in zip(users, seen, unread):
        wb = ba["weight"].astype(np.float64)
        vg = v[gone]
        const_in = np.isfinite(vg) & (vg != 0) & ~skip[gone]  # channels B reads as a non-zero constant
        if const_in.any() and not any(ba["padding"]):
            extra = (wb[:, gone[const_in]].sum(axis=(2, 3)) * vg[const_in]).sum(axis=1)
            bb = ba["bias"] if ba["bias"] is not None else np.zeros(wb.shape[0], np.float32)
            lr.set_attr(b, "bias", (bb + extra).astype(np.float32))
        elif const_in.any():  # padded: onto the carrier, which B sees as the constant v[carrier]
            assert carrier is not None, "a padded consumer reads a removed constant channel without a carrier"
            wb[:, carrier] += np.tensordot(vg[const_in] / v[carrier], wb[:, gone[const_in]], axes=([0], [1]))
        nw = np.ascontiguousarray(wb[:, keep].astype(np.float32))
        lr.set_attr(b, "weight", nw)
        _set_sparsity(b, _sliced_sparsity(ba["sparsity"], nw, cols=keep))
        for p in path:
            _rebuild(p, len(keep))
    nw = np.ascontiguousarray(w[keep])
    lr.set_attr(conv, "weight", nw)
    if a["bias"] is not None:
        lr.set_attr(conv, "bias", np.ascontiguousarray(a["bias"][keep]))
    _set_sparsity(conv, _sliced_sparsity(a["sparsity"], nw, rows=keep))
    _rebuild(conv, len(keep))
    return True


@register
class ShrinkPrunedChannels(Pass):
    """Remove the channels that filter / channel pruning left dead from both convs around them."""

    argument = "lr-shrink-pruned-channels"
    summary = ("drop dead channels (all-zero filters or never-read inputs) between convs, shrinking both "
               "(exact; constants of dead filters fold into an unpadded consumer's bias)")

    def run(self, module):
        changed = True
        while changed:  # a consumer that lost inputs may now have dead filters of its own
            changed = False
            for op in lr_ops(module, "lr.conv2d"):
                changed |= shrink_once(op)

