"""lr-fuse-pointwise-chain and its kernel (codegen/kernels/pointwise_chain.py): two 1x1 convs in one
kernel, checked against torch at the kernel level (one-tap and column tiles, panels with partial
vectors and remainders, residual, activations, 8 and 16 lanes, random shapes) and through
lrc.compile (WDSR blocks, the pruned super-resolution checkpoint, threads, arm64 under qemu)."""
from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import lrc
from lrc.codegen.kernels.conv import ConvSpec
from lrc.codegen.kernels.pointwise_chain import (check_chain, chain_panel_pixels, emit_pointwise_chain_func,
                                                 pack_pointwise_chain)
from lrc.codegen.kernels.sparse_conv import SparseTile
from lrc.codegen.kernels.testing import assert_close, jit_kernels, torch_act

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
needs_avx512 = pytest.mark.skipif(not {"avx512f", "avx512vl"} <= __import__("lrc.targets.aot", fromlist=["x"]).cpu_flags(),
                                  reason="16-lane kernels need AVX-512F/VL")
ACT_PARAMS = {"leaky_relu": (0.1,), "clamp": (-0.5, 0.75)}


def _specs(N, C, H, W, M, K, vec=8, act1="relu", act2="none", residual=False):
    s1 = ConvSpec(N, C, H, W, M, 1, 1, act=act1, act_params=ACT_PARAMS.get(act1, ()), vec=vec)
    s2 = ConvSpec(N, M, H, W, K, 1, 1, act=act2, act_params=ACT_PARAMS.get(act2, ()), residual=residual, vec=vec)
    return s1, s2


def _sparse(rng, shape, density, columns=False):
    w = rng.standard_normal(shape).astype(np.float32)
    if columns:  # every filter keeps the same input channels: the column tile
        keep = rng.random(shape[1]) < density
        keep[0] = True
        return w * keep[None, :, None, None]
    return w * (rng.random(shape) < density)


def _ref(s1, s2, x, w1, b1, w2, b2, r):
    t = torch.from_numpy
    h = torch_act(torch.nn.functional.conv2d(t(x), t(w1), None if b1 is None else t(b1)), s1.act, s1.act_params)
    y = torch.nn.functional.conv2d(h, t(w2), None if b2 is None else t(b2))
    if r is not None:
        y = y + t(r)
    return torch_act(y, s2.act, s2.act_params).numpy()


def run_chains(cases, seed=0):
    """cases: (s1, s2, density1, density2, bias, columns, tiles, panel). One JIT module, each vs torch."""
    rng = np.random.default_rng(seed)
    built = []
    for s1, s2, d1, d2, bias, columns, tiles, panel in cases:
        x = rng.standard_normal((s1.N, s1.C, s1.H, s1.W)).astype(np.float32)
        w1 = _sparse(rng, (s1.K, s1.C, 1, 1), d1, columns)
        w2 = _sparse(rng, (s2.K, s2.C, 1, 1), d2, columns)
        b1 = rng.standard_normal(s1.K).astype(np.float32) if bias else None
        b2 = rng.standard_normal(s2.K).astype(np.float32) if bias else None
        r = rng.standard_normal((s2.N, s2.K, s2.H, s2.W)).astype(np.float32) if s2.residual else None
        ch = pack_pointwise_chain(s1, w1, b1, s2, w2, b2, tiles=tiles, panel=panel)
        built.append((s1, s2, x, w1, b1, w2, b2, r, ch))
    jm = jit_kernels([(f"pc{i}", lambda name, c=c: emit_pointwise_chain_func(c[-1], name))
                      for i, c in enumerate(built)])
    for i, (s1, s2, x, w1, b1, w2, b2, r, ch) in enumerate(built):
        out = np.full(s2.N * s2.K * s2.H * s2.W, np.nan, np.float32)
        args = [x.reshape(-1), *ch.arrays()] + ([r.reshape(-1)] if r is not None else []) + [out]
        jm.call(f"pc{i}_c", *args)
        assert_close(out, _ref(s1, s2, x, w1, b1, w2, b2, r), f"{s1} -> {s2} {cases[i][2:]}")
    return built


def test_one_tap_panels_residual_and_activations():
    cases = [
        # WDSR shape at a small plane: one panel, partial last vector (15x13 = 195 pixels)
        (*_specs(1, 8, 15, 13, 24, 6), 0.2, 0.2, True, False, None, None),
        # several panels and a remainder panel that ends in a partial vector
        (*_specs(1, 5, 19, 23, 12, 7, act2="relu", residual=True), 0.3, 0.3, True, False, None, 64),
        # batch 2, no bias, other activations on both stages
        (*_specs(2, 6, 9, 11, 10, 5, act1="leaky_relu", act2="clamp"), 0.4, 0.5, False, False, None, 32),
        (*_specs(1, 7, 6, 10, 9, 4, act1="sigmoid", act2="tanh", residual=True), 0.5, 0.4, True, False, None, None),
        # dense weights (density 1) and an all-zero first stage (bias only reaches the second)
        (*_specs(1, 4, 8, 8, 6, 3), 1.0, 1.0, True, False, None, None),
        (*_specs(1, 4, 8, 8, 6, 3, act1="none"), 0.0, 0.6, True, False, None, None),
        # plane smaller than a vector
        (*_specs(1, 3, 1, 5, 4, 2, residual=True), 0.7, 0.7, True, False, None, None),
    ]
    run_chains(cases, seed=1)


def test_column_tiles_and_forced_tiles():
    """Column-tile stages (filters sharing their channels; stage 2 addresses all M rows of the
    intermediate although its own copy would hold only the used channels) and explicit tiles."""
    cases = [
        (*_specs(1, 9, 10, 14, 16, 8), 0.5, 0.5, True, True, None, None),
        (*_specs(1, 9, 10, 14, 16, 8, residual=True, act2="relu"), 0.5, 0.5, True, True,
         (SparseTile(2, 1, 0, 4), SparseTile(3, 1, 0, 3)), 48),
        # one-tap first stage, column second stage, and the reverse
        (*_specs(1, 6, 7, 9, 12, 5), 0.4, 0.4, True, False, (SparseTile(4, 1), SparseTile(2, 1, 0, 2)), None),
        (*_specs(1, 6, 7, 9, 12, 5), 0.4, 0.4, True, True, (SparseTile(1, 1, 0, 4), SparseTile(5, 1)), 24),
    ]
    run_chains(cases, seed=2)


@needs_avx512
def test_sixteen_lanes():
    """vec=16, as sparse_lanes picks on AVX-512 hosts: half-width last vectors (<= 8 lanes used)."""
    cases = [
        (*_specs(1, 8, 13, 29, 32, 6, vec=16), 0.2, 0.2, True, False, None, None),
        (*_specs(1, 8, 7, 8, 32, 6, vec=16, residual=True), 0.3, 0.3, True, False, None, None),  # 56 pixels
        (*_specs(2, 5, 11, 17, 20, 7, vec=16, act2="relu"), 0.3, 0.4, True, False, None, 64),
        (*_specs(1, 9, 10, 14, 16, 8, vec=16), 0.5, 0.5, True, True, None, 32),
    ]
    run_chains(cases, seed=3)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_chains(data):
    d = data.draw
    vec = d(st.sampled_from([4, 8]))
    hw = (d(st.integers(1, 17)), d(st.integers(1, 23)))
    s1, s2 = _specs(d(st.integers(1, 2)), d(st.integers(1, 12)), *hw, d(st.integers(1, 24)), d(st.integers(1, 10)),
                    vec=vec, act1=d(st.sampled_from(["relu", "none", "relu6"])),
                    act2=d(st.sampled_from(["none", "relu"])), residual=d(st.booleans()))
    panel = d(st.sampled_from([None, vec, 3 * vec]))
    run_chains([(s1, s2, d(st.floats(0, 1)), d(st.floats(0, 1)), d(st.booleans()), d(st.booleans()), None, panel)],
               seed=d(st.integers(0, 1000)))


def test_chain_errors():
    s1, s2 = _specs(1, 4, 8, 8, 6, 3)
    with pytest.raises(ValueError, match="first conv's output"):
        check_chain(s1, _specs(1, 5, 8, 8, 6, 3)[0])
    with pytest.raises(ValueError, match="must be 1x1"):
        check_chain(ConvSpec(1, 4, 8, 8, 6, 3, 3, padding=(1, 1, 1, 1)), s2)
    with pytest.raises(ValueError, match="residual"):
        check_chain(ConvSpec(1, 4, 8, 8, 6, 1, 1, residual=True), s2)
    with pytest.raises(ValueError, match="lane width"):
        check_chain(s1, _specs(1, 4, 8, 8, 6, 3, vec=4)[1])
    with pytest.raises(ValueError, match="not a multiple"):
        pack_pointwise_chain(s1, np.ones((6, 4, 1, 1), np.float32), None, s2, np.ones((3, 6, 1, 1), np.float32),
                             None, panel=12)
    # the panels fit the budget, and never exceed the plane
    s1, s2 = _specs(1, 32, 256, 256, 128, 26, vec=16)
    pb = chain_panel_pixels(s1, s2)
    assert pb % 16 == 0 and (32 + 128) * (pb + 16) * 4 <= 256 << 10
    assert chain_panel_pixels(*_specs(1, 4, 3, 5, 6, 2)) == 16


# --------------------------------------------------------------------------------------------------
# Through the compiler


class Wide(nn.Module):
    """WDSR's wide-activation block: 1x1 expand + ReLU, 1x1 reduce, 3x3, residual."""

    def __init__(self, c=8, expand=4, low=6):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c * expand, 1), nn.ReLU(), nn.Conv2d(c * expand, low, 1),
                                  nn.Conv2d(low, c, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class TwoBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = Wide(), Wide()
        self.tail = nn.Conv2d(8, 12, 1)  # a third 1x1 after b's 3x3: not part of any pair

    def forward(self, x):
        return self.tail(self.b(self.a(x)))


def _prune_1x1(model, rate=0.85, seed=0):
    import lrprune

    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1):
                m.weight.copy_(lrprune.project(m.weight, "kernel", rate))
                m.lr_sparsity = {"kind": "kernel", "rate": rate, "library": None}
    return model


def _lowered(model, x, **kw):
    from lrc.codegen.lower import lower_to_kernels
    from lrc.compiler import optimize
    from lrc.importer import import_model

    m = import_model(model, (x,))
    optimize(m)
    return m, str(lower_to_kernels(m, **kw))


def _conv_kernels(ir_text):
    return sum(1 for line in ir_text.splitlines() if "func.func private" in line and "conv2d" in line)


def test_wdsr_blocks_fused_and_match_torch(check):
    torch.manual_seed(0)
    model = _prune_1x1(TwoBlocks().eval())
    x = torch.rand(1, 8, 21, 19)
    lrmod, kir = _lowered(model, x)
    marked = [op for op in lrmod.body.operations[0].regions[0].blocks[0].operations
              if "lr.pointwise_chain" in op.operation.attributes]
    assert len(marked) == 2, "both expand convs are marked"
    assert _conv_kernels(kir) == 2 + 2 + 1, "two fused pairs, two 3x3 kernels, the tail 1x1"
    check(model, x)
    check(model, torch.rand(2, 8, 5, 37))  # batch 2, plane with a partial vector


def test_dense_pair_keeps_dense_kernels(check, monkeypatch):
    """Unpruned 1x1 pairs are marked but not fused (the dense GEMM kernels are faster); LRC_SPARSE=off
    turns the fusion off with the sparse kernels."""
    torch.manual_seed(1)
    dense = TwoBlocks().eval()
    x = torch.rand(1, 8, 16, 16)
    assert _conv_kernels(_lowered(dense, x)[1]) == 7
    check(dense, x)
    pruned = _prune_1x1(TwoBlocks().eval())
    monkeypatch.setenv("LRC_SPARSE", "off")
    assert _conv_kernels(_lowered(pruned, x)[1]) == 7
    check(pruned, x)


def test_shared_intermediate_not_fused(check):
    """An expand whose output is also used elsewhere must be stored: no mark, no fusion."""

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.e, self.r = nn.Conv2d(6, 24, 1), nn.Conv2d(24, 6, 1)

        def forward(self, x):
            h = torch.relu(self.e(x))
            return self.r(h), torch.sigmoid(h)

    m = _prune_1x1(Shared().eval())
    x = torch.rand(1, 6, 12, 12)
    lrmod, kir = _lowered(m, x)
    assert "lr.pointwise_chain" not in str(lrmod)
    check(m, x)


def test_threads_two(check):
    model = _prune_1x1(TwoBlocks().eval(), seed=3)
    check(model, torch.rand(1, 8, 32, 32), threads=2)


@pytest.mark.parametrize("threads", [2, 3])
def test_threads_split_pixel_panels(check, threads):
    """threads=N runs a fused pair as N parts over pixel panels (not output channels, which would
    recompute the intermediate per part): N part kernels per pair, one copy of the weights, a
    partial last panel in the last part."""
    from lrc.codegen.kernels.pointwise_chain import chain_panels
    from lrc.codegen.ops_dense import chain_pixel_split

    # 75 % of the kernels: at 85 % some expand filters lose every kernel and lr-shrink-pruned-channels
    # removes them, which leaves the pairs below the size worth splitting
    model = _prune_1x1(TwoBlocks().eval(), rate=0.75, seed=4)
    x = torch.rand(1, 8, 97, 89)
    lrmod, kir = _lowered(model, x, threads=threads)
    parts = [line for line in kir.splitlines() if "func.func private" in line and "conv2d" in line and "_p" in line
             and "_par" not in line]
    assert len(parts) == 2 * threads, parts
    assert kir.count("scf.parallel") == 2 * 2  # two pairs, in both entry points (arena from the caller or not)
    globals_ = [line for line in kir.splitlines() if "memref.global" in line]
    lrmod1, kir1 = _lowered(model, x)
    assert len(globals_) == len([line for line in kir1.splitlines() if "memref.global" in line])
    check(model, x, threads=threads)
    # the split itself: contiguous, covering every panel, balanced to one panel
    from lrc.codegen.emit import LayerOp

    rng = np.random.default_rng(0)
    s1, s2 = _specs(1, 8, 97, 89, 32, 6)
    chain = pack_pointwise_chain(s1, _sparse(rng, (32, 8, 1, 1), 0.3), None, s2, _sparse(rng, (6, 32, 1, 1), 0.3), None)
    op = LayerOp("conv2d", {"pointwise_chain": chain}, [(1, 8, 97, 89)], (1, 6, 97, 89), None)
    ranges = chain_pixel_split(op, threads)
    npan = chain_panels(chain)
    assert npan >= threads and len(ranges) == threads
    assert ranges[0][0] == 0 and ranges[-1][1] == npan and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sizes = [q1 - q0 for q0, q1 in ranges]
    assert max(sizes) - min(sizes) <= 1
    assert chain_pixel_split(op, 1) is None
    assert chain_pixel_split(dataclasses.replace(op, in_shapes=[(2, 8, 97, 89)]), threads) is None


def _superres_pruned():
    sys.path.insert(0, os.path.join(ROOT, "apps"))
    path = os.path.join(ROOT, "apps", "checkpoints", "superres_pruned.pt")
    if not os.path.exists(path):
        pytest.skip(f"{path} absent")
    from lrapps import models

    return models.load(path), models


def test_superres_checkpoint_end_to_end(check):
    """The pruned WDSR checkpoint: every wide block's 1x1 pair is fused, numerics match torch."""
    model, models = _superres_pruned()
    x = models.example_input("superres", hw=(40, 56))
    blocks = len(model.body)
    _, kir = _lowered(model, x)
    convs = sum(1 for m in model.modules() if isinstance(m, nn.Conv2d))
    assert _conv_kernels(kir) == convs - blocks, f"{blocks} fused pairs expected"
    check(model, x)


@pytest.mark.skipif(not os.path.exists("/usr/bin/qemu-aarch64"), reason="qemu-aarch64 absent")
def test_arm64_under_qemu():
    """The fused kernel is lane-width generic: NEON (4 lanes) under qemu."""
    from test_arm64 import MISSING

    from conftest import assert_matches

    if MISSING:
        pytest.skip(f"arm64 cross toolchain/qemu absent: {MISSING}")
    model = _prune_1x1(TwoBlocks().eval(), seed=5)
    x = torch.rand(1, 8, 13, 22)
    assert _conv_kernels(_lowered(model, x, vec=4)[1]) == 5, "NEON lowering fuses both pairs"
    cm = lrc.compile(model, (x,), target="arm64")
    with torch.no_grad():
        assert_matches(model(x), cm(x), "arm64 fused pointwise chains")
