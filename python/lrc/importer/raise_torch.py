"""Raise torch-dialect IR (as imported from PyTorch) into the `lr` dialect, one op per layer.

The torch function is rebuilt as a `func.func` over builtin tensors; every aten op maps to one lr op
(or to nothing, for identities such as eval-mode dropout). An aten op without a mapping raises
`UnsupportedOpError` naming it and its source location: we never guess at semantics.
"""
from __future__ import annotations

import re

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func

from lrc.dialects import lr

PARAM_NAME_ATTR = "lr.param_name"  # set by fx_import on weight literals

NAME_ATTR = "lr.name"


class ImportError_(ValueError):
    """The model cannot be expressed in lr (bad dtype, dynamic shape, unsupported argument)."""


class UnsupportedOpError(NotImplementedError):
    """An aten op that lrc has no lowering for; the message names the op and where it comes from."""


def describe_location(loc: ir.Location) -> str:
    """'file.py:12' style text for the user's innermost frame of a torch-mlir location."""
    text = str(loc)
    frames = re.findall(r'"([^"]+)":(\d+)', text)
    user = [f for f in frames if "/torch/" not in f[0] and "site-packages" not in f[0]]
    pick = (user or frames)
    if not pick:
        return "unknown location"
    f, line = pick[-1] if user else pick[0]
    return f"{f}:{line}"


_VT = re.compile(r"!torch\.vtensor<\[([-0-9,]*)\],(\w+)>")


def _tensor_type_of(t: ir.Type, what: str, loc) -> ir.RankedTensorType:
    m = _VT.fullmatch(str(t))
    if not m:
        raise ImportError_(f"{what} has type {t} at {describe_location(loc)}: lrc needs tensors of static shape")
    dims = [int(d) for d in m.group(1).split(",") if d != ""]
    if any(d < 0 for d in dims):
        raise ImportError_(f"{what} has a dynamic shape {dims} at {describe_location(loc)}: lrc needs static shapes")
    if m.group(2) != "f32":
        raise ImportError_(f"{what} has dtype {m.group(2)} at {describe_location(loc)}: lrc compiles float32 models")
    return ir.RankedTensorType.get(dims, ir.F32Type.get())


class _Raiser:
    def __init__(self, sparsity_by_layer: dict[str, dict] | None):
        self.values: dict = {}  # torch Value -> lr Value (hashable by identity of the MLIR value)
        self.sparsity = sparsity_by_layer or {}

    # --- reading torch constants --------------------------------------------------------------
    def const(self, v: ir.Value):
        owner = v.owner
        name = owner.operation.name
        if name == "torch.constant.none":
            return None
        if name in ("torch.constant.int", "torch.constant.float", "torch.constant.bool"):
            a = owner.attributes["value"]
            if isinstance(a, ir.BoolAttr):
                return a.value
            if isinstance(a, ir.IntegerAttr):
                return bool(a.value) if name.endswith("bool") else a.value
            return a.value
        if name == "torch.constant.str":
            return ir.StringAttr(owner.attributes["value"]).value
        if name == "torch.prim.ListConstruct":
            return [self.const(o) for o in owner.operands]
        raise ImportError_(f"expected a constant argument, got the result of {name}")

    def tensor(self, v: ir.Value) -> ir.Value:
        if v in self.values:
            return self.values[v]
        owner = v.owner
        if isinstance(owner, ir.OpView) or hasattr(owner, "name"):
            if owner.operation.name == "torch.vtensor.literal":
                arr = self.literal(v)
                attr = ir.DenseElementsAttr.get(np.ascontiguousarray(arr, np.float32), type=ir.F32Type.get(),
                                                shape=list(arr.shape))
                c = arith.ConstantOp(ir.RankedTensorType.get(list(arr.shape), ir.F32Type.get()), attr,
                                     loc=owner.location).result
                self.values[v] = c
                return c
        raise ImportError_(f"value {v} has no lr equivalent")

    def literal(self, v: ir.Value) -> np.ndarray:
        owner = v.owner
        if owner.operation.name != "torch.vtensor.literal":
            raise ImportError_(f"expected a weight tensor, got the result of {owner.operation.name} at "
                               f"{describe_location(owner.location)}")
        a = owner.attributes["value"]
        if isinstance(a, ir.DenseElementsAttr) and a.is_splat:
            return np.full(a.type.shape, a.get_splat_value().value, dtype=np.float32)
        return np.array(a).astype(np.float32, copy=False)

    def maybe_literal(self, v: ir.Value):
        return None if v.owner.operation.name == "torch.constant.none" else self.literal(v)

    def scalar_or_tensor(self, v: ir.Value, loc) -> ir.Value:
        if str(v.type).startswith("!torch.vtensor"):
            return self.tensor(v)
        x = self.const(v)
        if not isinstance(x, (int, float)):
            raise ImportError_(f"expected a number or tensor, got {x!r}")
        attr = ir.DenseElementsAttr.get_splat(ir.RankedTensorType.get([], ir.F32Type.get()),
                                              ir.FloatAttr.get(ir.F32Type.get(), float(x)))
        return arith.ConstantOp(attr.type, attr, loc=loc).result

    def param_name(self, v: ir.Value) -> str | None:
        a = v.owner.attributes.get(PARAM_NAME_ATTR) if v.owner.operation.name == "torch.vtensor.literal" else None
        return ir.StringAttr(a).value if a is not None else None


def _pairs(x, what):
    if isinstance(x, int):
        return (x, x)
    if len(x) == 1:
        return (x[0], x[0])
    if len(x) != 2:
        raise ImportError_(f"{what} must have 1 or 2 values, got {x}")
    return tuple(x)


def _emit(r: _Raiser, op, name: str, operands, attrs, result_type=None):
    loc = op.location
    shape = None if result_type is None else tuple(result_type.shape)
    try:
        new = lr.build(name, operands, attrs, result_shape=shape, loc=loc)
    except lr.ShapeError as e:
        raise ImportError_(f"{op.operation.name} at {describe_location(loc)}: {e}") from None
    return new


# Each converter: (raiser, torch op, result tensor type) -> lr Value or None (identity of operand 0).
def _conv(r, op, rt):
    o = list(op.operands)
    if op.operation.name == "torch.aten.convolution":
        x, w, b, stride, pad, dil, transposed, out_pad, groups = o
        if r.const(transposed):
            return _conv_transpose_impl(r, op, rt, x, w, b, stride, pad, out_pad, groups, dil)
    else:
        x, w, b, stride, pad, dil, groups = o
    weight = r.literal(w)
    padv = r.const(pad)
    if isinstance(padv, str):
        if padv == "valid":
            padv = [0, 0]
        else:  # "same": torch puts the odd pixel at the bottom/right
            kh, kw = weight.shape[2:]
            d = _pairs(r.const(dil), "dilation")
            tot = (d[0] * (kh - 1), d[1] * (kw - 1))
            pads = (tot[0] // 2, tot[1] // 2, tot[0] - tot[0] // 2, tot[1] - tot[1] // 2)
            padv = None
    if padv is not None:
        ph, pw = _pairs(padv, "padding")
        pads = (ph, pw, ph, pw)
    attrs = {"weight": weight, "bias": r.maybe_literal(b), "stride": _pairs(r.const(stride), "stride"),
             "padding": pads, "dilation": _pairs(r.const(dil), "dilation"), "groups": r.const(groups)}
    name = r.param_name(w)
    layer = name[: -len(".weight")] if name and name.endswith(".weight") else name
    if layer in r.sparsity:
        attrs["sparsity"] = r.sparsity[layer]
    new = _emit(r, op, "conv2d", [r.tensor(x)], attrs, rt)
    if layer:
        new.attributes[NAME_ATTR] = ir.StringAttr.get(layer)
    return new.result


def _conv_transpose_impl(r, op, rt, x, w, b, stride, pad, out_pad, groups, dil):
    attrs = {"weight": r.literal(w), "bias": r.maybe_literal(b), "stride": _pairs(r.const(stride), "stride"),
             "padding": _pairs(r.const(pad), "padding"), "output_padding": _pairs(r.const(out_pad), "output_padding"),
             "dilation": _pairs(r.const(dil), "dilation"), "groups": r.const(groups)}
    return _emit(r, op, "conv_transpose2d", [r.tensor(x)], attrs, rt).result


def _conv_transpose(r, op, rt):
    x, w, b, stride, pad, out_pad, groups, dil = list(op.operands)
    return _conv_transpose_impl(r, op, rt, x, w, b, stride, pad, out_pad, groups, dil)


def _batch_norm(r, op, rt):
    x, w, b, mean, var = list(op.operands)[:5]
    eps = r.const(list(op.operands)[7])
    if op.operation.name.endswith("batch_norm") and r.const(list(op.operands)[5]):
        raise ImportError_(f"batch_norm in training mode at {describe_location(op.location)}: call model.eval()")
    if mean.owner.operation.name == "torch.constant.none":
        raise ImportError_(f"batch_norm without running statistics at {describe_location(op.location)}")
    attrs = {"weight": r.maybe_literal(w), "bias": r.maybe_literal(b), "mean": r.literal(mean),
             "var": r.literal(var), "eps": eps}
    return _emit(r, op, "batch_norm", [r.tensor(x)], attrs, rt).result


def _instance_norm(r, op, rt):
    x, w, b, rm, rv, use_input_stats, momentum, eps = list(op.operands)[:8]
    if not r.const(use_input_stats):
        raise ImportError_(f"instance_norm with track_running_stats at {describe_location(op.location)} is not "
                           "supported")
    attrs = {"weight": r.maybe_literal(w), "bias": r.maybe_literal(b), "eps": r.const(eps)}
    return _emit(r, op, "instance_norm", [r.tensor(x)], attrs, rt).result


def _f32(shape):
    return ir.RankedTensorType.get(list(shape), ir.F32Type.get())


def _splat_const(value: np.ndarray, loc) -> ir.Value:
    attr = ir.DenseElementsAttr.get(np.ascontiguousarray(value, np.float32), type=ir.F32Type.get())
    return arith.ConstantOp(attr.type, attr, loc=loc).result


def _normalise_runs(r, op, x, rows: int, run: int, eps: float):
    """x viewed as [1, rows, run], each run normalised to zero mean and unit variance by
    lr.instance_norm (its two-pass, f64-accumulated plane statistics), viewed back."""
    shape = tuple(ir.RankedTensorType(x.type).shape)
    flat = _emit(r, op, "reshape", [x], {}, _f32([1, rows, run])).result
    normed = _emit(r, op, "instance_norm", [flat], {"weight": None, "bias": None, "eps": eps}).result
    return _emit(r, op, "reshape", [normed], {}, _f32(shape)).result


def _group_norm(r, op, rt):
    """aten.group_norm: each (image, group) run of C/G channels x H x W is normalised as one plane,
    then the per-channel affine runs as a batch_norm with zero mean and unit variance (one pass)."""
    x, groups, w, b, eps = list(op.operands)[:5]
    xv = r.tensor(x)
    shape = tuple(ir.RankedTensorType(xv.type).shape)
    g = r.const(groups)
    if len(shape) < 2 or shape[1] % g:
        raise UnsupportedOpError(f"aten.group_norm of {list(shape)} into {g} groups at "
                                 f"{describe_location(op.location)}: the channels must divide evenly")
    run = (shape[1] // g) * int(np.prod(shape[2:], dtype=np.int64))
    y = _normalise_runs(r, op, xv, shape[0] * g, run, float(r.const(eps)))
    gamma, beta = r.maybe_literal(w), r.maybe_literal(b)
    if gamma is None and beta is None:
        return y
    c = shape[1]
    attrs = {"weight": gamma, "bias": beta, "mean": np.zeros(c, np.float32), "var": np.ones(c, np.float32), "eps": 0.0}
    return _emit(r, op, "batch_norm", [y], attrs, rt).result


def _layer_norm(r, op, rt):
    """aten.layer_norm over the trailing dims (ConvNeXt's channels-last LayerNorm): each run is
    normalised as a plane, then the elementwise affine by broadcasting mul / add."""
    x, nshape, w, b, eps = list(op.operands)[:5]
    xv = r.tensor(x)
    shape = tuple(ir.RankedTensorType(xv.type).shape)
    norm = list(r.const(nshape))
    if tuple(shape[len(shape) - len(norm):]) != tuple(norm):
        raise UnsupportedOpError(f"aten.layer_norm over {norm} of {list(shape)} at {describe_location(op.location)}")
    run = int(np.prod(norm, dtype=np.int64))
    y = _normalise_runs(r, op, xv, int(np.prod(shape, dtype=np.int64)) // run, run, float(r.const(eps)))
    gamma, beta = r.maybe_literal(w), r.maybe_literal(b)
    if gamma is not None:
        y = _emit(r, op, "mul", [y, _splat_const(gamma, op.location)], {}, _f32(shape)).result
    if beta is not None:
        y = _emit(r, op, "add", [y, _splat_const(beta, op.location)], {}, _f32(shape)).result
    return y


def _unary(name):
    def conv(r, op, rt):
        return _emit(r, op, name, [r.tensor(op.operands[0])], {}, rt).result
    return conv


def _hardtanh(r, op, rt):
    lo, hi = r.const(op.operands[1]), r.const(op.operands[2])
    if (lo, hi) == (0, 6):
        return _emit(r, op, "relu6", [r.tensor(op.operands[0])], {}, rt).result
    return _emit(r, op, "clamp", [r.tensor(op.operands[0])], {"min": lo, "max": hi}, rt).result


def _clamp(r, op, rt):
    lo, hi = r.const(op.operands[1]), r.const(op.operands[2])
    lo = -3.4e38 if lo is None else lo
    hi = 3.4e38 if hi is None else hi
    if (lo, hi) == (0, 6):
        return _emit(r, op, "relu6", [r.tensor(op.operands[0])], {}, rt).result
    return _emit(r, op, "clamp", [r.tensor(op.operands[0])], {"min": lo, "max": hi}, rt).result


def _leaky(r, op, rt):
    return _emit(r, op, "leaky_relu", [r.tensor(op.operands[0])], {"alpha": r.const(op.operands[1])}, rt).result


def _gelu(r, op, rt):
    o = list(op.operands)
    approximate = r.const(o[1]) if len(o) > 1 else "none"
    if approximate not in ("none", "tanh"):
        raise ImportError_(f"aten.gelu with approximate={approximate!r} at {describe_location(op.location)} "
                           "(torch knows 'none' and 'tanh')")
    return _emit(r, op, "gelu", [r.tensor(o[0])], {"approximate": approximate}, rt).result


def _elu(kind):
    """aten.elu(x, alpha, scale, input_scale), aten.selu(x) and aten.celu(x, alpha), all as lr.elu."""
    def conv(r, op, rt):
        o = list(op.operands)
        if kind == "selu":
            alpha, scale, input_scale = 1.6732632423543772, 1.0507009873554805, 1.0
        elif kind == "celu":
            alpha = float(r.const(o[1])) if len(o) > 1 else 1.0
            if alpha == 0:
                raise ImportError_(f"aten.celu with alpha = 0 at {describe_location(op.location)}")
            scale, input_scale = 1.0, 1.0 / alpha
        else:
            alpha, scale, input_scale = ([float(r.const(v)) for v in o[1:4]] + [1.0, 1.0, 1.0][len(o) - 1:])[:3]
        return _emit(r, op, "elu", [r.tensor(o[0])], {"alpha": alpha, "scale": scale, "input_scale": input_scale},
                     rt).result
    return conv


def _softplus(r, op, rt):
    o = list(op.operands)
    beta = float(r.const(o[1])) if len(o) > 1 else 1.0
    threshold = float(r.const(o[2])) if len(o) > 2 else 20.0
    if beta == 0:
        raise UnsupportedOpError(f"aten.softplus with beta = 0 at {describe_location(op.location)}")
    return _emit(r, op, "softplus", [r.tensor(o[0])], {"beta": beta, "threshold": threshold}, rt).result


_POW = {2: "square", 0.5: "sqrt", -0.5: "rsqrt", -1: "reciprocal"}


def _pow(r, op, rt):
    e = r.const(op.operands[1])
    x = r.tensor(op.operands[0])
    if e == 1:
        return x
    if e not in _POW:
        raise UnsupportedOpError(f"aten.pow with exponent {e} at {describe_location(op.location)} "
                                 f"(lrc has {sorted(_POW)} and 1)")
    return _emit(r, op, _POW[e], [x], {}, rt).result


def _prelu(r, op, rt):
    return _emit(r, op, "prelu", [r.tensor(op.operands[0])], {"slope": r.literal(op.operands[1])}, rt).result


def _binary(name):
    def conv(r, op, rt):
        o = list(op.operands)
        x = r.scalar_or_tensor(o[0], op.location)
        y = r.scalar_or_tensor(o[1], op.location)
        if name in ("add", "sub") and len(o) > 2:
            alpha = r.const(o[2])
            if alpha not in (None, 1):
                ashape = ir.RankedTensorType(y.type)
                a = ir.DenseElementsAttr.get_splat(ir.RankedTensorType.get([], ir.F32Type.get()),
                                                   ir.FloatAttr.get(ir.F32Type.get(), float(alpha)))
                ac = arith.ConstantOp(a.type, a, loc=op.location).result
                y = _emit(r, op, "mul", [y, ac], {}, ashape).result
        return _emit(r, op, name, [x, y], {}, rt).result
    return conv


def _rsub(r, op, rt):
    """aten.rsub(x, other, alpha) = other - alpha * x."""
    o = list(op.operands)
    x = r.tensor(o[0])
    alpha = r.const(o[2]) if len(o) > 2 else 1
    if alpha not in (None, 1):
        x = _emit(r, op, "mul", [x, r.scalar_or_tensor(o[2], op.location)], {}).result  # x's own shape
    return _emit(r, op, "sub", [r.scalar_or_tensor(o[1], op.location), x], {}, rt).result


def _clamp_side(side):
    def conv(r, op, rt):
        v = r.const(op.operands[1])
        lo, hi = (v, 3.4e38) if side == "min" else (-3.4e38, v)
        return _emit(r, op, "clamp", [r.tensor(op.operands[0])], {"min": lo, "max": hi}, rt).result
    return conv


def _channel_shuffle(r, op, rt):
    """aten.channel_shuffle(x, g): view [N, g, C/g, H, W], swap 1 and 2, view back."""
    x = r.tensor(op.operands[0])
    g = r.const(op.operands[1])
    n, c, *sp = ir.RankedTensorType(x.type).shape
    v = _emit(r, op, "reshape", [x], {}, _f32([n, g, c // g, *sp])).result
    t = _emit(r, op, "permute", [v], {"dims": (0, 2, 1) + tuple(range(3, 3 + len(sp)))},
              _f32([n, c // g, g, *sp])).result
    return _emit(r, op, "reshape", [t], {}, rt).result


def _pixel_unshuffle(r, op, rt):
    """aten.pixel_unshuffle(x, f): [N, C, H, W] -> view [N, C, H/f, f, W/f, f] -> permute to
    [N, C, f, f, H/f, W/f] -> [N, C*f*f, H/f, W/f]."""
    x = r.tensor(op.operands[0])
    f = r.const(op.operands[1])
    n, c, h, w = ir.RankedTensorType(x.type).shape
    v = _emit(r, op, "reshape", [x], {}, _f32([n, c, h // f, f, w // f, f])).result
    t = _emit(r, op, "permute", [v], {"dims": (0, 1, 3, 5, 2, 4)}, _f32([n, c, f, f, h // f, w // f])).result
    return _emit(r, op, "reshape", [t], {}, rt).result


def _vector_norm(r, op, rt):
    """aten.linalg_vector_norm (F.normalize's norm): ord 2 as sqrt(sum(x^2)), ord 1 as sum(|x|),
    ord inf as max(|x|), over adjacent dims."""
    o = list(op.operands)
    x = r.tensor(o[0])
    shape = tuple(ir.RankedTensorType(x.type).shape)
    ordv, dims, keep = r.const(o[1]), r.const(o[2]), r.const(o[3])
    dims = sorted(d % len(shape) for d in dims) if dims else list(range(len(shape)))
    if ordv not in (1, 2, float("inf")):
        raise UnsupportedOpError(f"aten.linalg_vector_norm of order {ordv} at {describe_location(op.location)} "
                                 "(lrc has 1, 2 and inf)")
    try:
        lo, hi = lr.spec.reduce_block(dims, len(shape))
    except lr.ShapeError as e:
        raise UnsupportedOpError(f"aten.linalg_vector_norm over dims {dims} at {describe_location(op.location)}: "
                                 f"{e}") from None
    y = _emit(r, op, "square" if ordv == 2 else "abs", [x], {}, _f32(shape)).result
    y = _emit(r, op, "reduce", [y], {"kind": "max" if ordv == float("inf") else "sum",
                                      "axes": tuple(range(lo, hi + 1)), "keepdim": bool(keep)}, rt).result
    return _emit(r, op, "sqrt", [y], {}, rt).result if ordv == 2 else y


def _conv1d(r, op, rt):
    """aten.conv1d as a conv2d over [N, C, 1, L] (kernel 1 x k), viewed back."""
    x, w, b, stride, pad, dil, groups = list(op.operands)
    xv = r.tensor(x)
    shape = ir.RankedTensorType(xv.type).shape
    if len(shape) != 3:
        raise UnsupportedOpError(f"aten.conv1d of a rank-{len(shape)} input at {describe_location(op.location)} "
                                 "(lrc takes batched [N, C, L])")
    n, c, length = shape
    weight = r.literal(w)
    padv = r.const(pad)
    if isinstance(padv, str):
        raise UnsupportedOpError(f"aten.conv1d with padding='{padv}' at {describe_location(op.location)}")
    (s,), (p,), (d,) = r.const(stride), padv, r.const(dil)
    attrs = {"weight": weight.reshape(weight.shape[0], weight.shape[1], 1, weight.shape[2]),
             "bias": r.maybe_literal(b), "stride": (1, s), "padding": (0, p, 0, p), "dilation": (1, d),
             "groups": r.const(groups)}
    x4 = _emit(r, op, "reshape", [xv], {}, _f32([n, c, 1, length])).result
    out = tuple(rt.shape)
    y = _emit(r, op, "conv2d", [x4], attrs, _f32([out[0], out[1], 1, out[2]])).result
    return _emit(r, op, "reshape", [y], {}, rt).result


_BROADCASTING = {"torch.aten.add.Tensor", "torch.aten.sub.Tensor", "torch.aten.mul.Tensor", "torch.aten.div.Tensor",
                 "torch.aten.maximum", "torch.aten.minimum", "torch.aten.rsub.Tensor"}


def _expand(r, op, rt):
    """aten.expand / expand_as feeding only broadcasting arithmetic: the operand itself (the lr
    binary ops broadcast as torch does); anything else would need the copies, and is refused."""
    users = {u.owner.name for u in op.results[0].uses}
    if not users or not users <= _BROADCASTING:
        raise UnsupportedOpError(f"{op.operation.name[6:]} at {describe_location(op.location)} feeding "
                                 f"{sorted(users) or 'the result'} (lrc expands only into broadcasting arithmetic)")
    return r.tensor(op.operands[0])


def _cat(r, op, rt):
    items = [r.tensor(v) for v in op.operands[0].owner.operands]
    axis = r.const(op.operands[1])
    acc = items[0]
    for v in items[1:-1]:  # torch.cat of n tensors -> a left-leaning chain of binary concats
        acc = _emit(r, op, "concat", [acc, v], {"axis": axis}).result
    if len(items) == 1:
        return acc
    return _emit(r, op, "concat", [acc, items[-1]], {"axis": axis}, rt).result


def _slice_of(r, op, x, axis: int, start: int, end: int):
    """lr.slice of x[start:end] along `axis` (bounds already normalised), or x itself when whole."""
    shape = tuple(ir.RankedTensorType(x.type).shape)
    axis %= len(shape)
    if start == 0 and end == shape[axis]:
        return x
    return _emit(r, op, "slice", [x], {"axis": axis, "start": start, "end": end}).result


def _bounds(v, size: int, default: int) -> int:
    """A torch slice bound: None, negative (from the end) or past the end (clamped)."""
    if v is None:
        return default
    v = v + size if v < 0 else v
    return min(max(v, 0), size)


def _slice(r, op, rt):
    o = list(op.operands)
    x = r.tensor(o[0])
    shape = tuple(ir.RankedTensorType(x.type).shape)
    axis = r.const(o[1]) % len(shape)
    if op.operation.name.startswith("torch.aten.narrow"):
        start = _bounds(r.const(o[2]), shape[axis], 0)
        end, step = start + r.const(o[3]), 1
    else:
        start = _bounds(r.const(o[2]), shape[axis], 0)
        end = _bounds(r.const(o[3]), shape[axis], shape[axis])
        step = r.const(o[4]) if len(o) > 4 else 1
    if step != 1:
        raise UnsupportedOpError(f"aten.slice with step {step} at {describe_location(op.location)} "
                                 "(lrc slices with step 1)")
    if end <= start:
        raise UnsupportedOpError(f"an empty slice [{start}:{end}] of dimension {axis} at "
                                 f"{describe_location(op.location)}")
    return _slice_of(r, op, x, axis, start, end)


def _split(r, op):
    """aten.split / split_with_sizes / chunk: a list of lr.slice values (unpacked by prim.ListUnpack)."""
    o = list(op.operands)
    x = r.tensor(o[0])
    shape = tuple(ir.RankedTensorType(x.type).shape)
    axis = (r.const(o[2]) if len(o) > 2 else 0) % len(shape)
    size = shape[axis]
    name = op.operation.name
    if name.startswith("torch.aten.chunk"):
        step = -(-size // r.const(o[1]))
        sizes = [min(step, size - s) for s in range(0, size, step)]
    elif name.startswith("torch.aten.split_with_sizes"):
        sizes = list(r.const(o[1]))
    else:
        step = r.const(o[1])
        sizes = [min(step, size - s) for s in range(0, size, step)]
    if sum(sizes) != size or min(sizes) < 1:
        raise UnsupportedOpError(f"{name[6:]} into sizes {sizes} of dimension {axis} ({size}) at "
                                 f"{describe_location(op.location)}")
    out, start = [], 0
    for n in sizes:
        out.append(_slice_of(r, op, x, axis, start, start + n))
        start += n
    return out


def _softmax(log: bool):
    """aten.softmax.int / _softmax and the log variants (a dtype argument other than None or
    float32 is refused, since lrc computes in float32)."""
    def conv(r, op, rt):
        o = list(op.operands)
        x = r.tensor(o[0])
        rank = len(ir.RankedTensorType(x.type).shape)
        if op.operation.name.endswith(".int") and len(o) > 2:
            dtype = r.const(o[2])
            if dtype not in (None, 6):  # 6: torch.float32
                raise UnsupportedOpError(f"{op.operation.name[6:]} to dtype {dtype} at "
                                         f"{describe_location(op.location)} (lrc computes in float32)")
        return _emit(r, op, "softmax", [x], {"axis": r.const(o[1]) % rank, "log": log}, rt).result
    return conv


def _max_pool(r, op, rt):
    x, k, s, p, d, ceil = list(op.operands)[:6]
    kk = _pairs(r.const(k), "kernel_size")
    sv = r.const(s)
    attrs = {"kernel": kk, "stride": _pairs(sv, "stride") if sv else kk, "padding": _pairs(r.const(p), "padding"),
             "dilation": _pairs(r.const(d), "dilation"), "ceil_mode": r.const(ceil)}
    return _emit(r, op, "max_pool2d", [r.tensor(x)], attrs, rt).result


def _avg_pool(r, op, rt):
    x, k, s, p, ceil, cip, div = list(op.operands)[:7]
    if r.const(div) is not None:
        raise UnsupportedOpError(f"avg_pool2d with divisor_override at {describe_location(op.location)}")
    kk = _pairs(r.const(k), "kernel_size")
    sv = r.const(s)
    attrs = {"kernel": kk, "stride": _pairs(sv, "stride") if sv else kk, "padding": _pairs(r.const(p), "padding"),
             "ceil_mode": r.const(ceil), "count_include_pad": r.const(cip)}
    return _emit(r, op, "avg_pool2d", [r.tensor(x)], attrs, rt).result


def _adaptive(r, op, rt):
    return _emit(r, op, "adaptive_avg_pool2d", [r.tensor(op.operands[0])],
                 {"output_size": tuple(rt.shape[2:])}, rt).result


def _upsample(mode):
    def conv(r, op, rt):
        o = list(op.operands)
        align = False
        vec = _torch_op_name(op.operation).endswith(".vec")  # (bicubic arrives as a torch.operator)
        if mode in ("bilinear", "bicubic"):
            if vec:
                x, size, align, scales = o[0], o[1], r.const(o[2]), r.const(o[3])
            else:
                x, align, scales = o[0], r.const(o[2]), [r.const(o[3]), r.const(o[4])]
        else:
            if vec:
                x, scales = o[0], r.const(o[2])
            else:
                x, scales = o[0], [r.const(o[2]), r.const(o[3])]
        attrs = {"mode": mode, "size": tuple(rt.shape[2:]), "align_corners": bool(align)}
        if scales and all(s is not None for s in scales):
            attrs["scales"] = tuple(float(s) for s in scales)
        return _emit(r, op, "upsample", [r.tensor(x)], attrs, rt).result
    return conv


def _pixel_shuffle(r, op, rt):
    return _emit(r, op, "pixel_shuffle", [r.tensor(op.operands[0])], {"factor": r.const(op.operands[1])}, rt).result


def _torch_pads_to_tlbr(p, op):
    # torch lists (left, right, top, bottom) for the last two dims
    if len(p) != 4:
        raise UnsupportedOpError(f"padding of {len(p)//2} dimensions ({p}) at {describe_location(op.location)}; "
                                 "lrc pads H and W only")
    left, right, top, bottom = p
    return (top, left, bottom, right)


def _pad(r, op, rt):
    o = list(op.operands)
    name = op.operation.name
    if name == "torch.aten.pad":
        mode, value = r.const(o[2]), r.const(o[3])
    elif name == "torch.aten.constant_pad_nd":
        mode, value = "constant", r.const(o[2])
    elif "reflection" in name:
        mode, value = "reflect", 0.0
    else:
        mode, value = "replicate", 0.0
    if mode not in ("constant", "reflect", "replicate"):
        raise UnsupportedOpError(f"pad mode '{mode}' at {describe_location(op.location)}")
    attrs = {"pads": _torch_pads_to_tlbr(r.const(o[1]), op), "mode": mode, "value": float(value or 0.0)}
    return _emit(r, op, "pad", [r.tensor(o[0])], attrs, rt).result


def _linear(r, op, rt):
    x, w, b = list(op.operands)
    new = _emit(r, op, "linear", [r.tensor(x)], {"weight": r.literal(w), "bias": r.maybe_literal(b)}, rt)
    name = r.param_name(w)
    if name and name.endswith(".weight"):
        new.attributes[NAME_ATTR] = ir.StringAttr.get(name[: -len(".weight")])
    return new.result


def _reshape(r, op, rt):
    x = r.tensor(op.operands[0])
    if tuple(ir.RankedTensorType(x.type).shape) == tuple(rt.shape):
        return x
    return _emit(r, op, "reshape", [x], {}, rt).result


def _permute(r, op, rt):
    x = r.tensor(op.operands[0])
    rank = len(ir.RankedTensorType(x.type).shape)
    if op.operation.name == "torch.aten.permute":
        dims = [d % rank for d in r.const(op.operands[1])]
    else:
        a, b = r.const(op.operands[1]) % rank, r.const(op.operands[2]) % rank
        dims = list(range(rank))
        dims[a], dims[b] = dims[b], dims[a]
    return _emit(r, op, "permute", [x], {"dims": tuple(dims)}, rt).result


def _spatial_mean(r, op, x, rt):
    """The mean over H, W of NCHW: the global average pool (its own fast kernel)."""
    shape = tuple(ir.RankedTensorType(x.type).shape)
    pooled = _emit(r, op, "adaptive_avg_pool2d", [x], {"output_size": (1, 1)},
                   ir.RankedTensorType.get(list(shape[:2]) + [1, 1], ir.F32Type.get())).result
    if tuple(rt.shape) == shape[:2] + (1, 1):
        return pooled
    return _emit(r, op, "reshape", [pooled], {}, rt).result


def _reduce(kind: str, dims_from: str = "list"):
    """torch reductions as lr.reduce: `dims_from` is "list" (a dims list, None or [] = all),
    "int" (one dim: max.dim / min.dim, whose indices result must stay unused) or "all" (x.mean())."""
    def conv(r, op, rt):
        o = list(op.operands)
        x = r.tensor(o[0])
        rank = len(ir.RankedTensorType(x.type).shape)
        if dims_from == "int":
            dims, keep = [r.const(o[1])], r.const(o[2])
        elif dims_from == "all":
            dims, keep = [], False
        else:
            dims = r.const(o[1]) if len(o) > 1 else None
            dims = [dims] if isinstance(dims, int) else dims
            keep = r.const(o[2]) if len(o) > 2 else False
        dims = sorted(d % rank for d in dims) if dims else list(range(rank))
        if kind == "mean" and rank == 4 and dims == [2, 3]:  # the spatial mean: the global average pool
            return _spatial_mean(r, op, x, rt)
        try:
            lo, hi = lr.spec.reduce_block(dims, rank)
        except lr.ShapeError as e:
            raise UnsupportedOpError(f"{op.operation.name[6:]} over dims {dims} at {describe_location(op.location)}: "
                                     f"{e}") from None
        return _emit(r, op, "reduce", [x], {"kind": kind, "axes": tuple(range(lo, hi + 1)), "keepdim": bool(keep)},
                     rt).result
    return conv


def _adaptive_max(r, op, rt):
    size = r.const(op.operands[1])
    if list(size) != [1, 1]:
        raise UnsupportedOpError(f"aten.adaptive_max_pool2d to {list(size)} at {describe_location(op.location)} "
                                 "(lrc has the global one, output size 1)")
    return _emit(r, op, "reduce", [r.tensor(op.operands[0])], {"kind": "max", "axes": (2, 3), "keepdim": True},
                 rt).result


def _identity(r, op, rt):
    return r.tensor(op.operands[0])


CONVERTERS = {
    "aten.conv2d": _conv, "aten.conv2d.padding": _conv, "aten.convolution": _conv,
    "aten.conv_transpose2d.input": _conv_transpose,
    "aten.batch_norm": _batch_norm, "aten._native_batch_norm_legit_no_training": None,
    "aten.instance_norm": _instance_norm, "aten.group_norm": _group_norm, "aten.layer_norm": _layer_norm,
    "aten.relu": _unary("relu"), "aten.relu6": _unary("relu6"), "aten.sigmoid": _unary("sigmoid"),
    "aten.tanh": _unary("tanh"), "aten.hardswish": _unary("hardswish"), "aten.hardtanh": _hardtanh,
    "aten.clamp": _clamp, "aten.leaky_relu": _leaky, "aten.prelu": _prelu,
    "aten.hardsigmoid": _unary("hardsigmoid"), "aten.silu": _unary("silu"), "aten.gelu": _gelu,
    "aten.mish": _unary("mish"), "aten.pow.Tensor_Scalar": _pow, "aten.square": _unary("square"),
    **{f"aten.{n}": _unary(n) for n in ("abs", "neg", "exp", "log", "sqrt", "rsqrt", "reciprocal")},
    "aten.softplus": _softplus,
    "aten.elu": _elu("elu"), "aten.selu": _elu("selu"), "aten.celu": _elu("celu"),
    "aten.add.Tensor": _binary("add"), "aten.add.Scalar": _binary("add"), "aten.sub.Tensor": _binary("sub"),
    "aten.sub.Scalar": _binary("sub"), "aten.mul.Tensor": _binary("mul"), "aten.mul.Scalar": _binary("mul"),
    "aten.div.Tensor": _binary("div"), "aten.div.Scalar": _binary("div"),
    "aten.sum.dim_IntList": _reduce("sum"), "aten.sum": _reduce("sum", "all"), "aten.mean": _reduce("mean", "all"),
    "aten.amax": _reduce("max"), "aten.amin": _reduce("min"), "aten.max.dim": _reduce("max", "int"),
    "aten.min.dim": _reduce("min", "int"), "aten.adaptive_max_pool2d": _adaptive_max,
    "aten.softmax.int": _softmax(False), "aten._softmax": _softmax(False),
    "aten.log_softmax.int": _softmax(True), "aten._log_softmax": _softmax(True),
    "aten.rsub.Scalar": _rsub, "aten.rsub.Tensor": _rsub, "aten.maximum": _binary("maximum"),
    "aten.minimum": _binary("minimum"), "aten.clamp_min": _clamp_side("min"), "aten.clamp_max": _clamp_side("max"),
    "aten.channel_shuffle": _channel_shuffle, "aten.pixel_unshuffle": _pixel_unshuffle,
    "aten.linalg_vector_norm": _vector_norm, "aten.conv1d": _conv1d, "aten.expand_as": _expand,
    "aten.expand": _expand,
    "aten.cat": _cat, "aten.concat": _cat, "aten.slice.Tensor": _slice, "aten.narrow": _slice,
    "aten.max_pool2d": _max_pool, "aten.avg_pool2d": _avg_pool, "aten.adaptive_avg_pool2d": _adaptive,
    "aten.upsample_nearest2d.vec": _upsample("nearest"), "aten.upsample_nearest2d": _upsample("nearest"),
    "aten.upsample_bilinear2d.vec": _upsample("bilinear"), "aten.upsample_bilinear2d": _upsample("bilinear"),
    "aten.upsample_bicubic2d.vec": _upsample("bicubic"), "aten.upsample_bicubic2d": _upsample("bicubic"),
    "aten.pixel_shuffle": _pixel_shuffle,
    "aten.pad": _pad, "aten.constant_pad_nd": _pad, "aten.reflection_pad2d": _pad, "aten.replication_pad2d": _pad,
    "aten.linear": _linear,
    "aten.flatten.using_ints": _reshape, "aten.view": _reshape, "aten.reshape": _reshape,
    "aten._unsafe_view": _reshape, "aten.squeeze.dim": _reshape, "aten.squeeze.dims": _reshape,
    "aten.squeeze": _reshape, "aten.unsqueeze": _reshape,
    "aten.permute": _permute, "aten.transpose.int": _permute,
    "aten.mean.dim": _reduce("mean"),
    "aten.dropout": _identity, "aten.clone": _identity, "aten.contiguous": _identity, "aten.detach": _identity,
    "aten.alias": _identity, "aten.feature_dropout": _identity,
}
CONVERTERS = {k: v for k, v in CONVERTERS.items() if v is not None}
# Ops that return a list of tensors: (raiser, torch op) -> [lr Value], read by torch.prim.ListUnpack.
LIST_CONVERTERS = {"aten.split.Tensor": _split, "aten.split_with_sizes": _split, "aten.chunk": _split}

_CONSTANT_OPS = {"torch.constant.int", "torch.constant.float", "torch.constant.bool", "torch.constant.str",
                 "torch.constant.none", "torch.prim.ListConstruct", "torch.vtensor.literal"}


def _torch_op_name(op) -> str:
    """The op's torch name; ops the torch dialect has no definition for arrive as `torch.operator`
    with the real name ("aten.upsample_bicubic2d.vec") in an attribute."""
    if op.name == "torch.operator" and "name" in op.attributes:
        name = ir.StringAttr(op.attributes["name"]).value
        return name if name.startswith("torch.") else "torch." + name
    return op.name


def _aten_name(op_name: str) -> str:
    # torch.aten.relu_ (in place) behaves as torch.aten.relu on value tensors
    base = op_name[len("torch."):]
    parts = base.split(".")
    if len(parts) >= 2 and parts[1].endswith("_") and not parts[1].startswith("_"):
        parts[1] = parts[1][:-1]
    return ".".join(parts)


def raise_torch_module(torch_module: ir.Module, sparsity_by_layer: dict | None = None) -> ir.Module:
    """Build a new lr-dialect module (same context) from a torch-dialect module."""
    ctx = torch_module.context
    lr.load(ctx)
    funcs = [op for op in torch_module.body.operations if op.operation.name == "func.func"]
    with ctx, ir.Location.unknown(ctx):
        out = ir.Module.create()
        for f in funcs:
            _raise_func(f, out, sparsity_by_layer)
    return out


def _raise_func(tf, out: ir.Module, sparsity_by_layer):
    r = _Raiser(sparsity_by_layer)
    block = tf.regions[0].blocks[0]
    ret = [op for op in block.operations if op.operation.name == "func.return"][0]
    try:
        in_types = [_tensor_type_of(a.type, f"input #{i}", tf.location) for i, a in enumerate(block.arguments)]
        out_types = [_tensor_type_of(v.type, f"output #{i}", ret.location) for i, v in enumerate(ret.operands)]
    except ImportError_ as e:
        e.location = tf.location
        raise
    name = ir.StringAttr(tf.attributes["sym_name"]).value
    with ir.InsertionPoint(out.body):
        f = func.FuncOp(name, (in_types, out_types), loc=tf.location)
    entry = f.add_entry_block()
    lists: dict = {}
    for ta, na in zip(block.arguments, entry.arguments):
        r.values[ta] = na
    with ir.InsertionPoint(entry):
        for op in block.operations:
            if op.operation.name in _CONSTANT_OPS:
                continue
            if op.operation.name == "func.return":
                func.ReturnOp([r.tensor(v) for v in op.operands], loc=op.location)
                continue
            if op.operation.name == "torch.prim.ListUnpack" and op.operands[0] in lists:
                for res, v in zip(op.results, lists[op.operands[0]]):
                    r.values[res] = v
                continue
            key = _aten_name(_torch_op_name(op.operation))
            if key in LIST_CONVERTERS:
                try:
                    with op.location:
                        lists[op.results[0]] = LIST_CONVERTERS[key](r, op)
                except (ImportError_, UnsupportedOpError) as e:
                    e.location = op.location
                    raise
                continue
            conv = CONVERTERS.get(key)
            if conv is None:
                err = UnsupportedOpError(
                    f"lrc has no lowering for {key} (at {describe_location(op.location)}); supported layers: "
                    "conv, conv-transpose, batch/instance norm, activations, add/sub/mul/div, cat, pooling, "
                    "upsample, pixel shuffle, pad, linear, reshape/permute")
                err.location = op.location
                raise err
            for j, extra in enumerate(list(op.results)[1:], 1):
                if list(extra.uses):  # e.g. the indices of max.dim / adaptive_max_pool2d
                    err = UnsupportedOpError(f"result #{j} of {key} (at {describe_location(op.location)}) is used; "
                                             "lrc computes only the first (the values)")
                    err.location = op.location
                    raise err
            try:
                rt = _tensor_type_of(op.results[0].type, f"result of {key}", op.location)
                with op.location:
                    r.values[op.results[0]] = conv(r, op, rt)
            except (ImportError_, UnsupportedOpError) as e:
                e.location = op.location  # lets a pass driver report it as a located diagnostic
                raise
    return f
