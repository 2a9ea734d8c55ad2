"""Dense conv kernels (lrc.codegen.kernels.conv) against torch.nn.functional.conv2d, through the JIT."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrc.codegen.kernels import conv as convk
from lrc.codegen.kernels.conv import ConvSpec, emit_conv_func, pack_conv_weights
from lrc.codegen.kernels.testing import assert_close, conv_ref, jit_kernels

ACT_PARAMS = {"leaky_relu": (0.1,), "clamp": (-0.5, 0.75), "elu": (0.7, 1.2, 0.8), "softplus": (1.5, 4.0)}
ALL_ACTS = ["none", "relu", "relu6", "leaky_relu", "clamp", "sigmoid", "tanh", "hardswish", "hardsigmoid", "silu",
            "gelu", "gelu_tanh", "elu", "mish", "softplus", "abs", "neg", "exp", "square"]


def run_specs(specs, seed=0, bias=True):
    """JIT all specs in one module and check each against torch."""
    rng = np.random.default_rng(seed)
    cases = []
    for i, s in enumerate(specs):
        x = rng.standard_normal((s.N, s.C, s.H, s.W)).astype(np.float32)
        w = rng.standard_normal((s.K, s.C // s.groups, s.KH, s.KW)).astype(np.float32)
        b = rng.standard_normal(s.K).astype(np.float32) if (bias if isinstance(bias, bool) else bias[i]) else None
        r = rng.standard_normal((s.N, s.K, s.OH, s.OW)).astype(np.float32) if s.residual else None
        cases.append((s, x, w, b, r, pack_conv_weights(s, w, b)))
    jm = jit_kernels([(f"conv{i}", lambda name, c=c: emit_conv_func(c[0], name, c[5])) for i, c in enumerate(cases)])
    for i, (s, x, w, b, r, packed) in enumerate(cases):
        out = np.full(s.N * s.K * s.OH * s.OW, np.nan, np.float32)
        args = [x.reshape(-1), *packed] + ([r.reshape(-1)] if r is not None else []) + [out]
        jm.call(f"conv{i}_c", *args)
        assert_close(out, conv_ref(s, x, w, b, r), repr(s))


def run_geoms(pairs, seed=0) -> list:
    """JIT each (spec, geometry) pair, the geometry carrying forced choices (tiles, budgets, routes),
    and check it against torch; returns each pair's plan."""
    rng = np.random.default_rng(seed)
    cases, emitters = [], []
    for s, g in pairs:
        ge = convk._subsample_geom(g) or g  # what _emit runs (strided 1x1 through the panel)
        p = convk._plan(ge)
        x = rng.standard_normal((s.N, s.C, s.H, s.W)).astype(np.float32)
        w = rng.standard_normal((s.K, s.C // s.groups, s.KH, s.KW)).astype(np.float32)
        b = rng.standard_normal(s.K).astype(np.float32)
        r = rng.standard_normal((s.N, s.K, s.OH, s.OW)).astype(np.float32) if s.residual else None
        packed = [convk._pack(ge, p, w), b]
        name = f"c{len(cases)}"
        cases.append((s, p, x, w, b, r, packed, name))
        emitters.append((name, lambda n, g=g, packed=packed: convk._emit(g, n, packed)))
    jm = jit_kernels(emitters)
    for s, p, x, w, b, r, packed, name in cases:
        out = np.full(s.N * s.K * s.OH * s.OW, np.nan, np.float32)
        jm.call(f"{name}_c", x.reshape(-1), *packed, *([r.reshape(-1)] if r is not None else []), out)
        assert_close(out, conv_ref(s, x, w, b, r), f"{s} PT={p.PT} BH={p.BH} cvec={p.cvec}")
    return [c[1] for c in cases]


def S(N, C, H, W, K, KH, KW=None, **kw):
    if "act" in kw and "act_params" not in kw:
        kw["act_params"] = ACT_PARAMS.get(kw["act"], ())
    return ConvSpec(N, C, H, W, K, KH, KH if KW is None else KW, **kw)


P1 = (1, 1, 1, 1)

FAST_PATHS = {
    # 3x3 stride 1: widths that fill whole tiles, need an extra vector, or end in a partial vector
    "3x3_s1": [S(1, 8, 16, 16, 8, 3, padding=P1), S(1, 5, 9, 56, 12, 3, padding=P1),
               S(1, 3, 7, 13, 6, 3, padding=P1), S(2, 4, 5, 23, 9, 3, padding=P1), S(1, 4, 6, 12, 5, 3)],
    # 1x1 stride 1: a GEMM over the pixel plane (plane not a multiple of the vector, K tails)
    "1x1": [S(1, 16, 7, 7, 24, 1), S(2, 6, 5, 3, 7, 1), S(1, 9, 8, 8, 13, 1), S(1, 4, 1, 1, 10, 1)],
    # stride 2 (column phases via deinterleave) and 3 (scalar phase split)
    "strided": [S(1, 4, 16, 16, 8, 3, stride=(2, 2), padding=P1), S(1, 3, 15, 17, 5, 3, stride=(2, 2), padding=P1),
                S(1, 3, 12, 19, 4, 3, stride=(2, 2), padding=(0, 1, 1, 0)), S(1, 8, 14, 14, 16, 1, stride=(2, 2)),
                S(1, 2, 13, 14, 3, 3, stride=(3, 3), padding=(1, 2, 1, 0)), S(1, 3, 11, 40, 4, 3, stride=(1, 2)),
                S(1, 3, 10, 10, 4, 3, stride=(2, 1)),
                # stride 4 (column phases by lane shuffles, _copy_phases): patchify stems, padded, odd widths
                S(1, 3, 17, 37, 6, 4, stride=(4, 4)), S(1, 2, 9, 70, 3, 3, stride=(4, 4), padding=(1, 2, 0, 1)),
                S(1, 3, 12, 13, 4, 5, stride=(1, 4), padding=P1), S(1, 2, 8, 150, 3, 4, stride=(4, 4), vec=16)],
    "depthwise": [S(1, 8, 12, 12, 8, 3, padding=P1, groups=8), S(1, 5, 9, 17, 10, 3, padding=P1, groups=5),
                  S(1, 6, 14, 14, 6, 3, stride=(2, 2), padding=P1, groups=6), S(1, 4, 10, 10, 4, 5, padding=(2, 2, 2, 2), groups=4),
                  S(2, 3, 7, 9, 9, 3, groups=3)],
    "groups": [S(1, 8, 9, 9, 12, 3, padding=P1, groups=2), S(1, 6, 8, 10, 9, 1, groups=3),
               S(1, 12, 7, 7, 8, 3, stride=(2, 2), padding=P1, groups=4)],
    "big_kernels": [S(1, 3, 20, 21, 8, 7, padding=(3, 3, 3, 3)), S(1, 4, 12, 12, 5, 5, padding=(2, 2, 2, 2)),
                    S(1, 2, 18, 18, 3, 9, padding=(4, 4, 4, 4)), S(1, 3, 23, 23, 4, 7, stride=(2, 2), padding=(3, 3, 3, 3))],
    "dilation": [S(1, 4, 12, 14, 5, 3, dilation=(2, 2), padding=(2, 2, 2, 2)), S(1, 3, 13, 13, 4, 3, dilation=(3, 1)),
                 S(1, 3, 15, 15, 4, 3, stride=(2, 2), dilation=(2, 2), padding=(2, 2, 2, 2))],
    # 1x1 on 1x1 images goes through the linear kernel (with residual / batch / activation)
    "tiny": [S(1, 8, 1, 1, 16, 1), S(2, 12, 1, 1, 20, 1, residual=True, act="hardswish"),
             S(3, 5, 1, 1, 3, 1, stride=(2, 2), act="sigmoid"), S(1, 8, 1, 1, 6, 3, padding=P1),
             S(2, 3, 2, 3, 5, 3, padding=P1), S(1, 4, 3, 3, 4, 3), S(1, 6, 2, 2, 4, 1, groups=2)],
    "asym_pad": [S(1, 3, 8, 9, 4, 3, padding=(0, 1, 2, 3)), S(1, 3, 8, 9, 4, 2, padding=(1, 0, 0, 1))],
}


@pytest.mark.parametrize("path", sorted(FAST_PATHS))
def test_fast_paths(path):
    run_specs(FAST_PATHS[path])


def test_activations_residual_bias():
    acts = ALL_ACTS
    specs = []
    for i, a in enumerate(acts):
        specs.append(S(1, 4, 6, 11, 5, 3, padding=P1, act=a, residual=bool(i % 2)))
        specs.append(S(1, 6, 5, 5, 8, 1, act=a, residual=not (i % 2)))
    run_specs(specs, bias=[i % 3 != 0 for i in range(len(specs))])


def test_vec4_and_forced_tiles():
    """NEON-width vectors and every tile/loop-order choice compute the same thing."""
    import dataclasses

    specs = [S(1, 5, 9, 13, 7, 3, padding=P1, vec=4), S(1, 6, 6, 10, 11, 1, vec=4),
             S(1, 4, 9, 11, 3, 3, stride=(2, 2), padding=P1, groups=1, vec=4)]
    run_specs(specs)
    # Overrides of the tile choice go through _Geom, the internal form every conv is emitted from.
    rng = np.random.default_rng(1)
    s = S(1, 5, 7, 29, 11, 3, padding=P1, act="relu")
    x = rng.standard_normal((1, 5, 7, 29)).astype(np.float32)
    w = rng.standard_normal((11, 5, 3, 3)).astype(np.float32)
    b = rng.standard_normal(11).astype(np.float32)
    ref = conv_ref(s, x, w, b)
    variants = [dict(tile=t, k_outer=ko, cunroll=u) for t in [(4, 2), (4, 4), (6, 3), (3, 3), (1, 4), (8, 1)]
                for ko in (False, True) for u in (1, 2)]
    variants += [dict(tile=t, rows_per_tile=rb) for t, rb in [((4, 2), 2), ((1, 2), 3), ((2, 3), 4), ((3, 1), 5)]]
    emitters, packs = [], []
    for i, v in enumerate(variants):
        g = dataclasses.replace(convk._geom_from_spec(s), **v)
        packed = [convk._pack(g, convk._plan(g), w), b]
        packs.append(packed)
        emitters.append((f"v{i}", lambda name, g=g, packed=packed: convk._emit(g, name, packed)))
    jm = jit_kernels(emitters)
    for i, v in enumerate(variants):
        out = np.full(ref.size, np.nan, np.float32)
        jm.call(f"v{i}_c", x.reshape(-1), *packs[i], out)
        assert_close(out, ref, str(v))


def test_weight_chunking():
    """Large weight sets are walked in output-channel chunks (budget lowered to force it)."""
    old = convk._WEIGHT_CHUNK_BYTES
    convk._WEIGHT_CHUNK_BYTES = 2048
    try:
        run_specs([S(1, 8, 6, 10, 30, 3, padding=P1), S(1, 16, 4, 9, 21, 1)])
    finally:
        convk._WEIGHT_CHUNK_BYTES = old


def test_bad_weights_rejected():
    s = S(1, 4, 5, 5, 4, 3)
    with pytest.raises(ValueError):
        pack_conv_weights(s, np.zeros((4, 4, 1, 3), np.float32), None)


@st.composite
def conv_specs(draw):
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if kind == "depthwise":
        C = draw(st.integers(1, 6))
        groups, K = C, C * draw(st.sampled_from([1, 1, 2, 3]))
    else:
        groups = 1 if kind == "dense" else draw(st.integers(2, 3))
        C = draw(st.integers(1, 5)) * groups
        K = draw(st.integers(1, 10)) * groups
    KH, KW = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = tuple(draw(st.integers(0, 3)) for _ in range(4))
    H, W = draw(st.integers(1, 14)), draw(st.integers(1, 26))
    act = draw(st.sampled_from(ALL_ACTS))
    s = ConvSpec(draw(st.integers(1, 2)), C, H, W, K, KH, KW, stride, pad, dil, groups, act,
                 ACT_PARAMS.get(act, ()), draw(st.booleans()), draw(st.sampled_from([8, 8, 4])))
    if s.OH < 1 or s.OW < 1:
        s = ConvSpec(s.N, C, H + dil[0] * (KH - 1), W + dil[1] * (KW - 1), K, KH, KW, stride, pad, dil, groups, act,
                     s.act_params, s.residual, s.vec)
    return s


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(conv_specs(), min_size=12, max_size=12), st.integers(0, 2**31 - 1), st.booleans())
def test_random_convs(specs, seed, bias):
    run_specs(specs, seed=seed, bias=bias)


def test_32_register_tiles(monkeypatch):
    """The tile set chosen for 32 vector registers (NEON, AVX-512 hosts) computes the same thing."""
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 32)
    monkeypatch.delenv("LRC_VECTOR_REGISTERS", raising=False)
    run_specs([S(1, 6, 9, 41, 12, 3, padding=P1, act="relu"), S(1, 5, 6, 7, 10, 1), S(1, 4, 9, 30, 16, 3, stride=(2, 2), padding=P1),
               S(1, 3, 7, 29, 7, 5, padding=(2, 2, 2, 2)), S(1, 3, 8, 20, 3, 3, padding=P1),
               S(1, 5, 6, 37, 32, 3, padding=P1, act="relu")])
    # 32 channels: 4 x 4 blocks rather than 6 x 3 with a 2-channel leftover block; 30: 6 x 3
    tile = lambda K: convk._plan(convk._geom_from_spec(S(1, 8, 16, 40, K, 3, padding=P1)))
    assert (tile(32).KB, tile(32).WB) == (4, 4) and (tile(30).KB, tile(30).WB) == (6, 3)


@pytest.mark.parametrize("regs", [16, 32])
def test_tall_depthwise_tiles(monkeypatch, regs):
    """5x5 / 7x7 depthwise on rows of one or two vectors stack up to 7 output rows (13 rows: a tile of
    7 then one of 6), within the register budget; 3x3 and wider rows keep the short stacks."""
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", regs)
    monkeypatch.delenv("LRC_VECTOR_REGISTERS", raising=False)
    dw = lambda C, H, W, k, **kw: S(1, C, H, W, C, k, groups=C, padding=(k // 2,) * 4, **kw)  # noqa: E731
    specs = [dw(10, 7, 7, 5, act="relu6"), dw(9, 13, 14, 5), dw(8, 14, 14, 7, residual=True),
             dw(6, 14, 13, 5, stride=(2, 2)), dw(5, 7, 7, 3)]
    run_specs(specs)
    rb = [convk._plan(convk._geom_from_spec(s)).RB for s in specs + [dw(8, 56, 56, 5)]]
    assert rb[0] == 7 and rb[1] == (7 if regs == 32 else 6) and rb[4] <= 4 and rb[5] <= 4, rb


def test_cache_blocking():
    """Pixel blocks (1x1, also with the input channels reduced in chunks) and row bands (padded
    scratch; unpadded convs switch to it), forced on small planes by a tiny budget: full and partial
    blocks/bands, batch, groups, strides, residual, activation, masked tails, leftover channel blocks."""
    import dataclasses

    specs = [S(1, 6, 9, 13, 10, 1, act="relu"), S(2, 5, 7, 11, 7, 1, residual=True),
             S(1, 4, 23, 17, 9, 3, padding=P1, act="relu6"), S(2, 3, 19, 21, 5, 3, stride=(2, 2), padding=P1),
             S(1, 4, 17, 12, 6, 5, padding=(2, 1, 0, 2), residual=True), S(1, 3, 16, 9, 4, 3, stride=(3, 1), padding=P1),
             S(1, 6, 14, 10, 6, 3, padding=P1, groups=2), S(1, 4, 13, 13, 4, 3, padding=(3, 3, 3, 3), dilation=(2, 2)),
             S(1, 5, 9, 9, 4, 3, padding=(4, 1, 4, 1)), S(1, 9, 7, 12, 13, 1, act="relu", residual=True),
             S(1, 3, 15, 20, 7, 3, act="relu")]
    budgets = ((1, None), (600, None), (1500, None), (1, 4))
    plans = run_geoms([(s, dataclasses.replace(convk._geom_from_spec(s), block_bytes=bb, cchunk=cc))
                       for s in specs for bb, cc in budgets], seed=3)
    # every spec really was blocked at the smallest budget, and 1x1 ones with C > 4 split the reduction
    assert all(p.PT or p.BH for p in plans[::4]), [(s, p.mode) for s, p in zip(specs, plans[::4])]
    assert sum(bool(p.c_bounds) for p in plans[3::4]) == 3


@pytest.mark.parametrize("regs", [16, 32])
def test_channel_vectorised_small_planes(monkeypatch, regs):
    """The small-plane kernel (vectors along output channels, pixels in flattened order): forced
    on, with pixel and channel tails, padding, strides, dilation, 1x1, in-place reads, batch,
    residual and activations; and chosen by default for deep 7x7 layers. The epilogue transposes
    in registers (V = 8); with 16 registers the scatter epilogue (other vector widths) is checked."""
    import dataclasses

    monkeypatch.setattr(convk, "VECTOR_REGISTERS", regs)
    monkeypatch.setattr(convk, "_CVEC_TRANSPOSE", regs == 32)
    monkeypatch.delenv("LRC_VECTOR_REGISTERS", raising=False)
    specs = [S(1, 5, 7, 7, 20, 3, padding=P1, act="relu"), S(2, 6, 9, 11, 17, 3, padding=P1, residual=True),
             S(1, 4, 12, 10, 24, 3, stride=(2, 2), padding=P1), S(1, 8, 5, 13, 30, 3, dilation=(1, 2),
                                                                    padding=(1, 2, 1, 2), act="sigmoid"),
             S(1, 4, 8, 8, 16, 3), S(2, 6, 5, 5, 19, 1, residual=True, act="leaky_relu"),
             S(1, 3, 11, 11, 33, 5, stride=(3, 2), padding=(2, 1, 2, 1), residual=True, act="relu6")]
    plans = run_geoms([(s, dataclasses.replace(convk._geom_from_spec(s), cvec=True)) for s in specs], seed=5)
    assert all(p.cvec for p in plans)
    # default choice: on for a deep 7x7 layer, off for a wide plane or few output channels
    assert convk._plan(convk._geom_from_spec(S(1, 64, 7, 7, 64, 3, padding=P1))).cvec
    assert not convk._plan(convk._geom_from_spec(S(1, 64, 56, 56, 64, 3, padding=P1))).cvec
    assert not convk._plan(convk._geom_from_spec(S(1, 64, 7, 7, 3, 3, padding=P1))).cvec
    run_specs([S(1, 64, 7, 7, 40, 3, padding=P1, act="relu"), S(1, 32, 7, 7, 48, 1, residual=True)])


def test_thin_1x1_not_packed():
    """1x1 convs with <= 16 inputs and <= 4 outputs read big planes in place (no pixel blocks)."""
    plan = lambda s: convk._plan(convk._geom_from_spec(s))  # noqa: E731
    assert plan(S(1, 16, 256, 256, 2, 1)).PT == 0
    assert plan(S(1, 32, 256, 256, 2, 1)).PT and plan(S(1, 16, 256, 256, 5, 1)).PT
    run_specs([S(1, 16, 256, 160, 3, 1, act="sigmoid"), S(1, 12, 230, 240, 2, 1, residual=True)], seed=23)


def test_cvec_for_long_1x1_reductions_and_weight_prefetch(monkeypatch):
    """Flat 1x1 convs on planes of <= 256 pixels whose input strip (Cg x WB*V floats) passes 16 KiB
    take the channel-vectorised tiles (8 lanes only); channel-vectorised tiles on planes of <= 100
    pixels prefetch the next channel block's weights, which changes no numbers."""
    import dataclasses

    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 32)
    monkeypatch.delenv("LRC_VECTOR_REGISTERS", raising=False)
    plan = lambda s: convk._plan(convk._geom_from_spec(s))  # noqa: E731
    assert plan(S(1, 512, 14, 14, 128, 1)).cvec and plan(S(1, 256, 14, 14, 256, 1)).cvec
    assert not plan(S(1, 128, 14, 14, 512, 1)).cvec  # a 16 KiB strip: the flat GEMM
    assert not plan(S(1, 256, 28, 28, 128, 1)).cvec  # 784 pixels
    assert not plan(S(1, 512, 14, 14, 128, 1, vec=4)).cvec  # measured for 8 lanes only
    monkeypatch.setattr(convk, "_CVEC_FLAT_PIXELS", 0)
    assert not plan(S(1, 512, 14, 14, 128, 1)).cvec
    monkeypatch.setattr(convk, "_CVEC_FLAT_PIXELS", 256)
    run_specs([S(1, 512, 14, 14, 128, 1, act="relu"), S(1, 264, 12, 13, 40, 1, residual=True)], seed=21)

    def prefetches(s):
        packed = pack_conv_weights(s, np.ones((s.K, s.C, s.KH, s.KW), np.float32), None)
        jm_text = []

        def emit(name):
            fn = emit_conv_func(s, name, packed)
            jm_text.append(str(fn))
            return fn

        jit_kernels([("k", emit)])
        return jm_text[0].count("memref.prefetch")

    deep7 = S(1, 64, 7, 7, 64, 3, padding=P1, act="relu")
    deep14 = dataclasses.replace(deep7, H=14, W=14)  # 196 pixels: no weight prefetch
    assert plan(deep7).cvec and plan(deep14).cvec
    on = prefetches(deep7), prefetches(deep14)
    monkeypatch.setattr(convk, "CVEC_WPREFETCH", 0)
    off = prefetches(deep7), prefetches(deep14)
    assert on[0] > off[0] and on[1] == off[1]
    monkeypatch.setattr(convk, "CVEC_WPREFETCH", 2)
    run_specs([deep7, S(2, 40, 9, 9, 48, 3, padding=P1, residual=True)], seed=22)


@pytest.mark.parametrize("regs", [16, 32])
def test_strided_1x1_subsample(monkeypatch, regs):
    """Strided 1x1 convs without padding gather the used pixels into a dense panel, then run a plain
    1x1 (flat GEMM, pixel blocks or channel-vectorised tiles): column strides 1 / 2 (deinterleave) /
    3+ (gather), odd widths ending in partial vectors, rows longer than 4 vectors (looped copy),
    batch, groups, residual, activations; bottom/right padding that would be read falls back."""
    import dataclasses

    monkeypatch.setattr(convk, "VECTOR_REGISTERS", regs)
    monkeypatch.delenv("LRC_VECTOR_REGISTERS", raising=False)
    specs = [S(1, 8, 14, 14, 16, 1, stride=(2, 2)), S(2, 5, 15, 17, 7, 1, stride=(2, 2), act="relu", residual=True),
             S(1, 4, 9, 83, 6, 1, stride=(2, 2)), S(1, 3, 11, 80, 5, 1, stride=(1, 2)),
             S(1, 6, 13, 10, 9, 1, stride=(3, 1), act="relu6"), S(1, 4, 10, 29, 8, 1, stride=(2, 3)),
             S(1, 3, 7, 100, 4, 1, stride=(1, 3)), S(2, 6, 9, 9, 8, 1, stride=(2, 2), groups=2, residual=True),
             S(1, 16, 14, 14, 24, 1, stride=(2, 2), act="leaky_relu"), S(1, 3, 8, 8, 4, 1, stride=(2, 2), padding=(0, 0, 1, 1)),
             S(1, 3, 9, 9, 4, 1, stride=(2, 2), padding=(0, 0, 1, 1))]
    variants = [{"subsample": True}, {"subsample": True, "cvec": True}, {"subsample": True, "block_bytes": 1}]
    pairs = [(s, dataclasses.replace(convk._geom_from_spec(s), **extra)) for s in specs for extra in variants]
    for s, g in pairs:
        assert (convk._subsample_geom(g) is None) == (s.H == 8), s  # 8x8 s2 with bottom/right pad 1 reads row/column 8
    plans = run_geoms(pairs, seed=11)
    assert all(p.cvec for (s, g), p in zip(pairs, plans) if g.cvec and s.groups == 1)
    # default route: on for wide planes, off where the output plane goes to channel-vectorised tiles
    assert convk._subsample_geom(convk._geom_from_spec(S(1, 128, 56, 56, 256, 1, stride=(2, 2))))
    assert not convk._subsample_geom(convk._geom_from_spec(S(1, 512, 14, 14, 1024, 1, stride=(2, 2))))
    assert not convk._subsample_geom(convk._geom_from_spec(S(1, 128, 56, 56, 256, 3, stride=(2, 2))))
    # the public entry points take the same route (packing and emission agree)
    run_specs([S(1, 12, 21, 23, 10, 1, stride=(2, 2), act="relu"), S(1, 40, 15, 15, 32, 1, stride=(2, 2))])


needs_avx512 = pytest.mark.skipif(not {"avx512f", "avx512vl"} <= __import__("lrc.targets.aot", fromlist=["x"]).cpu_flags(),
                                  reason="16-lane (zmm) kernels need an AVX-512F/VL CPU")


@needs_avx512
def test_sixteen_lane_dense(monkeypatch):
    """vec=16 dense kernels (dense_lanes on AVX-512 hosts), 32 registers: the row tiles at widths that
    are and are not multiples of 16 (masked last vector), banded and whole-image prep, in-place reads,
    the 7x7 stride-2 stem, column stride 2, flat 1x1 with and without pixel blocks and reduction chunks,
    the strided 1x1 panel, leftover channel blocks, batch, residual and activations."""
    import dataclasses

    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 32)
    monkeypatch.delenv("LRC_VECTOR_REGISTERS", raising=False)
    specs = [S(1, 5, 9, 64, 12, 3, padding=P1, vec=16, act="relu"), S(2, 4, 6, 40, 9, 3, padding=P1, vec=16, residual=True),
             S(1, 3, 21, 64, 10, 7, stride=(2, 2), padding=(3, 3, 3, 3), vec=16, act="relu"),
             S(1, 6, 8, 34, 7, 3, vec=16), S(1, 4, 11, 70, 6, 3, stride=(2, 2), padding=P1, vec=16, act="clamp"),
             S(1, 9, 8, 16, 26, 1, vec=16, residual=True, act="leaky_relu"), S(1, 7, 5, 9, 20, 1, vec=16),
             S(1, 8, 14, 32, 16, 1, stride=(2, 2), vec=16, act="relu"), S(1, 6, 5, 56, 8, 3, padding=P1, vec=16),
             S(1, 9, 5, 8, 13, 1, vec=16, residual=True, act="relu6"), S(1, 6, 3, 7, 5, 1, vec=16),
             S(2, 5, 6, 45, 7, 3, vec=16, act="relu"), S(1, 4, 9, 23, 6, 3, padding=P1, vec=16, residual=True)]
    run_specs(specs, seed=16)
    blocked = (S(1, 9, 7, 32, 13, 1, vec=16, act="relu", residual=True), S(1, 4, 23, 48, 6, 3, padding=P1, vec=16),
               S(1, 9, 5, 13, 13, 1, vec=16, residual=True), S(1, 4, 19, 40, 6, 3, padding=P1, vec=16, act="relu"))
    budgets = ((1, None), (1, 4), (3000, None))
    plans = run_geoms([(s, dataclasses.replace(convk._geom_from_spec(s), block_bytes=bb, cchunk=cc))
                       for s in blocked for bb, cc in budgets], seed=17)
    assert all(p.PT or p.BH for p in plans[::3])


def test_dense_lanes_rule(monkeypatch):
    """16 lanes for dense convs only with 32 vector registers on an AVX-512F/VL CPU, for ungrouped
    convs whose rows are >= 64 pixels and a multiple of 16 (or flat 1x1 planes that are), not for the
    channel-vectorised small planes, depthwise, or many-to-few 1x1 pixel blocks; WIDE_DENSE = False
    turns it off."""
    from lrc.codegen.kernels.conv import dense_lanes
    from lrc.targets import aot

    monkeypatch.setattr(aot, "cpu_flags", lambda: {"avx2", "fma", "avx512f", "avx512vl"})
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 32)
    monkeypatch.delenv("LRC_VECTOR_REGISTERS", raising=False)
    c3 = lambda W, C=32, K=32, **kw: S(1, C, W, W, K, 3, padding=P1, **kw)  # noqa: E731
    assert [dense_lanes(c3(W)) for W in (64, 112, 224, 56, 48, 32, 28, 7)] == [16, 16, 16, 8, 8, 8, 8, 8]
    assert dense_lanes(S(1, 3, 224, 224, 32, 7, stride=(2, 2), padding=(3, 3, 3, 3))) == 16  # 112 wide
    assert dense_lanes(S(1, 64, 112, 112, 64, 3, stride=(2, 2), padding=P1)) == 8  # 56 wide
    assert dense_lanes(c3(112, groups=32)) == 8  # depthwise
    assert [dense_lanes(S(1, 32, W, W, 128, 1)) for W in (56, 28, 7)] == [16, 16, 8]  # 3136 / 784 / cvec 49
    assert dense_lanes(S(1, 128, 56, 56, 256, 1, stride=(2, 2))) == 16  # strided 1x1: 28x28 panel
    assert dense_lanes(S(1, 192, 256, 256, 26, 1)) == 8  # pixel blocks, 192 -> 26
    assert dense_lanes(S(1, 26, 256, 256, 192, 1)) == 16
    assert dense_lanes(c3(64, vec=4)) == 4  # NEON stays
    monkeypatch.setattr(convk, "WIDE_DENSE", False)
    assert dense_lanes(c3(64)) == 8
    monkeypatch.setattr(convk, "WIDE_DENSE", True)
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 16)  # AVX2 artifact (-march=x86-64-v3)
    assert dense_lanes(c3(64)) == 8
    monkeypatch.setattr(convk, "VECTOR_REGISTERS", 32)
    monkeypatch.setattr(aot, "cpu_flags", lambda: {"avx2", "fma"})
    assert dense_lanes(c3(64)) == 8
