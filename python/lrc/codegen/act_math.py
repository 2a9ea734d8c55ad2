"""The activations beyond the first set (hardsigmoid, silu, gelu, gelu_tanh, elu) as arith / math
ops, written once for both kernel builders: `c(v)` makes a constant shaped like the value, `exp(v)`
its e^v (the vector kernels pass the inline polynomial, since LLVM turns a vector `math.exp` into one
libm call per lane; scalar and GPU code pass `math.exp`).

Everything here works on scalars and vectors alike, and uses only ops that the LLVM, SPIR-V and
OpenCL lowerings all take (no `math.erf`: SPIR-V's GLSL set has none), so erf is a polynomial.
"""
from __future__ import annotations

from typing import Callable, Sequence

from torch_mlir import ir
from torch_mlir.dialects import arith
from torch_mlir.dialects import math as mmath

EXTRA_ACTIVATIONS = ("hardsigmoid", "silu", "gelu", "gelu_tanh", "elu", "mish", "softplus", "abs", "neg", "exp",
                     "log", "sqrt", "rsqrt", "reciprocal", "square")

# Abramowitz & Stegun 7.1.26: erf(x) = 1 - t*(a1 + t*(a2 + ...)) * e^{-x^2}, t = 1 / (1 + p*x) for
# x >= 0, absolute error <= 1.5e-7 (odd function for x < 0).
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def extra_activation(x: ir.Value, act: str, params: Sequence[float], c: Callable[[float], ir.Value],
                     exp: Callable[[ir.Value], ir.Value]) -> ir.Value:
    if act == "hardsigmoid":
        return arith.mulf(arith.minimumf(arith.maximumf(arith.addf(x, c(3.0)), c(0.0)), c(6.0)), c(1.0 / 6.0))
    if act == "silu":
        return arith.divf(x, arith.addf(c(1.0), exp(arith.negf(x))))
    if act == "gelu_tanh":
        # 0.5*x*(1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) * (x + 0.044715 x^3): one exp, no tanh.
        x2 = arith.mulf(x, x)
        u2 = arith.mulf(arith.mulf(x, arith.addf(c(1.0), arith.mulf(x2, c(0.044715)))), c(2 * 0.7978845608028654))
        return arith.divf(x, arith.addf(c(1.0), exp(arith.negf(u2))))
    if act == "gelu":
        return arith.mulf(arith.mulf(x, c(0.5)), arith.addf(c(1.0), erf(arith.mulf(x, c(0.7071067811865476)), c, exp)))
    if act == "abs":
        return mmath.absf(x)
    if act == "neg":
        return arith.negf(x)
    if act == "exp":
        return exp(x)
    if act == "log":
        # log's polynomial needs a positive normal input: 0 -> -inf, negative -> NaN, as torch; both
        # computed from x (-1/|x|, sqrt(x)), since WGSL (naga) rejects inf / NaN literals
        y = log(x, c)
        y = arith.select(arith.cmpf(arith.CmpFPredicate.OEQ, x, c(0.0)), arith.divf(c(-1.0), mmath.absf(x)), y)
        return arith.select(arith.cmpf(arith.CmpFPredicate.OLT, x, c(0.0)), mmath.sqrt(x), y)
    if act == "sqrt":
        return mmath.sqrt(x)
    if act == "rsqrt":
        return mmath.rsqrt(x)
    if act == "reciprocal":
        return arith.divf(c(1.0), x)
    if act == "square":
        return arith.mulf(x, x)
    if act == "mish":
        # x * tanh(softplus(x)) = x * (n - 1) / (n + 1) with n = (1 + e^x)^2: no log, one exp; above
        # x = 20 it is x itself (n would overflow).
        n = arith.addf(c(1.0), exp(arith.minimumf(x, c(20.0))))
        n = arith.mulf(n, n)
        y = arith.mulf(x, arith.divf(arith.subf(n, c(1.0)), arith.addf(n, c(1.0))))
        return arith.select(arith.cmpf(arith.CmpFPredicate.OGT, x, c(20.0)), x, y)
    if act == "softplus":
        beta, threshold = params
        bx = arith.mulf(x, c(beta))
        y = arith.mulf(log(arith.addf(c(1.0), exp(arith.minimumf(bx, c(threshold)))), c), c(1.0 / beta))
        return arith.select(arith.cmpf(arith.CmpFPredicate.OGT, bx, c(threshold)), x, y)
    if act == "elu":
        alpha, scale, input_scale = params
        neg = arith.mulf(arith.subf(exp(arith.mulf(x, c(input_scale))), c(1.0)), c(alpha))
        pos = arith.cmpf(arith.CmpFPredicate.OGT, x, c(0.0))
        y = arith.select(pos, x, neg)
        return y if scale == 1.0 else arith.mulf(y, c(scale))
    raise ValueError(f"unsupported activation {act!r}")


# Cephes logf: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by a degree-9 polynomial
# (relative error ~1e-7 for normal positive x).
_LOG_P = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
          -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)


def log(x: ir.Value, c) -> ir.Value:
    """Natural log of a positive normal float (scalar or vector), inline: no libm call per lane."""
    ft = x.type
    it = (ir.VectorType.get(ir.VectorType(ft).shape, ir.IntegerType.get_signless(32))
          if isinstance(ft, ir.VectorType) else ir.IntegerType.get_signless(32))

    def ic(v):
        if isinstance(it, ir.VectorType):
            return arith.ConstantOp(it, ir.DenseElementsAttr.get_splat(it, ir.IntegerAttr.get(
                ir.IntegerType.get_signless(32), v))).result
        return arith.ConstantOp(it, ir.IntegerAttr.get(it, v)).result
    bits = arith.bitcast(it, x)
    # (the biased exponent is converted, then unbiased as a float: the Vulkan path converts i32 as
    # unsigned, so a negative integer there would come out near 4e9)
    e = arith.subf(arith.sitofp(ft, arith.shrui(bits, ic(23))), c(126.0))
    m = arith.bitcast(ft, arith.ori(arith.andi(bits, ic(0x007FFFFF)), ic(0x3F000000)))  # [0.5, 1)
    small = arith.cmpf(arith.CmpFPredicate.OLT, m, c(0.7071067811865476))
    e = arith.select(small, arith.subf(e, c(1.0)), e)
    m = arith.select(small, arith.subf(arith.addf(m, m), c(1.0)), arith.subf(m, c(1.0)))
    z = arith.mulf(m, m)
    p = c(_LOG_P[0])
    for k in _LOG_P[1:]:
        p = arith.addf(arith.mulf(p, m), c(k))
    y = arith.mulf(arith.mulf(p, m), z)
    y = arith.addf(y, arith.mulf(e, c(-2.12194440e-4)))
    y = arith.subf(y, arith.mulf(z, c(0.5)))
    return arith.addf(arith.addf(m, y), arith.mulf(e, c(0.693359375)))


def erf(x: ir.Value, c, exp) -> ir.Value:
    a = mmath.absf(x)
    t = arith.divf(c(1.0), arith.addf(c(1.0), arith.mulf(a, c(_ERF_P))))
    poly = c(_ERF_A[-1])
    for k in reversed(_ERF_A[:-1]):
        poly = arith.addf(arith.mulf(poly, t), c(k))
    y = arith.subf(c(1.0), arith.mulf(arith.mulf(poly, t), exp(arith.negf(arith.mulf(a, a)))))
    # (a select, not math.copysign: mlir-translate has no spirv.CL.copysign)
    return arith.select(arith.cmpf(arith.CmpFPredicate.OLT, x, c(0.0)), arith.negf(y), y)
