"""Sparse convs through the whole compiler: lrprune annotations, structure detected in the weights of
models pruned by other tools, the cost model's choice, and numerics against PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lrprune
from lrc.transforms.sparse import detect_structure

LIB = [(1, 3, 4, 5), (0, 1, 3, 4), (1, 4, 5, 7), (3, 4, 5, 7), (4, 5, 7, 8), (1, 2, 4, 5)]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.c3 = nn.Conv2d(16, 24, 1)
        self.c4 = nn.Conv2d(24, 16, 3, stride=2, padding=1)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = torch.relu(self.c2(y) + y)
        return self.c4(torch.relu(self.c3(y)))


def _net(seed=0):
    torch.manual_seed(seed)
    m = Net().eval()
    with torch.no_grad():
        m.b1.running_mean.uniform_(-0.5, 0.5)
        m.b1.running_var.uniform_(0.5, 2)
    return m


def _kernels_ir(model, x):
    """The kernel-level IR lrc.compile would build, to see which kernels were chosen."""
    from lrc.codegen.lower import lower_to_kernels
    from lrc.compiler import optimize
    from lrc.importer import import_model

    m = import_model(model, (x,))
    optimize(m)
    return str(lower_to_kernels(m))


def _sparse_kernels(ir_text: str) -> int:
    # sparse kernels take int32 tables; the dense kernels only f32 buffers
    return sum(1 for line in ir_text.splitlines() if "func.func private" in line and "xi32>" in line)


def test_lrprune_annotated_model(check, monkeypatch):
    m = _net()
    with torch.no_grad():
        for name, kind, rate in (("c2", "pattern+kernel", 0.6), ("c3", "kernel", 0.6), ("c4", "pattern", None)):
            conv = getattr(m, name)
            lib = LIB if kind.startswith("pattern") else None
            conv.weight.copy_(lrprune.project(conv.weight, kind, rate, library=lib))
            conv.lr_sparsity = {"kind": kind, "library": lib or []}
    x = torch.randn(1, 3, 12, 20)
    monkeypatch.setenv("LRC_SPARSE", "always")
    cm = check(m, x)
    assert cm.lr_ir.count("#lr.sparsity<") == 3
    assert _sparse_kernels(_kernels_ir(m, x)) == 3
    monkeypatch.setenv("LRC_SPARSE", "auto")
    check(m, x)
    monkeypatch.setenv("LRC_SPARSE", "off")
    assert _sparse_kernels(_kernels_ir(m, x)) == 0


def test_torch_prune_model_detected_without_annotation(check, monkeypatch):
    """torch.nn.utils.prune (magnitude, no lrprune annotation): the compiler finds the zeros itself."""
    import torch.nn.utils.prune as tprune

    m = _net(1)
    tprune.l1_unstructured(m.c2, "weight", amount=0.8)
    tprune.ln_structured(m.c3, "weight", amount=0.6, n=2, dim=0)  # whole filters
    for c in (m.c2, m.c3):
        tprune.remove(c, "weight")
    x = torch.randn(1, 3, 10, 16)
    cm = check(m, x)
    assert '#lr.sparsity<"irregular"' in cm.lr_ir
    # c3's dead filters leave c3 and c4 (lr-shrink-pruned-channels): those whose constant relu(bias) is
    # 0 outright, those with a positive constant onto one carrier channel (c4 pads, so no bias fold)
    import re

    k3 = [int(k) for k in re.findall(r"tensor<(\d+)x16x1x1xf32>", cm.lr_ir)]
    dead = m.c3.weight.flatten(1).abs().sum(1) == 0
    carrier = int(bool((dead & (m.c3.bias > 0)).any()))
    assert dead.sum() > 1 and k3 == [24 - int(dead.sum()) + carrier], k3
    monkeypatch.setenv("LRC_SPARSE", "auto")
    assert _sparse_kernels(_kernels_ir(m, x)) >= 1  # c2, 5x fewer MACs, passes the cost model
    monkeypatch.setenv("LRC_SPARSE", "always")
    assert _sparse_kernels(_kernels_ir(m, x)) == cm.lr_ir.count("#lr.sparsity<")  # every annotated conv
    check(m, x)


def test_cost_model_keeps_dense_kernel_for_few_zeros(monkeypatch):
    m = _net(2)
    with torch.no_grad():
        m.c2.weight[:, :, 0, 0] = 0  # 1 of 9 columns: 11 % zeros, detected but not worth a sparse kernel
    x = torch.randn(1, 3, 8, 8)
    monkeypatch.setenv("LRC_SPARSE", "auto")
    text = _kernels_ir(m, x)
    assert _sparse_kernels(text) == 0


def _w(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("kind,rate,expect", [
    ("filter", 0.5, "filter"), ("channel", 0.5, "channel"), ("column", 0.5, "column"), ("kernel", 0.5, "kernel"),
    ("pattern", None, "pattern"), ("pattern+kernel", 0.5, "pattern+kernel"), ("irregular", 0.6, "irregular")])
def test_detect_structure(kind, rate, expect):
    w = torch.from_numpy(_w((12, 10, 3, 3)))
    lib = LIB if kind.startswith("pattern") else None
    wp = lrprune.project(w, kind, rate, library=lib).numpy()
    st = detect_structure(wp)
    assert st["kind"] == expect
    if expect.startswith("pattern"):
        assert all(len(p) == 4 for p in st["library"]) and set(st["library"]) <= set(LIB)
        assert ((st["ids"] >= 0) == (np.abs(wp).reshape(12, 10, 9).sum(2) > 0)).all()
    if expect == "kernel":
        assert ((st["ids"] == 0) == (np.abs(wp).reshape(12, 10, 9).sum(2) > 0)).all()


def test_detect_structure_dense_and_1x1():
    assert detect_structure(_w((8, 8, 3, 3))) is None
    w = _w((8, 8, 1, 1))
    w[:, 2] = 0
    w[5, 6] = 0  # a lone zero kernel besides a zero channel: kernel pruning, not channel
    assert detect_structure(w)["kind"] == "kernel"
