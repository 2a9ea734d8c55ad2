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

EXTRA_ACTIVATIONS = ("hardsigmoid", "silu", "gelu", "gelu_tanh", "elu")

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
    if act == "elu":
        alpha, scale, input_scale = params
        neg = arith.mulf(arith.subf(exp(arith.mulf(x, c(input_scale))), c(1.0)), c(alpha))
        pos = arith.cmpf(arith.CmpFPredicate.OGT, x, c(0.0))
        y = arith.select(pos, x, neg)
        return y if scale == 1.0 else arith.mulf(y, c(scale))
    raise ValueError(f"unsupported activation {act!r}")


def erf(x: ir.Value, c, exp) -> ir.Value:
    a = mmath.absf(x)
    t = arith.divf(c(1.0), arith.addf(c(1.0), arith.mulf(a, c(_ERF_P))))
    poly = c(_ERF_A[-1])
    for k in reversed(_ERF_A[:-1]):
        poly = arith.addf(arith.mulf(poly, t), c(k))
    y = arith.subf(c(1.0), arith.mulf(arith.mulf(poly, t), exp(arith.negf(arith.mulf(a, a)))))
    # (a select, not math.copysign: mlir-translate has no spirv.CL.copysign)
    return arith.select(arith.cmpf(arith.CmpFPredicate.OLT, x, c(0.0)), arith.negf(y), y)
