"""lr-shrink-pruned-channels through lrc.compile: filter- and channel-pruned models come out with
smaller convs and torch's numbers, whatever sits between the convs."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.utils.prune as tprune
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import lrc
import lrprune


def _conv_shapes(cm) -> list[tuple[int, int]]:
    """(out, in) channels of every conv in the compiled model's lr IR."""
    return [(int(k), int(c)) for k, c in re.findall(r"weight = dense(?:_resource)?<[^>]*> : tensor<(\d+)x(\d+)x\d+x\d+xf32>",
                                                     cm.lr_ir)]


class VGGish(nn.Module):
    def __init__(self, bn=False):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.c3, self.c4 = nn.Conv2d(32, 24, 1), nn.Conv2d(24, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(16) if bn else nn.Identity()

    def forward(self, x):
        x = torch.relu(self.bn(self.c1(x)))
        x = nn.functional.max_pool2d(torch.relu(self.c2(x)), 2)
        return self.c4(torch.relu(self.c3(x)))


def _filter_prune(m, amount=0.5, dim=0):
    for c in (m.c1, m.c2, m.c3):
        tprune.ln_structured(c, "weight", amount=amount, n=2, dim=dim)
        tprune.remove(c, "weight")


@pytest.mark.parametrize("bn", [False, True])
def test_filter_pruned_model_shrinks(check, bn):
    """torch.nn.utils.prune ln_structured (filters): the dead channels leave both convs around them;
    dead filters whose constant act(bias) is non-zero stay where a padded conv reads them and fold
    into the bias of the unpadded 1x1 consumer."""
    torch.manual_seed(0)
    m = VGGish(bn).eval()
    _filter_prune(m)
    if bn:
        with torch.no_grad():
            m.bn.running_mean.uniform_(-1, 1)
            m.bn.running_var.uniform_(0.5, 2)
            m.bn.bias.uniform_(-1, 1)  # folded: dead filters get constants of both signs
    with torch.no_grad():
        m.c2.bias.uniform_(-0.5, 0.5)
        m.c3.bias.uniform_(-0.5, 0.5)
    x = torch.randn(1, 3, 20, 18)
    cm = check(m, x)
    shapes = _conv_shapes(cm)
    # c2 -> pool -> c3 (1x1, unpadded): all 16 dead filters of c2 go, whatever their constants
    assert shapes[1][0] == 16 and shapes[2][1] == 16, shapes
    # c1 -> c2 (padded): the dead filters whose relu(bias) is 0 go; of those with a non-zero constant
    # one stays and carries the others' weights
    const = torch.relu(m.bn(m.c1(torch.zeros(1, 3, 1, 1))) if bn else torch.relu(m.c1.bias)).flatten()
    dead = (m.c1.weight.flatten(1).abs().sum(1) == 0)
    carrier = int(bool((dead & (const != 0)).any()))
    assert shapes[0][0] == 16 - int(dead.sum()) + carrier == shapes[1][1], shapes
    ref = lrc.compile(m, (x,), fuse=False)  # no passes: every channel stays
    assert _conv_shapes(ref)[1] == (32, 16)


def test_channel_pruned_model_shrinks(check):
    """Input-channel pruning (dim=1) of a consumer removes the producer's filters it never reads."""
    torch.manual_seed(1)
    m = VGGish().eval()
    for c in (m.c2, m.c4):
        tprune.ln_structured(c, "weight", amount=0.5, n=2, dim=1)
        tprune.remove(c, "weight")
    cm = check(m, torch.randn(1, 3, 16, 16))
    shapes = _conv_shapes(cm)
    assert shapes[0][0] == shapes[1][1] == 8 and shapes[2][0] == shapes[3][1] == 12, shapes


def test_pattern_annotation_is_sliced(check):
    """An lrprune pattern+kernel annotation whose kernel pruning emptied whole filters: the filters
    go, the per-kernel pattern ids are sliced with the weights, and the sparse kernel still gets
    the library."""
    torch.manual_seed(2)
    m = VGGish().eval()
    w = m.c2.weight.detach()
    lib = lrprune.PatternLibrary.from_weights([w], n=4, entries=4)
    with torch.no_grad():
        pw = lrprune.project(w, "pattern+kernel", 0.5, library=lib)
        pw[::3] = 0  # every third filter entirely
        m.c2.weight.copy_(pw)
        m.c2.bias[::3] = -1.0  # relu(-1) = 0: the padded-free 1x1 consumer or not, these go
    m.c2.lr_sparsity = {"kind": "pattern+kernel", "rate": 0.5, "library": [tuple(p) for p in lib.patterns]}
    m.c3.lr_sparsity = {"kind": "kernel", "rate": 0.0, "library": None}  # c3's columns must not change
    cm = check(m, torch.randn(1, 3, 16, 16))
    assert _conv_shapes(cm)[1] == (32 - 11, 16)
    assert '#lr.sparsity<"pattern+kernel"' in cm.lr_ir


def test_residual_and_grouped_users_keep_channels(check):
    """A conv whose result is a residual operand, or read by a depthwise conv, keeps its shape."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 8, 1), nn.Conv2d(8, 8, 3, padding=1)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)

        def forward(self, x):
            y = self.a(x)
            return self.b(y) + y, self.dw(torch.relu(y))

    torch.manual_seed(3)
    m = M().eval()
    with torch.no_grad():
        m.a.weight[:4] = 0
    cm = check(m, torch.randn(1, 4, 8, 8))
    assert _conv_shapes(cm)[0] == (8, 4)


ACTS = ["relu", "sigmoid", "tanh", "none", "leaky_relu", "hardsigmoid", "silu", "gelu", "elu", "mish", "softplus"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), acts=st.lists(st.sampled_from(ACTS), min_size=3, max_size=3),
       ks=st.lists(st.sampled_from([1, 3]), min_size=3, max_size=3), pads=st.lists(st.booleans(), min_size=3,
       max_size=3), pool=st.booleans(), dead=st.floats(0, 1), unread=st.floats(0, 1),
       pad_value=st.sampled_from([None, 0.0, 0.5]))
def test_random_chains(seed, acts, ks, pads, pool, dead, unread, pad_value):
    """Random conv chains with random dead filters and unread input channels, activations (sigmoid
    maps a dead channel to 0.5), kernel sizes, paddings, a pool and a constant pad: always torch's
    numbers."""
    from conftest import compile_and_check

    g = torch.Generator().manual_seed(seed)
    chans = [3, 6, 5, 4]
    convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], ks[i], padding=ks[i] // 2 if pads[i] else 0)
                          for i in range(3))
    with torch.no_grad():
        for c in convs:
            c.weight.copy_(torch.randn(c.weight.shape, generator=g))
            c.bias.copy_(torch.randn(c.bias.shape, generator=g))
            c.weight[torch.rand(c.out_channels, generator=g) < dead] = 0
            c.weight[:, torch.rand(c.in_channels, generator=g) < unread] = 0

    class Chain(nn.Module):
        def forward(self, x):
            for i, c in enumerate(convs):
                x = c(x)
                if acts[i] != "none":
                    x = getattr(nn.functional, acts[i])(x) if acts[i] != "tanh" else torch.tanh(x)
                if pool and i == 0:
                    x = nn.functional.max_pool2d(x, 2)
                if pad_value is not None and i == 1:  # only dead channels equal to it stay constant
                    x = nn.functional.pad(x, (1, 1, 1, 1), value=pad_value)
            return x

    m = Chain().eval()
    m.convs = convs
    compile_and_check(m, torch.randn(1, 3, 14, 12, generator=g))
    assert np.isfinite(0)
