"""What each `lr` op takes: operand counts, attributes, and the result shape it must have.

The IRDL side of the dialect only knows "variadic tensor operands, one tensor result"; everything an
op means lives here as plain Python data so that the verifier, the importer and the passes share one
source of truth (and error messages can name the exact field that is wrong).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# Standalone activation ops (each fuses into its producer as that producer's `act`).
ACTIVATION_OPS = ("relu", "relu6", "leaky_relu", "clamp", "sigmoid", "tanh", "hardswish", "hardsigmoid", "silu",
                  "gelu", "elu", "mish", "softplus", "abs", "neg", "exp", "log", "sqrt", "rsqrt", "reciprocal",
                  "square")
# Values of a layer's `act`: every activation op, gelu's tanh form (`activation_of`), and none.
ACTIVATIONS = ("none",) + ACTIVATION_OPS + ("gelu_tanh",)
# The `act_params` of each parametrised activation, in order: the attributes of its standalone op.
ACT_PARAMS = {"leaky_relu": ("alpha",), "clamp": ("min", "max"), "elu": ("alpha", "scale", "input_scale"),
              "softplus": ("beta", "threshold")}


def activation_of(op_name: str, attrs: dict) -> tuple[str, tuple]:
    """(act, act_params) of a standalone activation op (`op_name` without the "lr." prefix)."""
    if op_name not in ACTIVATION_OPS:
        raise ValueError(f"'{op_name}' is not an activation op")
    if op_name == "gelu":
        return ("gelu_tanh" if attrs.get("approximate") == "tanh" else "gelu"), ()
    return op_name, tuple(float(attrs[k]) for k in ACT_PARAMS.get(op_name, ()))


class ShapeError(ValueError):
    """A field of an op is inconsistent with its operands; the message names the field."""


@dataclass(frozen=True)
class AttrSpec:
    """One attribute: `kind` is ints/int/float/floats/str/bool/elements/sparsity."""

    kind: str
    required: bool = False
    default: Any = None
    length: int | None = None  # for ints/floats
    choices: tuple[str, ...] | None = None  # for str


@dataclass(frozen=True)
class OpSpec:
    name: str
    min_operands: int
    max_operands: int | None  # None: unbounded
    attrs: dict[str, AttrSpec] = field(default_factory=dict)
    # infer(attrs, operand_shapes) -> result shape; raises ShapeError naming the bad field.
    infer: Callable[[dict, list[tuple[int, ...]]], tuple[int, ...]] | None = None
    summary: str = ""
    # IRDL operand fields; "name*" is a variadic tail (0 or 1 operands here). IRDL binds one type
    # per constraint variable, so ops with differently typed operands need one field each.
    operand_names: tuple[str, ...] = ("input",)


def _ints(n, default=None, required=False):
    return AttrSpec("ints", required=required, default=default, length=n)


def _conv_out(size, k, s, p0, p1, d):
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def _require_rank(shapes, i, rank, what):
    if len(shapes[i]) != rank:
        raise ShapeError(f"{what} must have rank {rank}, got shape {list(shapes[i])}")


def _infer_conv2d(a, shapes):
    _require_rank(shapes, 0, 4, "input")
    n, c, h, w = shapes[0]
    wshape = a["weight"].shape
    if len(wshape) != 4:
        raise ShapeError(f"'weight' must have rank 4 [K, C/groups, KH, KW], got {list(wshape)}")
    k, cg, kh, kw = wshape
    g = a["groups"]
    if g < 1 or c % g or k % g:
        raise ShapeError(f"'groups' = {g} must divide input channels {c} and output channels {k}")
    if cg * g != c:
        raise ShapeError(f"'weight' expects {cg * g} input channels (C/groups = {cg}, groups = {g}), input has {c}")
    if a.get("bias") is not None and tuple(a["bias"].shape) != (k,):
        raise ShapeError(f"'bias' must have shape [{k}], got {list(a['bias'].shape)}")
    sh, sw = a["stride"]
    pt, pl, pb, pr = a["padding"]
    dh, dw = a["dilation"]
    if min(sh, sw, dh, dw) < 1 or min(pt, pl, pb, pr) < 0:
        raise ShapeError("'stride'/'dilation' must be >= 1 and 'padding' >= 0")
    oh, ow = _conv_out(h, kh, sh, pt, pb, dh), _conv_out(w, kw, sw, pl, pr, dw)
    if oh < 1 or ow < 1:
        raise ShapeError(f"kernel {kh}x{kw} does not fit the padded input {h}x{w}")
    out = (n, k, oh, ow)
    if len(shapes) == 2 and tuple(shapes[1]) != out:
        raise ShapeError(f"residual operand must have the output shape {list(out)}, got {list(shapes[1])}")
    _check_act(a)
    if a.get("sparsity") is not None:
        _check_sparsity(a["sparsity"], k, cg, kh * kw)
    return out


def _check_sparsity(sp, k, cg, taps):
    kind, library, ids = sp["kind"], sp["library"], sp["ids"]
    for i, pat in enumerate(library):
        if not pat or min(pat) < 0 or max(pat) >= taps or len(set(pat)) != len(pat):
            raise ShapeError(f"sparsity pattern #{i} {list(pat)} must list distinct kernel positions in [0, {taps})")
    if kind in ("pattern", "pattern+kernel") and not library:
        raise ShapeError(f"sparsity kind \"{kind}\" needs a pattern library")
    if ids is not None:
        if tuple(ids.shape) != (k, cg):
            raise ShapeError(f"sparsity ids must have shape [{k}, {cg}] (filters x channels per group), "
                             f"got {list(ids.shape)}")
        hi = max(len(library), 1)
        if ids.size and (ids.min() < -1 or ids.max() >= hi):
            raise ShapeError(f"sparsity ids must be in [-1, {hi}) (-1 = removed kernel), got values in "
                             f"[{int(ids.min())}, {int(ids.max())}]")


def _infer_conv_transpose2d(a, shapes):
    _require_rank(shapes, 0, 4, "input")
    n, c, h, w = shapes[0]
    wshape = a["weight"].shape
    if len(wshape) != 4:
        raise ShapeError(f"'weight' must have rank 4 [C, K/groups, KH, KW], got {list(wshape)}")
    cw, kg, kh, kw = wshape
    g = a["groups"]
    if cw != c or c % g:
        raise ShapeError(f"'weight' expects {cw} input channels, input has {c} (groups = {g})")
    k = kg * g
    if a.get("bias") is not None and tuple(a["bias"].shape) != (k,):
        raise ShapeError(f"'bias' must have shape [{k}], got {list(a['bias'].shape)}")
    sh, sw = a["stride"]
    ph, pw = a["padding"]
    oph, opw = a["output_padding"]
    dh, dw = a["dilation"]
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    if oh < 1 or ow < 1:
        raise ShapeError("transposed convolution gives an empty output")
    _check_act(a)
    return (n, k, oh, ow)


def _check_act(a):
    act = a.get("act", "none")
    params = a.get("act_params") or ()
    need = len(ACT_PARAMS.get(act, ()))
    if len(params) != need:
        raise ShapeError(f"'act_params' must have {need} values for act = \"{act}\", got {len(params)}")


def _per_channel(*names, required=True):
    def infer(a, shapes):
        if len(shapes[0]) < 2:
            raise ShapeError(f"input must have a channel dimension, got shape {list(shapes[0])}")
        c = shapes[0][1]
        for n in names:
            v = a.get(n)
            if v is None:
                continue
            if tuple(v.shape) != (c,):
                raise ShapeError(f"'{n}' must have shape [{c}] (one value per channel), got {list(v.shape)}")
        return tuple(shapes[0])

    return infer


def _same(a, shapes):
    return tuple(shapes[0])


def _infer_prelu(a, shapes):
    s = a["slope"].shape
    c = shapes[0][1] if len(shapes[0]) > 1 else 1
    if tuple(s) not in ((1,), (c,)):
        raise ShapeError(f"'slope' must have shape [1] or [{c}], got {list(s)}")
    return tuple(shapes[0])


def broadcast_shapes(x, y):
    """torch/numpy broadcasting; raises ShapeError on a mismatch."""
    r = max(len(x), len(y))
    x = (1,) * (r - len(x)) + tuple(x)
    y = (1,) * (r - len(y)) + tuple(y)
    out = []
    for i, (p, q) in enumerate(zip(x, y)):
        if p != q and 1 not in (p, q):
            raise ShapeError(f"operand shapes {list(x)} and {list(y)} do not broadcast (dimension {i})")
        out.append(max(p, q))
    return tuple(out)


def _infer_binary(a, shapes):
    return broadcast_shapes(shapes[0], shapes[1])


def _infer_concat(a, shapes):
    rank = len(shapes[0])
    axis = a["axis"]
    if not -rank <= axis < rank:
        raise ShapeError(f"'axis' = {axis} is out of range for rank {rank}")
    axis %= rank
    out = list(shapes[0])
    for i, s in enumerate(shapes[1:], 1):
        if len(s) != rank or any(s[d] != out[d] for d in range(rank) if d != axis):
            raise ShapeError(f"operand #{i} shape {list(s)} does not match {list(shapes[0])} off the concat axis {axis}")
        out[axis] += s[axis]
    return tuple(out)


def _infer_slice(a, shapes):
    shape = shapes[0]
    rank = len(shape)
    axis = a["axis"]
    if not -rank <= axis < rank:
        raise ShapeError(f"'axis' = {axis} is out of range for rank {rank}")
    axis %= rank
    start, end = a["start"], a["end"]
    if not 0 <= start < end <= shape[axis]:
        raise ShapeError(f"'start' = {start}, 'end' = {end} must satisfy 0 <= start < end <= {shape[axis]} "
                         f"(dimension {axis} of {list(shape)})")
    out = list(shape)
    out[axis] = end - start
    return tuple(out)


def reduce_block(axes, rank: int) -> tuple[int, int]:
    """The reduced axes as one contiguous block [first, last] (normalised), or ShapeError."""
    ax = sorted({d % rank for d in axes}) if all(-rank <= d < rank for d in axes) else None
    if not ax:
        raise ShapeError(f"'axes' = {list(axes)} must name 1..{rank} distinct axes of a rank-{rank} tensor")
    if ax != list(range(ax[0], ax[-1] + 1)):
        raise ShapeError(f"'axes' = {list(axes)} are not adjacent (lrc reduces one contiguous block of axes)")
    return ax[0], ax[-1]


def _infer_reduce(a, shapes):
    shape = shapes[0]
    lo, hi = reduce_block(a["axes"], len(shape))
    if a["keepdim"]:
        return tuple(1 if lo <= d <= hi else s for d, s in enumerate(shape))
    return tuple(s for d, s in enumerate(shape) if not lo <= d <= hi)


def _infer_softmax(a, shapes):
    rank = len(shapes[0])
    if not -rank <= a["axis"] < rank:
        raise ShapeError(f"'axis' = {a['axis']} is out of range for rank {rank}")
    return tuple(shapes[0])


def _pool_out(size, k, s, p, d, ceil):
    eff = d * (k - 1) + 1
    if ceil:
        o = -(-(size + 2 * p - eff) // s) + 1
        if (o - 1) * s >= size + p:  # torch: the last window must start inside the input
            o -= 1
    else:
        o = (size + 2 * p - eff) // s + 1
    return o


def _infer_pool(a, shapes):
    _require_rank(shapes, 0, 4, "input")
    n, c, h, w = shapes[0]
    kh, kw = a["kernel"]
    sh, sw = a["stride"]
    ph, pw = a["padding"]
    dh, dw = a.get("dilation", (1, 1))
    if ph * 2 > kh or pw * 2 > kw:
        raise ShapeError(f"'padding' {[ph, pw]} must be at most half the kernel {[kh, kw]}")
    oh = _pool_out(h, kh, sh, ph, dh, a["ceil_mode"])
    ow = _pool_out(w, kw, sw, pw, dw, a["ceil_mode"])
    if oh < 1 or ow < 1:
        raise ShapeError("pooling gives an empty output")
    return (n, c, oh, ow)


def _infer_adaptive(a, shapes):
    _require_rank(shapes, 0, 4, "input")
    n, c, _, _ = shapes[0]
    oh, ow = a["output_size"]
    if oh < 1 or ow < 1:
        raise ShapeError(f"'output_size' must be positive, got {[oh, ow]}")
    return (n, c, oh, ow)


def _infer_upsample(a, shapes):
    _require_rank(shapes, 0, 4, "input")
    n, c, h, w = shapes[0]
    oh, ow = a["size"]
    if oh < 1 or ow < 1:
        raise ShapeError(f"'size' must be positive, got {[oh, ow]}")
    if a["mode"] == "nearest" and a["align_corners"]:
        raise ShapeError("'align_corners' is only meaningful for mode = \"bilinear\" or \"bicubic\"")
    return (n, c, oh, ow)


def _infer_pixel_shuffle(a, shapes):
    _require_rank(shapes, 0, 4, "input")
    n, c, h, w = shapes[0]
    r = a["factor"]
    if r < 1 or c % (r * r):
        raise ShapeError(f"input channels {c} must be divisible by 'factor'^2 = {r * r}")
    return (n, c // (r * r), h * r, w * r)


def _infer_pad(a, shapes):
    _require_rank(shapes, 0, 4, "input")
    n, c, h, w = shapes[0]
    pt, pl, pb, pr = a["pads"]
    if a["mode"] == "reflect" and (max(pt, pb) >= h or max(pl, pr) >= w):
        raise ShapeError(f"reflect 'pads' {[pt, pl, pb, pr]} must be smaller than the input size {h}x{w}")
    if min(pt, pl, pb, pr) < 0 and a["mode"] != "constant":
        raise ShapeError("negative 'pads' are only allowed for mode = \"constant\"")
    oh, ow = h + pt + pb, w + pl + pr
    if oh < 1 or ow < 1:
        raise ShapeError("padding gives an empty output")
    return (n, c, oh, ow)


def _infer_linear(a, shapes):
    x = shapes[0]
    if len(x) < 1:
        raise ShapeError("input must have rank >= 1")
    wshape = a["weight"].shape
    if len(wshape) != 2 or wshape[1] != x[-1]:
        raise ShapeError(f"'weight' must have shape [OUT, {x[-1]}], got {list(wshape)}")
    if a.get("bias") is not None and tuple(a["bias"].shape) != (wshape[0],):
        raise ShapeError(f"'bias' must have shape [{wshape[0]}], got {list(a['bias'].shape)}")
    _check_act(a)
    return tuple(x[:-1]) + (wshape[0],)


def _infer_permute(a, shapes):
    dims = a["dims"]
    if sorted(dims) != list(range(len(shapes[0]))):
        raise ShapeError(f"'dims' {list(dims)} is not a permutation of {len(shapes[0])} dimensions")
    return tuple(shapes[0][d] for d in dims)


_CONV_COMMON = {
    "weight": AttrSpec("elements", required=True),
    "bias": AttrSpec("elements"),
    "stride": _ints(2, (1, 1)),
    "dilation": _ints(2, (1, 1)),
    "groups": AttrSpec("int", default=1),
    "act": AttrSpec("str", default="none", choices=ACTIVATIONS),
    "act_params": AttrSpec("floats", default=()),
}

_SPECS = [
    OpSpec("conv2d", 1, 2, {**_CONV_COMMON, "padding": _ints(4, (0, 0, 0, 0)),
                            "sparsity": AttrSpec("sparsity")}, _infer_conv2d,
           "2-D convolution (NCHW) with bias, fused activation, optional residual operand and sparsity",
           ("input", "residual*")),
    OpSpec("conv_transpose2d", 1, 1, {**_CONV_COMMON, "padding": _ints(2, (0, 0)),
                                      "output_padding": _ints(2, (0, 0))}, _infer_conv_transpose2d,
           "2-D transposed convolution, torch semantics"),
    OpSpec("batch_norm", 1, 1, {"mean": AttrSpec("elements", True), "var": AttrSpec("elements", True),
                                "weight": AttrSpec("elements"), "bias": AttrSpec("elements"),
                                "eps": AttrSpec("float", default=1e-5)},
           _per_channel("mean", "var", "weight", "bias"), "inference batch norm over dim 1"),
    OpSpec("instance_norm", 1, 1, {"weight": AttrSpec("elements"), "bias": AttrSpec("elements"),
                                   "eps": AttrSpec("float", default=1e-5)},
           _per_channel("weight", "bias"), "instance norm over H, W per (N, C)"),
    OpSpec("relu", 1, 1, {}, _same, "max(x, 0)"),
    OpSpec("relu6", 1, 1, {}, _same, "min(max(x, 0), 6)"),
    OpSpec("sigmoid", 1, 1, {}, _same, "1 / (1 + exp(-x))"),
    OpSpec("tanh", 1, 1, {}, _same, "tanh(x)"),
    OpSpec("hardswish", 1, 1, {}, _same, "x * relu6(x + 3) / 6"),
    OpSpec("hardsigmoid", 1, 1, {}, _same, "relu6(x + 3) / 6"),
    OpSpec("silu", 1, 1, {}, _same, "x * sigmoid(x) (swish)"),
    OpSpec("gelu", 1, 1, {"approximate": AttrSpec("str", default="none", choices=("none", "tanh"))}, _same,
           "x * Phi(x) with the normal CDF by erf, or (approximate = \"tanh\") torch's tanh form"),
    OpSpec("elu", 1, 1, {"alpha": AttrSpec("float", default=1.0), "scale": AttrSpec("float", default=1.0),
                         "input_scale": AttrSpec("float", default=1.0)}, _same,
           "scale * (x if x > 0 else alpha * (exp(input_scale * x) - 1)) (also selu, celu)"),
    OpSpec("mish", 1, 1, {}, _same, "x * tanh(softplus(x))"),
    *[OpSpec(n, 1, 1, {}, _same, s) for n, s in (
        ("abs", "|x|"), ("neg", "-x"), ("exp", "e^x"), ("log", "natural log"), ("sqrt", "square root"),
        ("rsqrt", "1 / sqrt(x)"), ("reciprocal", "1 / x"), ("square", "x * x (pow 2)"))],
    OpSpec("softplus", 1, 1, {"beta": AttrSpec("float", default=1.0), "threshold": AttrSpec("float", default=20.0)},
           _same, "log(1 + exp(beta * x)) / beta, or x where beta * x > threshold"),
    OpSpec("leaky_relu", 1, 1, {"alpha": AttrSpec("float", default=0.01)}, _same, "x if x > 0 else alpha*x"),
    OpSpec("clamp", 1, 1, {"min": AttrSpec("float", True), "max": AttrSpec("float", True)}, _same,
           "min(max(x, min), max)"),
    OpSpec("prelu", 1, 1, {"slope": AttrSpec("elements", True)}, _infer_prelu, "per-channel leaky relu"),
    OpSpec("add", 2, 2, {}, _infer_binary, operand_names=("lhs", "rhs"), summary="x + y, torch broadcasting"),
    OpSpec("sub", 2, 2, {}, _infer_binary, operand_names=("lhs", "rhs"), summary="x - y, torch broadcasting"),
    OpSpec("maximum", 2, 2, {}, _infer_binary, operand_names=("lhs", "rhs"),
           summary="max(x, y) elementwise (NaN if either is), torch broadcasting"),
    OpSpec("minimum", 2, 2, {}, _infer_binary, operand_names=("lhs", "rhs"),
           summary="min(x, y) elementwise (NaN if either is), torch broadcasting"),
    OpSpec("mul", 2, 2, {}, _infer_binary, operand_names=("lhs", "rhs"), summary="x * y, torch broadcasting"),
    OpSpec("div", 2, 2, {}, _infer_binary, operand_names=("lhs", "rhs"), summary="x / y, torch broadcasting"),
    OpSpec("concat", 2, 2, {"axis": AttrSpec("int", True)}, _infer_concat, "concatenation of two tensors along "
           "'axis' (torch.cat of more becomes a chain, which the lowering flattens)", ("lhs", "rhs")),
    OpSpec("slice", 1, 1, {"axis": AttrSpec("int", True), "start": AttrSpec("int", True), "end": AttrSpec("int", True)},
           _infer_slice, "x[..., start:end, ...] along 'axis', step 1 (torch slicing, narrow, split, chunk)"),
    OpSpec("reduce", 1, 1, {"kind": AttrSpec("str", True, choices=("sum", "mean", "max", "min")),
                            "axes": _ints(None, required=True), "keepdim": AttrSpec("bool", default=False)},
           _infer_reduce, "sum / mean / max / min over a contiguous block of axes (torch.sum, mean, amax, "
           "amin, max/min values over a dim, global max pool)"),
    OpSpec("softmax", 1, 1, {"axis": AttrSpec("int", True), "log": AttrSpec("bool", default=False)}, _infer_softmax,
           "exp(x - max) / sum(exp(x - max)) along 'axis' (log = true: log_softmax)"),
    OpSpec("max_pool2d", 1, 1, {"kernel": _ints(2, required=True), "stride": _ints(2, required=True),
                                "padding": _ints(2, (0, 0)), "dilation": _ints(2, (1, 1)),
                                "ceil_mode": AttrSpec("bool", default=False)}, _infer_pool, "max pooling"),
    OpSpec("avg_pool2d", 1, 1, {"kernel": _ints(2, required=True), "stride": _ints(2, required=True),
                                "padding": _ints(2, (0, 0)), "ceil_mode": AttrSpec("bool", default=False),
                                "count_include_pad": AttrSpec("bool", default=True)}, _infer_pool,
           "average pooling"),
    OpSpec("adaptive_avg_pool2d", 1, 1, {"output_size": _ints(2, required=True)}, _infer_adaptive,
           "adaptive average pooling, torch bin boundaries"),
    OpSpec("upsample", 1, 1, {"mode": AttrSpec("str", default="nearest", choices=("nearest", "bilinear", "bicubic")),
                              "size": _ints(2, required=True), "align_corners": AttrSpec("bool", default=False),
                              "scales": AttrSpec("floats", default=(), length=None)}, _infer_upsample,
           "nearest / bilinear / bicubic (torch's a = -0.75, clamped borders) resize to 'size'; 'scales' (h, w) "
           "when torch was given scale factors"),
    OpSpec("pixel_shuffle", 1, 1, {"factor": AttrSpec("int", True)}, _infer_pixel_shuffle,
           "depth to space, torch channel order"),
    OpSpec("pad", 1, 1, {"pads": _ints(4, required=True),
                         "mode": AttrSpec("str", default="constant", choices=("constant", "reflect", "replicate")),
                         "value": AttrSpec("float", default=0.0)}, _infer_pad,
           "spatial padding; 'pads' = (top, left, bottom, right)"),
    OpSpec("linear", 1, 1, {"weight": AttrSpec("elements", True), "bias": AttrSpec("elements"),
                            "act": AttrSpec("str", default="none", choices=ACTIVATIONS),
                            "act_params": AttrSpec("floats", default=())}, _infer_linear,
           "y = x W^T + b over the last dimension, fused activation"),
    OpSpec("reshape", 1, 1, {}, None, "same elements, new shape (the result type)"),
    OpSpec("permute", 1, 1, {"dims": AttrSpec("ints", True)}, _infer_permute, "dimension permutation"),
]

OPS: dict[str, OpSpec] = {s.name: s for s in _SPECS}
