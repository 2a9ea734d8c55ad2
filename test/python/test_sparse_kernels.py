"""Sparse conv kernels (lrc.codegen.kernels.sparse_conv) against torch conv2d with the same masked
weights, for every sparsity kind and stride / padding / dilation / groups combination, through the JIT."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lrprune
from lrc.codegen.kernels.conv import ConvSpec
from lrc.codegen.kernels.sparse_conv import (MAX_PATTERNS, SparseTile, emit_sparse_conv_func, kernel_tap_sets,
                                             pack_sparse_conv)
from lrc.codegen.kernels.testing import assert_close, conv_ref, jit_kernels

ACT_PARAMS = {"leaky_relu": (0.1,), "clamp": (-0.5, 0.75), "elu": (0.6, 1.1, 0.9)}
LIB = [(1, 3, 4, 5), (0, 1, 3, 4), (1, 4, 5, 7), (3, 4, 5, 7), (4, 5, 7, 8), (1, 2, 4, 5), (3, 4, 6, 7), (1, 4, 7, 8)]


def S(N, C, H, W, K, KH, KW=None, **kw):
    if "act" in kw and "act_params" not in kw:
        kw["act_params"] = ACT_PARAMS.get(kw["act"], ())
    return ConvSpec(N, C, H, W, K, KH, KH if KW is None else KW, **kw)


def prune(w: np.ndarray, kind: str, rate: float | None, groups_ok=True) -> tuple[np.ndarray, list | None]:
    """Masked weights of `kind` (lrprune's projection) and the library used, if any."""
    t = torch.from_numpy(w)
    if kind == "none":
        return w, None
    lib = None
    if kind in ("pattern", "pattern+kernel"):
        if w.shape[2:] != (3, 3):
            kind, rate = "kernel", rate or 0.5
        else:
            lib = LIB
    out = lrprune.project(t, kind, rate if kind != "pattern" else None, library=lib).numpy()
    return np.ascontiguousarray(out, np.float32), lib


def run_cases(cases, seed=0):
    """cases: (spec, kind, rate, use_library, bias, tile). JIT them in one module, check each vs torch."""
    rng = np.random.default_rng(seed)
    built = []
    for i, (s, kind, rate, use_lib, bias, tile) in enumerate(cases):
        x = rng.standard_normal((s.N, s.C, s.H, s.W)).astype(np.float32)
        w = rng.standard_normal((s.K, s.C // s.groups, s.KH, s.KW)).astype(np.float32)
        w, lib = prune(w, kind, rate)
        b = rng.standard_normal(s.K).astype(np.float32) if bias else None
        r = rng.standard_normal((s.N, s.K, s.OH, s.OW)).astype(np.float32) if s.residual else None
        pk = pack_sparse_conv(s, w, b, library=lib if use_lib else None, tile=tile)
        built.append((s, x, w, b, r, pk))
    jm = jit_kernels([(f"sp{i}", lambda name, c=c: emit_sparse_conv_func(c[5], name)) for i, c in enumerate(built)])
    for i, (s, x, w, b, r, pk) in enumerate(built):
        out = np.full(s.N * s.K * s.OH * s.OW, np.nan, np.float32)
        args = [x.reshape(-1), *pk.arrays()] + ([r.reshape(-1)] if r is not None else []) + [out]
        jm.call(f"sp{i}_c", *args)
        assert_close(out, conv_ref(s, x, w, b, r), f"{s} {cases[i][1:]}")
    return built


P1 = (1, 1, 1, 1)
KINDS = [("pattern", None), ("pattern+kernel", 0.6), ("kernel", 0.7), ("filter", 0.5), ("channel", 0.5),
         ("column", 0.5), ("irregular", 0.8), ("none", None)]


@pytest.mark.parametrize("kind,rate", KINDS, ids=[k for k, _ in KINDS])
def test_every_kind_3x3_and_1x1(kind, rate):
    cases = [
        (S(1, 8, 16, 16, 8, 3, padding=P1, act="relu"), kind, rate, True, True, None),
        (S(1, 6, 9, 21, 11, 3, padding=P1), kind, rate, False, True, None),  # tap sets from the weights
        (S(1, 12, 7, 13, 10, 1), kind, rate, False, True, None),  # 1x1 flat: SpMM, partial vector
        (S(1, 5, 37, 41, 6, 1), kind, rate, False, True, None),  # 1x1 flat: 2 panels, the last partial
        (S(2, 5, 6, 9, 7, 1, act="leaky_relu", residual=True), kind, rate, False, False, None),
    ]
    run_cases(cases, seed=hash(kind) % 1000)


def test_stride_padding_dilation_groups():
    pk = ("pattern+kernel", 0.5)
    cases = [
        (S(1, 4, 16, 16, 8, 3, stride=(2, 2), padding=P1), *pk, True, True, None),
        (S(1, 3, 15, 17, 5, 3, stride=(2, 2), padding=P1, act="relu6"), *pk, True, True, None),
        (S(1, 3, 12, 19, 4, 3, stride=(2, 2), padding=(0, 1, 1, 0)), *pk, True, True, None),
        (S(1, 2, 13, 14, 3, 3, stride=(3, 3), padding=(1, 2, 1, 0)), *pk, True, True, None),
        (S(1, 3, 11, 40, 4, 3, stride=(1, 2)), *pk, True, True, None),
        (S(1, 4, 12, 14, 5, 3, dilation=(2, 2), padding=(2, 2, 2, 2)), *pk, True, True, None),
        (S(1, 8, 9, 9, 12, 3, padding=P1, groups=2, act="sigmoid"), *pk, True, True, None),
        (S(1, 12, 7, 7, 8, 3, stride=(2, 2), padding=P1, groups=4), *pk, True, True, None),
        (S(1, 8, 12, 12, 8, 3, padding=P1, groups=8, act="tanh"), *pk, True, True, None),  # depthwise
        (S(1, 6, 8, 10, 9, 1, groups=3), "kernel", 0.5, False, True, None),
        (S(1, 8, 14, 14, 16, 1, stride=(2, 2)), "irregular", 0.7, False, True, None),  # 1x1 via padded copy
        (S(1, 4, 9, 9, 6, 1, padding=P1), "kernel", 0.5, False, True, None),
        (S(1, 4, 20, 21, 8, 5, padding=(2, 2, 2, 2)), "irregular", 0.8, False, True, None),  # one-tap split
        (S(1, 3, 10, 10, 4, 3, padding=P1, residual=True, act="hardswish"), *pk, True, False, None),
        (S(1, 4, 9, 11, 6, 3, padding=P1, act="gelu"), *pk, True, True, None),
        (S(1, 6, 8, 10, 9, 1, residual=True, act="silu"), "kernel", 0.5, False, True, None),
        (S(1, 3, 10, 10, 4, 3, padding=P1, act="elu"), "pattern", None, True, True, None),
    ]
    run_cases(cases, seed=3)


def test_tiles_and_edge_cases():
    s = S(1, 8, 10, 37, 9, 3, padding=P1, act="clamp")
    cases = [(s, "pattern+kernel", 0.5, True, True, SparseTile(WB, RB)) for WB, RB in [(1, 1), (2, 3), (4, 2), (5, 1)]]
    cases += [
        (S(1, 4, 3, 3, 4, 3, padding=P1), "pattern", None, True, True, None),  # image narrower than a vector
        (S(1, 4, 1, 1, 6, 1), "irregular", 0.5, False, True, None),
        (S(1, 6, 8, 8, 5, 3, padding=P1), "filter", 0.99, False, True, None),  # all but one filter removed
        (S(1, 6, 8, 8, 5, 1, act="relu"), "kernel", 0.99, False, True, None),
        (S(1, 4, 9, 9, 6, 3, vec=4, padding=P1), "pattern+kernel", 0.5, True, True, None),  # NEON width
        (S(1, 9, 13, 11, 7, 1, vec=4), "kernel", 0.6, False, True, None),
    ]
    run_cases(cases, seed=5)


def test_channel_blocks():
    """Input-channel blocks (SparseTile.CB): partial sums through the output, bias and residual in the
    first block, activation in the last; the output starts as NaN so a missed first block shows."""
    cases = [
        (S(1, 20, 9, 19, 7, 3, padding=P1, act="relu", residual=True), "pattern+kernel", 0.5, True, True,
         SparseTile(2, 3, 8)),  # 3 blocks, the last one short
        (S(1, 12, 8, 11, 6, 3, stride=(2, 2), padding=P1, groups=2, act="leaky_relu"), "kernel", 0.5, False, True,
         SparseTile(2, 2, 4)),
        (S(2, 10, 7, 9, 5, 3, padding=P1), "column", 0.5, False, False, SparseTile(3, 2, 3)),  # one-tap kernels
        (S(1, 9, 6, 10, 5, 3, padding=P1, act="sigmoid"), "filter", 0.99, False, True, SparseTile(2, 4, 4)),
        (S(1, 8, 9, 9, 6, 3, vec=4, padding=P1, act="clamp"), "pattern+kernel", 0.5, True, True, SparseTile(4, 4, 3)),
        (S(1, 16, 6, 6, 4, 1), "kernel", 0.5, False, True, SparseTile(8, 1, 4)),  # 1x1 panels: no blocks
    ]
    built = run_cases(cases, seed=11)
    assert [b[5].nblocks for b in built] == [3, 2, 4, 3, 3, 1]


def test_strided_1x1_gathers_used_pixels():
    """1x1 stride > 1 without padding reads the strided pixels gathered into OH x OW rows ("sub")."""
    cases = [
        (S(1, 6, 10, 40, 9, 1, stride=(2, 2), act="relu"), "kernel", 0.6, False, True, None),  # shuffle path
        (S(2, 5, 9, 37, 7, 1, stride=(2, 2), residual=True), "irregular", 0.7, False, True, None),  # odd width
        (S(1, 4, 12, 21, 6, 1, stride=(3, 1)), "kernel", 0.5, False, False, None),
        (S(1, 6, 7, 33, 8, 1, stride=(1, 3), groups=2, act="relu6"), "kernel", 0.5, False, True, None),
        (S(1, 8, 8, 30, 5, 1, stride=(2, 2), vec=4), "irregular", 0.6, False, True, SparseTile(3, 2, 3)),
    ]
    built = run_cases(cases, seed=13)
    assert [b[5].nblocks for b in built][-1] == 3


def test_strided_1x1_row_block_gather(monkeypatch):
    """Big planes (WINDOW_MIN_BYTES forced to 0): each row block gathers its own pixels just before
    its filters run; one-row and taller blocks (a short last one), batch 2, groups, residual."""
    from lrc.codegen.kernels import sparse_conv

    monkeypatch.setattr(sparse_conv, "WINDOW_MIN_BYTES", 0)
    cases = [
        (S(1, 6, 10, 40, 9, 1, stride=(2, 2), act="relu"), "kernel", 0.6, False, True, None),
        (S(2, 5, 11, 37, 7, 1, stride=(2, 2), residual=True), "irregular", 0.7, False, True, SparseTile(2, 4)),
        (S(1, 4, 13, 21, 6, 1, stride=(3, 1)), "kernel", 0.5, False, False, SparseTile(3, 2)),
        (S(1, 6, 7, 33, 8, 1, stride=(1, 3), groups=2, act="relu6"), "kernel", 0.5, False, True, None),
    ]
    built = run_cases(cases, seed=14)
    geos = [sparse_conv._geometry(b[5].spec, b[5].tile) for b in built]
    assert all(g.mode == "sub" and g.WR == b[5].tile.RB for g, b in zip(geos, built))
    assert [sparse_conv.pixel_units(b[5]) for b in built][:1] == [-(-built[0][0].OH // built[0][5].tile.RB)]


def test_sliding_window_prep(monkeypatch):
    """Big planes copy each row block's input window (WINDOW_MIN_BYTES forced to 0 here): padding rows
    at both ends, row stride, dilation, a short last row block, groups, residual, NEON width."""
    from lrc.codegen.kernels import sparse_conv

    monkeypatch.setattr(sparse_conv, "WINDOW_MIN_BYTES", 0)
    pk = ("pattern+kernel", 0.5)
    cases = [
        (S(1, 5, 11, 19, 6, 3, padding=P1, act="relu", residual=True), *pk, True, True, SparseTile(2, 4)),
        (S(1, 4, 13, 17, 5, 3, stride=(2, 1), padding=(2, 1, 0, 1)), *pk, True, True, SparseTile(2, 3)),
        (S(1, 4, 12, 14, 5, 3, dilation=(2, 2), padding=(2, 2, 2, 2)), *pk, True, False, None),
        (S(2, 6, 9, 10, 6, 3, padding=P1, groups=2, act="leaky_relu"), "kernel", 0.5, False, True, SparseTile(1, 2)),
        (S(1, 4, 10, 9, 4, 5, padding=(2, 2, 2, 2)), "irregular", 0.8, False, True, SparseTile(2, 2)),
        (S(1, 6, 9, 11, 5, 3, vec=4, padding=P1), *pk, True, True, SparseTile(4, 4)),
        # Column stride 2: phase-split window rows (left padding 0/1/2, odd widths, a short last row
        # block, dilation, 16 lanes with the half-width last vector)
        (S(1, 5, 23, 40, 6, 3, stride=(2, 2), padding=P1, act="relu", residual=True), *pk, True, True,
         SparseTile(2, 2)),
        (S(1, 4, 17, 33, 5, 3, stride=(2, 2), padding=(1, 0, 2, 1)), *pk, True, False, SparseTile(1, 3)),
        (S(1, 4, 15, 29, 5, 3, stride=(1, 2), padding=(2, 2, 0, 2)), "kernel", 0.5, False, True, SparseTile(2, 2)),
        (S(1, 3, 19, 45, 4, 3, stride=(2, 2), padding=(2, 2, 2, 2), dilation=(2, 2)), "irregular", 0.6, False,
         True, SparseTile(2, 2)),
        (S(1, 6, 21, 70, 7, 3, vec=16, stride=(2, 2), padding=P1, act="relu"), *pk, True, True, SparseTile(3, 2)),
        (S(1, 6, 20, 52, 7, 3, vec=16, stride=(2, 2), padding=P1, residual=True), *pk, True, True, None),
    ]
    built = run_cases(cases, seed=17)
    assert all(sparse_conv._geometry(b[5].spec, b[5].tile).WR for b in built)


def test_stride2_phase_copy():
    """Column stride 2: the padded copy splits rows into two column phases with vector loads and an
    even-lane shuffle, then scalar tails, and writes each phase row whole (no zero fill first):
    left padding 0/1/2 (the phases start at different source columns), widths with and without a
    scalar tail, a phase that gets no column, dilation, row stride 1, residual, 8 and 16 lanes."""
    pk = ("pattern+kernel", 0.5, True, True)
    cases = [
        (S(1, 5, 9, 75, 6, 3, stride=(2, 2), padding=P1, act="relu"), *pk, None),
        (S(1, 4, 8, 40, 5, 3, stride=(2, 2), padding=(0, 2, 1, 0), residual=True), *pk, None),
        (S(1, 4, 7, 33, 5, 3, stride=(1, 2), padding=(2, 0, 0, 2)), "kernel", 0.5, False, True, None),
        (S(2, 3, 9, 50, 4, 3, stride=(2, 2), padding=(2, 2, 2, 2), dilation=(2, 2)), "irregular", 0.6, False, False,
         None),
        (S(1, 3, 6, 3, 4, 3, stride=(2, 2), padding=(1, 0, 1, 0)), "kernel", 0.5, False, True, None),  # 3 wide
        (S(1, 6, 11, 70, 7, 3, vec=16, stride=(2, 2), padding=P1, act="relu"), *pk, None),
        (S(1, 5, 10, 37, 6, 3, vec=16, stride=(2, 2), padding=(1, 0, 1, 1), residual=True), *pk, SparseTile(2, 3)),
    ]
    run_cases(cases, seed=29)


def test_tile_model_uses_registers(monkeypatch):
    from lrc.codegen.kernels import conv as convk
    from lrc.codegen.kernels.sparse_conv import choose_tile

    big = S(1, 512, 28, 28, 512, 3, padding=P1)
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 16)
    assert choose_tile(big) == SparseTile(2, 4)
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 32)
    assert choose_tile(big) == SparseTile(4, 4)
    assert choose_tile(S(1, 64, 5, 3, 64, 3, padding=P1)) == SparseTile(1, 5)  # narrow: taller tile
    assert choose_tile(S(1, 64, 56, 56, 256, 1)) == SparseTile(8, 1)
    # 16 lanes with lane-shifted inputs (shifted_loads): 12 accumulators, 2x4 on two-vector planes
    assert choose_tile(S(1, 256, 56, 56, 256, 3, padding=P1, vec=16)) == SparseTile(4, 3)
    assert choose_tile(S(1, 512, 28, 28, 512, 3, padding=P1, vec=16)) == SparseTile(2, 4)
    # stride 2: no shifts, 8 accumulators (stacked rows share almost no input rows)
    assert choose_tile(S(1, 64, 112, 112, 64, 3, stride=(2, 2), padding=P1, vec=16)) == SparseTile(4, 2)
    assert choose_tile(S(1, 256, 56, 56, 64, 3, stride=(2, 2), padding=P1, vec=16)) == SparseTile(2, 4)


def test_all_zero_weights_give_activation_of_bias():
    s = S(1, 3, 5, 11, 4, 3, padding=P1, act="relu")
    b = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    pk = pack_sparse_conv(s, np.zeros((4, 3, 3, 3), np.float32), b)
    assert pk.kernels == 0
    jm = jit_kernels([("z", lambda name: emit_sparse_conv_func(pk, name))])
    out = np.full(4 * 5 * 11, np.nan, np.float32)
    jm.call("z_c", np.ones(3 * 5 * 11, np.float32), *pk.arrays(), out)
    assert np.array_equal(out.reshape(4, -1), np.maximum(b, 0)[:, None].repeat(55, 1))


def test_compact_storage_and_reorder():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    w, lib = prune(w, "pattern+kernel", 0.7)
    s = S(1, 64, 16, 16, 64, 3, padding=P1)
    pk = pack_sparse_conv(s, w, None, library=lib)
    st_ = pk.stats
    assert st_["stored_weights"] == st_["nnz"] == 4 * pk.kernels  # only pattern taps, no per-weight index
    assert st_["fkw_over_values"] <= 1.15, st_  # issue 4 goal; CSR is ~2x
    assert st_["fkw_bytes"] < st_["runtime_bytes"] < st_["csr_bytes"] < st_["dense_bytes"]
    # filters are ordered by kernel count (most first) and the order is a permutation
    counts = (np.abs(w).reshape(64, 64, 9).sum(2) > 0).sum(1)
    assert sorted(pk.order.tolist()) == list(range(64))
    assert list(counts[pk.order]) == sorted(counts, reverse=True)


def test_tap_sets_from_weights():
    rng = np.random.default_rng(1)
    w, _ = prune(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "pattern+kernel", 0.5)
    pats, ids = kernel_tap_sets(w)
    assert 1 <= len(pats) <= len(LIB) and all(len(p) == 4 for p in pats)
    assert ((ids >= 0) == (np.abs(w).reshape(8, 8, 9).sum(2) > 0)).all()
    w_irr, _ = prune(rng.standard_normal((16, 16, 3, 3)).astype(np.float32), "irregular", 0.5)
    assert kernel_tap_sets(w_irr) == (None, None)  # too many distinct tap sets: one-tap split
    assert MAX_PATTERNS >= len(LIB)


def test_bad_library_is_an_error():
    w = np.ones((2, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="no pattern of the library covers"):
        pack_sparse_conv(S(1, 2, 5, 5, 2, 3, padding=P1), w, None, library=LIB)


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_hypothesis_shapes(data):
    cases = []
    for _ in range(6):
        k = data.draw(st.sampled_from([1, 3]))
        g = data.draw(st.sampled_from([1, 2]))
        C = g * data.draw(st.integers(1, 6))
        K = g * data.draw(st.integers(1, 6))
        H = data.draw(st.integers(k, 14))
        W = data.draw(st.integers(k, 30))
        stride = data.draw(st.sampled_from([(1, 1), (2, 2), (1, 2)]))
        pad = data.draw(st.sampled_from([(0, 0, 0, 0), P1, (1, 0, 2, 1)]))
        kind, rate = data.draw(st.sampled_from(KINDS))
        act = data.draw(st.sampled_from(["none", "relu", "leaky_relu"]))
        res = data.draw(st.booleans())
        s = S(data.draw(st.integers(1, 2)), C, H, W, K, k, stride=stride, padding=pad, groups=g, act=act,
              residual=res)
        if s.OH < 1 or s.OW < 1:
            continue
        if kind in ("channel", "column") and g > 1:
            kind, rate = "kernel", 0.5
        cases.append((s, kind, rate, kind.startswith("pattern") and k == 3, data.draw(st.booleans()), None))
    if cases:
        run_cases(cases, seed=data.draw(st.integers(0, 100)))


needs_avx512 = pytest.mark.skipif(not {"avx512f", "avx512vl"} <= __import__("lrc.targets.aot", fromlist=["x"]).cpu_flags(),
                                  reason="16-lane (zmm) kernels need an AVX-512F/VL CPU")


@needs_avx512
def test_sixteen_lanes():
    """vec=16 (sparse_lanes on AVX-512 hosts): masked last vectors at odd widths, the sliding window,
    column stride 2, the strided 1x1 gather (shuffle path), 1x1 panels, channel blocks, residual."""
    cases = [
        (S(1, 8, 40, 75, 6, 3, vec=16, padding=P1, act="relu"), "pattern+kernel", 0.5, True, True, None),  # window
        (S(1, 5, 9, 37, 7, 3, vec=16, padding=(1, 0, 2, 1), residual=True), "kernel", 0.6, False, True,
         SparseTile(3, 2)),
        (S(2, 6, 11, 45, 5, 3, vec=16, stride=(2, 2), padding=P1, act="leaky_relu"), "irregular", 0.7, False, True,
         None),
        (S(1, 6, 6, 70, 9, 1, vec=16, stride=(2, 2)), "kernel", 0.6, False, True, None),  # gather, 2 shuffles
        (S(1, 7, 13, 29, 10, 1, vec=16, act="relu"), "kernel", 0.6, False, True, None),  # 1x1 panels, tail
        (S(1, 12, 7, 19, 6, 3, vec=16, padding=P1, residual=True), "column", 0.5, False, False, SparseTile(2, 3, 5)),
        (S(1, 4, 3, 5, 4, 3, vec=16, padding=P1), "pattern", None, True, True, None),  # narrower than a vector
        (S(1, 9, 10, 37, 11, 3, vec=16, padding=P1, act="relu"), "column", 0.6, False, True, None),  # column tile
        (S(1, 9, 10, 37, 6, 1, vec=16), "column", 0.6, False, True, None),
        # half-width last vector (HalfTail): 56 = 3.5 vectors, with residual and activation in the epilogue
        (S(1, 6, 9, 56, 5, 3, vec=16, padding=P1, residual=True, act="clamp"), "pattern+kernel", 0.5, True, True,
         None),
        (S(1, 6, 9, 56, 5, 3, vec=16, padding=P1), "pattern+kernel", 0.5, True, True, SparseTile(4, 2, 3)),  # blocks
        (S(1, 6, 8, 7, 9, 1, vec=16, residual=True), "column", 0.5, False, True, None),  # 56-pixel 1x1 panel
    ]
    run_cases(cases, seed=16)


def _shift_cases(cases):
    """The cases must take the lane-shift path (else the test would check the unaligned loads again)."""
    from lrc.codegen.kernels.sparse_conv import _geometry, choose_tile, shifted_loads

    for s, *_, tile in cases:
        t = tile or choose_tile(s)
        assert shifted_loads(s, _geometry(s, t), t), s
    return cases


@needs_avx512
def test_shifted_loads(monkeypatch):
    """16-lane multi-tap kernels build column-shifted inputs from aligned loads with valignd
    (shifted_rows): every tap column, the vector after the tile, the half-width last vector (56, 40
    wide), partial last vectors, rows read only at non-zero offsets (unaligned loads kept), row
    stride 2, dilation, 5x5 / 7x7 taps up to 12 columns apart, one-tap (irregular) kernels, the
    sliding window and the whole padded copy, residual and activations; SHIFT=0 keeps the old loads."""
    from lrc.codegen.kernels import conv as convk

    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 32)
    pk = ("pattern+kernel", 0.5, True, True)
    cases = _shift_cases([
        (S(1, 8, 12, 56, 6, 3, vec=16, padding=P1, act="relu"), *pk, None),  # half tail, model tile 4x3
        (S(1, 6, 9, 40, 5, 3, vec=16, padding=P1, residual=True, act="clamp"), *pk, None),
        (S(1, 7, 10, 28, 6, 3, vec=16, padding=P1), *pk, None),  # 2 vectors, 12 lanes used in the last
        (S(1, 8, 40, 75, 6, 3, vec=16, padding=P1, act="relu"), *pk, SparseTile(4, 3, SHIFT=1)),  # window
        (S(1, 5, 11, 37, 7, 3, vec=16, padding=(1, 0, 2, 1), residual=True), "kernel", 0.6, False, True,
         SparseTile(3, 2)),
        (S(1, 4, 13, 45, 5, 3, vec=16, stride=(2, 1), padding=(2, 1, 0, 1)), *pk, SparseTile(2, 3)),  # row stride
        (S(1, 5, 12, 50, 4, 3, vec=16, padding=(3, 3, 3, 3), dilation=(2, 3)), "kernel", 0.5, False, True, None),
        (S(1, 4, 9, 33, 5, 5, vec=16, padding=(2, 2, 2, 2), act="leaky_relu"), "irregular", 0.8, False, True,
         None),  # one-tap kernels: rows read at one non-zero offset only keep unaligned loads
        (S(1, 3, 20, 70, 6, 7, vec=16, padding=(3, 3, 3, 3)), "kernel", 0.3, False, True, None),  # 7x7
        (S(1, 5, 12, 50, 4, 5, vec=16, padding=(6, 6, 6, 6), dilation=(1, 3)), "kernel", 0.4, False, False,
         SparseTile(1, 2)),  # taps 12 columns apart
        (S(2, 6, 9, 56, 6, 3, vec=16, padding=P1, groups=2, act="relu"), *pk, SparseTile(2, 4)),
        # a half-width last vector (21 columns) whose taps reach 12 columns on: the lanes past that
        # vector are not a shift of it (found by the hypothesis test below: it was wrong)
        (S(1, 2, 7, 32, 3, 7, vec=16, padding=(1, 0, 2, 1), dilation=(1, 2)), "kernel", 0.3, False, True, None),
    ])
    run_cases(cases, seed=23)
    off = [(s, kind, rate, lib, b, dataclasses.replace(t or SparseTile(4, 3), SHIFT=0))
           for s, kind, rate, lib, b, t in cases[:3]]
    run_cases(off, seed=23)


@needs_avx512
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_shifted_loads_hypothesis(data):
    cases = []
    for _ in range(5):
        k = data.draw(st.sampled_from([3, 3, 5, 7]))
        dil = data.draw(st.sampled_from([(1, 1), (1, 2), (2, 1)]))
        W = data.draw(st.integers(17, 90))
        H = data.draw(st.integers(k, 14))
        stride = data.draw(st.sampled_from([(1, 1), (2, 1)]))
        pad = data.draw(st.sampled_from([(k // 2,) * 4, (0, 0, 0, 0), (1, 0, 2, 1)]))
        kind, rate = data.draw(st.sampled_from([("pattern+kernel", 0.6), ("kernel", 0.5), ("irregular", 0.7),
                                                ("pattern", None)]))
        s = S(1, data.draw(st.integers(1, 6)), H, W, data.draw(st.integers(1, 6)), k, stride=stride, padding=pad,
              dilation=dil, vec=16, act=data.draw(st.sampled_from(["none", "relu"])), residual=data.draw(st.booleans()))
        if s.OH < 1 or s.OW < 17:
            continue
        tile = data.draw(st.sampled_from([None, SparseTile(4, 3), SparseTile(2, 4), SparseTile(1, 5),
                                          SparseTile(3, 2)]))
        cases.append((s, kind, rate, kind.startswith("pattern") and k == 3, data.draw(st.booleans()),
                      dataclasses.replace(tile, SHIFT=1) if tile else tile))
    if cases:
        from lrc.codegen.kernels import conv as convk

        old = convk.VECTOR_REGISTERS
        convk.VECTOR_REGISTERS = 32
        try:
            run_cases(_shift_cases(cases), seed=data.draw(st.integers(0, 100)))
        finally:
            convk.VECTOR_REGISTERS = old


def test_sparse_lanes_rule(monkeypatch):
    """16 lanes only with 32 vector registers (the AOT artifact is then -march=x86-64-v4) on an
    AVX-512F/VL CPU, and only on planes wider than 16 (a half-width last vector keeps 56 wide efficient)."""
    from lrc.codegen.kernels import conv as convk
    from lrc.codegen.kernels.sparse_conv import sparse_lanes
    from lrc.targets import aot

    monkeypatch.setattr(aot, "cpu_flags", lambda: {"avx2", "fma", "avx512f", "avx512vl"})
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 32)
    monkeypatch.delenv("LRC_VECTOR_REGISTERS", raising=False)
    c3 = lambda W, **kw: S(1, 8, 20, W, 8, 3, padding=P1, **kw)  # noqa: E731
    # 56 and 40 wide: 3.5 / 2.5 vectors, the last one at half width (HalfTail); 14 and 16 stay at 8
    assert [sparse_lanes(c3(W)) for W in (64, 112, 28, 30, 56, 14, 40, 16)] == [16, 16, 16, 16, 16, 8, 16, 8]
    assert [sparse_lanes(S(1, 8, H, 9, 8, 1)) for H in (8, 7)] == [16, 8]  # 1x1 SpMM panels
    assert sparse_lanes(c3(64, vec=4)) == 4  # NEON stays
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 16)  # AVX2 artifact (-march=x86-64-v3)
    assert sparse_lanes(c3(64)) == 8
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 32)
    monkeypatch.setattr(aot, "cpu_flags", lambda: {"avx2", "fma"})
    assert sparse_lanes(c3(64)) == 8


def test_column_tile(monkeypatch):
    """Column-pruned layers (every filter keeps the same (channel, tap) columns) run the multi-filter
    column tile (sparse_columns.py): odd widths, strides, asymmetric padding, dilation, 7x7, 1x1 panels
    and strided gather, residual + activation, K not a multiple of FB, K < FB, NEON width, the
    sliding window, explicit tiles; only the channels some column reads are copied."""
    from lrc.codegen.kernels import sparse_conv

    monkeypatch.setattr(sparse_conv, "WINDOW_MIN_BYTES", 2048)  # window on the bigger planes here
    col = ("column", 0.6)
    cases = [
        (S(1, 8, 13, 21, 10, 3, padding=P1, act="relu"), *col, False, True, None),
        (S(1, 6, 17, 23, 9, 3, stride=(2, 2), padding=(1, 0, 2, 1)), *col, False, True, None),
        (S(1, 7, 15, 19, 6, 3, stride=(1, 2), dilation=(2, 1), padding=(2, 1, 2, 1)), *col, False, True, None),
        (S(1, 5, 12, 14, 3, 7, padding=(3, 3, 3, 3), act="leaky_relu"), *col, False, True, None),  # K=3 < 4
        (S(1, 12, 7, 13, 10, 1), *col, False, True, None),  # 1x1 panels, partial vector
        (S(1, 9, 37, 41, 6, 1, act="relu"), *col, False, True, None),  # 1x1: 2 panels
        (S(1, 8, 11, 13, 9, 1, stride=(2, 2)), *col, False, True, None),  # strided gather
        (S(2, 6, 9, 11, 7, 3, padding=P1, residual=True, act="clamp"), *col, False, False, None),
        (S(1, 6, 9, 11, 5, 3, vec=4, padding=P1), *col, False, True, None),  # NEON width
        (S(1, 8, 10, 19, 11, 3, padding=P1), *col, False, True, SparseTile(3, 1, 0, 5)),
        (S(1, 8, 10, 19, 11, 3, padding=P1, residual=True), "irregular", 0.7, False, True, SparseTile(1, 3, 0, 2)),
    ]
    built = run_cases(cases, seed=23)
    assert all(b[5].tile.FB > 1 for b in built)
    for s, x, w, b, r, pk in built:
        used = np.flatnonzero(np.abs(w).sum(axis=(0, 2, 3)) > 0)
        assert pk.chans[:used.size].tolist() == used.tolist()  # unread channels are not copied
        assert sorted(pk.order.tolist()) == list(range(s.K))
    assert any(sparse_conv._geometry(b[5].spec, b[5].tile).WR for b in built)
    # pattern+kernel pruning gives every filter its own channels: no column tile
    rng = np.random.default_rng(2)
    w, lib = prune(rng.standard_normal((16, 16, 3, 3)).astype(np.float32), "pattern+kernel", 0.6)
    assert pack_sparse_conv(S(1, 16, 8, 8, 16, 3, padding=P1), w, None, library=lib).tile.FB == 1
    # filters in groups of identical (irregular) column sets share blocks; the union adds nothing
    base = rng.standard_normal((4, 16, 3, 3)).astype(np.float32) * (rng.random((4, 16, 3, 3)) < 0.3)
    w = np.repeat(base, 4, axis=0) * rng.standard_normal((16, 1, 1, 1)).astype(np.float32)
    pk = pack_sparse_conv(S(1, 16, 8, 8, 16, 3, padding=P1), w, None)
    assert pk.tile.FB == 4 and pk.nnz == np.count_nonzero(w)
    with pytest.raises(ValueError, match="channel blocks"):
        pack_sparse_conv(S(1, 16, 8, 8, 16, 3, padding=P1), w, None, tile=SparseTile(2, 2, 8, 4))
    with pytest.raises(NotImplementedError, match="groups=2"):
        pack_sparse_conv(S(1, 16, 8, 8, 16, 3, padding=P1, groups=2), w[:, :8], None, tile=SparseTile(2, 2, 0, 4))


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_pixel_unit_parts_cover_the_output(data):
    """threads' pixel parts (pixel_units: 1x1 panels, sliding-window row blocks): running parts
    [u0, u1) one after another over the same output gives the whole kernel's result, for random
    shapes, tiles, part counts, residual and activation."""
    from lrc.codegen.kernels import sparse_conv

    layer = data.draw(st.sampled_from(["1x1", "1x1 stride 2", "3x3"]), "layer")
    one = layer == "1x1"
    C, K = data.draw(st.integers(2, 9), "C"), data.draw(st.integers(1, 9), "K")
    H, W = data.draw(st.integers(3, 23), "H"), data.draw(st.integers(3, 41), "W")
    residual = data.draw(st.booleans(), "residual")
    if one:
        s = S(1, C, H, W, K, 1, residual=residual, act="relu")
        tile = SparseTile(data.draw(st.integers(1, 4)), 1, PB=8 * data.draw(st.integers(1, 6), "PB vectors"))
        kind, rate, lib = "kernel", 0.5, False
    elif layer == "1x1 stride 2":
        s = S(1, C, H, W, K, 1, stride=(2, 2), residual=residual, act="relu")
        tile = SparseTile(data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4), "RB"))
        kind, rate, lib = "kernel", 0.5, False
        sparse_conv.WINDOW_MIN_BYTES, saved = 0, sparse_conv.WINDOW_MIN_BYTES
    else:
        s = S(1, C, H, W, K, 3, padding=P1, residual=residual, act="relu")
        tile = SparseTile(data.draw(st.integers(1, 3)), data.draw(st.integers(1, 5), "RB"))
        kind, rate, lib = "pattern+kernel", 0.5, True
        sparse_conv.WINDOW_MIN_BYTES, saved = 0, sparse_conv.WINDOW_MIN_BYTES
    try:
        rng = np.random.default_rng(C * 100 + H)
        x = rng.standard_normal((1, C, H, W)).astype(np.float32)
        w, library = prune(rng.standard_normal((K, C, s.KH, s.KW)).astype(np.float32), kind, rate)
        b = rng.standard_normal(K).astype(np.float32)
        r = rng.standard_normal((1, K, s.OH, s.OW)).astype(np.float32) if residual else None
        pk = pack_sparse_conv(s, w, b, library=library if lib else None, tile=tile)
        units = sparse_conv.pixel_units(pk)
        if units == 0:  # a row block as tall as the image: no window, the input is copied whole first
            assert not one and sparse_conv._geometry(pk.spec, pk.tile).WR == 0
            with pytest.raises(ValueError, match="pixel units"):
                emit_sparse_conv_func(pk, "whole", (0, 1))
            return
        parts = data.draw(st.integers(1, min(units, 4)), "parts")
        bounds = [round(units * j / parts) for j in range(parts + 1)]
        ranges = [(a, c) for a, c in zip(bounds[:-1], bounds[1:]) if c > a]
        jm = jit_kernels([(f"pu{i}", lambda name, u=u: emit_sparse_conv_func(pk, name, u)) for i, u in enumerate(ranges)])
        out = np.full(K * s.OH * s.OW, np.nan, np.float32)
        for i in range(len(ranges)):
            jm.call(f"pu{i}_c", x.reshape(-1), *pk.arrays(), *([r.reshape(-1)] if r is not None else []), out)
        assert_close(out, conv_ref(s, x, w, b, r), f"{s} {tile} parts {ranges}")
    finally:
        if not one:
            sparse_conv.WINDOW_MIN_BYTES = saved


def test_pixel_units_refuses_bad_ranges():
    from lrc.codegen.kernels import sparse_conv

    s = S(1, 4, 8, 8, 4, 1)
    pk = pack_sparse_conv(s, prune(np.ones((4, 4, 1, 1), np.float32), "kernel", 0.5)[0], None)
    n = sparse_conv.pixel_units(pk)
    with pytest.raises(ValueError, match="pixel units"):
        emit_sparse_conv_func(pk, "bad", (0, n + 1))
