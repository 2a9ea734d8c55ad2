"""Linear kernels (lrc.codegen.kernels.linear) against torch.nn.functional.linear, through the JIT."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrc.codegen.kernels.linear import LinearSpec, emit_linear_func, pack_linear_weights
from lrc.codegen.kernels.testing import assert_close, jit_kernels, linear_ref

ACT_PARAMS = {"leaky_relu": (0.2,), "clamp": (-1.0, 0.5), "elu": (1.3, 0.9, 1.1), "softplus": (1.5, 4.0)}
ALL_ACTS = ["none", "relu", "relu6", "leaky_relu", "clamp", "sigmoid", "tanh", "hardswish", "hardsigmoid", "silu",
            "gelu", "gelu_tanh", "elu", "mish", "softplus", "abs", "neg", "exp", "square"]


def run_specs(specs, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    cases = []
    for i, s in enumerate(specs):
        x = rng.standard_normal((s.M, s.IN)).astype(np.float32)
        w = rng.standard_normal((s.OUT, s.IN)).astype(np.float32)
        b = rng.standard_normal(s.OUT).astype(np.float32) if (bias if isinstance(bias, bool) else bias[i]) else None
        cases.append((s, x, w, b, pack_linear_weights(s, w, b)))
    jm = jit_kernels([(f"lin{i}", lambda name, c=c: emit_linear_func(c[0], name, c[4])) for i, c in enumerate(cases)])
    for i, (s, x, w, b, packed) in enumerate(cases):
        out = np.full(s.M * s.OUT, np.nan, np.float32)
        jm.call(f"lin{i}_c", x.reshape(-1), *packed, out)
        assert_close(out, linear_ref(s, x, w, b), repr(s))


def L(M, IN, OUT, act="none", vec=8):
    return LinearSpec(M, IN, OUT, act, ACT_PARAMS.get(act, ()), vec)


def test_shapes():
    run_specs([L(1, 64, 32), L(1, 100, 1000), L(1, 3, 5), L(1, 1, 1), L(1, 257, 33), L(1, 40, 64),
               L(2, 17, 9), L(5, 33, 70), L(4, 8, 8), L(7, 130, 31), L(1, 64, 24), L(1, 13, 40)])


def test_activations_and_vec4():
    acts = ALL_ACTS
    specs = [L(1 + i % 3, 21, 19 + i, a) for i, a in enumerate(acts)] + [L(1, 50, 37, "relu", 4), L(3, 9, 6, vec=4)]
    run_specs(specs, bias=[i % 2 == 0 for i in range(len(specs))])


def test_large():
    """A 4096 -> 1000 classifier head (16 MB of weights)."""
    run_specs([L(1, 4096, 1000, "relu")])


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 200), st.integers(1, 90),
                          st.sampled_from(["none", "relu", "sigmoid", "clamp"]), st.sampled_from([8, 8, 4])),
                min_size=8, max_size=8), st.integers(0, 2**31 - 1), st.booleans())
def test_random(shapes, seed, bias):
    run_specs([L(*t) for t in shapes], seed=seed, bias=bias)


def test_bad_weights_rejected():
    with pytest.raises(ValueError):
        pack_linear_weights(L(1, 4, 3), np.zeros((4, 3), np.float32), None)
