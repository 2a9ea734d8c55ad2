"""lr-sink-upsample through lrc.compile: decoders that upsample (nearest, integer factors) and then
normalize / activate / apply 1x1 convs give torch's numbers with those layers run before the
upsample, and the pass leaves everything else where it was."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import lrc


class UpBottleneck(nn.Module):
    """MSG-Net's upsample bottleneck: main path IN, ReLU, upsample, 1x1, IN, ReLU, 3x3; shortcut
    upsample, 1x1, added to the main path."""

    def __init__(self, cin=6, cout=4, factor=(2, 2)):
        super().__init__()
        self.factor = factor
        self.n1, self.n2 = nn.InstanceNorm2d(cin, affine=True), nn.InstanceNorm2d(cout, affine=True)
        self.c1, self.c2 = nn.Conv2d(cin, cout, 1), nn.Conv2d(cout, cout, 3, padding=1)
        self.short = nn.Conv2d(cin, cout, 1)
        self.prelu = nn.PReLU(cout)

    def forward(self, x):
        up = lambda t: nn.functional.interpolate(t, scale_factor=self.factor, mode="nearest")  # noqa: E731
        y = self.c1(up(torch.relu(self.n1(x))))
        y = self.c2(torch.relu(self.n2(self.prelu(y))))
        return y + self.short(up(x))


def _ops(cm) -> list[str]:
    return re.findall(r'"(lr\.\w+)"', cm.lr_ir)


def _upsample_users(ir_text: str) -> list[str]:
    """The op lines that read an lr.upsample result, and at which operand position ("lr.conv2d@1")."""
    lines = ir_text.splitlines()
    out = []
    for line in lines:
        if '"lr.upsample"' not in line:
            continue
        res = line.split("=")[0].strip()
        for ln in lines:
            m = re.search(r'"(lr\.\w+)"\(([^)]*)\)', ln)
            if m and res in [a.strip() for a in m.group(2).split(",")]:
                out.append(f"{m.group(1)}@{[a.strip() for a in m.group(2).split(',')].index(res)}")
    return out


@pytest.mark.parametrize("shape,factor", [((1, 6, 9, 7), (2, 2)), ((2, 6, 5, 4), (3, 2)), ((1, 6, 4, 4), (1, 3))])
def test_up_bottleneck(check, shape, factor):
    torch.manual_seed(0)
    m = UpBottleneck(factor=factor).eval()
    with torch.no_grad():
        for n in (m.n1, m.n2):
            n.weight.uniform_(0.5, 2)
            n.bias.uniform_(-1, 1)
    x = torch.randn(shape) * 2 + 0.5
    check(m, x)
    cm = lrc.compile(m, (x,))
    ops = _ops(cm)
    # main path: norm, relu, 1x1 conv, prelu, norm, relu all run before the upsample that feeds the
    # 3x3; shortcut: its 1x1 runs before its upsample, which joins the 3x3 conv as its residual
    assert sorted(_upsample_users(cm.lr_ir)) == ["lr.conv2d@0", "lr.conv2d@1"]
    assert ops.count("lr.upsample") == 2 and "lr.add" not in ops


def test_style_app_decoder(check):
    """The style app's decoder: every upsample ends up after the 1x1 convs, norms and activations."""
    import os
    import sys

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    path = os.path.join(root, "apps", "checkpoints", "style_dense.pt")
    if not os.path.exists(path):
        pytest.skip(f"{path} absent")
    sys.path.insert(0, os.path.join(root, "apps"))
    from lrapps import models

    m = models.load(path)
    x = models.example_input("style", hw=(32, 40))
    cm = check(m, x)
    users = _upsample_users(cm.lr_ir)
    # before the pass: upsample -> instance norm (main paths) and -> 1x1 conv (shortcuts)
    assert users and set(users) <= {"lr.pad@0", "lr.conv2d@1"}, users


def test_bilinear_stays():
    m = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.ReLU(), nn.Conv2d(3, 2, 1)).eval()
    x = torch.randn(1, 3, 5, 6)
    cm = lrc.compile(m, (x,))
    assert _ops(cm)[0] == "lr.upsample"
    with torch.no_grad():
        torch.testing.assert_close(cm(x), m(x), rtol=1e-4, atol=1e-5)
