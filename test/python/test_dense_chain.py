"""The dense fused 1x1 pair (codegen/kernels/dense_chain.py) against torch: kernel level (partial
panels and vectors, residual, activations, 8 / 16 lanes, thread parts, random shapes) and through
lrc.compile (when the lowering fuses a dense pair, threads)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import lrc
from lrc.codegen import ops_dense
from lrc.codegen.kernels import dense_chain
from lrc.codegen.kernels.conv import ConvSpec
from lrc.codegen.kernels.testing import assert_close, jit_kernels, torch_act

needs_avx512 = pytest.mark.skipif(not {"avx512f", "avx512vl"} <= __import__("lrc.targets.aot", fromlist=["x"]).cpu_flags(),
                                  reason="16-lane kernels need AVX-512F/VL")


def _specs(N, C, H, W, M, K, vec=8, act1="relu", act2="none", residual=False):
    params = {"leaky_relu": (0.1,), "clamp": (-0.5, 0.75)}
    s1 = ConvSpec(N, C, H, W, M, 1, 1, act=act1, act_params=params.get(act1, ()), vec=vec)
    s2 = ConvSpec(N, M, H, W, K, 1, 1, act=act2, act_params=params.get(act2, ()), residual=residual, vec=vec)
    return s1, s2


def _ref(s1, s2, x, w1, b1, w2, b2, r):
    h = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w1), None if b1 is None else torch.from_numpy(b1))
    h = torch_act(h, s1.act, s1.act_params)
    y = torch.nn.functional.conv2d(h, torch.from_numpy(w2), None if b2 is None else torch.from_numpy(b2))
    if r is not None:
        y = y + torch.from_numpy(r)
    return torch_act(y, s2.act, s2.act_params).numpy()


def run(cases, seed=0):
    """cases: (s1, s2, panel or None, bias, [panel ranges run one after another])."""
    rng = np.random.default_rng(seed)
    built = []
    for s1, s2, panel, bias, parts in cases:
        x = rng.standard_normal((s1.N, s1.C, s1.H, s1.W)).astype(np.float32)
        w1 = rng.standard_normal((s1.K, s1.C, 1, 1)).astype(np.float32)
        w2 = rng.standard_normal((s2.K, s2.C, 1, 1)).astype(np.float32)
        b1 = rng.standard_normal(s1.K).astype(np.float32) if bias else None
        b2 = rng.standard_normal(s2.K).astype(np.float32) if bias else None
        r = rng.standard_normal((s2.N, s2.K, s2.H, s2.W)).astype(np.float32) if s2.residual else None
        chain = dense_chain.pack_dense_chain(s1, w1, b1, s2, w2, b2, panel=panel)
        built.append((s1, s2, chain, parts or [None], (x, w1, b1, w2, b2, r)))
    emitters = [(f"c{i}_{j}", lambda name, c=c, q=q: dense_chain.emit_dense_chain_func(c[2], name, q))
                for i, c in enumerate(built) for j, q in enumerate(c[3])]
    jm = jit_kernels(emitters)
    for i, (s1, s2, chain, parts, (x, w1, b1, w2, b2, r)) in enumerate(built):
        out = np.full(s2.N * s2.K * s2.H * s2.W, np.nan, np.float32)
        for j in range(len(parts)):
            jm.call(f"c{i}_{j}_c", x.reshape(-1), *chain.arrays(), *([r.reshape(-1)] if r is not None else []), out)
        assert_close(out, _ref(s1, s2, x, w1, b1, w2, b2, r), f"{s1} -> {s2} PB={chain.PB} parts={parts}")


def test_panels_and_epilogues():
    run([
        (*_specs(1, 8, 9, 13, 24, 6), 32, True, None),  # 117 px: 3 full panels + a remainder, partial vectors
        (*_specs(2, 5, 7, 7, 11, 9, act1="leaky_relu", act2="relu", residual=True), 16, False, None),
        (*_specs(1, 16, 20, 20, 48, 16, act1="clamp", act2="sigmoid"), None, True, None),
        (*_specs(1, 4, 10, 10, 12, 4, residual=True), 24, True, [(0, 2), (2, 5)]),  # thread parts
    ])


@needs_avx512
def test_sixteen_lanes():
    run([(*_specs(1, 32, 16, 21, 64, 26, vec=16), 48, True, None),
         (*_specs(1, 8, 12, 12, 32, 8, vec=16, residual=True), None, True, [(0, 1), (1, 3)])], seed=1)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random(data):
    d = data.draw
    vec = d(st.sampled_from([4, 8]))
    s1, s2 = _specs(d(st.integers(1, 2)), d(st.integers(1, 12)), d(st.integers(1, 9)), d(st.integers(1, 17)),
                    d(st.integers(1, 20)), d(st.integers(1, 12)), vec=vec, residual=d(st.booleans()))
    run([(s1, s2, d(st.sampled_from([None, vec, 3 * vec])), d(st.booleans()), None)], seed=d(st.integers(0, 9)))


class _Wide(nn.Module):
    """WDSR's wide-activation pair with a skip."""

    def __init__(self, c=16, m=96, k=16):
        super().__init__()
        self.a, self.b = nn.Conv2d(c, m, 1), nn.Conv2d(m, k, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x))) + x


@pytest.mark.parametrize("threads", [1, 2])
def test_compiled(monkeypatch, threads):
    """lrc.compile fuses a dense pair whose intermediate is big enough; the result matches torch,
    also split over panels on two threads; below the size the pair stays two kernels."""
    torch.manual_seed(0)
    model = _Wide().eval()
    x = torch.randn(1, 16, 40, 44)
    ref = model(x).detach().numpy()
    calls = []
    real = dense_chain.emit_dense_chain_func
    monkeypatch.setattr(dense_chain, "emit_dense_chain_func",
                        lambda *a, **k: calls.append(a[2] if len(a) > 2 else k.get("panels")) or real(*a, **k))
    assert 96 * 40 * 44 * 4 < ops_dense.DENSE_CHAIN_MIN_BYTES
    assert_close(lrc.compile(model, (x,), threads=threads)(x.numpy()), ref, "unfused")
    assert not calls
    monkeypatch.setattr(ops_dense, "DENSE_CHAIN_MIN_BYTES", 0)
    monkeypatch.setattr(ops_dense, "MIN_PART_MACS", 1024)
    assert_close(lrc.compile(model, (x,), threads=threads)(x.numpy()), ref, "fused")
    assert len(calls) == threads
