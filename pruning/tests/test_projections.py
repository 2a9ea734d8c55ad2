import itertools

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import lrprune
from lrprune.projections import n_pruned

GROUP_KINDS = ["filter", "channel", "column", "kernel", "irregular"]
SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def weights(draw, max_o=3, max_i=3, kernels=((1, 1), (1, 2), (2, 2), (3, 3)), max_numel=16):
    o = draw(st.integers(1, max_o))
    i = draw(st.integers(1, max_i))
    kh, kw = draw(st.sampled_from([k for k in kernels if o * i * k[0] * k[1] <= max_numel] or [(1, 1)]))
    n = o * i * kh * kw
    vals = draw(st.lists(st.floats(-8, 8, allow_nan=False, width=32), min_size=n, max_size=n))
    return torch.tensor(vals, dtype=torch.float64).reshape(o, i, kh, kw)


rates = st.floats(0, 0.99)


def groups(kind, shape):
    """Every group of ``kind`` as a boolean mask of ``shape``."""
    o, i, kh, kw = shape
    out = []
    idx = {
        "filter": [(a, slice(None), slice(None), slice(None)) for a in range(o)],
        "channel": [(slice(None), b, slice(None), slice(None)) for b in range(i)],
        "column": [(slice(None), b, y, x) for b in range(i) for y in range(kh) for x in range(kw)],
        "kernel": [(a, b, slice(None), slice(None)) for a in range(o) for b in range(i)],
        "irregular": list(itertools.product(range(o), range(i), range(kh), range(kw))),
    }[kind]
    for ix in idx:
        m = torch.zeros(shape, dtype=torch.bool)
        m[ix] = True
        out.append(m)
    return out


def dist2(a, b):
    return float((a - b).pow(2).sum())


@SETTINGS
@given(w=weights(), kind=st.sampled_from(GROUP_KINDS), rate=rates)
def test_group_projection_is_nearest_structured_tensor(w, kind, rate):
    p = lrprune.project(w, kind, rate)
    gs = groups(kind, tuple(w.shape))
    keep = len(gs) - n_pruned(rate, len(gs))
    # structure: the mask is a union of exactly `keep` groups
    mask = lrprune.projection_mask(w, kind, rate)
    touched = [g for g in gs if (mask & g).any()]
    assert all((mask & g).equal(g) for g in touched)
    assert len(touched) == keep
    assert torch.equal(p, w * mask)
    # nearest: brute force over every choice of `keep` groups
    best = min(
        dist2(w, w * torch.stack(list(c)).any(dim=0)) for c in itertools.combinations(gs, keep)
    )
    assert dist2(w, p) <= best + 1e-9 * (1 + best)
    # idempotent
    assert torch.equal(lrprune.project(p, kind, rate), p)


LIB3 = lrprune.PatternLibrary([(0, 1, 4, 5), (4, 5, 7, 8), (1, 3, 4, 7)], (3, 3))


@SETTINGS
@given(w=weights(max_o=2, max_i=2, kernels=((3, 3),), max_numel=36))
def test_pattern_projection_is_nearest(w):
    p = lrprune.project(w, "pattern", library=LIB3)
    mask = lrprune.projection_mask(w, "pattern", library=LIB3)
    pats = [set(q) for q in LIB3]
    for a in range(w.shape[0]):
        for b in range(w.shape[1]):
            kept = set(torch.nonzero(mask[a, b].reshape(-1)).flatten().tolist())
            assert kept in pats  # exactly one library pattern per kernel
    best = 0.0
    for a in range(w.shape[0]):
        for b in range(w.shape[1]):
            k = w[a, b].reshape(-1)
            best += min(float(k.pow(2).sum() - k[list(q)].pow(2).sum()) for q in LIB3)
    assert dist2(w, p) <= best + 1e-9 * (1 + best)
    assert torch.equal(lrprune.project(p, "pattern", library=LIB3), p)


@SETTINGS
@given(w=weights(max_o=2, max_i=2, kernels=((3, 3),), max_numel=36), rate=rates)
def test_pattern_kernel_projection_is_nearest(w, rate):
    p = lrprune.project(w, "pattern+kernel", rate, library=LIB3)
    o, i = w.shape[:2]
    keep = o * i - n_pruned(rate, o * i)
    mask = lrprune.projection_mask(w, "pattern+kernel", rate, library=LIB3)
    pats = [set(q) for q in LIB3]
    nonzero_kernels = 0
    for a in range(o):
        for b in range(i):
            kept = set(torch.nonzero(mask[a, b].reshape(-1)).flatten().tolist())
            assert kept in pats or not kept
            nonzero_kernels += bool(kept)
    assert nonzero_kernels == keep
    # brute force: every kernel gets a pattern or is removed, <= keep kept
    best = float("inf")
    kernels = [(a, b) for a in range(o) for b in range(i)]
    for choice in itertools.product([None, *range(len(LIB3))], repeat=len(kernels)):
        if sum(c is not None for c in choice) > keep:
            continue
        m = torch.zeros_like(w, dtype=torch.bool)
        for (a, b), c in zip(kernels, choice):
            if c is not None:
                m[a, b].view(-1)[list(LIB3.patterns[c])] = True
        best = min(best, dist2(w, w * m))
    assert dist2(w, p) <= best + 1e-9 * (1 + best)
    assert torch.equal(lrprune.project(p, "pattern+kernel", rate, library=LIB3), p)


@SETTINGS
@given(w=weights(max_o=3, max_i=3, kernels=((3, 3),), max_numel=81))
def test_default_library_is_derived_from_weight(w):
    lib = lrprune.PatternLibrary.from_weights([w])
    assert len(lib) == 8 and lib.kernel_shape == (3, 3)
    assert all(len(q) == 4 and 4 in q for q in lib)
    assert torch.equal(lrprune.project(w, "pattern"), lrprune.project(w, "pattern", library=lib))


def test_rate_rounding_never_prunes_everything():
    assert n_pruned(0.0, 10) == 0
    assert n_pruned(0.5, 10) == 5
    assert n_pruned(0.99, 10) == 9
    assert n_pruned(0.9, 1) == 0
    w = torch.randn(4, 4, 3, 3)
    assert (lrprune.project(w, "filter", 0.99).flatten(1).abs().sum(1) > 0).sum() == 1


def test_projection_is_pure_and_keeps_dtype():
    w = torch.randn(4, 3, 3, 3, dtype=torch.float32)
    w0 = w.clone()
    for kind in ["filter", "channel", "column", "kernel", "irregular", "pattern+kernel"]:
        p = lrprune.project(w, kind, 0.5)
        assert p.dtype == w.dtype and p.shape == w.shape
    lrprune.project(w, "pattern")
    assert torch.equal(w, w0)


def test_linear_weights_are_1x1_kernels():
    w = torch.randn(6, 5)
    p = lrprune.project(w, "column", 0.4)
    assert p.shape == w.shape
    assert (p.abs().sum(0) == 0).sum() == 2  # two input features removed
    p = lrprune.project(w, "filter", 0.5)
    assert (p.abs().sum(1) == 0).sum() == 3


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_transpose_filter_means_output_channel(groups):
    torch.manual_seed(0)
    m = nn.ConvTranspose2d(4, 6, 3, groups=groups, bias=False)
    p = lrprune.project(m.weight.detach(), "filter", 0.5, module=m)
    m.weight.data.copy_(p)
    y = m(torch.randn(1, 4, 5, 5))
    dead = (y.abs().sum(dim=(0, 2, 3)) == 0).sum()
    assert dead == 3


def test_conv_transpose_canonical_roundtrip():
    from lrprune.layers import from_canonical, to_canonical

    m = nn.ConvTranspose2d(6, 4, (3, 2), groups=2)
    w = torch.randn_like(m.weight)
    c = to_canonical(m, w)
    assert c.shape == (4, 3, 3, 2)
    assert torch.equal(from_canonical(m, c), w)


def test_bad_arguments():
    w = torch.randn(2, 2, 3, 3)
    with pytest.raises(ValueError, match="unknown pruning kind 'rows'"):
        lrprune.project(w, "rows", 0.5)
    for bad in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
            lrprune.project(w, "kernel", bad)
    with pytest.raises(ValueError, match="needs a rate"):
        lrprune.project(w, "column")
    with pytest.raises(ValueError, match="takes no rate"):
        lrprune.project(w, "pattern", 0.5)
    lib5 = lrprune.PatternLibrary([(0, 6, 12, 18)], (5, 5))
    with pytest.raises(ValueError, match="5x5 kernels .* 3x3"):
        lrprune.project(w, "pattern", library=lib5)
    with pytest.raises(ValueError, match="2-D or 4-D"):
        lrprune.project(torch.randn(3, 3, 3), "filter", 0.5)
