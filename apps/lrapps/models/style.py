"""Style-transfer generator after MSG-Net (Zhang & Dana, 2017), one fixed style.

Input and output are RGB in [0, 1] (NCHW); the output is not clamped, so
post-process with ``.clamp(0, 1)``. H and W must be multiples of 4 (two
stride-2 stages, two x2 upsamplings).
"""

from __future__ import annotations

import torch.nn as nn

__all__ = ["MSGNetStyle"]


def _norm(c):
    return nn.InstanceNorm2d(c, affine=True)


class ReflConv(nn.Sequential):
    """Reflection padding keeps image borders free of the dark frame that
    zero padding leaves in stylised outputs."""

    def __init__(self, cin, cout, k, stride=1):
        super().__init__(nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride))


class UpConv(nn.Sequential):
    """Nearest upsample + conv instead of a transposed conv, which would
    leave checkerboard artefacts."""

    def __init__(self, cin, cout, k, scale=2):
        layers = [nn.Upsample(scale_factor=scale, mode="nearest")]
        if k > 1:
            layers.append(nn.ReflectionPad2d(k // 2))
        layers.append(nn.Conv2d(cin, cout, k))
        super().__init__(*layers)


class Bottleneck(nn.Module):
    """Pre-activation bottleneck (norm, ReLU, conv) x3 with 4x expansion."""

    expansion = 4

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        cout = planes * self.expansion
        self.residual = None
        if stride != 1 or cin != cout:
            self.residual = nn.Conv2d(cin, cout, 1, stride)
        self.body = nn.Sequential(
            _norm(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, planes, 1),
            _norm(planes), nn.ReLU(inplace=True), ReflConv(planes, planes, 3, stride),
            _norm(planes), nn.ReLU(inplace=True), nn.Conv2d(planes, cout, 1))

    def forward(self, x):
        r = x if self.residual is None else self.residual(x)
        return r + self.body(x)


class UpBottleneck(nn.Module):
    def __init__(self, cin, planes):
        super().__init__()
        cout = planes * Bottleneck.expansion
        self.residual = UpConv(cin, cout, 1)
        self.body = nn.Sequential(
            _norm(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, planes, 1),
            _norm(planes), nn.ReLU(inplace=True), UpConv(planes, planes, 3),
            _norm(planes), nn.ReLU(inplace=True), nn.Conv2d(planes, cout, 1))

    def forward(self, x):
        return self.residual(x) + self.body(x)


class MSGNetStyle(nn.Module):
    """MSG-Net generator for a single style.

    ``widths = (stem, down1, ngf, up1, up2)``; the paper's network is
    ``(64, 32, 128, 32, 16)`` with 6 residual blocks. The defaults are the
    mobile-sized member used by the app (see docs/apps.md for latency).

    With one fixed style, MSG-Net's CoMatch layer ``y = (W G_s) x`` is a
    plain channel-mixing matrix, i.e. a bias-free 1x1 conv; it is kept in
    that form (``self.comatch``) so the topology matches the paper.
    """

    def __init__(self, widths=(32, 16, 64, 16, 8), n_res=5):
        super().__init__()
        c0, d1, ngf, u1, u2 = widths
        e = Bottleneck.expansion
        self.config = {"widths": list(widths), "n_res": n_res}
        self.encoder = nn.Sequential(
            ReflConv(3, c0, 7), _norm(c0), nn.ReLU(inplace=True),
            Bottleneck(c0, d1, 2), Bottleneck(d1 * e, ngf, 2))
        self.comatch = nn.Conv2d(ngf * e, ngf * e, 1, bias=False)
        self.res = nn.Sequential(*[Bottleneck(ngf * e, ngf) for _ in range(n_res)])
        self.decoder = nn.Sequential(
            UpBottleneck(ngf * e, u1), UpBottleneck(u1 * e, u2),
            _norm(u2 * e), nn.ReLU(inplace=True), ReflConv(u2 * e, 3, 7))
        # Start CoMatch at identity so an untrained net is an autoencoder-ish path.
        nn.init.eye_(self.comatch.weight.data.view(ngf * e, ngf * e))

    def forward(self, x):
        return self.decoder(self.res(self.comatch(self.encoder(x))))
