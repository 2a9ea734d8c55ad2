"""lr-fuse-conv-pool and the dense conv kernel's fused 2x2 max pool (ConvSpec.pool), against torch:
the kernel over its row-tiled modes (padded copy whole and in bands, in place), lane widths and
register budgets, odd sizes (floor mode), groups, activations; and through lrc.compile (which pairs
fuse, which do not, threads, arm64 under qemu)."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lrc
from lrc.codegen.kernels import conv as convk
from lrc.codegen.kernels.conv import ConvSpec, emit_conv_func, pack_conv_weights, pool_supported
from lrc.codegen.kernels.testing import assert_close, conv_ref, jit_kernels

P1 = (1, 1, 1, 1)
needs_avx512 = pytest.mark.skipif(not {"avx512f", "avx512vl"} <= __import__("lrc.targets.aot", fromlist=["x"]).cpu_flags(),
                                  reason="16-lane (zmm) kernels need an AVX-512F/VL CPU")


def _pooled_ref(s, x, w, b):
    y = conv_ref(dataclasses.replace(s, pool=0, pool_keep=False), x, w, b)
    return F.max_pool2d(torch.from_numpy(y), 2, 2).numpy()


def run_pooled(specs, block_bytes=None, seed=0):
    """JIT every spec with its fused pool (optionally with a forced row-band budget) and check it
    against conv -> activation -> max_pool2d(2, 2) in torch (with pool_keep also the conv's own
    plane, the first output); returns the plans."""
    rng = np.random.default_rng(seed)
    cases, emitters = [], []
    for s in specs:
        assert pool_supported(s), s
        g = dataclasses.replace(convk._geom_from_spec(s), block_bytes=block_bytes)
        x = rng.standard_normal((s.N, s.C, s.H, s.W)).astype(np.float32)
        w = (rng.standard_normal((s.K, s.C // s.groups, s.KH, s.KW)) * 0.3).astype(np.float32)
        b = rng.standard_normal(s.K).astype(np.float32)
        packed = pack_conv_weights(s, w, b)
        name = f"p{len(cases)}"
        cases.append((s, g, x, w, b, packed, name))
        emitters.append((name, lambda n, g=g, packed=packed: convk._emit(g, n, packed)))
    jm = jit_kernels(emitters)
    plans = []
    for s, g, x, w, b, packed, name in cases:
        ph, pw = s.pooled_hw
        pooled = np.full(s.N * s.K * ph * pw, np.nan, np.float32)  # every element must be written
        outs = [pooled]
        if s.pool_keep:
            outs.insert(0, np.full(s.N * s.K * s.OH * s.OW, np.nan, np.float32))
        jm.call(f"{name}_c", x.reshape(-1), *packed, *outs)
        assert_close(pooled.reshape(s.N, s.K, ph, pw), _pooled_ref(s, x, w, b), f"{s} block_bytes={block_bytes}")
        if s.pool_keep:
            full = conv_ref(dataclasses.replace(s, pool=0, pool_keep=False), x, w, b)
            assert_close(outs[0].reshape(full.shape), full, f"conv plane of {s} block_bytes={block_bytes}")
        plans.append(convk._plan(g))
    return plans


def S(N, C, H, W, K, KH, **kw):
    kw.setdefault("pool", 2)
    return ConvSpec(N, C, H, W, K, KH, KH, **kw)


SPECS = [S(1, 3, 20, 20, 5, 3, padding=P1, act="relu"),  # K not a multiple of the channel block
         S(1, 4, 17, 19, 6, 3, padding=P1, act="leaky_relu", act_params=(0.1,)),  # odd rows and columns
         S(2, 8, 33, 35, 16, 3, padding=P1),  # batch 2, no activation
         S(1, 5, 21, 40, 7, 3, act="relu"),  # unpadded: the input read in place
         S(1, 4, 30, 30, 8, 5, padding=(2, 2, 2, 2), act="sigmoid"),
         S(1, 4, 31, 31, 6, 3, stride=(2, 2), padding=P1),  # column phases
         S(1, 8, 24, 24, 8, 3, padding=P1, groups=2, act="relu"),
         S(1, 3, 9, 9, 4, 3, padding=P1, act="relu"),  # one pooled vector, half used
         S(1, 3, 5, 3, 4, 3, padding=P1)]  # a conv row of 3: one pooled column


@pytest.mark.parametrize("regs", [16, 32])
def test_kernel_fused_pool(monkeypatch, regs):
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", regs)
    monkeypatch.delenv("LRC_VECTOR_REGISTERS", raising=False)
    plans = run_pooled(SPECS)
    assert all(p.RB == 2 and p.rows % 2 == 0 for p in plans)
    assert {p.mode for p in plans} == {"prep", "direct"}
    banded = run_pooled([s for s in SPECS if s.padding == P1], block_bytes=2048, seed=1)
    assert any(p.BH for p in banded), "row bands exercised"


@pytest.mark.parametrize("regs", [16, 32])
def test_kernel_fused_pool_keeping_the_conv_plane(monkeypatch, regs):
    """pool_keep: both planes written; odd conv rows are computed (the last one unpooled)."""
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", regs)
    monkeypatch.delenv("LRC_VECTOR_REGISTERS", raising=False)
    # The last one's 16-channel input strip (> 24 KiB) would walk channel blocks innermost unpooled.
    keep = [dataclasses.replace(s, pool_keep=True) for s in SPECS + [S(1, 16, 9, 150, 16, 3, padding=P1)]]
    plans = run_pooled(keep, seed=5)
    assert any(p.rows % 2 for p in plans), "an odd conv row count"
    assert all(p.k_outer for p in plans), "channel blocks outermost: 3*KB store streams, not 3*Kg"
    assert not convk._plan(convk._geom_from_spec(dataclasses.replace(keep[-1], pool=0, pool_keep=False, vec=8))).k_outer
    run_pooled([s for s in keep if s.padding == P1], block_bytes=2048, seed=6)


def test_kernel_fused_pool_neon_width(monkeypatch):
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 32)
    neon = [dataclasses.replace(s, vec=4) for s in SPECS]
    ok = [s for s in neon if pool_supported(s)]  # at 4 lanes some planes take the channel-vectorised tiles
    assert len(ok) >= 6
    run_pooled(ok, seed=2)


@needs_avx512
def test_kernel_fused_pool_sixteen_lanes(monkeypatch):
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 32)
    monkeypatch.delenv("LRC_VECTOR_REGISTERS", raising=False)
    specs = [dataclasses.replace(s, vec=16) for s in SPECS] + [S(1, 16, 12, 64, 16, 3, padding=P1, vec=16, act="relu"),
                                                               S(1, 6, 7, 70, 10, 3, padding=P1, vec=16)]
    run_pooled(specs, seed=3)
    run_pooled(specs[-2:], block_bytes=4096, seed=4)


def test_pool_supported_and_rejected():
    """The fused pool needs the row-tiled kernel: not the 1x1 GEMM, the strided-1x1 panel, the
    channel-vectorised small planes, nor a residual; specs it cannot run raise, never miscompute."""
    assert pool_supported(S(1, 16, 56, 56, 16, 3, padding=P1))
    assert not pool_supported(S(1, 16, 56, 56, 16, 1))  # flat 1x1
    assert not pool_supported(S(1, 16, 56, 56, 16, 1, stride=(2, 2)))  # strided-1x1 panel
    assert not pool_supported(S(1, 128, 28, 28, 128, 3, padding=P1))  # channel-vectorised 28x28
    assert not pool_supported(S(1, 8, 16, 16, 8, 3, padding=P1, residual=True))
    with pytest.raises(ValueError, match="no residual"):
        convk._geom_from_spec(S(1, 8, 16, 16, 8, 3, padding=P1, residual=True))
    with pytest.raises(ValueError, match="pool factor 3"):
        convk._geom_from_spec(S(1, 8, 16, 16, 8, 3, padding=P1, pool=3))
    with pytest.raises(ValueError, match="pool_keep without a fused pool"):
        convk._geom_from_spec(S(1, 8, 16, 16, 8, 3, padding=P1, pool=0, pool_keep=True))
    flat = S(1, 16, 56, 56, 16, 1)
    with pytest.raises(NotImplementedError, match="max pool fused into a conv that runs as a flat kernel"):
        emit_conv_func(flat, "k", pack_conv_weights(flat, np.ones((16, 16, 1, 1), np.float32), None))


def run_sparse_pooled(specs, seed=0, window=None):
    """Pattern-pruned convs (4-of-9 library) with a fused pool on the sparse kernels, against torch."""
    import lrprune

    from lrc.codegen.kernels import sparse_conv as spk

    lib = [(1, 3, 4, 5), (0, 1, 3, 4), (1, 4, 5, 7), (3, 4, 5, 7), (4, 5, 7, 8), (1, 2, 4, 5)]
    rng = np.random.default_rng(seed)
    built = []
    for s in specs:
        x = rng.standard_normal((s.N, s.C, s.H, s.W)).astype(np.float32)
        w = rng.standard_normal((s.K, s.C, 3, 3)).astype(np.float32)
        w = np.ascontiguousarray(lrprune.project(torch.from_numpy(w), "pattern+kernel", 0.5, library=lib).numpy())
        b = rng.standard_normal(s.K).astype(np.float32)
        pk = spk.pack_sparse_conv(s, w, b, library=lib)
        assert spk.pool_supported(pk), (s, pk.tile)
        built.append((s, x, w, b, pk))
    jm = jit_kernels([(f"sp{i}", lambda n, pk=c[4]: spk.emit_sparse_conv_func(pk, n)) for i, c in enumerate(built)])
    for i, (s, x, w, b, pk) in enumerate(built):
        ph, pw = s.pooled_hw
        pooled = np.full(s.N * s.K * ph * pw, np.nan, np.float32)
        outs = [np.full(s.N * s.K * s.OH * s.OW, np.nan, np.float32), pooled] if s.pool_keep else [pooled]
        jm.call(f"sp{i}_c", x.reshape(-1), *pk.arrays(), *outs)
        assert_close(pooled.reshape(s.N, s.K, ph, pw), _pooled_ref(s, x, w, b), f"sparse {s} tile {pk.tile}")
        if s.pool_keep:
            full = conv_ref(dataclasses.replace(s, pool=0, pool_keep=False), x, w, b)
            assert_close(outs[0].reshape(full.shape), full, f"sparse conv plane of {s} tile {pk.tile}")
    return [c[4] for c in built]


@pytest.mark.parametrize("regs", [16, 32])
def test_sparse_kernel_fused_pool(monkeypatch, regs):
    """The pattern kernels pool row pairs too: whole padded copy and sliding windows, shifted and
    plain loads, odd sizes, batch, 8 lanes (16 on AVX-512 in the next test)."""
    from lrc.codegen.kernels import sparse_conv as spk

    monkeypatch.setattr(convk, "VECTOR_REGISTERS", regs)
    monkeypatch.delenv("LRC_VECTOR_REGISTERS", raising=False)
    specs = [S(1, 8, 20, 20, 6, 3, padding=P1, act="relu"), S(1, 6, 17, 35, 5, 3, padding=P1),
             S(2, 8, 12, 40, 9, 3, padding=P1, act="leaky_relu", act_params=(0.1,)),
             S(1, 16, 9, 70, 4, 3, act="relu")]
    packs = run_sparse_pooled(specs)
    assert all(pk.tile.RB % 2 == 0 for pk in packs)
    run_sparse_pooled([dataclasses.replace(s, vec=4) for s in specs], seed=3)  # NEON width
    keep = [dataclasses.replace(s, pool_keep=True) for s in specs + [S(1, 8, 19, 30, 6, 3, padding=P1)]]
    packs = run_sparse_pooled(keep, seed=4)  # both planes; 17 / 19 rows: an odd last row, unpooled
    assert any(pk.spec.OH % pk.tile.RB for pk in packs)
    monkeypatch.setattr(spk, "WINDOW_MIN_BYTES", 1)  # sliding windows per row block
    packs = run_sparse_pooled(specs[:3] + keep[:2], seed=1)
    assert any(spk._geometry(pk.spec, pk.tile).WR for pk in packs)
    with pytest.raises(NotImplementedError, match="max pool fused into this sparse conv"):
        flat = S(1, 8, 16, 16, 8, 1)
        spk.emit_sparse_conv_func(spk.pack_sparse_conv(flat, np.eye(8, dtype=np.float32).reshape(8, 8, 1, 1), None),
                                  "k")


@needs_avx512
def test_sparse_kernel_fused_pool_sixteen_lanes(monkeypatch):
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 32)
    monkeypatch.delenv("LRC_VECTOR_REGISTERS", raising=False)
    run_sparse_pooled([S(1, 16, 14, 64, 8, 3, padding=P1, act="relu", vec=16),
                       S(1, 8, 11, 56, 6, 3, padding=P1, vec=16)], seed=2)  # 56 wide: a half-width tail


# ------------------------------------------------------------------------------------------------
# Through lrc.compile


class Stages(nn.Module):
    """VGG-like stages: conv + ReLU + pool; the second conv's pool has ceil_mode on an even plane.
    (Planes of at least 1024 pixels or with 8 output channels: the channel-vectorised small-plane
    tiles, which do not fuse, stay out of the way.)"""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 12, 3, padding=1), nn.Conv2d(12, 16, 3, padding=1)
        self.c3 = nn.Conv2d(16, 8, 3, padding=1)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.c1(x)), 2)
        x = F.max_pool2d(torch.relu(self.c2(x)), 2, ceil_mode=True)
        return F.max_pool2d(self.c3(x), 2)


def _lowered(model, x, **kw):
    from lrc.codegen.lower import lower_to_kernels
    from lrc.compiler import optimize
    from lrc.importer import import_model

    m = import_model(model, (x,))
    optimize(m)
    return str(m), str(lower_to_kernels(m, **kw))


def _kernels(ir_text, kind):
    return sum(1 for line in ir_text.splitlines() if "func.func private" in line and kind in line)


def test_stages_fused_and_match_torch(check):
    torch.manual_seed(0)
    model = Stages().eval()
    x = torch.rand(1, 3, 36, 132)
    lr_text, kir = _lowered(model, x)
    assert lr_text.count("lr.pool_epilogue") == 3
    assert (_kernels(kir, "conv2d_max_pool2d"), _kernels(kir, "max_pool2d")) == (3, 3), \
        "three conv kernels write pooled planes, no pool kernel"
    check(model, x)
    check(model, torch.rand(2, 3, 36, 132))  # batch 2
    check(model, torch.rand(1, 3, 37, 133))  # odd planes: floor mode drops the last row / column


def test_threads_two(check):
    torch.manual_seed(1)
    check(Stages().eval(), torch.rand(1, 3, 96, 132), threads=2)


def test_skip_connection_keeps_the_conv_plane(check):
    """U-Net encoder stages: the conv's result feeds the pool and, later, the decoder (a concat,
    written in place): one kernel writes both planes; batch 2, odd planes, threads."""

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
            self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
            self.c = nn.Conv2d(16, 4, 3, padding=1)

        def forward(self, x):
            s = torch.relu(self.a(x))
            y = torch.relu(self.b(F.max_pool2d(s, 2)))
            y = self.up(y)
            return self.c(torch.cat([y, s], 1))

    torch.manual_seed(5)
    model = Encoder().eval()
    x = torch.rand(1, 3, 40, 132)
    lr_text, kir = _lowered(model, x)
    assert lr_text.count("lr.pool_epilogue") == 1
    assert (_kernels(kir, "conv2d_max_pool2d"), _kernels(kir, "max_pool2d")) == (1, 1)
    check(model, x)
    check(model, torch.rand(2, 3, 40, 132))
    check(model, x, threads=2)

    class Returned(nn.Module):  # the conv plane returned beside the pooled branch
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)

        def forward(self, x):
            s = torch.relu(self.a(x))
            return self.b(F.max_pool2d(s, 2)), s

    xo = torch.rand(1, 3, 41, 133)  # the odd last conv row is computed, not pooled
    assert _kernels(_lowered(Returned().eval(), xo)[1], "conv2d_max_pool2d") == 1
    check(Returned().eval(), xo)


def test_not_fused(check):
    """A ceil-mode pool with a partial window, a 3x3 or padded pool, and a conv with a residual keep
    separate kernels, and match torch."""

    class Unfusable(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.c, self.d = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            s = torch.relu(self.a(x))  # also returned: fused, keeping the conv plane
            y = F.max_pool2d(s, 2)
            y = F.max_pool2d(self.b(y), 2, ceil_mode=True)  # 17x17 conv output: a partial window
            y = F.max_pool2d(self.c(y), 3, 2, padding=1)
            y = F.max_pool2d(self.d(y) + y, 2)  # residual fused into d
            return y, s

    torch.manual_seed(2)
    model = Unfusable().eval()
    x = torch.rand(1, 3, 34, 34)
    lr_text, kir = _lowered(model, x)
    assert lr_text.count("lr.pool_epilogue") == 1  # only the first conv
    assert (_kernels(kir, "conv2d_max_pool2d"), _kernels(kir, "max_pool2d")) == (1, 4)
    check(model, x)


def test_sparse_convs(check):
    """A kernel-pruned conv on the sparse pattern kernels pools in them too, also when its plane is
    kept for another user; a column-pruned one (the column tile) keeps its pool kernel."""
    import lrprune

    torch.manual_seed(3)
    model = Stages().eval()
    with torch.no_grad():
        w = model.c2.weight
        w.copy_(lrprune.project(w, "kernel", 0.9))
        model.c2.lr_sparsity = {"kind": "kernel", "rate": 0.9, "library": None}
    x = torch.rand(1, 3, 36, 132)
    os.environ["LRC_SPARSE"] = "always"
    try:
        lr_text, kir = _lowered(model, x)
        assert lr_text.count("lr.pool_epilogue") == 3
        assert (_kernels(kir, "conv2d_max_pool2d"), _kernels(kir, "max_pool2d")) == (3, 3)
        check(model, x)
        check(model, torch.rand(1, 3, 37, 133))  # odd planes
        check(model, x, threads=2)  # the sparse conv's row blocks split over threads

        with torch.no_grad():
            w = model.c3.weight
            w.copy_(lrprune.project(w, "column", 0.6))
            model.c3.lr_sparsity = {"kind": "column", "rate": 0.6, "library": None}
        lr_text, kir = _lowered(model, x)
        assert (_kernels(kir, "conv2d_max_pool2d"), _kernels(kir, "max_pool2d")) == (2, 3), \
            "the column-tile conv keeps its pool kernel"
        check(model, x)

        class Skip(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Conv2d(3, 8, 3, padding=1)

            def forward(self, x):
                s = torch.relu(self.a(x))
                return F.max_pool2d(s, 2), s

        skip = Skip().eval()
        with torch.no_grad():
            skip.a.weight.copy_(lrprune.project(skip.a.weight, "kernel", 0.5))
            skip.a.lr_sparsity = {"kind": "kernel", "rate": 0.5, "library": None}
        assert _kernels(_lowered(skip, x)[1], "conv2d_max_pool2d") == 1, "both planes from the sparse kernel"
        check(skip, x)
        check(skip, torch.rand(1, 3, 37, 133))  # an odd last conv row, kept but not pooled
        check(skip, x, threads=2)
    finally:
        del os.environ["LRC_SPARSE"]


@pytest.mark.skipif(not os.path.exists("/usr/bin/qemu-aarch64"), reason="qemu-aarch64 absent")
def test_arm64_under_qemu():
    from test_arm64 import MISSING

    from conftest import assert_matches

    if MISSING:
        pytest.skip(f"arm64 cross toolchain/qemu absent: {MISSING}")
    torch.manual_seed(4)
    model = Stages().eval()
    x = torch.rand(1, 3, 36, 132)
    kir = _lowered(model, x, vec=4)[1]
    # (at 4 lanes the last stage's 9x33 plane takes the channel-vectorised tiles: its pool stays)
    assert (_kernels(kir, "conv2d_max_pool2d"), _kernels(kir, "max_pool2d")) == (2, 3), "NEON lowering fuses the pools"
    cm = lrc.compile(model, (x,), target="arm64")
    with torch.no_grad():
        assert_matches(model(x), cm(x), "arm64 fused conv + pool")
