"""Winograd F(2x2, 3x3) and F(4x4, 3x3) conv kernel (lrc.codegen.kernels.winograd) against torch, through the JIT."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrc.codegen.kernels import winograd as wg
from lrc.codegen.kernels.conv import ConvSpec
from lrc.codegen.kernels.testing import assert_close, conv_ref, jit_kernels

P1 = (1, 1, 1, 1)


def S(N, C, H, W, K, padding=P1, **kw):
    return ConvSpec(N, C, H, W, K, 3, 3, padding=padding, **kw)


def pooled(ref: np.ndarray) -> np.ndarray:
    n, k, h, w = ref.shape
    return ref[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, k, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def run_cases(cases, seed=0):
    """cases: (spec, band_rows or None, with bias[, tile size m]), each run with the given m or with
    both F(2x2) and F(4x4). JIT all in one module, check each against torch."""
    rng = np.random.default_rng(seed)
    built = []
    cases = [(c[0], c[1], c[2], m) for c in cases for m in (c[3:] or (2, 4))]
    for s, band_rows, with_bias, m in cases:
        lay = wg.layout_for(s, band_rows=band_rows, m=m)
        x = rng.standard_normal((s.N, s.C, s.H, s.W)).astype(np.float32)
        w = rng.standard_normal((s.K, s.C, 3, 3)).astype(np.float32)
        b = rng.standard_normal(s.K).astype(np.float32) if with_bias else None
        r = rng.standard_normal((s.N, s.K, s.OH, s.OW)).astype(np.float32) if s.residual else None
        built.append((s, lay, x, w, b, r, wg.pack_winograd_weights(s, w, b, lay)))
    jm = jit_kernels([(f"w{i}", lambda name, c=c: wg.emit_winograd_func(c[0], name, c[6], layout=c[1]))
                      for i, c in enumerate(built)])
    for i, (s, lay, x, w, b, r, packed) in enumerate(built):
        ref = conv_ref(s, x, w, b, r)
        refs = [pooled(ref)] if s.pool and not s.pool_keep else [ref, pooled(ref)] if s.pool else [ref]
        outs = [np.full(q.size, np.nan, np.float32) for q in refs]
        jm.call(f"w{i}_c", x.reshape(-1), *packed, *([r.reshape(-1)] if r is not None else []), *outs)
        for o, q in zip(outs, refs):
            assert_close(o, q, f"{s} m={lay.m} BT={lay.BT}")


GEOMETRIES = [
    # even / odd planes, tile rows not filling a vector, several bands with a tail (half) tile row
    (S(1, 16, 8, 8, 16), None, True),
    (S(1, 16, 56, 56, 32, act="relu"), None, True),
    (S(2, 5, 9, 13, 7, act="relu6"), 2, True),
    (S(1, 8, 7, 11, 9), 1, False),
    (S(1, 3, 5, 40, 4, padding=(2, 0, 1, 1)), 1, True),  # asymmetric padding
    (S(1, 4, 6, 6, 4, padding=(0, 0, 0, 0)), None, True),  # no padding
    (S(1, 2, 1, 1, 3, padding=(1, 1, 1, 1)), None, True),  # a 1x1 input
    (S(1, 6, 3, 19, 5, padding=(0, 1, 0, 1)), None, True),  # one output row
    (S(1, 16, 9, 33, 24, vec=16), 2, True),  # 16 lanes
    (S(1, 16, 9, 33, 24, vec=4), None, True),  # NEON width
    (S(1, 20, 10, 70, 6, vec=16), 3, True),  # a tile row of several vectors plus a partial one
    # short tile rows: transforms on 8 / 4 lanes next to the GEMM's 16 (_Layout.VT)
    (S(1, 16, 28, 28, 20, vec=16, act="relu"), None, True),
    (S(1, 16, 14, 13, 16, vec=16, pool=2, pool_keep=True), None, True),
    (S(1, 16, 14, 14, 16, vec=16, residual=True), 2, False),
]


def test_transform_lanes():
    assert [wg.layout_for(S(1, 16, n, n, 16, vec=16), m=4).VT for n in (56, 28, 14, 6)] == [16, 8, 4, 4]
    assert wg.layout_for(S(1, 16, 28, 28, 16, vec=16), m=2).VT == 16  # 14 tiles per row


def test_geometries():
    run_cases(GEOMETRIES)


def test_residual_and_activations():
    acts = {"leaky_relu": (0.1,), "clamp": (-0.5, 0.75), "silu": (), "sigmoid": (), "hardswish": (), "tanh": ()}
    cases = [(S(1, 8, 7, 11, 9, residual=True, act="relu"), 2, True),
             (S(2, 6, 10, 17, 5, residual=True, vec=16), None, False),
             (S(1, 4, 5, 9, 3, residual=True, act="silu", vec=4), 1, True)]
    cases += [(S(1, 5, 9, 10, 6, act=a, act_params=p), None, True) for a, p in acts.items()]
    run_cases(cases, seed=1)


def test_fused_pool():
    run_cases([(S(1, 16, 16, 16, 16, pool=2, act="relu"), None, True),
               (S(1, 16, 15, 17, 8, pool=2, pool_keep=True, act="relu"), 3, True),  # odd planes: floor mode
               (S(1, 6, 13, 9, 7, pool=2, act="relu6"), 2, False),
               (S(1, 6, 12, 40, 7, pool=2, pool_keep=True, vec=16), 2, True),
               (S(2, 3, 7, 7, 5, pool=2, vec=4), None, True)], seed=2)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_specs(data):
    d = data.draw
    pads = tuple(d(st.integers(0, 2)) for _ in range(4))
    h, w = d(st.integers(1, 19)), d(st.integers(1, 37))
    if h + pads[0] + pads[2] < 3 or w + pads[1] + pads[3] < 3:
        h, w = 3, 3
    vec = d(st.sampled_from([4, 8, 16]))
    s = S(d(st.integers(1, 2)), d(st.integers(1, 12)), h, w, d(st.integers(1, 12)), padding=pads, vec=vec,
          residual=d(st.booleans()), act=d(st.sampled_from(["none", "relu"])))
    if d(st.booleans()) and not s.residual and s.OH >= 2 and s.OW >= 2:
        s = dataclasses.replace(s, pool=2, pool_keep=d(st.booleans()))
    run_cases([(s, d(st.sampled_from([None, 1, 2, 3])), d(st.booleans()), d(st.sampled_from([2, 4])))],
              seed=d(st.integers(0, 9)))


@pytest.mark.parametrize("m", [2, 4])
def test_transform_algebra(m):
    """A^T [(G g G^T) * (B^T d B)] A is the m x m valid correlation of an (m+2) x (m+2) patch d with g."""
    rng = np.random.default_rng(3)
    g = rng.standard_normal((1, 1, 3, 3))
    d = rng.standard_normal((m + 2, m + 2))
    BT, _, AT = wg.matrices(m)
    u = wg.filter_transform(g, m).astype(np.float64).reshape(m + 2, m + 2)
    y = AT @ (u * (BT @ d @ BT.T)) @ AT.T
    ref = np.array([[np.sum(d[i:i + 3, j:j + 3] * g[0, 0]) for j in range(m)] for i in range(m)])
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_choice():
    """Which dense convs take the Winograd kernel (the rest keep the direct one)."""
    assert wg.use_winograd(S(1, 64, 56, 56, 64))
    assert wg.use_winograd(S(1, 16, 224, 224, 16, pool=2))
    assert not wg.use_winograd(S(1, 3, 224, 224, 16))  # too few input channels for the GEMM
    assert not wg.use_winograd(S(1, 64, 56, 56, 8))
    assert not wg.use_winograd(S(1, 64, 3, 3, 64))  # smaller than 2x2 tiles
    assert not wg.use_winograd(S(1, 64, 56, 56, 64, stride=(2, 2)))
    assert not wg.use_winograd(S(1, 64, 56, 56, 64, dilation=(2, 2), padding=(2, 2, 2, 2)))
    assert not wg.use_winograd(S(1, 64, 56, 56, 64, groups=2))
    assert not wg.use_winograd(ConvSpec(1, 64, 56, 56, 64, 5, 5, padding=(2, 2, 2, 2)))
    assert wg.tile_size(S(1, 64, 56, 56, 64)) == 4 and wg.tile_size(S(1, 64, 7, 7, 64)) == 2


def test_switch_off(monkeypatch):
    monkeypatch.setenv("LRC_WINOGRAD", "0")
    assert not wg.use_winograd(S(1, 64, 56, 56, 64))


def test_refuses_other_geometry():
    with pytest.raises(NotImplementedError, match="Winograd F.m x m, 3x3. needs a 3x3 stride-1"):
        wg.emit_winograd_func(S(1, 4, 8, 8, 4, stride=(2, 2)), "k", [np.zeros(1, np.float32)])


def test_compiled_model_uses_and_matches(monkeypatch):
    """A VGG-style block through lrc.compile: Winograd on and off give torch's numbers."""
    import torch

    import lrc

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 24, 3, padding=1), torch.nn.BatchNorm2d(24), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(24, 24, 3, padding=1), torch.nn.ReLU()).eval()
    x = torch.randn(1, 3, 30, 22)
    ref = model(x).detach().numpy()
    seen = []
    real = wg.emit_winograd_func
    monkeypatch.setattr(wg, "emit_winograd_func", lambda *a, **k: seen.append(a[0]) or real(*a, **k))
    assert_close(lrc.compile(model, (x,))(x.numpy()), ref, "winograd")
    assert [(s.C, s.K, s.pool) for s in seen] == [(16, 24, 2), (24, 24, 0)]
    monkeypatch.setenv("LRC_WINOGRAD", "0")
    seen.clear()
    assert_close(lrc.compile(model, (x,))(x.numpy()), ref, "direct")
    assert not seen


def test_sparse_needs_more_against_winograd():
    """A pattern-sparse conv whose dense alternative is Winograd needs >= 3x fewer MACs against
    F(4x4), 2.25x (4-of-9 patterns) against F(2x2) to take the sparse kernel; against the direct
    kernel 1.6x is enough."""
    from lrc.codegen.kernels.sparse_conv import pack_sparse_conv, worth_it

    rng = np.random.default_rng(4)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    w.reshape(16, 16, 9)[:, :, [0, 2, 6, 8]] = 0  # 5 of 9 taps: 1.8x fewer MACs
    big, small = S(1, 16, 20, 20, 16), S(1, 16, 6, 6, 16)
    assert (wg.tile_size(big), wg.tile_size(small)) == (4, 2)
    strided = S(1, 16, 20, 20, 16, stride=(2, 2))
    five = [(1, 3, 4, 5, 7)]
    assert not worth_it(pack_sparse_conv(big, w, None, library=five))
    assert not worth_it(pack_sparse_conv(small, w, None, library=five))
    assert worth_it(pack_sparse_conv(strided, w, None, library=five))
    w.reshape(16, 16, 9)[:, :, 4] = 0  # 4 of 9: 2.25x
    four = [(1, 3, 5, 7)]
    assert worth_it(pack_sparse_conv(small, w, None, library=four))
    assert not worth_it(pack_sparse_conv(big, w, None, library=four))
    w.reshape(16, 16, 9)[:, :, 1] = 0  # 3 of 9: 3x
    assert worth_it(pack_sparse_conv(big, w, None, library=[(3, 5, 7)]))


@pytest.mark.parametrize("m", [2, 4])
def test_tile_row_parts(m):
    """Tile-row ranges (a thread's share) of one conv, run one after another over the same buffers,
    give the whole conv: the last range ends in the partial tile row, a kept pooled plane is
    written by every part."""
    rng = np.random.default_rng(5)
    for s in (S(1, 6, 15, 21, 5, residual=True, act="relu"), S(2, 5, 14, 19, 7, pool=2, pool_keep=True)):
        lay = wg.layout_for(s, band_rows=2, m=m)
        x = rng.standard_normal((s.N, s.C, s.H, s.W)).astype(np.float32)
        w = rng.standard_normal((s.K, s.C, 3, 3)).astype(np.float32)
        b = rng.standard_normal(s.K).astype(np.float32)
        r = rng.standard_normal((s.N, s.K, s.OH, s.OW)).astype(np.float32) if s.residual else None
        packed = wg.pack_winograd_weights(s, w, b, lay)
        bounds = [0, 1, lay.TH // 2 + 1, lay.TH]
        parts = list(zip(bounds, bounds[1:]))
        jm = jit_kernels([(f"p{i}", lambda name, rows=rows: wg.emit_winograd_func(s, name, packed, layout=lay,
                                                                                   rows=rows))
                          for i, rows in enumerate(parts)])
        ref = conv_ref(s, x, w, b, r)
        refs = [ref, pooled(ref)] if s.pool else [ref]
        outs = [np.full(q.size, np.nan, np.float32) for q in refs]
        for i in range(len(parts)):
            jm.call(f"p{i}_c", x.reshape(-1), *packed, *([r.reshape(-1)] if r is not None else []), *outs)
        for o, q in zip(outs, refs):
            assert_close(o, q, f"{s} m={m} parts={parts}")
    with pytest.raises(ValueError, match="tile rows"):
        wg.emit_winograd_func(s, "bad", packed, layout=lay, rows=(0, lay.TH + 1))


def test_threads_split_tile_rows(monkeypatch):
    """threads=2: a dense Winograd conv on a big plane is split by tile rows (not output channels),
    one on a small plane by channels; numerics as torch."""
    import torch

    import lrc
    from lrc.codegen import ops_dense

    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 32, 3, padding=1)).eval()
    x = torch.randn(1, 3, 64, 64)
    rows = []
    real = wg.emit_winograd_func
    monkeypatch.setattr(wg, "emit_winograd_func", lambda *a, **k: rows.append(k.get("rows")) or real(*a, **k))
    cm = lrc.compile(model, (x,), threads=2)
    assert_close(cm(x.numpy()), model(x).detach().numpy(), "threads=2")
    # 16->32 at 64x64: 16 rows of 16 tiles, two parts of 8 rows; 32->32 at 32x32: 8 rows of 8 tiles,
    # too few per part (WINOGRAD_MIN_PART_TILES): two output-channel parts, each over every row.
    assert sorted(r for r in rows if r) == [(0, 8), (8, 16)] and rows.count(None) == 2, rows
    big, small = [op for op in _layers(model, x) if op.attrs["weight"].shape[1] == 16 or
                  op.attrs["weight"].shape[:2] == (32, 32)]
    assert ops_dense.conv_channel_split(big, 2) is None
    assert ops_dense.conv_pixel_split(big, 2, 8) == [(0, 8), (8, 16)]
    assert ops_dense.conv_pixel_split(small, 2, 8) is None
    assert ops_dense.conv_channel_split(small, 2) == [(0, 16), (16, 32)]


def _layers(model, x):
    """The fused lr conv layers of a model as the lowering sees them (LayerOps)."""
    import lrc
    from lrc.codegen.emit import LayerOp
    from lrc.dialects import lr
    from lrc.transforms import DEFAULT_OPT_PIPELINE

    mod = lrc.import_model(model, (x,))
    lrc.optimize(mod, DEFAULT_OPT_PIPELINE)
    fn = [o for o in mod.body.operations if o.operation.name == "func.func"][0]
    for op in fn.regions[0].blocks[0].operations:
        op = op.operation
        if op.name == "lr.conv2d":
            yield LayerOp(name="conv2d", attrs=lr.attrs_of(op), in_shapes=[tuple(op.operands[0].type.shape)],
                          out_shape=tuple(op.results[0].type.shape), location=None)
