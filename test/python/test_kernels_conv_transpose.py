"""Transposed conv kernels (lrc.codegen.kernels.conv_transpose) against torch conv_transpose2d."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrc.codegen.kernels.conv_transpose import (ConvTransposeSpec, emit_conv_transpose_func,
                                               pack_conv_transpose_weights)
from lrc.codegen.kernels.testing import assert_close, conv_transpose_ref, jit_kernels

S = ConvTransposeSpec


def run_specs(specs, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    cases = []
    for s in specs:
        x = rng.standard_normal((s.N, s.C, s.H, s.W)).astype(np.float32)
        w = rng.standard_normal((s.C, s.K // s.groups, s.KH, s.KW)).astype(np.float32)
        b = rng.standard_normal(s.K).astype(np.float32) if bias else None
        cases.append((s, x, w, b, pack_conv_transpose_weights(s, w, b)))
    jm = jit_kernels([(f"ct{i}", lambda name, c=c: emit_conv_transpose_func(c[0], name, c[4]))
                      for i, c in enumerate(cases)])
    for i, (s, x, w, b, packed) in enumerate(cases):
        out = np.full(s.N * s.K * s.OH * s.OW, np.nan, np.float32)
        jm.call(f"ct{i}_c", x.reshape(-1), *packed, out)
        assert_close(out, conv_transpose_ref(s, x, w, b), repr(s))


def test_common_upsamplers():
    run_specs([
        S(1, 8, 9, 11, 4, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1)),  # 3x3 s2 p1 op1: exact 2x upsampling
        S(1, 6, 8, 8, 5, 4, 4, (2, 2), (1, 1, 1, 1)),  # 4x4 s2 p1 (DCGAN style)
        S(1, 5, 7, 20, 3, 2, 2, (2, 2)),  # 2x2 s2: every phase has one tap
        S(1, 4, 6, 7, 6, 3, 3, (1, 1), (1, 1, 1, 1)),  # stride 1: a single phase, no scatter
        S(2, 3, 5, 5, 4, 5, 5, (3, 3), (2, 2, 2, 2), (2, 1)),
        S(1, 4, 4, 4, 2, 1, 1, (3, 3)),  # phases no tap reaches hold act(bias)
    ])


def test_groups_dilation_asym_acts():
    run_specs([
        S(1, 6, 5, 6, 9, 3, 3, (2, 2), (1, 1, 1, 1), (1, 0), groups=3, act="relu"),
        S(1, 4, 5, 5, 4, 3, 3, (2, 1), (0, 1, 2, 0), (1, 0), (2, 2), 4, act="sigmoid"),  # depthwise
        S(1, 3, 6, 9, 5, 3, 2, (1, 2), (2, 0, 1, 1), (0, 1), (1, 3), act="leaky_relu", act_params=(0.1,)),
        S(2, 2, 3, 4, 3, 4, 3, (2, 3), (0, 0, 0, 0), (1, 2), (1, 1), act="hardswish", vec=4),
    ], bias=False)


@st.composite
def ct_specs(draw):
    g = draw(st.sampled_from([1, 1, 2]))
    C, K = draw(st.integers(1, 4)) * g, draw(st.integers(1, 5)) * g
    KH, KW = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
    op = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    act = draw(st.sampled_from(["none", "relu", "tanh", "clamp"]))
    s = S(draw(st.integers(1, 2)), C, draw(st.integers(1, 8)), draw(st.integers(1, 12)), K, KH, KW, stride, pad, op,
          dil, g, act, (-0.5, 0.5) if act == "clamp" else (), draw(st.sampled_from([8, 8, 4])))
    if s.OH < 1 or s.OW < 1:
        s = S(s.N, C, s.H, s.W, K, KH, KW, stride, (0, 0, 0, 0), op, dil, g, act, s.act_params, s.vec)
    return s


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(ct_specs(), min_size=8, max_size=8), st.integers(0, 2**31 - 1), st.booleans())
def test_random(specs, seed, bias):
    run_specs(specs, seed=seed, bias=bias)
